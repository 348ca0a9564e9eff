"""Text/keyframe → video latents with the diffusers video pipelines, per family.

- ModelScope / Zeroscope (``modelscope``): ``TextToVideoSDPipeline`` with the conditioning's
  embeddings and the legacy ``callback`` for progress.
- AnimateDiff: an SD 1.x model plus a motion adapter becomes ``AnimateDiffPipeline`` over
  ``UNetMotionModel.from_unet2d(unet, adapter)`` sharing their weights (kept for re-runs);
  an ``animatediff`` model already carries its motion UNet.
- Both text-to-video families take an optional keyframe: frame 0 of the clip is then anchored
  to its clean latent at every step (``anchor.py``).
- Stable Video Diffusion (``svd``): ``StableVideoDiffusionPipeline`` on the keyframe as a PIL
  image, exactly what a user of the pipeline passes; it keeps its own Euler scheduler.

Clips no longer than the model's window call the pipeline unchanged (``output_type="latent"``);
longer ones run the same steps over sliding context windows (``windows.py``). Latents come
back in the pipeline's own layout: ``[B,C,F,H,W]`` for ModelScope and AnimateDiff,
``[B,F,C,H,W]`` for SVD; ``to_latent_layout`` turns them into Kinema's one layout.
"""

from __future__ import annotations

import logging
import threading
import weakref
from dataclasses import dataclass
from typing import Any

import torch
from accelerate import init_empty_weights
from diffusers import (
    AnimateDiffPipeline,
    StableVideoDiffusionPipeline,
    TextToVideoSDPipeline,
    UNetMotionModel,
)

from nodes.diffusion.anchor import AnchoredScheduler, first_image, keyframe_latent
from nodes.diffusion.bundle import (
    ANIMATEDIFF,
    MODELSCOPE,
    SD1,
    SVD,
    Conditioning,
    ModelBundle,
    MotionModule,
)
from nodes.diffusion.progress import legacy_step_callback, step_callback
from nodes.diffusion.schedulers import DEFAULT, make_scheduler
from nodes.diffusion.windows import (
    ContextWindows,
    denoise_animatediff,
    denoise_modelscope,
    denoise_svd,
)
from nodes.imaging import tensor_to_pil

# AnimateDiff's motion modules (v1-5, v2, v3) were trained on 16-frame clips; their position
# tables (motion_max_seq_length, 32) are the hard limit, 16 is where they move well.
ANIMATEDIFF_WINDOW = 16


@dataclass(frozen=True)
class VideoSettings:
    """What the user chose for one clip (the TemporalDenoiser node's widgets)."""

    frames: int = 16
    steps: int = 25
    cfg: float = 7.5
    min_cfg: float = 1.0  # SVD only: guidance at the first frame (cfg is the last frame's)
    seed: int = 0
    scheduler: str = DEFAULT
    width: int = 0  # 0: the model's default size (SVD: the keyframe's size)
    height: int = 0
    fps: int = 7
    motion_bucket_id: int = 127
    noise_aug_strength: float = 0.02
    context_length: int = 0  # 0: the model's own window
    context_overlap: int = 4
    context_blend: str = "cosine"


@dataclass
class VideoLatents:
    """Denoised latents in the pipeline's own layout, and the pipeline that made them."""

    latents: torch.Tensor
    pipe: Any
    family: str


