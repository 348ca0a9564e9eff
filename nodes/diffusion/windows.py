"""Sliding context windows: denoise clips longer than a video model's window.

At every step the noise is predicted window by window over overlapping runs of frames; the
predictions are blended with weights that ramp (linearly or on a cosine) across each overlap,
and one scheduler step is then taken on the whole clip. The scheduler therefore sees one clip,
exactly as in the pipeline, and every frame's prediction is a weighted mean of the windows
that cover it. With one window covering the clip the weights are all 1 and each loop below is
its pipeline's ``__call__``, step for step.

Each ``denoise_*`` function follows its diffusers pipeline's ``__call__`` with the same numbered
steps, using the pipeline's own helpers (``check_inputs``, ``encode_prompt``,
``prepare_latents`` …), so a reader can hold the two side by side; only the UNet call in the
denoising loop differs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from engine.context import current_context

BLENDS = ("cosine", "linear")
StepEnd = Callable[[Any, int, Any, dict[str, Any]], dict[str, Any]]


def ramp(overlap: int, blend: str) -> torch.Tensor:
    """Weights rising over ``overlap`` frames; a rising and a falling ramp sum to 1 per frame."""
    x = torch.arange(1, overlap + 1, dtype=torch.float64) / (overlap + 1)
    if blend == "cosine":
        x = 0.5 - 0.5 * torch.cos(math.pi * x)
    elif blend != "linear":
        raise ValueError(f"unknown context blend {blend!r}; choose one of {', '.join(BLENDS)}")
    return x


@dataclass
class ContextWindows:
    """Overlapping runs of ``length`` frames covering ``frames``, and each run's weights.

    Windows start every ``length - overlap`` frames; the last one is moved back to end on the
    clip's last frame, so every window has the model's full length.
    """

    frames: int
    length: int
    overlap: int
    blend: str = "cosine"
    slices: list[slice] = field(init=False)
    weights: list[torch.Tensor] = field(init=False)

    def __post_init__(self) -> None:
        if self.length < 1:
            raise ValueError(f"context length must be at least 1, got {self.length}")
        if not 0 <= self.overlap < self.length:
            raise ValueError(f"context overlap must be between 0 and context length - 1 "
                             f"({self.length - 1}), got {self.overlap}")
        length = min(self.length, self.frames)
        stride = length - min(self.overlap, length - 1)
        starts = [*range(0, self.frames - length, stride), self.frames - length]
        self.slices = [slice(s, s + length) for s in starts]
        up = ramp(min(self.overlap, length - 1), self.blend)
        self.weights = []
        for sl in self.slices:
            w = torch.ones(length, dtype=torch.float64)
            if sl.start > 0:  # a window before this one: fade in over the overlap
                w[: len(up)] = up
            if sl.stop < self.frames:  # a window after: fade out
                w[length - len(up):] = torch.minimum(w[length - len(up):], up.flip(0))
            self.weights.append(w)

    def predict(self, predict: Callable[[slice], torch.Tensor], frame_dim: int) -> torch.Tensor:
        """The blended prediction of the whole clip from ``predict(window)`` on each window."""
        ctx = current_context()
        total: torch.Tensor | None = None
        norm = torch.zeros(self.frames, dtype=torch.float64)
        for sl, w in zip(self.slices, self.weights, strict=True):
            if ctx is not None:  # long clips: stop between windows, not only between steps
                ctx.check_interrupted()
            pred = predict(sl)
            if total is None:  # summed in float32 (fp16 sums of several windows lose bits)
                shape = list(pred.shape)
                shape[frame_dim] = self.frames
                total = pred.new_zeros(shape, dtype=torch.float32)
                dtype = pred.dtype
            index = [slice(None)] * pred.ndim
            index[frame_dim] = sl
            total[tuple(index)] += pred.float() * _along(w, total, frame_dim)
            norm[sl] += w
        assert total is not None
        return (total / _along(norm, total, frame_dim)).to(dtype)


def _along(values: torch.Tensor, like: torch.Tensor, dim: int) -> torch.Tensor:
    shape = [1] * like.ndim
    shape[dim] = -1
    return values.to(like.device, like.dtype).view(shape)


@torch.no_grad()
def denoise_modelscope(pipe: Any, windows: ContextWindows, *, prompt_embeds: torch.Tensor,
                       negative_prompt_embeds: torch.Tensor | None, height: int | None,
                       width: int | None, num_inference_steps: int, guidance_scale: float,
                       generator: torch.Generator,
                       callback: Callable[[int, Any, torch.Tensor], None]) -> torch.Tensor:
    """``TextToVideoSDPipeline.__call__(output_type="latent")`` over context windows."""
    # 0. Default height and width to unet
    height = height or pipe.unet.config.sample_size * pipe.vae_scale_factor
    width = width or pipe.unet.config.sample_size * pipe.vae_scale_factor
    # 1. Check inputs. Raise error if not correct
    pipe.check_inputs(None, height, width, 1, None, prompt_embeds, negative_prompt_embeds)
    # 2. Define call parameters
    batch_size = prompt_embeds.shape[0]
    device = pipe._execution_device
    do_classifier_free_guidance = guidance_scale > 1.0
    # 3. Encode input prompt
    prompt_embeds, negative_prompt_embeds = pipe.encode_prompt(
        None, device, 1, do_classifier_free_guidance, None, prompt_embeds=prompt_embeds,
        negative_prompt_embeds=negative_prompt_embeds)
    if do_classifier_free_guidance:
        prompt_embeds = torch.cat([negative_prompt_embeds, prompt_embeds])
    # 4. Prepare timesteps
    pipe.scheduler.set_timesteps(num_inference_steps, device=device)
    timesteps = pipe.scheduler.timesteps
    # 5. Prepare latent variables
    latents = pipe.prepare_latents(batch_size, pipe.unet.config.in_channels, windows.frames,
                                   height, width, prompt_embeds.dtype, device, generator)
    # 6. Prepare extra step kwargs
    extra_step_kwargs = pipe.prepare_extra_step_kwargs(generator, 0.0)
    # 7. Denoising loop
    num_warmup_steps = len(timesteps) - num_inference_steps * pipe.scheduler.order
    for i, t in enumerate(timesteps):
        latent_model_input = torch.cat([latents] * 2) if do_classifier_free_guidance else latents
        latent_model_input = pipe.scheduler.scale_model_input(latent_model_input, t)
        # predict the noise residual, window by window  [B, C, F, H, W]: frames on dim 2
        noise_pred = windows.predict(lambda sl, x=latent_model_input, t=t: pipe.unet(
            x[:, :, sl], t, encoder_hidden_states=prompt_embeds, return_dict=False)[0], 2)
        # perform guidance
        if do_classifier_free_guidance:
            noise_pred_uncond, noise_pred_text = noise_pred.chunk(2)
            noise_pred = noise_pred_uncond + guidance_scale * (noise_pred_text - noise_pred_uncond)
        # reshape latents: the pipeline steps the scheduler on [B*F, C, H, W]
        bsz, channel, frames, h, w = latents.shape
        latents = latents.permute(0, 2, 1, 3, 4).reshape(bsz * frames, channel, h, w)
        noise_pred = noise_pred.permute(0, 2, 1, 3, 4).reshape(bsz * frames, channel, h, w)
        # compute the previous noisy sample x_t -> x_t-1
        latents = pipe.scheduler.step(noise_pred, t, latents, **extra_step_kwargs).prev_sample
        # reshape latents back
        latents = latents[None, :].reshape(bsz, frames, channel, h, w).permute(0, 2, 1, 3, 4)
        # call the callback (the pipeline skips a multistep scheduler's warm-up)
        order = pipe.scheduler.order
        if i == len(timesteps) - 1 or ((i + 1) > num_warmup_steps and (i + 1) % order == 0):
            callback(i // order, t, latents)
    return latents


@torch.no_grad()
def denoise_animatediff(pipe: Any, windows: ContextWindows, *, prompt_embeds: torch.Tensor,
                        negative_prompt_embeds: torch.Tensor | None, height: int | None,
                        width: int | None, num_inference_steps: int, guidance_scale: float,
                        generator: torch.Generator, callback_on_step_end: StepEnd,
                        ) -> torch.Tensor:
    """``AnimateDiffPipeline.__call__(output_type="latent")`` over context windows."""
    # 0. Default height and width to unet
    height = height or pipe.unet.config.sample_size * pipe.vae_scale_factor
    width = width or pipe.unet.config.sample_size * pipe.vae_scale_factor
    # 1. Check inputs. Raise error if not correct
    pipe.check_inputs(None, height, width, None, None, prompt_embeds, negative_prompt_embeds)
    pipe._guidance_scale = guidance_scale
    pipe._clip_skip = None
    pipe._cross_attention_kwargs = None
    pipe._interrupt = False
    # 2. Define call parameters
    batch_size = prompt_embeds.shape[0]
    device = pipe._execution_device
    # 3. Encode input prompt
    prompt_embeds, negative_prompt_embeds = pipe.encode_prompt(
        None, device, 1, pipe.do_classifier_free_guidance, None, prompt_embeds=prompt_embeds,
        negative_prompt_embeds=negative_prompt_embeds)
    if pipe.do_classifier_free_guidance:
        prompt_embeds = torch.cat([negative_prompt_embeds, prompt_embeds])
    # The pipeline repeats the embeddings once per frame; here once per frame of a window.
    window_embeds = prompt_embeds.repeat_interleave(repeats=windows.slices[0].stop
                                                    - windows.slices[0].start, dim=0)
    # 4. Prepare timesteps
    pipe.scheduler.set_timesteps(num_inference_steps, device=device)
    timesteps = pipe.scheduler.timesteps
    # 5. Prepare latent variables
    latents = pipe.prepare_latents(batch_size, pipe.unet.config.in_channels, windows.frames,
                                   height, width, prompt_embeds.dtype, device, generator)
    # 6. Prepare extra step kwargs
    extra_step_kwargs = pipe.prepare_extra_step_kwargs(generator, 0.0)
    pipe._num_timesteps = len(timesteps)
    # 8. Denoising loop (7., IP-Adapter image embeds, is not used)
    for i, t in enumerate(timesteps):
        latent_model_input = (torch.cat([latents] * 2) if pipe.do_classifier_free_guidance
                              else latents)
        latent_model_input = pipe.scheduler.scale_model_input(latent_model_input, t)
        # predict the noise residual, window by window  [B, C, F, H, W]: frames on dim 2
        noise_pred = windows.predict(lambda sl, x=latent_model_input, t=t: pipe.unet(
            x[:, :, sl], t, encoder_hidden_states=window_embeds).sample, 2)
        # perform guidance
        if pipe.do_classifier_free_guidance:
            noise_pred_uncond, noise_pred_text = noise_pred.chunk(2)
            noise_pred = noise_pred_uncond + guidance_scale * (noise_pred_text - noise_pred_uncond)
        # compute the previous noisy sample x_t -> x_t-1
        latents = pipe.scheduler.step(noise_pred, t, latents, **extra_step_kwargs).prev_sample
        callback_on_step_end(pipe, i, t, {"latents": latents})
    return latents


@torch.no_grad()
def denoise_svd(pipe: Any, windows: ContextWindows, *, image: Any, height: int, width: int,
                num_inference_steps: int, min_guidance_scale: float, max_guidance_scale: float,
                fps: int, motion_bucket_id: int, noise_aug_strength: float,
                generator: torch.Generator, callback_on_step_end: StepEnd) -> torch.Tensor:
    """``StableVideoDiffusionPipeline.__call__(output_type="latent")`` over context windows."""
    # Imported here, where a pipeline is already loaded: listing BLENDS loads no diffusers.
    from diffusers.pipelines.stable_video_diffusion.pipeline_stable_video_diffusion import (
        retrieve_timesteps,
    )
    from diffusers.utils.torch_utils import randn_tensor

    num_frames = windows.frames
    # 1. Check inputs. Raise error if not correct
    pipe.check_inputs(image, height, width)
    # 2. Define call parameters
    batch_size = 1  # one PIL keyframe
    device = pipe._execution_device
    pipe._guidance_scale = max_guidance_scale
    # 3. Encode input image
    image_embeddings = pipe._encode_image(image, device, 1, pipe.do_classifier_free_guidance)
    # SVD was conditioned on fps - 1 (as the pipeline notes)
    fps = fps - 1
    # 4. Encode input image using VAE
    image = pipe.video_processor.preprocess(image, height=height, width=width).to(device)
    noise = randn_tensor(image.shape, generator=generator, device=device, dtype=image.dtype)
    image = image + noise_aug_strength * noise
    needs_upcasting = pipe.vae.dtype == torch.float16 and pipe.vae.config.force_upcast
    if needs_upcasting:
        pipe.vae.to(dtype=torch.float32)
    image_latents = pipe._encode_vae_image(image, device=device, num_videos_per_prompt=1,
                                           do_classifier_free_guidance=pipe.do_classifier_free_guidance)
    image_latents = image_latents.to(image_embeddings.dtype)
    if needs_upcasting:
        pipe.vae.to(dtype=torch.float16)
    image_latents = image_latents.unsqueeze(1).repeat(1, num_frames, 1, 1, 1)
    # 5. Get Added Time IDs
    added_time_ids = pipe._get_add_time_ids(
        fps, motion_bucket_id, noise_aug_strength, image_embeddings.dtype, batch_size, 1,
        pipe.do_classifier_free_guidance).to(device)
    # 6. Prepare timesteps
    timesteps, num_inference_steps = retrieve_timesteps(pipe.scheduler, num_inference_steps,
                                                        device, None, None)
    # 7. Prepare latent variables
    latents = pipe.prepare_latents(batch_size, num_frames, pipe.unet.config.in_channels,
                                   height, width, image_embeddings.dtype, device, generator)
    # 8. Prepare guidance scale: rising over the whole clip, frame by frame
    guidance_scale = torch.linspace(min_guidance_scale, max_guidance_scale, num_frames)
    guidance_scale = guidance_scale.unsqueeze(0).to(device, latents.dtype)
    guidance_scale = guidance_scale.repeat(batch_size, 1)[:, :, None, None, None]
    pipe._guidance_scale = guidance_scale
    # 9. Denoising loop
    pipe._num_timesteps = len(timesteps)
    for i, t in enumerate(timesteps):
        latent_model_input = (torch.cat([latents] * 2) if pipe.do_classifier_free_guidance
                              else latents)
        latent_model_input = pipe.scheduler.scale_model_input(latent_model_input, t)
        # Concatenate image_latents over channels dimension
        latent_model_input = torch.cat([latent_model_input, image_latents], dim=2)
        # predict the noise residual, window by window  [B, F, C, H, W]: frames on dim 1
        noise_pred = windows.predict(lambda sl, x=latent_model_input, t=t: pipe.unet(
            x[:, sl], t, encoder_hidden_states=image_embeddings, added_time_ids=added_time_ids,
            return_dict=False)[0], 1)
        # perform guidance
        if pipe.do_classifier_free_guidance:
            noise_pred_uncond, noise_pred_cond = noise_pred.chunk(2)
            noise_pred = noise_pred_uncond + guidance_scale * (noise_pred_cond - noise_pred_uncond)
        # compute the previous noisy sample x_t -> x_t-1
        latents = pipe.scheduler.step(noise_pred, t, latents).prev_sample
        callback_on_step_end(pipe, i, t, {"latents": latents})
    return latents


@torch.no_grad()
def denoise_wan(pipe: Any, windows: ContextWindows, *, prompt_embeds: torch.Tensor,
                negative_prompt_embeds: torch.Tensor | None, height: int, width: int,
                num_frames: int, num_inference_steps: int, guidance_scale: float,
                generator: torch.Generator, callback_on_step_end: StepEnd) -> torch.Tensor:
    """``WanPipeline.__call__(output_type="latent")`` over context windows of latent frames
    (``windows`` counts latent frames: the 3-D VAE packs 4 frames into one)."""
    # 1. Check inputs. Raise error if not correct
    pipe.check_inputs(None, None, height, width, prompt_embeds, negative_prompt_embeds)
    t_scale = pipe.vae_scale_factor_temporal
    if num_frames % t_scale != 1:  # the pipeline rounds the same way (with a warning)
        num_frames = num_frames // t_scale * t_scale + 1
    # 2. Define call parameters
    device, transformer_dtype = _call_state(pipe, guidance_scale)
    batch_size = prompt_embeds.shape[0]
    # 3. Encode input prompt (already encoded: cast as the pipeline casts)
    prompt_embeds = prompt_embeds.to(device, transformer_dtype)
    if negative_prompt_embeds is not None:
        negative_prompt_embeds = negative_prompt_embeds.to(device, transformer_dtype)
    # 4. Prepare timesteps
    pipe.scheduler.set_timesteps(num_inference_steps, device=device)
    timesteps = pipe.scheduler.timesteps
    # 5. Prepare latent variables
    latents = pipe.prepare_latents(batch_size, pipe.transformer.config.in_channels, height,
                                   width, num_frames, torch.float32, device, generator, None)
    # 6. Denoising loop
    pipe._num_timesteps = len(timesteps)
    pipe.scheduler.set_begin_index(0)
    boundary = pipe.config.boundary_ratio
    boundary_timestep = None if boundary is None else (
        boundary * pipe.scheduler.config.num_train_timesteps)
    for i, t in enumerate(timesteps):
        if boundary_timestep is None or t >= boundary_timestep:
            model, scale = pipe.transformer, guidance_scale
        else:  # Wan 2.2's low-noise expert
            model, scale = pipe.transformer_2, guidance_scale

        def predict(sl: slice, model: Any = model, scale: float = scale, t: Any = t,
                    latents: torch.Tensor = latents, i: int = i) -> torch.Tensor:
            x = latents[:, :, sl].to(transformer_dtype)
            if pipe.config.expand_timesteps:  # TI2V-5B: one timestep per latent token
                tokens = x.shape[2] * (x.shape[3] // 2) * (x.shape[4] // 2)
                timestep = t.expand(x.shape[0], tokens)
            else:
                timestep = t.expand(x.shape[0])
            # One step cache per window and guidance branch, as the pipeline has one per
            # branch: a cached residual is only reused for the same window.
            cache = {"step_index": i, "sigma": float(pipe.scheduler.sigmas[i]),
                     "num_inference_steps": len(timesteps)}
            with model.cache_context(f"cond_{sl.start}", **cache):
                pred = model(hidden_states=x, timestep=timestep,
                             encoder_hidden_states=prompt_embeds, return_dict=False)[0]
            if pipe.do_classifier_free_guidance:
                with model.cache_context(f"uncond_{sl.start}", **cache):
                    uncond = model(hidden_states=x, timestep=timestep,
                                   encoder_hidden_states=negative_prompt_embeds,
                                   return_dict=False)[0]
                pred = uncond + scale * (pred - uncond)
            return pred

        # predict the flow, window by window  [B, C, F, H, W]: latent frames on dim 2
        noise_pred = windows.predict(predict, 2)
        # compute the previous noisy sample x_t -> x_t-1
        latents = pipe.scheduler.step(noise_pred, t, latents, return_dict=False)[0]
        callback_on_step_end(pipe, i, t, {"latents": latents})
    return latents


@torch.no_grad()
def denoise_hunyuan(pipe: Any, windows: ContextWindows, *, prompt_embeds: torch.Tensor,
                    pooled_prompt_embeds: torch.Tensor, prompt_attention_mask: torch.Tensor,
                    height: int, width: int, num_frames: int, num_inference_steps: int,
                    guidance_scale: float, generator: torch.Generator,
                    callback_on_step_end: StepEnd) -> torch.Tensor:
    """``HunyuanVideoPipeline.__call__(output_type="latent")`` (embedded guidance, no true CFG)
    over context windows of latent frames."""
    # Imported here, where a pipeline is already loaded: listing BLENDS loads no diffusers.
    import numpy as np
    from diffusers.pipelines.hunyuan_video.pipeline_hunyuan_video import retrieve_timesteps

    device, transformer_dtype = _call_state(pipe, guidance_scale)
    batch_size = prompt_embeds.shape[0]
    # 3. Encode input prompt (already encoded: cast as the pipeline casts)
    prompt_embeds = prompt_embeds.to(device, transformer_dtype)
    prompt_attention_mask = prompt_attention_mask.to(device, transformer_dtype)
    pooled_prompt_embeds = pooled_prompt_embeds.to(device, transformer_dtype)
    # 4. Prepare timesteps
    sigmas = np.linspace(1.0, 0.0, num_inference_steps + 1)[:-1]
    timesteps, num_inference_steps = retrieve_timesteps(pipe.scheduler, num_inference_steps,
                                                        device, sigmas=sigmas)
    # 5. Prepare latent variables
    latents = pipe.prepare_latents(batch_size, pipe.transformer.config.in_channels, height,
                                   width, num_frames, torch.float32, device, generator, None)
    # 6. Prepare guidance condition
    guidance = torch.tensor([guidance_scale] * latents.shape[0], dtype=transformer_dtype,
                            device=device) * 1000.0
    # 7. Denoising loop
    pipe.scheduler.set_begin_index(0)
    pipe._num_timesteps = len(timesteps)
    for i, t in enumerate(timesteps):

        def predict(sl: slice, t: Any = t, latents: torch.Tensor = latents) -> torch.Tensor:
            x = latents[:, :, sl].to(transformer_dtype)
            # One step cache per window, as the pipeline has one per call.
            with pipe.transformer.cache_context(f"cond_{sl.start}"):
                return pipe.transformer(
                    hidden_states=x, timestep=t.expand(x.shape[0]).to(latents.dtype),
                    encoder_hidden_states=prompt_embeds,
                    encoder_attention_mask=prompt_attention_mask,
                    pooled_projections=pooled_prompt_embeds, guidance=guidance,
                    return_dict=False)[0]

        # predict the flow, window by window  [B, C, F, H, W]: latent frames on dim 2
        noise_pred = windows.predict(predict, 2)
        latents = pipe.scheduler.step(noise_pred, t, latents, return_dict=False)[0]
        callback_on_step_end(pipe, i, t, {"latents": latents})
    return latents


@torch.no_grad()
def denoise_cogvideox(pipe: Any, windows: ContextWindows, *, prompt_embeds: torch.Tensor,
                      negative_prompt_embeds: torch.Tensor | None, height: int, width: int,
                      num_frames: int, num_inference_steps: int, guidance_scale: float,
                      generator: torch.Generator, callback_on_step_end: StepEnd,
                      ) -> torch.Tensor:
    """``CogVideoXPipeline.__call__(output_type="latent")`` (CogVideoX 1.0, no dynamic cfg)
    over context windows of latent frames; each window gets the rotary embeddings of its own
    length, as a clip of that length would."""
    # Imported here, where a pipeline is already loaded: listing BLENDS loads no diffusers.
    from diffusers import CogVideoXDPMScheduler
    from diffusers.pipelines.cogvideo.pipeline_cogvideox import retrieve_timesteps

    device, _ = _call_state(pipe, guidance_scale)
    batch_size = prompt_embeds.shape[0]
    do_classifier_free_guidance = guidance_scale > 1.0
    if do_classifier_free_guidance:
        prompt_embeds = torch.cat([negative_prompt_embeds, prompt_embeds], dim=0)
    prompt_embeds = prompt_embeds.to(device)
    # 4. Prepare timesteps
    timesteps, num_inference_steps = retrieve_timesteps(pipe.scheduler, num_inference_steps,
                                                        device, None)
    pipe._num_timesteps = len(timesteps)
    # 5. Prepare latents  [B, F, C, H, W]: latent frames on dim 1
    latents = pipe.prepare_latents(batch_size, pipe.transformer.config.in_channels, num_frames,
                                   height, width, prompt_embeds.dtype, device, generator, None)
    # 6. Prepare extra step kwargs
    extra_step_kwargs = pipe.prepare_extra_step_kwargs(generator, 0.0)
    # 7. Rotary embeddings, for a window's length (every window has the same)
    length = windows.slices[0].stop - windows.slices[0].start
    rotary = (pipe._prepare_rotary_positional_embeddings(height, width, length, device)
              if pipe.transformer.config.use_rotary_positional_embeddings else None)
    # 8. Denoising loop
    old_pred_original_sample = None
    for i, t in enumerate(timesteps):
        model_input = torch.cat([latents] * 2) if do_classifier_free_guidance else latents
        model_input = pipe.scheduler.scale_model_input(model_input, t)
        timestep = t.expand(model_input.shape[0])

        def predict(sl: slice, x: torch.Tensor = model_input, timestep: Any = timestep,
                    ) -> torch.Tensor:
            with pipe.transformer.cache_context(f"cond_uncond_{sl.start}"):
                return pipe.transformer(hidden_states=x[:, sl],
                                        encoder_hidden_states=prompt_embeds,
                                        timestep=timestep, image_rotary_emb=rotary,
                                        return_dict=False)[0]

        noise_pred = windows.predict(predict, 1).float()
        if do_classifier_free_guidance:
            noise_pred_uncond, noise_pred_text = noise_pred.chunk(2)
            noise_pred = noise_pred_uncond + guidance_scale * (noise_pred_text - noise_pred_uncond)
        if not isinstance(pipe.scheduler, CogVideoXDPMScheduler):
            latents = pipe.scheduler.step(noise_pred, t, latents, **extra_step_kwargs,
                                          return_dict=False)[0]
        else:
            latents, old_pred_original_sample = pipe.scheduler.step(
                noise_pred, old_pred_original_sample, t, timesteps[i - 1] if i > 0 else None,
                latents, **extra_step_kwargs, return_dict=False)
        latents = latents.to(prompt_embeds.dtype)
        callback_on_step_end(pipe, i, t, {"latents": latents})
    return latents


def _call_state(pipe: Any, guidance_scale: float) -> tuple[Any, torch.dtype]:
    """Set what a DiT pipeline's properties read during its call (guidance, attention kwargs,
    interrupt); (its execution device, its transformer's dtype)."""
    pipe._guidance_scale = guidance_scale
    pipe._attention_kwargs = None
    pipe._interrupt = False
    return pipe._execution_device, pipe.transformer.dtype
