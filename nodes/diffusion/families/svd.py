"""Stable Video Diffusion (SVD, SVD-XT): keyframe → clip with ``StableVideoDiffusionPipeline``,
the keyframe passed as the PIL image a user hands the pipeline. Its Euler (v-prediction,
Karras sigmas) is part of the model: no other sampler. Latents are frames-first
``[B,F,C,H,W]``; its window is the UNet's ``num_frames``.
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers import StableVideoDiffusionPipeline

from nodes.diffusion.anchor import keyframe_image
from nodes.diffusion.bundle import SVD, Conditioning, ModelBundle, MotionModule
from nodes.diffusion.families.base import (
    Family,
    Shapes,
    VideoLatents,
    VideoSettings,
    key_prefixes,
    no_motion,
    quiet,
)
from nodes.diffusion.model_files import DIFFUSERS_DIR, ModelLoadError
from nodes.diffusion.progress import step_callback
from nodes.diffusion.schedulers import DEFAULT, make_scheduler
from nodes.diffusion.windows import denoise_svd

SGM_CONDITIONER = "conditioner.embedders."


class StableVideoDiffusion(Family):
    names = (SVD,)
    pipelines = {"StableVideoDiffusionPipeline": SVD}

    def recognise(self, name: str, shapes: Shapes) -> str | None:
        if key_prefixes(shapes)(SGM_CONDITIONER) and any(".time_stack." in k for k in shapes):
            raise ModelLoadError(
                f"{name} is a Stable Video Diffusion checkpoint. diffusers cannot build SVD from "
                f"a single file, so Kinema loads SVD only as a diffusers folder: put the "
                f"stable-video-diffusion-img2vid(-xt) folder (model_index.json, unet/, vae/, "
                f"image_encoder/, scheduler/, feature_extractor/) in {DIFFUSERS_DIR}.")
        return None

    def video_pipeline(self, model: ModelBundle, motion: MotionModule | None,
                       scheduler: str) -> Any:
        no_motion(model, motion)
        parts = model.pipe.components
        return quiet(StableVideoDiffusionPipeline(
            vae=parts["vae"], image_encoder=parts["image_encoder"], unet=parts["unet"],
            scheduler=make_scheduler(DEFAULT, parts["scheduler"]),
            feature_extractor=parts["feature_extractor"]))

    def window(self, pipe: Any) -> int | None:
        return int(pipe.unet.config.num_frames)

    def denoise(self, model: ModelBundle, s: VideoSettings, conditioning: Conditioning | None,
                motion: MotionModule | None, keyframe: torch.Tensor | None) -> VideoLatents:
        pipe = self.video_pipeline(model, motion, s.scheduler)
        windows = self.context_windows(pipe, s)
        if keyframe is None:
            raise ValueError(f"{model.source} is Stable Video Diffusion (image → video): "
                             "connect a keyframe image")
        if conditioning is not None:
            raise ValueError("Stable Video Diffusion is conditioned on the keyframe alone: "
                             "disconnect the text conditioning")
        image = keyframe_image(keyframe)
        # 0 keeps the keyframe's size, down to a multiple of 8 as the pipeline requires.
        width = s.width or image.width // 8 * 8
        height = s.height or image.height // 8 * 8
        args = dict(image=image, height=height, width=width, num_inference_steps=s.steps,
                    min_guidance_scale=s.min_cfg, max_guidance_scale=s.cfg, fps=s.fps,
                    motion_bucket_id=s.motion_bucket_id,
                    noise_aug_strength=s.noise_aug_strength, generator=s.generator(),
                    callback_on_step_end=step_callback())
        if windows is not None:
            latents = denoise_svd(pipe, windows, **args)
        else:
            latents = pipe(num_frames=s.frames, output_type="latent", **args).frames
        return VideoLatents(latents, pipe, model.family)

    def latent_layout(self, latents: torch.Tensor) -> torch.Tensor:
        return latents.permute(0, 2, 1, 3, 4)

    def decode(self, video: VideoLatents, chunk: int) -> torch.Tensor:
        frames = video.latents.shape[1]
        return video.pipe.decode_latents(video.latents, frames, chunk or frames)


FAMILY = StableVideoDiffusion()
