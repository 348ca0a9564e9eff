"""ComfyUI's ``comfy.utils`` for plugins: progress bars, resampling and safe weight loading.

``ProgressBar`` reports through the running node's context (a no-op outside a node call);
``load_torch_file`` never unpickles arbitrary objects: ``.pt``/``.pth``/``.ckpt`` files load
with ``torch.load(weights_only=True)``, always.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import safetensors
import safetensors.torch
import torch

from engine.context import current_context
from engine.folders import atomic_write
from nodes.imaging import resample

PROGRESS_BAR_ENABLED = True
SAFETENSORS_EXTENSIONS = frozenset({".safetensors", ".sft"})


class ProgressBar:
    """Steps done of a total, reported to the node that is running (ComfyUI's ProgressBar)."""

    def __init__(self, total: int, node_id: str | None = None) -> None:
        self.total = total
        self.current = 0
        self.node_id = node_id

    def update_absolute(self, value: int, total: int | None = None, preview: Any = None) -> None:
        """Set progress to ``value`` (of ``total`` if given); also an interrupt point."""
        if total is not None:
            self.total = total
        self.current = min(value, self.total) if self.total else value
        ctx = current_context()
        if ctx is None:
            return
        if PROGRESS_BAR_ENABLED:
            ctx.progress(self.current, self.total, preview)
        else:
            ctx.check_interrupted()

    def update(self, value: int) -> None:
        """Advance by ``value`` steps."""
        self.update_absolute(self.current + value)


def common_upscale(samples: torch.Tensor, width: int, height: int, upscale_method: str,
                   crop: str) -> torch.Tensor:
    """Resize channels-first ``[B,C,H,W]`` (or ``[B,C,T,H,W]``) samples; see nodes.imaging."""
    return resample(samples, width, height, upscale_method, crop)


def _state_dict_of(data: Any) -> Any:
    """Unwrap Lightning-style checkpoints (``{"state_dict": ...}`` or one wrapping key)."""
    if isinstance(data, dict):
        if isinstance(data.get("state_dict"), dict):
            return data["state_dict"]
        if len(data) == 1:
            (only,) = data.values()
            if isinstance(only, dict):
                return only
    return data


def load_torch_file(ckpt: str | os.PathLike, safe_load: bool = True,
                    device: torch.device | str | None = None,
                    return_metadata: bool = False) -> Any:
    """A state dict from ``.safetensors``/``.sft`` or a torch file, never running pickled code.

    ``safe_load`` is accepted for ComfyUI's signature; loading is safe whatever it says.
    """
    path = Path(ckpt)
    device = torch.device("cpu") if device is None else torch.device(device)
    metadata = None
    if path.suffix.lower() in SAFETENSORS_EXTENSIONS:
        sd = safetensors.torch.load_file(path, device=str(device))
        if return_metadata:
            with safetensors.safe_open(path, framework="pt") as fh:
                metadata = fh.metadata()
    else:
        try:
            data = torch.load(path, map_location=device, weights_only=True)
        except pickle.UnpicklingError as exc:
            raise pickle.UnpicklingError(
                f"{path.name}: refusing to unpickle objects other than tensors and plain "
                "containers (Kinema loads torch files with weights_only=True); convert the "
                "file to .safetensors") from exc
        sd = _state_dict_of(data)
    return (sd, metadata) if return_metadata else sd


def save_torch_file(sd: dict[str, torch.Tensor], ckpt: str | os.PathLike,
                    metadata: dict[str, str] | None = None) -> None:
    """Write a state dict as ``.safetensors``, atomically."""
    tensors = {k: v.contiguous() for k, v in sd.items()}
    atomic_write(Path(ckpt), safetensors.torch.save(tensors, metadata=metadata))


def __getattr__(name: str) -> Any:
    raise AttributeError(f"comfy.utils.{name} is not supported by Kinema")
