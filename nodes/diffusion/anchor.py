"""Keyframe-anchored text-to-video: frame 0 of the clip is the keyframe, clean at every step.

Kinema's own UNet3D models (Kinema-Tiny) are trained with a clean first frame: frame 0 of the
model input is always the keyframe's latent, without noise, and the loss ignores it, so the
model learns to continue a clip from that frame. Sampling shows the model the same thing:
``AnchoredScheduler`` wraps the pipeline's scheduler so that

- every model input (``scale_model_input``'s result) has frame 0 set to the clean keyframe
  latent, and
- every step's result (``step``'s ``prev_sample``) too, so the loop's latents (the previews and
  the output) carry it.

Everything else is the pipeline's call without a keyframe: the same noise from the same
generator, the same steps, the same callbacks; the sliding-window loops in ``windows.py`` use
``pipe.scheduler`` the same way, so they are anchored by the same wrapper.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch

from nodes.imaging import resample, tensor_to_pil


def first_image(keyframe: torch.Tensor) -> torch.Tensor:
    """The first image ``[H,W,C]`` of an IMAGE batch ``[B,H,W,C]`` (or a lone ``[H,W,C]``)."""
    if keyframe.ndim == 4 and keyframe.shape[0] == 0:
        raise ValueError("the keyframe is an empty image batch (a TemporalDenoiser's frames "
                         "with decode off?): connect an image")
    if keyframe.ndim not in (3, 4):
        raise ValueError(f"the keyframe must be an IMAGE [B,H,W,C], got shape "
                         f"{tuple(keyframe.shape)}: connect an image")
    return keyframe[0] if keyframe.ndim == 4 else keyframe


def keyframe_image(keyframe: torch.Tensor) -> Any:
    """The first image of an IMAGE batch as 8-bit PIL: what a user hands an image-to-video
    pipeline."""
    return tensor_to_pil(first_image(keyframe)).convert("RGB")


@torch.no_grad()
def keyframe_latent(pipe: Any, keyframe: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """The keyframe as the UNet sees a clean frame: ``[1,C,h,w]`` latents.

    The first image of ``keyframe`` (``[B,H,W,C]`` in 0..1) is cut to the clip's aspect ratio
    and resized (Lanczos) to ``width`` x ``height`` (0: the model's default size, as its
    pipeline computes it), encoded by the model's VAE (the mean of its latent distribution, so
    the same keyframe always gives the same latent) and scaled by ``vae.config.scaling_factor``.
    """
    default = pipe.unet.config.sample_size * pipe.vae_scale_factor
    width, height = width or default, height or default
    image = first_image(keyframe)
    if image.shape[-1] != 3:
        raise ValueError(f"the keyframe has {image.shape[-1]} channels; connect an RGB image "
                         "(3 channels)")
    # [1, 3, H, W], contiguous: on a channels-last view the VAE's convolutions round otherwise
    pixels = image.movedim(-1, 0)[None].float().contiguous()
    if tuple(pixels.shape[-2:]) != (height, width):
        pixels = resample(pixels, width, height, "lanczos", crop="center")
    vae = pipe.vae
    pixels = (pixels * 2 - 1).to(vae.device, vae.dtype)  # the VAE's -1..1
    return vae.encode(pixels).latent_dist.mean * vae.config.scaling_factor


class AnchoredScheduler:
    """A diffusers scheduler whose model inputs and steps keep frame 0 at a clean latent.

    Everything but ``scale_model_input`` and ``step`` is the wrapped scheduler's own
    (timesteps, order, ``init_noise_sigma`` …), so a pipeline uses it as its scheduler.

    Why these two calls rather than a step callback: sigma-based schedulers (Euler, …) scale
    the loop's latents before the model (``x / sqrt(sigma² + 1)``), so a clean frame 0 in the
    loop would reach the model shrunk; setting it in the model input is what training showed
    the model, whatever the scheduler. And the pipelines skip their callbacks during a
    multistep scheduler's warm-up, while ``step`` runs every time.

    The scheduler's own arithmetic on frame 0 (its noise, its multistep history) does not
    matter: schedulers update every element from its own sample and prediction, so frames do
    not mix in a step, and frame 0's result is replaced after every step and in every model
    input before anything reads it.
    """

    def __init__(self, scheduler: Any, keyframe: torch.Tensor, frames: int) -> None:
        self.scheduler = scheduler
        self.keyframe = keyframe  # [1, C, h, w], broadcast over the batch (and CFG's halves)
        self.frames = frames

    def __getattr__(self, name: str) -> Any:
        if name == "scheduler":  # not set yet (copy, pickle): no recursion
            raise AttributeError(name)
        return getattr(self.scheduler, name)

    def anchor(self, latents: torch.Tensor) -> torch.Tensor:
        """``latents`` with frame 0 of each clip set to the keyframe latent (a new tensor)."""
        anchored = latents.clone()  # the input may be the loop's own latents: leave them be
        if anchored.ndim == 5:  # [B, C, F, h, w]: model inputs, AnimateDiff's steps
            anchored[:, :, 0] = self.keyframe
        else:  # [B*F, C, h, w]: the UNet3D pipeline steps its scheduler on frames
            anchored[:: self.frames] = self.keyframe
        return anchored

    def scale_model_input(self, sample: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        """The scheduler's model input, with frame 0 the clean keyframe latent."""
        return self.anchor(self.scheduler.scale_model_input(sample, *args, **kwargs))

    @property
    def step(self) -> Callable[..., Any]:
        """The scheduler's ``step`` with frame 0 of ``prev_sample`` set back to the keyframe.

        It carries the scheduler's signature: the pipelines read it to know whether ``step``
        takes ``eta`` and ``generator`` (without it, ancestral samplers would lose the seed).
        """
        @functools.wraps(self.scheduler.step)
        def anchored_step(*args: Any, **kwargs: Any) -> Any:
            out = self.scheduler.step(*args, **kwargs)
            if isinstance(out, tuple):  # return_dict=False
                return (self.anchor(out[0]), *out[1:])
            out.prev_sample = self.anchor(out.prev_sample)
            return out

        return anchored_step