class _RebuiltPipelineNotice(logging.Filter):
    """Drops diffusers' "TextToVideoSDPipeline has been deprecated" warning: Kinema builds that
    pipeline on every run (a fresh scheduler each time), so it would print on every run, and on
    the CLI's stderr, which is kept for a workflow's structured error."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "TextToVideoSDPipeline has been deprecated" not in record.getMessage()


logging.getLogger("diffusers.pipelines.pipeline_utils").addFilter(_RebuiltPipelineNotice())

_motion_lock = threading.Lock()
_motion_unets: dict[tuple[int, int], UNetMotionModel] = {}


def motion_unet(unet: Any, adapter: Any) -> UNetMotionModel:
    """``UNetMotionModel.from_unet2d(unet, adapter)`` whose weights *are* the UNet's and the
    adapter's tensors, not copies of them.

    ``from_unet2d`` copies every UNet weight: a second UNet in memory that the output cache
    cannot see. Built on the meta device and then pointed at the loaded tensors, the motion
    UNet costs only its module objects. Building still takes tens of milliseconds, so the last
    pair is kept for re-runs; it goes when the UNet or the adapter does.
    """
    key = (id(unet), id(adapter))
    with _motion_lock:
        if key in _motion_unets:
            return _motion_unets[key]
    combined = _shared_motion_unet(unet, adapter)
    with _motion_lock:
        _motion_unets.clear()
        _motion_unets[key] = combined
    for owner in (unet, adapter):  # ids are reused after collection: drop the entry then
        weakref.finalize(owner, _motion_unets.pop, key, None)
    return combined


def _shared_motion_unet(unet: Any, adapter: Any) -> UNetMotionModel:
    if adapter.config.get("conv_in_channels"):  # PIA: a conv_in merged from both (a copy)
        return UNetMotionModel.from_unet2d(unet, adapter).to(unet.device, unet.dtype).eval()
    adapter.to(unet.device, unet.dtype)
    with init_empty_weights():
        combined = UNetMotionModel.from_unet2d(unet, adapter, load_weights=False)
    loaded = {**dict(unet.named_parameters()), **dict(unet.named_buffers()),
              **dict(adapter.named_parameters()), **dict(adapter.named_buffers())}
    for name, tensor in [*combined.named_parameters(), *combined.named_buffers()]:
        owner_name, _, attr = name.rpartition(".")
        owner = combined.get_submodule(owner_name)
        source = loaded.get(name)
        if source is None or source.shape != tensor.shape:
            if tensor.is_meta:  # a weight neither model has: the two do not fit together
                raise ValueError(f"the motion adapter does not fit this UNet: no weight for "
                                 f"{name} {tuple(tensor.shape)}")
            continue  # a computed buffer (position tables) made at construction
        table = owner._parameters if attr in owner._parameters else owner._buffers
        table[attr] = source
    return combined.to(unet.device).eval()


def video_pipeline(model: ModelBundle, motion: MotionModule | None, scheduler: str) -> Any:
    """A fresh pipeline over the model's components (a fresh scheduler: it keeps run state)."""
    parts = model.pipe.components
    if model.family == MODELSCOPE:
        _no_motion(model, motion)
        pipe = TextToVideoSDPipeline(
            vae=parts["vae"], text_encoder=parts["text_encoder"], tokenizer=parts["tokenizer"],
            unet=parts["unet"], scheduler=make_scheduler(scheduler, parts["scheduler"]))
    elif model.family in (SD1, ANIMATEDIFF):
        if model.family == ANIMATEDIFF:
            _no_motion(model, motion)
            adapter, unet = parts["motion_adapter"], parts["unet"]
        elif motion is None:
            raise ValueError(f"{model.source} is a Stable Diffusion 1.x model: connect a motion "
                             "adapter (MotionAdapterLoader) to animate it with AnimateDiff")
        else:
            adapter, unet = motion.adapter, motion_unet(parts["unet"], motion.adapter)
        pipe = AnimateDiffPipeline(
            vae=parts["vae"], text_encoder=parts["text_encoder"], tokenizer=parts["tokenizer"],
            unet=unet, motion_adapter=adapter,
            scheduler=make_scheduler(scheduler, parts["scheduler"]))
    elif model.family == SVD:
        _no_motion(model, motion)
        # SVD's Euler (v-prediction, Karras sigmas) is part of the model: no other sampler.
        pipe = StableVideoDiffusionPipeline(
            vae=parts["vae"], image_encoder=parts["image_encoder"], unet=parts["unet"],
            scheduler=make_scheduler(DEFAULT, parts["scheduler"]),
            feature_extractor=parts["feature_extractor"])
    else:
        raise ValueError(f"{model.source} is a {model.family!r} model, not a video model: use "
                         "ModelScope/Zeroscope, SD 1.x with a motion adapter, or SVD")
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _no_motion(model: ModelBundle, motion: MotionModule | None) -> None:
    if motion is not None:
        raise ValueError(f"a motion adapter animates SD 1.x models; {model.source} is a "
                         f"{model.family!r} model: disconnect the motion input")


def model_window(family: str, pipe: Any) -> int | None:
    """How many frames the model denoises at once; None when it has no limit (UNet3D)."""
    if family == SVD:
        return int(pipe.unet.config.num_frames)
    if family in (SD1, ANIMATEDIFF):
        return min(ANIMATEDIFF_WINDOW, int(pipe.unet.config.motion_max_seq_length))
    return None


def context_windows(family: str, pipe: Any, s: VideoSettings) -> ContextWindows | None:
    """The windows a clip needs, or None when it fits the window (the plain pipeline call)."""
    length = s.context_length or model_window(family, pipe)
    windows = None
    if length is not None and s.frames > length:
        windows = ContextWindows(s.frames, length, s.context_overlap, s.context_blend)
    if family in (SD1, ANIMATEDIFF):
        limit = int(pipe.unet.config.motion_max_seq_length)
        at_once = s.frames if windows is None else windows.length
        if at_once > limit:  # the motion modules' position tables end there
            raise ValueError(f"this motion adapter sees at most {limit} frames at once (its "
                             f"limit), asked for {at_once}: set context_length to {limit} or "
                             "less")
    return windows


def generate(model: ModelBundle, s: VideoSettings, conditioning: Conditioning | None = None,
             motion: MotionModule | None = None, keyframe: torch.Tensor | None = None,
             ) -> VideoLatents:
    """Denoise one clip; progress, previews and interrupt go to the running node."""
    pipe = video_pipeline(model, motion, s.scheduler)
    windows = context_windows(model.family, pipe, s)
    # Seeded on the CPU as a user would: the same noise on every device.
    generator = torch.Generator("cpu").manual_seed(s.seed)
    if model.family == SVD:
        latents = _svd(pipe, model, s, conditioning, keyframe, windows, generator)
    else:
        latents = _text_to_video(pipe, model, s, conditioning, keyframe, windows, generator)
    return VideoLatents(latents, pipe, model.family)


