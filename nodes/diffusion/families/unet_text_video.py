"""What the two UNet text-to-video families (ModelScope, AnimateDiff) share: checking the
conditioning, anchoring a keyframe, and the pipeline arguments of one clip."""

from __future__ import annotations

from typing import Any

import torch

from nodes.diffusion.anchor import AnchoredScheduler, keyframe_latent
from nodes.diffusion.bundle import Conditioning, ModelBundle
from nodes.diffusion.families.base import VideoSettings, text_conditioning


def text_video_args(pipe: Any, model: ModelBundle, s: VideoSettings,
                    conditioning: Conditioning | None, keyframe: torch.Tensor | None,
                    ) -> dict[str, Any]:
    """The pipeline arguments of one clip; a keyframe anchors frame 0 through the scheduler."""
    conditioning = text_conditioning(model, conditioning, pipe.unet.config.cross_attention_dim)
    if keyframe is not None:
        # Frame 0 is the clean keyframe in every model input and after every step; the calls
        # (plain or windowed) are otherwise the ones without a keyframe.
        pipe.scheduler = AnchoredScheduler(
            pipe.scheduler, keyframe_latent(pipe, keyframe, s.width, s.height), s.frames)
    return dict(prompt_embeds=conditioning.prompt_embeds,
                negative_prompt_embeds=conditioning.negative_prompt_embeds,
                height=s.height or None, width=s.width or None,
                num_inference_steps=s.steps, guidance_scale=s.cfg, generator=s.generator())
