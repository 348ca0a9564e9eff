"""Decoding with the 3-D video VAEs of the diffusion-transformer families (Wan's
``AutoencoderKLWan`` ...): tiled in space when the frames are large, and retried tiled after an
out-of-memory error.

These VAEs already decode in time one latent frame at a time (a causal cache carries what the
next frame needs), so their memory grows with the frame's area, not the clip's length; tiling
bounds it in space. Whether to tile is chosen from the frame size and the GPU's free memory; the
diffusers tiling blends overlapping tiles, so a tiled decode differs from the whole-frame one only
near the seams (``tests/generation/test_wan.py`` states the bound).
"""

from __future__ import annotations

import gc
import inspect
from collections.abc import Callable
from typing import Any

import torch

# Frames at least this large are tiled whatever the memory: 720p and up.
TILE_AREA = 1280 * 720
# Rough peak of a whole-frame decode per output pixel (bf16 activations of the widest decoder
# stage, several alive at once); decides tiling on a GPU together with the free memory.
DECODE_BYTES_PER_PIXEL = 24 << 10
# What enable_tiling changes: diffusers' 3-D VAEs name their tiles by stride (Wan, LTX,
# HunyuanVideo) or by overlap factor (CogVideoX).
TILING_SETTINGS = ("use_tiling", "tile_sample_min_height", "tile_sample_min_width",
                   "tile_sample_stride_height", "tile_sample_stride_width",
                   "tile_latent_min_height", "tile_latent_min_width",
                   "tile_overlap_factor_height", "tile_overlap_factor_width")


def should_tile(height: int, width: int, free_bytes: int | None) -> bool:
    """Tile frames of ``height`` x ``width`` pixels? ``free_bytes`` is None off the GPU."""
    if height * width >= TILE_AREA:
        return True
    return free_bytes is not None and height * width * DECODE_BYTES_PER_PIXEL > free_bytes


def spatial_scale(vae: Any) -> int:
    """Pixels per latent along a side (CogVideoX's VAE does not name it: its 2x stages)."""
    scale = getattr(vae, "spatial_compression_ratio", None)
    return scale or 2 ** (len(vae.config.block_out_channels) - 1)


def free_memory(device: torch.device) -> int | None:
    if device.type != "cuda":
        return None
    return torch.cuda.mem_get_info(device)[0]


def decode_video_latents(vae: Any, latents: torch.Tensor, tile: bool | None = None,
                         tile_size: int = 0, tile_overlap: int = 0,
                         decode: Callable[[torch.Tensor], torch.Tensor] | None = None,
                         ) -> torch.Tensor:
    """``vae.decode(latents)`` (or ``decode(latents)``, for a VAE that takes more: LTX's
    timestep) → ``[B,C,F,H,W]`` in -1..1; ``tile`` None chooses, and an out-of-memory error on
    a whole-frame decode is retried in tiles."""
    run = decode or (lambda z: vae.decode(z).sample)
    scale = spatial_scale(vae)
    height, width = latents.shape[-2] * scale, latents.shape[-1] * scale
    if tile is None:
        tile = should_tile(height, width, free_memory(latents.device))
    if not tile:
        try:
            return run(latents)
        except torch.OutOfMemoryError:
            pass  # retried below, once the failed decode's memory is released
        # Out of the except block: its traceback no longer holds the failed decode's
        # activations, and the causal cache of its frames is dropped.
        getattr(vae, "clear_cache", lambda: None)()
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return _tiled(vae, tile_size, tile_overlap, lambda: run(latents))


def _tiled(vae: Any, tile_size: int, tile_overlap: int,
           decode: Callable[[], torch.Tensor]) -> torch.Tensor:
    """Run ``decode`` with the VAE's tiling on (the model's defaults, or ``tile_size`` pixels
    overlapping by ``tile_overlap``), then as it was."""
    saved = {name: getattr(vae, name) for name in TILING_SETTINGS if hasattr(vae, name)}
    if tile_size:
        # Tiles are cut in latent pixels: sizes and strides in whole latents, at least one.
        scale = spatial_scale(vae)
        tile_size = max(tile_size // scale, 1) * scale
        stride = max((tile_size - tile_overlap) // scale, 1) * scale
        size = {"tile_sample_min_height": tile_size, "tile_sample_min_width": tile_size}
        if "tile_sample_stride_height" in inspect.signature(vae.enable_tiling).parameters:
            vae.enable_tiling(**size, tile_sample_stride_height=stride,
                              tile_sample_stride_width=stride)
        else:
            overlap = 1 - stride / tile_size
            vae.enable_tiling(**size, tile_overlap_factor_height=overlap,
                              tile_overlap_factor_width=overlap)
    else:
        vae.enable_tiling()
    try:
        return decode()
    finally:  # the VAE is shared by every run of the cached model: leave it as it was
        for name, value in saved.items():
            setattr(vae, name, value)
