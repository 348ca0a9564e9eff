"""Speed options for the diffusion transformers, applied for one run and then undone: the
attention backend (PyTorch SDPA by default; flash-attn, SageAttention or xformers when
installed), regional ``torch.compile`` of the repeated blocks, and diffusers' First Block Cache
(later steps reuse the rest of the network's output while the first block's barely changes).

A light module: the node lists the choices; diffusers is imported when a run applies them.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

KINEMA_ACCELERATION = "acceleration"  # the key in ModelBundle.details
# Widget name → (diffusers attention backend, the package that must be installed).
ATTENTION_BACKENDS: dict[str, tuple[str, str | None]] = {
    "sdpa": ("native", None),
    "flash": ("flash", "flash_attn"),
    "sage": ("sage", "sageattention"),
    "xformers": ("xformers", "xformers"),
}
STEP_CACHES = ("off", "first_block_cache")


@dataclass(frozen=True)
class Acceleration:
    """What the user chose on the DiT Options node."""

    attention: str = "sdpa"
    compile: bool = False
    step_cache: str = "off"
    cache_threshold: float = 0.05


def installed_backends() -> list[str]:
    """The attention choices this machine can run."""
    return [name for name, (_, package) in ATTENTION_BACKENDS.items()
            if package is None or importlib.util.find_spec(package) is not None]


@contextmanager
def accelerated(transformers: list[Any], options: Acceleration | None) -> Iterator[None]:
    """Apply ``options`` to the transformers for the duration of one run."""
    if options is None:
        yield
        return
    backend, package = ATTENTION_BACKENDS[options.attention]
    if package is not None and importlib.util.find_spec(package) is None:
        raise ValueError(f"attention {options.attention!r} needs the {package} package, which "
                         f"is not installed; installed: {', '.join(installed_backends())}")
    for model in transformers:
        if options.compile and not getattr(model, "_kinema_compiled", False):
            # Regional: each repeated block compiles once and is reused, seconds not minutes.
            # It stays compiled for the model's life (there is no undoing it).
            model.compile_repeated_blocks(fullgraph=True)
            model._kinema_compiled = True
        model.set_attention_backend(backend)
        if options.step_cache == "first_block_cache":
            from diffusers import FirstBlockCacheConfig

            model.enable_cache(FirstBlockCacheConfig(threshold=options.cache_threshold))
    try:
        yield
    finally:  # the cached model is shared by every later run: leave it as it was
        for model in transformers:
            if options.step_cache != "off":
                model.disable_cache()
            model.reset_attention_backend()
