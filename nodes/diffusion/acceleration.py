"""Speed options for the diffusion transformers, applied for one run and then undone: the
attention backend (PyTorch SDPA by default; flash-attn, SageAttention or xformers when
installed), regional ``torch.compile`` of the repeated blocks, and diffusers' First Block Cache
(later steps reuse the rest of the network's output while the first block's barely changes).

A light module: the node lists the choices; diffusers is imported when a run applies them.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

from engine.folders import active_folders

KINEMA_ACCELERATION = "acceleration"  # the key in ModelBundle.details
# Widget name → (diffusers attention backend, the package that must be installed).
ATTENTION_BACKENDS: dict[str, tuple[str, str | None]] = {
    "sdpa": ("native", None),
    "flash": ("flash", "flash_attn"),
    "sage": ("sage", "sageattention"),
    "xformers": ("xformers", "xformers"),
}
STEP_CACHES = ("off", "first_block_cache")
# Backends that refuse an attention mask (diffusers checks it when they run).
MASKLESS_BACKENDS = frozenset({"flash", "sage"})


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
def accelerated(transformers: list[Any], options: Acceleration | None,
                masked_attention: bool = False) -> Iterator[None]:
    """Apply ``options`` to the transformers for the duration of one run, undoing each step
    even when a later one fails (the cached model is shared by every later run).

    ``masked_attention``: the family passes attention masks (LTX-Video, HunyuanVideo), which
    only SDPA and xformers accept.
    """
    if options is None:
        yield
        return
    backend, package = ATTENTION_BACKENDS[options.attention]
    if package is not None and importlib.util.find_spec(package) is None:
        raise ValueError(f"attention {options.attention!r} needs the {package} package, which "
                         f"is not installed; installed: {', '.join(installed_backends())}")
    if masked_attention and options.attention in MASKLESS_BACKENDS:
        raise ValueError(f"attention {options.attention!r} takes no attention mask, which this "
                         f"model passes: choose sdpa or xformers")
    # Heavy, and loaded with the model already: never by listing the node's choices.
    from diffusers.models.attention_dispatch import attention_backend

    with ExitStack() as undo:
        # diffusers' process-wide backend, restored on exit: every transformer of this run
        # uses it, and no later run inherits it.
        undo.enter_context(attention_backend(backend))
        for model in transformers:
            if options.compile and not getattr(model, "_kinema_compiled", False):
                _compile(model, options)
            if options.step_cache == "first_block_cache":
                from diffusers import FirstBlockCacheConfig

                model.enable_cache(FirstBlockCacheConfig(threshold=options.cache_threshold))
                undo.callback(model.disable_cache)
        yield


def _compile(model: Any, options: Acceleration) -> None:
    """Regional compile: each repeated block compiles once and is reused (seconds, not minutes);
    it stays compiled for the model's life (there is no undoing it). The First Block Cache's
    decision and offloading hooks break a full graph, so a graph per block may break there."""
    temp = active_folders().temp
    # Inductor and Triton write their caches under the project's temp folder, not /tmp.
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(temp / "torchinductor"))
    os.environ.setdefault("TRITON_CACHE_DIR", str(temp / "triton"))
    model.compile_repeated_blocks(fullgraph=options.step_cache == "off")
    model._kinema_compiled = True
