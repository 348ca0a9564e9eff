"""A tiny random AnimateDiff motion adapter, as a diffusers folder and as an original file.

The original (guoyww/AnimateDiff) layout nests each motion module under
``temporal_transformer``, names its norms ``norms.N`` / ``ff_norm`` and its attentions
``attention_blocks.N``, and stores a position encoding ``pos_encoder.pe`` in every attention
block: the inverse of diffusers' ``convert_animatediff_checkpoint_to_diffusers``.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import torch
from diffusers import MotionAdapter
from safetensors.torch import save_file

# diffusers name → original name, inside a motion module's transformer blocks.
_RENAMES = ((".norm1.", ".norms.0."), (".norm2.", ".norms.1."), (".norm3.", ".ff_norm."),
            (".attn1.", ".attention_blocks.0."), (".attn2.", ".attention_blocks.1."))


def build_motion_adapter(*, max_frames: int = 24, mid_block: bool = False,
                         seed: int = 1) -> MotionAdapter:
    """Sized for tests/generation/tiny_sd.py's UNet (channels 32/64, 2 layers per block)."""
    torch.manual_seed(seed)
    return MotionAdapter(block_out_channels=(32, 64), motion_layers_per_block=2,
                         motion_num_attention_heads=2, motion_norm_num_groups=8,
                         motion_max_seq_length=max_frames, use_motion_mid_block=mid_block)


def save_motion_folder(adapter: MotionAdapter, folder: Path) -> Path:
    adapter.save_pretrained(str(folder), safe_serialization=True)
    return folder


def original_motion_state(adapter: MotionAdapter) -> dict[str, torch.Tensor]:
    """The adapter's weights under the original AnimateDiff key names."""
    out: dict[str, torch.Tensor] = {}
    for key, value in adapter.state_dict().items():
        m = re.match(r"(.*\.motion_modules\.\d+)\.(.*)", key)
        assert m, key
        head, rest = m[1], "." + m[2]
        if rest.endswith(".pos_embed.pe"):
            # One encoding per attention block in the original; diffusers keeps one per layer.
            block = rest[: -len(".pos_embed.pe")]
            for attention in (0, 1):
                out[f"{head}.temporal_transformer{block}.attention_blocks.{attention}"
                    f".pos_encoder.pe"] = value.clone()
            continue
        for new, old in _RENAMES:
            rest = rest.replace(new, old)
        out[f"{head}.temporal_transformer{rest}"] = value
    return out


def write_original_motion_file(adapter: MotionAdapter, path: Path, *,
                               sidecar: bool = True) -> Path:
    """The original-layout file, and (for shapes no shipped config has) its config sidecar."""
    path.parent.mkdir(parents=True, exist_ok=True)
    state = original_motion_state(adapter)
    if path.suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(state, str(path))
    folder = path.with_name(path.stem + ".config")
    shutil.rmtree(folder, ignore_errors=True)
    if sidecar:
        folder.mkdir()
        adapter.save_config(str(folder))
    return path
