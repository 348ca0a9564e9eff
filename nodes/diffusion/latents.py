"""Between latents and pixels: VAE decoding (chunked, optionally tiled) and encoding.

``LATENT`` samples are in the denoiser's space, as diffusers' ``output_type="latent"`` returns
them: the VAE's latents times its ``scaling_factor``. Images ``[B,C,h,w]``, video ``[B,C,F,h,w]``
(frames decode in order, batch-major). Decoding follows the pipelines' own last step
(``vae.decode(latents / scaling_factor)`` then ``denormalize``), so a decoded keyframe is the
pipeline's image.
"""

from __future__ import annotations

import inspect

import torch
from diffusers.image_processor import VaeImageProcessor

from nodes.diffusion.bundle import ModelBundle
from nodes.diffusion.families import family_of
from nodes.imaging import report_progress


def vae_of(model: ModelBundle) -> torch.nn.Module:
    vae = getattr(model.pipe, "vae", None)
    if vae is None:
        raise ValueError(f"{model.source} has no VAE to decode or encode with")
    return vae


def scale_factor(vae: torch.nn.Module) -> int:
    """Pixels per latent along each side (8 for every real SD-family VAE)."""
    return 2 ** (len(vae.config.block_out_channels) - 1)


def as_frames(samples: torch.Tensor, channels: int) -> torch.Tensor:
    """``[B,C,h,w]`` as is; video ``[B,C,F,h,w]`` (or SVD's ``[B,F,C,h,w]``) → ``[B*F,C,h,w]``."""
    if samples.ndim == 4:
        return samples
    if samples.ndim == 5:
        if samples.shape[1] != channels and samples.shape[2] == channels:
            samples = samples.transpose(1, 2)  # SVD's frames-first layout
        batch, chans, frames, height, width = samples.shape
        return samples.transpose(1, 2).reshape(batch * frames, chans, height, width)
    raise ValueError(f"latents must be [B,C,h,w] or [B,C,F,h,w], got {list(samples.shape)}")


def decode_latents(model: ModelBundle, samples: torch.Tensor, chunk_size: int = 0,
                   tile_size: int = 0, tile_overlap: int = 0, report: bool = True,
                   ) -> torch.Tensor:
    """LATENT samples → IMAGE ``[N,H,W,3]`` float32 in 0..1 on the CPU.

    ``chunk_size`` latents are decoded at a time (0: all), with a progress tick (an interrupt
    point) after each unless ``report`` is off; ``tile_size`` > 0 decodes each frame in
    overlapping tiles of that many pixels, blended across ``tile_overlap`` pixels, to bound
    the VAE's memory on large frames.
    """
    vae = vae_of(model)
    whole_clips = family_of(model).decode_samples(model, samples, tile_size, tile_overlap)
    if whole_clips is not None:
        return whole_clips
    latents = as_frames(samples, vae.config.latent_channels)
    total = latents.shape[0]
    chunk = chunk_size if chunk_size > 0 else max(total, 1)
    temporal = "num_frames" in inspect.signature(vae.decode).parameters  # SVD's decoder
    if tile_size and temporal:
        raise ValueError("the SVD temporal decoder cannot decode in tiles (each frame depends on "
                         "its neighbours); lower chunk_size instead")
    parts = []
    for start in range(0, total, chunk):
        z = latents[start:start + chunk].to(model.device, vae.dtype)
        with torch.no_grad():
            z = z / vae.config.scaling_factor
            if temporal:
                image = vae.decode(z, num_frames=z.shape[0]).sample
            elif tile_size:
                image = tiled_decode(vae, z, tile_size, tile_overlap)
            else:
                image = vae.decode(z, return_dict=False)[0]
        # The pipelines' postprocess: denormalize in the VAE's dtype, then float32.
        parts.append(VaeImageProcessor.denormalize(image).cpu().float().movedim(1, -1))
        if report:
            report_progress(min(start + chunk, total), total)
    return torch.cat(parts)


