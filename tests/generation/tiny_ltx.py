"""Tiny random LTX-Video models in the real formats, built offline: a diffusers ``LTXPipeline``
folder (a T5 encoder and the SentencePiece tokenizer of ``tiny_wan``), and ComfyUI's files made
from the same weights: the all-in-one checkpoint (transformer under ``model.diffusion_model.``,
VAE under ``vae.``, as ``ltx-video-2b-v0.9.5.safetensors`` is saved) in fp32, fp16 and fp8
"scaled", and the T5 file carrying its tokenizer as the ``spiece_model`` tensor.

The original layouts are written by inverting diffusers' own conversions, and each inversion is
checked by converting back (same keys, same tensors), so the files are what diffusers (and
ComfyUI) read. The VAE has 0.9.5's layout (its encoder ends 2048 wide, which is how diffusers
tells 0.9.5 from 0.9.1); 0.9.0's and 0.9.1's layouts are inverted too, for the shape tests.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
from diffusers import (
    AutoencoderKLLTXVideo,
    FlowMatchEulerDiscreteScheduler,
    LTXPipeline,
    LTXVideoTransformer3DModel,
)
from diffusers.loaders.single_file_utils import (
    convert_ltx_transformer_checkpoint_to_diffusers,
    convert_ltx_vae_checkpoint_to_diffusers,
)
from safetensors.torch import save_file
from transformers import T5Config, T5EncoderModel

from nodes.diffusion.model_files import CONFIGS
from tests.generation import tiny_wan

TEXT_WIDTH = tiny_wan.TEXT_WIDTH  # the T5 encoder's (tiny_wan.t5_encoder)
LATENT_CHANNELS = 8
# 2 latent frames of 2x2: LTX compresses 8x in time and 32x in space.
FRAMES, SIZE = 9, 64
COMFY_PREFIX, VAE_PREFIX = "model.diffusion_model.", "vae."

# The VAEs of the three releases as diffusers configures them (scripts/convert_ltx_to_diffusers),
# at real size: built on the meta device for the shape tests, never run.
REAL_VAE_CONFIGS: dict[str, dict[str, Any]] = {
    "0.9.0": dict(block_out_channels=(128, 256, 512, 512),
                  decoder_block_out_channels=(128, 256, 512, 512),
                  layers_per_block=(4, 3, 3, 3, 4), decoder_layers_per_block=(4, 3, 3, 3, 4),
                  spatio_temporal_scaling=(True, True, True, False),
                  decoder_spatio_temporal_scaling=(True, True, True, False),
                  decoder_inject_noise=(False, False, False, False, False),
                  upsample_residual=(False, False, False, False), upsample_factor=(1, 1, 1, 1),
                  timestep_conditioning=False),
    "0.9.1": dict(block_out_channels=(128, 256, 512, 512),
                  decoder_block_out_channels=(256, 512, 1024),
                  layers_per_block=(4, 3, 3, 3, 4), decoder_layers_per_block=(5, 6, 7, 8),
                  spatio_temporal_scaling=(True, True, True, False),
                  decoder_spatio_temporal_scaling=(True, True, True),
                  decoder_inject_noise=(True, True, True, False),
                  upsample_residual=(True, True, True), upsample_factor=(2, 2, 2),
                  timestep_conditioning=True),
    "0.9.5": dict(block_out_channels=(128, 256, 512, 1024, 2048),
                  down_block_types=("LTXVideo095DownBlock3D",) * 4,
                  decoder_block_out_channels=(256, 512, 1024),
                  layers_per_block=(4, 6, 6, 2, 2), decoder_layers_per_block=(5, 5, 5, 5),
                  spatio_temporal_scaling=(True, True, True, True),
                  decoder_spatio_temporal_scaling=(True, True, True),
                  decoder_inject_noise=(False, False, False, False),
                  downsample_type=("spatial", "temporal", "spatiotemporal", "spatiotemporal"),
                  upsample_residual=(True, True, True), upsample_factor=(2, 2, 2),
                  timestep_conditioning=True, spatial_compression_ratio=32,
                  temporal_compression_ratio=8),
}

# The same shapes, tiny (0.9.5's encoder must still end 2048 wide: see the module docstring).
TINY_VAE_CONFIGS: dict[str, dict[str, Any]] = {
    "0.9.0": dict(latent_channels=LATENT_CHANNELS, block_out_channels=(8, 16, 32, 32),
                  decoder_block_out_channels=(8, 16, 32, 32),
                  layers_per_block=(1, 1, 1, 1, 1), decoder_layers_per_block=(1, 1, 1, 1, 1),
                  spatio_temporal_scaling=(True, True, True, False),
                  decoder_spatio_temporal_scaling=(True, True, True, False),
                  decoder_inject_noise=(False,) * 5, upsample_residual=(False,) * 4,
                  upsample_factor=(1,) * 4, timestep_conditioning=False),
    "0.9.1": dict(latent_channels=LATENT_CHANNELS, block_out_channels=(8, 16, 32, 32),
                  decoder_block_out_channels=(8, 16, 32), layers_per_block=(1, 1, 1, 1, 1),
                  decoder_layers_per_block=(1, 1, 2, 1),
                  spatio_temporal_scaling=(True, True, True, False),
                  decoder_spatio_temporal_scaling=(True, True, True),
                  decoder_inject_noise=(True, True, True, False),
                  upsample_residual=(True,) * 3, upsample_factor=(2,) * 3,
                  timestep_conditioning=True),
    "0.9.5": dict(latent_channels=LATENT_CHANNELS, block_out_channels=(8, 16, 32, 256, 2048),
                  down_block_types=("LTXVideo095DownBlock3D",) * 4,
                  decoder_block_out_channels=(8, 16, 32), layers_per_block=(1, 1, 1, 0, 0),
                  decoder_layers_per_block=(1, 1, 1, 1),
                  spatio_temporal_scaling=(True,) * 4,
                  decoder_spatio_temporal_scaling=(True,) * 3,
                  decoder_inject_noise=(False,) * 4,
                  downsample_type=("spatial", "temporal", "spatiotemporal", "spatiotemporal"),
                  upsample_residual=(True,) * 3, upsample_factor=(2,) * 3,
                  timestep_conditioning=True, spatial_compression_ratio=32,
                  temporal_compression_ratio=8),
}


def build_vae(version: str) -> AutoencoderKLLTXVideo:
    """A tiny random VAE of one release's layout, with non-trivial latent statistics."""
    vae = AutoencoderKLLTXVideo(**TINY_VAE_CONFIGS[version])
    channels = vae.config.latent_channels
    vae.latents_mean.copy_(torch.randn(channels) * 0.1)
    vae.latents_std.copy_(torch.rand(channels) + 0.5)
    return vae.eval()


