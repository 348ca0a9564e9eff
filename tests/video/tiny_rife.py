"""Tiny random RIFE 4.x weights in the public key layout (Practical-RIFE's ``flownet.pkl``).

The keys and shapes are written out here from the public layout, independently of Kinema's
module, so loading them checks that Kinema reads real files, not only its own saves.
Widths are small so a test runs in milliseconds; the real ones are e.g. 192/128/96/64 (4.6).
"""

from __future__ import annotations

from pathlib import Path

import torch

# Public releases by what differs: encoder layout, encoder widths, block count, outputs.
VARIANTS = {
    # 4.5/4.6: no encoder; each block outputs flow, mask and one spare channel.
    "4.6": {"encoder": None, "blocks": 4, "outputs": 6, "handover": 0},
    # 4.7-4.9: a two-layer Sequential encoder (no activation), 4 feature channels.
    "4.7": {"encoder": ("sequential", (16, 4)), "blocks": 4, "outputs": 6, "handover": 0},
    # 4.13-4.17: the Head encoder (cnn0..cnn3), 8 feature channels.
    "4.14": {"encoder": ("head", (32, 32, 32, 8)), "blocks": 4, "outputs": 6, "handover": 0},
    # 4.25/4.26: five blocks, Head of 4 channels, 8 feature channels handed block to block.
    "4.26": {"encoder": ("head", (16, 16, 16, 4)), "blocks": 5, "outputs": 13, "handover": 8},
}
TINY_WIDTHS = (16, 16, 8, 8, 8)


def tiny_rife_state(variant: str = "4.6", widths: tuple[int, ...] = TINY_WIDTHS,
                    seed: int = 0, prefix: str = "module.", std: float = 0.05,
                    ) -> dict[str, torch.Tensor]:
    """Random weights of ``variant`` with block widths ``widths`` (keys as the public files
    have them, ``module.`` prefix included)."""
    spec = VARIANTS[variant]
    generator = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}

    def add(key: str, *shape: int, value: float | None = None) -> None:
        tensor = (torch.full(shape, value) if value is not None
                  else torch.randn(*shape, generator=generator) * std)
        state[prefix + key] = tensor

    features = 0
    if spec["encoder"] is not None:
        layout, enc_widths = spec["encoder"]
        channels = 3
        for index, width in enumerate(enc_widths):
            last = index == len(enc_widths) - 1
            name = f"encode.cnn{index}" if layout == "head" else f"encode.{index}"
            # Transposed convolutions store [in, out, k, k].
            shape = (channels, width, 4, 4) if last else (width, channels, 3, 3)
            add(f"{name}.weight", *shape)
            add(f"{name}.bias", width)
            channels = width
        features = enc_widths[-1]
    outputs = spec["outputs"]
    for block in range(spec["blocks"]):
        width = widths[block]
        # Frames, features, time; later blocks: warped ones, time, mask, flow (+ handed over).
        inputs = 7 + 2 * features if block == 0 else 12 + 2 * features + spec["handover"]
        prefix_b = f"block{block}"
        add(f"{prefix_b}.conv0.0.0.weight", width // 2, inputs, 3, 3)
        add(f"{prefix_b}.conv0.0.0.bias", width // 2)
        add(f"{prefix_b}.conv0.1.0.weight", width, width // 2, 3, 3)
        add(f"{prefix_b}.conv0.1.0.bias", width)
        for res in range(8):
            add(f"{prefix_b}.convblock.{res}.conv.weight", width, width, 3, 3)
            add(f"{prefix_b}.convblock.{res}.conv.bias", width)
            add(f"{prefix_b}.convblock.{res}.beta", 1, width, 1, 1, value=1.0)
        add(f"{prefix_b}.lastconv.0.weight", width, 4 * outputs, 4, 4)
        add(f"{prefix_b}.lastconv.0.bias", 4 * outputs)
    return state


def save_tiny_rife(folder: Path, name: str = "rife46.pth", **kwargs) -> Path:
    """``tiny_rife_state(**kwargs)`` saved with ``torch.save`` as ``folder/name``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    torch.save(tiny_rife_state(**kwargs), path)
    return path