def _text_to_video(pipe: Any, model: ModelBundle, s: VideoSettings,
                   conditioning: Conditioning | None, keyframe: torch.Tensor | None,
                   windows: ContextWindows | None, generator: torch.Generator) -> torch.Tensor:
    if conditioning is None:
        raise ValueError(f"{model.family} models need a text conditioning: connect one "
                         "(KinemaTextEncode with this model)")
    expected = pipe.unet.config.cross_attention_dim
    if conditioning.prompt_embeds.shape[-1] != expected:
        raise ValueError(f"the conditioning comes from a {conditioning.family} text encoder "
                         f"({conditioning.prompt_embeds.shape[-1]} wide) but this model expects "
                         f"{expected}: encode the prompt with this model")
    if keyframe is not None:
        # Frame 0 is the clean keyframe in every model input and after every step; the calls
        # below (plain or windowed) are otherwise the ones without a keyframe.
        pipe.scheduler = AnchoredScheduler(
            pipe.scheduler, keyframe_latent(pipe, keyframe, s.width, s.height), s.frames)
    args = dict(prompt_embeds=conditioning.prompt_embeds,
                negative_prompt_embeds=conditioning.negative_prompt_embeds,
                height=s.height or None, width=s.width or None,
                num_inference_steps=s.steps, guidance_scale=s.cfg, generator=generator)
    if model.family == MODELSCOPE:
        callback = legacy_step_callback(pipe, s.steps)
        if windows is not None:
            return denoise_modelscope(pipe, windows, callback=callback, **args)
        return pipe(num_frames=s.frames, output_type="latent", callback=callback,
                    callback_steps=1, **args).frames
    if windows is not None:
        return denoise_animatediff(pipe, windows, callback_on_step_end=step_callback(), **args)
    return pipe(num_frames=s.frames, output_type="latent", callback_on_step_end=step_callback(),
                **args).frames


def keyframe_image(keyframe: torch.Tensor) -> Any:
    """The first image of an IMAGE batch as 8-bit PIL: what a user hands SVD's pipeline."""
    return tensor_to_pil(first_image(keyframe)).convert("RGB")


def _svd(pipe: Any, model: ModelBundle, s: VideoSettings, conditioning: Conditioning | None,
         keyframe: torch.Tensor | None, windows: ContextWindows | None,
         generator: torch.Generator) -> torch.Tensor:
    if keyframe is None:
        raise ValueError(f"{model.source} is Stable Video Diffusion (image → video): connect a "
                         "keyframe image")
    if conditioning is not None:
        raise ValueError("Stable Video Diffusion is conditioned on the keyframe alone: "
                         "disconnect the text conditioning")
    image = keyframe_image(keyframe)
    # 0 keeps the keyframe's size, down to a multiple of 8 as the pipeline requires.
    width = s.width or image.width // 8 * 8
    height = s.height or image.height // 8 * 8
    args = dict(image=image, height=height, width=width, num_inference_steps=s.steps,
                min_guidance_scale=s.min_cfg, max_guidance_scale=s.cfg, fps=s.fps,
                motion_bucket_id=s.motion_bucket_id, noise_aug_strength=s.noise_aug_strength,
                generator=generator,
                callback_on_step_end=step_callback())
    if windows is not None:
        return denoise_svd(pipe, windows, **args)
    return pipe(num_frames=s.frames, output_type="latent", **args).frames


def to_latent_layout(video: VideoLatents) -> torch.Tensor:
    """Kinema's LATENT layout for video, ``[B,C,F,H,W]`` (SVD's ``[B,F,C,H,W]`` is permuted)."""
    return video.latents.permute(0, 2, 1, 3, 4) if video.family == SVD else video.latents


@torch.no_grad()
def decode_video(video: VideoLatents, decode_chunk_size: int = 0) -> torch.Tensor:
    """Frames ``[B*F,H,W,C]`` in 0..1, decoded exactly as the pipeline decodes its latents.

    ``decode_chunk_size`` frames go through the VAE at once (0: all of them, the pipelines'
    default).
    """
    pipe, latents = video.pipe, video.latents
    if video.family == SVD:
        frames = latents.shape[1]
        tensor = pipe.decode_latents(latents, frames, decode_chunk_size or frames)
    elif video.family == MODELSCOPE:
        # Its pipeline decodes the whole clip in one VAE call; the same decode, by chunks
        # (a 2-D VAE decodes each frame on its own), bounds the memory of long clips.
        chunk = decode_chunk_size or latents.shape[2]
        tensor = torch.cat([pipe.decode_latents(latents[:, :, i:i + chunk])
                            for i in range(0, latents.shape[2], chunk)], dim=2)
    else:
        tensor = pipe.decode_latents(latents, decode_chunk_size or latents.shape[2])
    frames = pipe.video_processor.postprocess_video(video=tensor, output_type="pt")
    return frames.flatten(0, 1).permute(0, 2, 3, 1).float().cpu().contiguous()
