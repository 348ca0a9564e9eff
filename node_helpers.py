"""ComfyUI's ``node_helpers`` module for plugins: small helpers with no model internals.

Written from ComfyUI's documented behaviour: ``pillow`` retries a truncated image file,
``conditioning_set_values`` edits ComfyUI's CONDITIONING format (a list of
``[tensor, options]`` pairs), ``image_alpha_fix`` matches two images' channel counts.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any, TypeVar

import torch
from PIL import ImageFile, UnidentifiedImageError

T = TypeVar("T")

_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def pillow(fn: Callable[[Any], T], arg: Any) -> T:
    """``fn(arg)``, retried with truncated-image loading on when PIL refuses the file."""
    previous = ImageFile.LOAD_TRUNCATED_IMAGES
    try:
        return fn(arg)
    except (OSError, UnidentifiedImageError, ValueError):
        ImageFile.LOAD_TRUNCATED_IMAGES = True
        return fn(arg)
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = previous


def hasher() -> Callable[..., Any]:
    """The hash constructor ComfyUI uses to compare uploaded files (SHA-256)."""
    return hashlib.sha256


def string_to_torch_dtype(name: str) -> torch.dtype | None:
    """``"fp32"`` / ``"fp16"`` / ``"bf16"`` to the torch dtype; None for anything else."""
    return _DTYPES.get(name)


def conditioning_set_values(conditioning: list, values: dict | None = None,
                            append: bool = False) -> list:
    """A copy of CONDITIONING with ``values`` set in every entry's options.

    With ``append``, a value (a list) is added to the list the option already holds.
    """
    values = values or {}
    out = []
    for tensor, options in conditioning:
        options = dict(options)
        for key, value in values.items():
            old = options.get(key) if append else None
            options[key] = value if old is None else old + value
        out.append([tensor, options])
    return out


def image_alpha_fix(destination: torch.Tensor, source: torch.Tensor,
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Two IMAGEs with the same channel count: a source with alpha loses it over an RGB
    destination; an RGB source gets an opaque alpha over an RGBA destination."""
    if destination.shape[-1] < source.shape[-1]:
        source = source[..., :destination.shape[-1]]
    elif destination.shape[-1] > source.shape[-1]:
        source = torch.nn.functional.pad(source, (0, 1), value=1.0)
    return destination, source
