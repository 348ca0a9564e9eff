"""The temporal denoiser: text and/or a keyframe → a video clip, on the diffusers pipelines.

The work is in ``nodes/diffusion/video.py`` (one pipeline per family) and
``nodes/diffusion/windows.py`` (sliding context windows for clips longer than the model's).
"""

from __future__ import annotations

import torch

from nodes.diffusion.bundle import (
    KINEMA_CONDITIONING,
    KINEMA_MODEL,
    KINEMA_MOTION,
    Conditioning,
    ModelBundle,
    MotionModule,
)
from nodes.diffusion.schedulers import SCHEDULER_NAMES
from nodes.diffusion.windows import BLENDS
from nodes.imaging import MAX_RESOLUTION

MAX_FRAMES = 4096
MAX_SEED = 0xFFFFFFFFFFFFFFFF


def _int(default: int, low: int, high: int, tooltip: str, **extra: object) -> tuple:
    return ("INT", {"default": default, "min": low, "max": high, "tooltip": tooltip, **extra})


def _float(default: float, low: float, high: float, step: float, tooltip: str) -> tuple:
    return ("FLOAT", {"default": default, "min": low, "max": high, "step": step,
                      "tooltip": tooltip})


class TemporalDenoiser:
    """Denoises a video clip with a loaded video model.

    - ModelScope / Zeroscope (UNet3D): text conditioning (+ an optional keyframe) → clip.
    - Stable Diffusion 1.x + a motion adapter (AnimateDiff): text conditioning (+ an optional
      keyframe) → clip.
    - The diffusion transformers (``nodes/diffusion/families/``): Wan 2.1 / 2.2 (text, or a
      keyframe with I2V and TI2V models; 4k+1 frames, 832x480 by default, windows past 81),
      LTX-Video (8k+1 frames, up to 257), CogVideoX (T2V, I2V; up to 49 frames, 81 for 1.5),
      HunyuanVideo (``cfg`` is its embedded guidance; windows past 129). Flow-matching
      samplers: default (the model's own), euler, unipc, dpmpp_2m where the pipeline allows,
      with ``shift``.
    - Stable Video Diffusion / SVD-XT: keyframe → clip (fps, motion bucket, noise
      augmentation); it keeps its own Euler sampler, so ``scheduler`` does not apply. Its
      guidance rises linearly from ``min_cfg`` on the first frame to ``cfg`` on the last
      (the pipeline's ``min_guidance_scale`` / ``max_guidance_scale``).

    Clips longer than the model's window (``context_length``; 0 = the model's own: 16 frames
    for AnimateDiff, the UNet's ``num_frames`` for SVD, none for UNet3D) are denoised in
    overlapping windows whose noise predictions are blended across ``context_overlap`` frames
    before each scheduler step on the whole clip. Clips that fit call the pipeline unchanged.

    A keyframe on a text-to-video model anchors frame 0 of the clip: the keyframe (cut to the
    clip's aspect ratio, resized to its size, encoded by the model's VAE) is frame 0 of the
    model's input at every step, clean, and frame 0 of the output. The model must be trained
    for it (Kinema-Tiny is: a clean first frame in every training clip); other text-to-video
    models follow it loosely. Frames after 0 get the same noise as without a keyframe.

    Outputs: ``latent`` is ``{"samples": [B,C,F,H,W]}`` for every family (ComfyUI's video latent
    layout; SVD's own ``[B,F,C,H,W]`` is permuted), scaled as the UNet sees it (VAE latents times
    ``vae.config.scaling_factor``): decode it with LatentDecode and the same model.
    ``frames`` is the clip decoded as the pipeline decodes it, ``[F,H,W,C]`` in 0..1, when
    ``decode`` is on (an empty batch otherwise).
    """

    DESCRIPTION = ("Turns text (Wan 2.1/2.2, LTX-Video, CogVideoX, HunyuanVideo, "
                   "ModelScope/Zeroscope, or SD 1.x + a motion adapter) or a keyframe (Wan "
                   "I2V/TI2V, LTX-Video, CogVideoX I2V, Stable Video Diffusion) into a video "
                   "clip. With UNet text-to-video models a keyframe anchors frame 0 (the model "
                   "must be trained for it, as Kinema-Tiny is). Long clips are denoised in "
                   "overlapping context windows with blended seams.")
    CATEGORY = "kinema/video"
    RETURN_TYPES = ("LATENT", "IMAGE")
    RETURN_NAMES = ("latent", "frames")
    OUTPUT_TOOLTIPS = ("Video latents {samples: [B,C,F,H,W]}, for LatentDecode.",
                       "The decoded frames [F,H,W,C] (empty when decode is off).")
    FUNCTION = "denoise"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "model": (KINEMA_MODEL, {"tooltip": "A video model (KinemaModelLoader): "
                                         "ModelScope/Zeroscope, SVD, or SD 1.x for AnimateDiff."}),
                "frames": _int(16, 1, MAX_FRAMES, "How many frames to make."),
                "steps": _int(25, 1, 1000, "Denoising steps."),
                "cfg": _float(7.5, 0.0, 100.0, 0.1, "Classifier-free guidance (1 or less turns "
                              "it off). SVD: the guidance of the last frame (about 3)."),
                "min_cfg": _float(1.0, 0.0, 100.0, 0.1, "SVD only: the guidance of the first "
                                  "frame; it rises linearly to cfg at the last."),
                "seed": _int(0, 0, MAX_SEED, "The noise seed (a CPU generator, so the same seed "
                             "gives the same clip on any device).", control_after_generate=True),
                "scheduler": (list(SCHEDULER_NAMES), {
                    "default": SCHEDULER_NAMES[0],
                    "tooltip": "The sampler; 'default' is the model's own. SVD always uses its "
                               "own Euler."}),
                "width": _int(0, 0, MAX_RESOLUTION, "Width in pixels, a multiple of 8; 0 = the "
                              "model's size (SVD: the keyframe's).", step=8),
                "height": _int(0, 0, MAX_RESOLUTION, "Height in pixels, a multiple of 8; 0 = "
                               "the model's size (SVD: the keyframe's).", step=8),
                "fps": _int(7, 1, 240, "SVD only: the frame rate the clip is conditioned on."),
                "motion_bucket_id": _int(127, 0, 1023, "SVD only: how much motion (higher "
                                         "moves more)."),
                "noise_aug_strength": _float(0.02, 0.0, 10.0, 0.01, "SVD only: noise added to "
                                             "the keyframe; more lets the clip stray from it."),
                "context_length": _int(0, 0, MAX_FRAMES, "Frames denoised at once; longer clips "
                                       "slide a window over them. 0 = the model's window."),
                "context_overlap": _int(4, 0, MAX_FRAMES, "Frames shared by neighbouring "
                                        "windows, blended across the seam (less than "
                                        "context_length)."),
                "context_blend": (list(BLENDS), {"default": BLENDS[0], "tooltip": "How "
                                  "overlapping windows are weighted across a seam."}),
                "decode": ("BOOLEAN", {"default": True, "tooltip": "Also decode the frames "
                           "(the pipeline's own VAE decode). Turn off when a LatentDecode "
                           "node decodes the latent (tiled, for large frames)."}),
                "decode_chunk_size": _int(8, 0, MAX_FRAMES, "Frames decoded at once (bounds "
                                          "memory); 0 = all at once, the pipelines' default."),
            },
            "optional": {
                "conditioning": (KINEMA_CONDITIONING, {"tooltip": "The prompt, encoded by "
                                 "KinemaTextEncode with this model (text-to-video families)."}),
                "motion": (KINEMA_MOTION, {"tooltip": "An AnimateDiff motion adapter "
                           "(MotionAdapterLoader), to animate an SD 1.x model."}),
                "keyframe": ("IMAGE", {"tooltip": "The first frame (the first image of the "
                             "batch). SVD: the image it animates. ModelScope/UNet3D: anchors "
                             "frame 0 to the keyframe, clean at every step, cut and resized to "
                             "the clip's size; the model must be trained for it (Kinema-Tiny "
                             "is); other text-to-video models (AnimateDiff) follow it loosely."}),
                "shift": _float(0.0, 0.0, 100.0, 0.1, "Flow-matching models (Wan) only: the "
                                "sigma shift, higher spends more steps at high noise (Wan 2.1 "
                                "480p: 3, 720p: 5); 0 = the model's own."),
            },
        }

    def denoise(self, model: ModelBundle, frames: int, steps: int, cfg: float, min_cfg: float,
                seed: int, scheduler: str, width: int, height: int, fps: int, motion_bucket_id: int,
                noise_aug_strength: float, context_length: int, context_overlap: int,
                context_blend: str, decode: bool, decode_chunk_size: int,
                conditioning: Conditioning | None = None,
                motion: MotionModule | None = None, keyframe: torch.Tensor | None = None,
                shift: float = 0.0) -> tuple[dict, torch.Tensor]:
        # diffusers loads when the node runs, not with the nodes (nodes/diffusion/__init__.py).
        from nodes.diffusion.video import VideoSettings, decode_video, generate, to_latent_layout

        settings = VideoSettings(
            frames=frames, steps=steps, cfg=cfg, min_cfg=min_cfg, seed=seed, scheduler=scheduler,
            width=width, height=height, fps=fps, motion_bucket_id=motion_bucket_id,
            noise_aug_strength=noise_aug_strength, context_length=context_length,
            context_overlap=context_overlap, context_blend=context_blend, shift=shift)
        video = generate(model, settings, conditioning, motion, keyframe)
        samples = to_latent_layout(video).to("cpu", torch.float32)
        if decode:
            images = decode_video(video, decode_chunk_size)
        else:
            h, w = samples.shape[-2:]
            scale = video.pipe.video_processor.config.vae_scale_factor
            images = torch.zeros(0, h * scale, w * scale, 3)
        return ({"samples": samples}, images)


NODE_CLASS_MAPPINGS = {"TemporalDenoiser": TemporalDenoiser}
NODE_DISPLAY_NAME_MAPPINGS = {"TemporalDenoiser": "Temporal Denoiser (video)"}
