"""LoRAs on the diffusion transformers: loaded once into the cached model as named adapters
(diffusers' own LoRA loading, which reads ComfyUI's and the trainers' formats), weighted and
switched on for the runs whose graph chose them, and off for every other run.

A light module: the LoRA node's declaration reads ``LORAS``; the model is touched when it runs.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

LORAS = "loras"  # the key in ModelBundle.details
EXPERTS = ("both", "high_noise", "low_noise")


@dataclass(frozen=True)
class LoraChoice:
    """One LoRA a graph applies: its adapter name, strength, and which transformers carry it."""

    adapter: str
    strength: float
    targets: tuple[str, ...]


def adapter_name(file_name: str, stamp: str) -> str:
    """A peft adapter name for a file (letters, digits and _ only), new when the file changes."""
    return re.sub(r"\W", "_", f"{file_name}_{stamp}")


def drop_stale_adapters(module: Any, file_name: str, adapter: str) -> None:
    """Delete the adapters an earlier version of the same file left on the cached model: a
    changed file is a new adapter, and the old one would stay in memory for the model's life."""
    stem = adapter_name(file_name, "")
    for old in list(getattr(module, "peft_config", None) or {}):
        if old.startswith(stem) and old != adapter:
            module.delete_adapters(old)


def has_adapters(module: Any) -> bool:
    return bool(getattr(module, "peft_config", None))


@contextmanager
def lora_weights(modules: dict[str, Any], loras: list[LoraChoice]) -> Iterator[None]:
    """Switch the chosen adapters on (at their strengths) for one run, and every adapter off
    after it, so runs without these LoRAs see the plain model."""
    try:
        for name, module in modules.items():
            chosen = [lora for lora in loras if name in lora.targets]
            if chosen:
                module.enable_lora()
                module.set_adapters([lora.adapter for lora in chosen],
                                    [lora.strength for lora in chosen])
            elif has_adapters(module):
                module.disable_lora()
        yield
    finally:  # even when a set-up above failed: no adapter stays on for later runs
        for module in modules.values():
            if has_adapters(module):
                module.disable_lora()
