"""Per-step progress, latent previews and interrupt for diffusers pipelines.

A pipeline calls ``callback_on_step_end`` after each step; this turns it into the engine's
progress ticks (each an interrupt point) with a cheap latent → RGB preview image.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import torch
from PIL import Image

from engine.context import current_context

# An approximate linear map from the 4 SD-VAE latent channels to RGB: enough to see
# composition and colour while a run is going, at no decoding cost.
SD_LATENT_RGB = torch.tensor([[0.298, 0.207, 0.208],
                              [0.187, 0.286, 0.173],
                              [-0.158, 0.189, 0.264],
                              [-0.184, -0.271, -0.473]])
PREVIEW_SIZE = 256


def latent_preview(latents: torch.Tensor) -> Image.Image | None:
    """A small RGB picture of the first image (or first frame) in 4-channel latents."""
    if latents.ndim == 5:  # [B, C, F, H, W] (UNet3D/AnimateDiff) or [B, F, C, H, W] (SVD)
        latents = latents[0, :, 0] if latents.shape[1] == 4 else latents[0, 0]
    else:
        latents = latents[0]
    if latents.shape[0] != 4:
        return None
    rgb = torch.einsum("chw,cr->hwr", latents.detach().float().cpu(), SD_LATENT_RGB)
    rgb = ((rgb + 1) / 2).clamp(0, 1).mul(255).byte().numpy()
    image = Image.fromarray(rgb)
    image.thumbnail((PREVIEW_SIZE, PREVIEW_SIZE))
    return image


def _report(ctx: Any, step: int, total: int, latents: Any) -> None:
    preview = latent_preview(latents) if isinstance(latents, torch.Tensor) else None
    ctx.progress(step, total, ("JPEG", preview, PREVIEW_SIZE) if preview is not None else None)


def step_callback() -> Callable[..., dict[str, Any]]:
    """A ``callback_on_step_end`` reporting steps (and previews) to the running node.

    The total is the pipeline's own ``num_timesteps``, set before its first step: it already
    counts schedulers with more timesteps than steps and img2img's strength, at no cost.
    """
    ctx = current_context()

    def on_step_end(pipe: Any, step: int, _timestep: Any, kwargs: dict[str, Any],
                    ) -> dict[str, Any]:
        if ctx is not None:
            _report(ctx, step + 1, pipe.num_timesteps, kwargs.get("latents"))
        return {}

    return on_step_end


def legacy_callbacks(scheduler: Any, steps: int) -> int:
    """How many times a legacy ``callback`` is called once ``scheduler``'s timesteps are set:
    a multistep scheduler calls back once per order, and not during its warm-up."""
    count, order = len(scheduler.timesteps), scheduler.order
    warmup = count - steps * order
    return sum(1 for i in range(count)
               if i == count - 1 or ((i + 1) > warmup and (i + 1) % order == 0))


def legacy_step_callback(pipe: Any, steps: int) -> Callable[[int, Any, torch.Tensor], None]:
    """The same for pipelines that still take ``callback(step, timestep, latents)``; the total
    is counted from ``pipe``'s scheduler at the first call, when its timesteps are set."""
    ctx = current_context()
    calls = itertools.count(1)
    total: int | None = None

    def callback(_step: int, _timestep: Any, latents: torch.Tensor) -> None:
        nonlocal total
        if ctx is not None:
            total = total or legacy_callbacks(pipe.scheduler, steps)
            _report(ctx, next(calls), total, latents)

    return callback