def build_transformer(**overrides: Any) -> LTXVideoTransformer3DModel:
    # 32 heads, as every LTX-Video transformer has (the loader assumes it), 2 wide each.
    config = dict(in_channels=LATENT_CHANNELS, out_channels=LATENT_CHANNELS,
                  num_attention_heads=32, attention_head_dim=2, cross_attention_dim=64,
                  num_layers=2, caption_channels=TEXT_WIDTH)
    return LTXVideoTransformer3DModel(**{**config, **overrides}).eval()


def build_ltx_pipeline(work: Path, *, seed: int = 0) -> LTXPipeline:
    torch.manual_seed(seed)
    tok = tiny_wan.tokenizer(tiny_wan.spiece_model(), work / "spiece")
    encoder = tiny_wan.t5_encoder(len(tok), T5EncoderModel, T5Config)
    scheduler = FlowMatchEulerDiscreteScheduler.from_pretrained(str(CONFIGS / "ltx"),
                                                               subfolder="scheduler")
    pipe = LTXPipeline(scheduler=scheduler, vae=build_vae("0.9.5"), text_encoder=encoder,
                       tokenizer=tok, transformer=build_transformer())
    pipe.set_progress_bar_config(disable=True)
    return pipe


# diffusers → original transformer names (the inverse of diffusers' renames).
TRANSFORMER_NAMES = (("proj_in", "patchify_proj"), ("time_embed", "adaln_single"),
                     ("norm_q", "q_norm"), ("norm_k", "k_norm"))


def original_transformer_state(model: LTXVideoTransformer3DModel) -> dict[str, torch.Tensor]:
    state = {}
    for key, value in model.state_dict().items():
        for new, old in TRANSFORMER_NAMES:
            key = key.replace(new, old)
        state[key] = value.detach().clone()
    _check_inverse(state, model.state_dict(), convert_ltx_transformer_checkpoint_to_diffusers)
    return state


