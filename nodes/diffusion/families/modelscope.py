"""ModelScope / Zeroscope text-to-video (UNet3D): ``TextToVideoSDPipeline``, diffusers folders.

Its pipeline still reports steps through the legacy ``callback``; its 2-D VAE decodes frame by
frame, so long clips are decoded in chunks. A UNet3D has no window: any clip length runs at
once unless the user sets one.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from diffusers import TextToVideoSDPipeline

from nodes.diffusion.bundle import MODELSCOPE, Conditioning, ModelBundle, MotionModule
from nodes.diffusion.families.base import (
    Family,
    VideoLatents,
    VideoSettings,
    no_motion,
    quiet,
)
from nodes.diffusion.families.unet_text_video import text_video_args
from nodes.diffusion.progress import legacy_step_callback
from nodes.diffusion.schedulers import make_scheduler
from nodes.diffusion.windows import denoise_modelscope


class _RebuiltPipelineNotice(logging.Filter):
    """Drops diffusers' "TextToVideoSDPipeline has been deprecated" warning: Kinema builds that
    pipeline on every run (a fresh scheduler each time), so it would print on every run, and on
    the CLI's stderr, which is kept for a workflow's structured error."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "TextToVideoSDPipeline has been deprecated" not in record.getMessage()


logging.getLogger("diffusers.pipelines.pipeline_utils").addFilter(_RebuiltPipelineNotice())


class ModelScope(Family):
    names = (MODELSCOPE,)
    pipelines = {"TextToVideoSDPipeline": MODELSCOPE, "VideoToVideoSDPipeline": MODELSCOPE}

    def video_pipeline(self, model: ModelBundle, motion: MotionModule | None,
                       scheduler: str) -> Any:
        no_motion(model, motion)
        parts = model.pipe.components
        return quiet(TextToVideoSDPipeline(
            vae=parts["vae"], text_encoder=parts["text_encoder"], tokenizer=parts["tokenizer"],
            unet=parts["unet"], scheduler=make_scheduler(scheduler, parts["scheduler"])))

    def denoise(self, model: ModelBundle, s: VideoSettings, conditioning: Conditioning | None,
                motion: MotionModule | None, keyframe: torch.Tensor | None) -> VideoLatents:
        pipe = self.video_pipeline(model, motion, s.scheduler)
        windows = self.context_windows(pipe, s)
        args = text_video_args(pipe, model, s, conditioning, keyframe)
        callback = legacy_step_callback(pipe, s.steps)
        if windows is not None:
            latents = denoise_modelscope(pipe, windows, callback=callback, **args)
        else:
            latents = pipe(num_frames=s.frames, output_type="latent", callback=callback,
                           callback_steps=1, **args).frames
        return VideoLatents(latents, pipe, model.family)

    def decode(self, video: VideoLatents, chunk: int) -> torch.Tensor:
        # Its pipeline decodes the whole clip in one VAE call; the same decode, by chunks
        # (a 2-D VAE decodes each frame on its own), bounds the memory of long clips.
        pipe, latents = video.pipe, video.latents
        chunk = chunk or latents.shape[2]
        return torch.cat([pipe.decode_latents(latents[:, :, i:i + chunk])
                          for i in range(0, latents.shape[2], chunk)], dim=2)


FAMILY = ModelScope()