def tiled_decode(vae: torch.nn.Module, z: torch.Tensor, tile_size: int,
                 tile_overlap: int) -> torch.Tensor:
    """Decode ``z`` in overlapping tiles, each weighted by a ramp across its inner overlaps.

    Each output pixel is the weighted mean of the tiles covering it; away from the overlaps it
    is exactly one tile's. The VAE normalises per tile, so seams are faint rather than absent.
    """
    factor = scale_factor(vae)
    tile = max(1, tile_size // factor)
    overlap = min(max(0, tile_overlap // factor), tile - 1)
    height, width = z.shape[-2:]
    if height <= tile and width <= tile:
        return vae.decode(z, return_dict=False)[0]
    out = torch.zeros(z.shape[0], vae.config.out_channels, height * factor, width * factor,
                      device=z.device, dtype=torch.float32)
    weight = torch.zeros(1, 1, height * factor, width * factor, device=z.device)
    for top in _starts(height, tile, overlap):
        for left in _starts(width, tile, overlap):
            th, tw = min(tile, height - top), min(tile, width - left)
            piece = vae.decode(z[..., top:top + th, left:left + tw], return_dict=False)[0]
            rise_y, fall_y = top > 0, top + th < height
            rise_x, fall_x = left > 0, left + tw < width
            ramp = (_ramp(th * factor, overlap * factor, rise_y, fall_y, z.device)[:, None]
                    * _ramp(tw * factor, overlap * factor, rise_x, fall_x, z.device)[None, :])
            rows = slice(top * factor, (top + th) * factor)
            cols = slice(left * factor, (left + tw) * factor)
            out[..., rows, cols] += piece.float() * ramp
            weight[..., rows, cols] += ramp
    return (out / weight).to(z.dtype)


def _starts(length: int, tile: int, overlap: int) -> list[int]:
    """Tile offsets covering ``length``; the last tile ends flush with the edge."""
    if length <= tile:
        return [0]
    stride = tile - overlap
    starts = list(range(0, length - tile, stride))
    return [*starts, length - tile]


def _ramp(size: int, overlap: int, rise: bool, fall: bool, device: torch.device) -> torch.Tensor:
    """1 inside; linear from near 0 to 1 over ``overlap`` pixels on sides that meet a neighbour."""
    ramp = torch.ones(size, device=device)
    if overlap > 0:
        edge = torch.arange(1, overlap + 1, device=device, dtype=torch.float32) / (overlap + 1)
        if rise:
            ramp[:overlap] = torch.minimum(ramp[:overlap], edge)
        if fall:
            ramp[-overlap:] = torch.minimum(ramp[-overlap:], edge.flip(0))
    return ramp


def encode_images(model: ModelBundle, images: torch.Tensor, chunk_size: int = 0) -> torch.Tensor:
    """IMAGE ``[B,H,W,C]`` in 0..1 → LATENT samples ``[B,4,h,w]`` (the posterior's mode, scaled).

    Deterministic: the distribution's mode, not a sample from it.
    """
    vae = vae_of(model)
    if not family_of(model).frame_vae:
        raise ValueError(f"{model.source} has a 3-D video VAE, which encodes whole clips, not "
                         f"images one by one: LatentEncode takes a UNet family's model; connect "
                         f"the image as the temporal denoiser's keyframe instead")
    factor = scale_factor(vae)
    if images.shape[1] % factor or images.shape[2] % factor:
        raise ValueError(f"image size {images.shape[2]}x{images.shape[1]} is not a multiple of "
                         f"{factor}; scale or crop it first")
    pixels = VaeImageProcessor.normalize(images[..., :3].movedim(-1, 1))
    total = pixels.shape[0]
    chunk = chunk_size if chunk_size > 0 else max(total, 1)
    parts = []
    for start in range(0, total, chunk):
        x = pixels[start:start + chunk].to(model.device, vae.dtype)
        with torch.no_grad():
            latent = vae.encode(x).latent_dist.mode() * vae.config.scaling_factor
        parts.append(latent.cpu().float())
        report_progress(min(start + chunk, total), total)
    return torch.cat(parts)