def _vae_block(key: str, version: str) -> str:
    """One diffusers VAE key's name in the original layout (blocks numbered flat)."""
    key = key.replace("conv_shortcut.conv.", "conv_shortcut.").replace("norm3.", "norm3.norm.")
    key = key.replace(".resnets.", ".res_blocks.")
    if key in ("latents_mean", "latents_std"):
        return "per_channel_statistics." + {"latents_mean": "mean-of-means",
                                            "latents_std": "std-of-means"}[key]
    if key.startswith("decoder.") and not key.startswith(("decoder.up_blocks.",
                                                          "decoder.mid_block.")):
        return re.sub(r"^decoder\.(time_embedder|scale_shift_table)", r"decoder.last_\1", key)
    encoder_095 = version == "0.9.5"
    if m := re.match(r"encoder\.down_blocks\.(\d+)\.(downsamplers\.0\.|conv_out\.)?(.*)$", key):
        block, part, rest = int(m.group(1)), m.group(2), m.group(3)
        if encoder_095:
            flat = 2 * block + (1 if part else 0)
        elif block == 3:  # 0.9.0/0.9.1: the last block has res blocks only
            flat = 8
        else:
            flat = 3 * block + {None: 0, "downsamplers.0.": 1, "conv_out.": 2}[part]
        return f"encoder.down_blocks.{flat}.{rest}"
    if key.startswith("encoder.mid_block."):
        return key.replace("encoder.mid_block.", f"encoder.down_blocks.{8 if encoder_095 else 9}.")
    if key.startswith("decoder.mid_block."):
        return key.replace("decoder.mid_block.", "decoder.up_blocks.0.")
    if m := re.match(r"decoder\.up_blocks\.(\d+)\.(upsamplers\.0\.|conv_in\.)?(.*)$", key):
        block, part, rest = int(m.group(1)), m.group(2), m.group(3)
        if version == "0.9.0":  # [res], [up, res], [conv_in, up, res] x2
            flat = {0: {None: 1}, 1: {"upsamplers.0.": 2, None: 3},
                    2: {"conv_in.": 4, "upsamplers.0.": 5, None: 6},
                    3: {"conv_in.": 7, "upsamplers.0.": 8, None: 9}}[block][part]
        else:  # 0.9.1 and later: [up, res] per block
            flat = 2 * block + (1 if part else 2)
        return f"decoder.up_blocks.{flat}.{rest}"
    return key


def original_vae_state(vae: AutoencoderKLLTXVideo, version: str) -> dict[str, torch.Tensor]:
    """The VAE as the original checkpoint keeps it, under ``vae.``; its latent statistics
    come with the two rows diffusers drops (channel indices, mean of the stds)."""
    state = {VAE_PREFIX + _vae_block(k, version): v.detach().clone()
             for k, v in vae.state_dict().items()}
    channels = vae.config.latent_channels
    state[VAE_PREFIX + "per_channel_statistics.channel"] = torch.arange(channels).float()
    state[VAE_PREFIX + "per_channel_statistics.mean-of-stds"] = torch.ones(channels)
    _check_inverse(state, vae.state_dict(), convert_ltx_vae_checkpoint_to_diffusers)
    return state


def _check_inverse(original: dict, diffusers_state: dict, convert) -> None:
    back = convert(dict(original))
    assert set(back) == set(diffusers_state), sorted(set(back) ^ set(diffusers_state))[:6]
    for key, value in back.items():
        if value.device.type != "meta":
            assert torch.equal(value, diffusers_state[key]), key


def comfy_checkpoint_state(pipe: LTXPipeline) -> dict[str, torch.Tensor]:
    """ComfyUI's all-in-one LTX-Video checkpoint: the transformer and the VAE."""
    state = {COMFY_PREFIX + k: v for k, v in original_transformer_state(pipe.transformer).items()}
    state.update(original_vae_state(pipe.vae, "0.9.5"))
    return state


def write_single_files(pipe: LTXPipeline, spiece: bytes, models: Path, stem: str) -> None:
    """The all-in-one checkpoint <stem>.safetensors (fp32), <stem>_fp16 and <stem>_fp8_scaled
    (the transformer in fp8, the VAE as it was), each in diffusion_models/ and in vae/ (the
    loader takes both parts from the same file); <stem>_vae, the VAE alone without the prefix,
    in vae/; the T5 file <stem>_t5xxl in text_encoders/."""
    state = comfy_checkpoint_state(pipe)
    vae = {k: v for k, v in state.items() if k.startswith(VAE_PREFIX)}
    transformer = {k: v for k, v in state.items() if not k.startswith(VAE_PREFIX)}
    variants = {"": state, "_fp16": {k: v.half() for k, v in state.items()},
                "_fp8_scaled": {**tiny_wan.fp8_scaled(transformer), **vae}}
    for kind in ("diffusion_models", "vae"):
        (models / kind).mkdir(parents=True, exist_ok=True)
        for suffix, weights in variants.items():
            save_file(weights, models / kind / f"{stem}{suffix}.safetensors")
    save_file({k.removeprefix(VAE_PREFIX): v for k, v in vae.items()},
              models / "vae" / f"{stem}_vae.safetensors")
    tiny_wan.save_weights(tiny_wan.comfy_text_encoder_state(pipe, spiece),
                          models / "text_encoders" / f"{stem}_t5xxl.safetensors")
