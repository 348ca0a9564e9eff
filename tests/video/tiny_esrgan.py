"""Tiny random upscalers in the public file layouts, for the upscaling tests.

The key names and shapes are spelt out here from the published layouts (BasicSR's RRDBNet and
SRVGGNetCompact, BSRGAN's and the original ESRGAN's names), not taken from Kinema's modules,
so the tests check Kinema against the formats rather than against itself.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

# Small enough to run in milliseconds; an RRDBNet this size sees 19 input pixels around each
# output pixel (17 convolutions at the input's resolution, ~2 more after upsampling).
TINY_FEAT, TINY_BLOCKS, TINY_GROW = 8, 1, 4
RRDB_RECEPTIVE_FIELD = 19
SRVGG_CONVS = 2
SRVGG_RECEPTIVE_FIELD = SRVGG_CONVS + 2
UNSHUFFLE = {4: 1, 2: 2, 1: 4}  # Real-ESRGAN's x2 and x1 models pixel-unshuffle their input


def _conv(state: dict, name: str, out_ch: int, in_ch: int, gen: torch.Generator) -> None:
    std = (2.0 / (9 * in_ch)) ** 0.5
    state[f"{name}.weight"] = torch.randn(out_ch, in_ch, 3, 3, generator=gen) * std
    state[f"{name}.bias"] = torch.randn(out_ch, generator=gen) * 0.01


def rrdbnet_state(scale: int = 4, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights in BasicSR's RRDBNet layout (RealESRGAN_x4plus / x2plus)."""
    gen = torch.Generator().manual_seed(seed)
    nf, gc = TINY_FEAT, TINY_GROW
    state: dict[str, torch.Tensor] = {}
    _conv(state, "conv_first", nf, 3 * UNSHUFFLE[scale] ** 2, gen)
    for block in range(TINY_BLOCKS):
        for rdb in (1, 2, 3):
            for conv in range(1, 6):
                _conv(state, f"body.{block}.rdb{rdb}.conv{conv}", gc if conv < 5 else nf,
                      nf + (conv - 1) * gc, gen)
    for name in ("conv_body", "conv_up1", "conv_up2", "conv_hr"):
        _conv(state, name, nf, nf, gen)
    _conv(state, "conv_last", 3, nf, gen)
    return state


def bsrgan_layout(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The same weights under BSRGAN's names (RRDB_trunk, trunk_conv, upconv1, HRconv)."""
    names = {"conv_body": "trunk_conv", "conv_up1": "upconv1", "conv_up2": "upconv2",
             "conv_hr": "HRconv"}
    out = {}
    for key, value in state.items():
        head, _, rest = key.partition(".")
        if head == "body":
            key = "RRDB_trunk." + rest.replace(".rdb", ".RDB")
        else:
            key = f"{names.get(head, head)}.{rest}"
        out[key] = value
    return out


def sequential_layout(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The same x4 weights in the original ESRGAN's nn.Sequential names (model.N...)."""
    layers = {"conv_first": "model.0", "conv_body": f"model.1.sub.{TINY_BLOCKS}",
              "conv_up1": "model.3", "conv_up2": "model.6", "conv_hr": "model.8",
              "conv_last": "model.10"}
    out = {}
    for key, value in state.items():
        head, _, rest = key.partition(".")
        if head == "body":  # body.B.rdbR.convC.kind → model.1.sub.B.RDBR.convC.0.kind
            block, rdb, conv, kind = rest.split(".")
            key = f"model.1.sub.{block}.{rdb.upper()}.{conv}.0.{kind}"
        else:
            key = f"{layers[head]}.{rest}"
        out[key] = value
    return out


def srvgg_state(scale: int = 4, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights in SRVGGNetCompact's layout (realesr-animevideov3): convs at even
    ``body`` indices, a PReLU after each but the last."""
    gen = torch.Generator().manual_seed(seed)
    nf = TINY_FEAT
    state: dict[str, torch.Tensor] = {}
    index = 0
    for conv in range(SRVGG_CONVS + 1):
        _conv(state, f"body.{index}", nf, 3 if conv == 0 else nf, gen)
        state[f"body.{index + 1}.weight"] = torch.full((nf,), 0.25)
        index += 2
    _conv(state, f"body.{index}", 3 * scale * scale, nf, gen)
    return state


def save_pth(state: dict[str, torch.Tensor], path: Path, wrap: str | None = "params_ema") -> Path:
    """A .pth as BasicSR releases them: the weights under ``wrap`` (or bare)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({wrap: state} if wrap else state, path)
    return path


def save_safetensors(state: dict[str, torch.Tensor], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path


def install_models(models: Path) -> dict[str, Path]:
    """The tiny upscalers under ``models/upscale/`` by name: RealESRGAN x4plus and x2plus
    (.pth with params_ema) and animevideov3-like SRVGG x4 and x2 (.safetensors)."""
    folder = models / "upscale"
    return {
        "rrdb_x4": save_pth(rrdbnet_state(4), folder / "tiny_RealESRGAN_x4plus.pth"),
        "rrdb_x2": save_pth(rrdbnet_state(2, seed=1), folder / "tiny_RealESRGAN_x2plus.pth"),
        "srvgg_x4": save_safetensors(srvgg_state(4), folder / "tiny_animevideov3_x4.safetensors"),
        "srvgg_x2": save_safetensors(srvgg_state(2, seed=1),
                                     folder / "tiny_general_x2.safetensors"),
    }
