"""Text/keyframe → video latents: the temporal denoiser's work, done by the model's family.

Each family (``families/``) calls its diffusers pipeline unchanged (``output_type="latent"``)
for clips that fit its window, and the same steps over sliding context windows
(``windows.py``) for longer ones. Latents come back in the pipeline's own layout;
``to_latent_layout`` turns them into Kinema's one layout, ``[B,C,F,H,W]``.
"""

from __future__ import annotations

import torch

from nodes.diffusion.bundle import Conditioning, ModelBundle, MotionModule
from nodes.diffusion.families import family_named, family_of
from nodes.diffusion.families.base import VideoLatents, VideoSettings, image_frames

__all__ = ["VideoLatents", "VideoSettings", "decode_video", "generate", "to_latent_layout"]


def generate(model: ModelBundle, s: VideoSettings, conditioning: Conditioning | None = None,
             motion: MotionModule | None = None, keyframe: torch.Tensor | None = None,
             ) -> VideoLatents:
    """Denoise one clip; progress, previews and interrupt go to the running node."""
    return family_of(model).denoise(model, s, conditioning, motion, keyframe)


def to_latent_layout(video: VideoLatents) -> torch.Tensor:
    """Kinema's LATENT layout for video, ``[B,C,F,H,W]``."""
    return family_named(video.family).latent_layout(video.latents)


@torch.no_grad()
def decode_video(video: VideoLatents, decode_chunk_size: int = 0) -> torch.Tensor:
    """Frames ``[B*F,H,W,C]`` in 0..1, decoded exactly as the pipeline decodes its latents.

    ``decode_chunk_size`` frames go through the VAE at once (0: all of them, the pipelines'
    default).
    """
    return image_frames(video.pipe, family_named(video.family).decode(video, decode_chunk_size))
