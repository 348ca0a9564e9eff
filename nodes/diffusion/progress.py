"""Per-step progress, latent previews and interrupt for diffusers pipelines.

A pipeline calls ``callback_on_step_end`` after each step; this turns it into the engine's
progress ticks (each an interrupt point) with a cheap latent → RGB preview image.
"""

from __future__ import annotations

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


def step_callback(total_steps: int) -> Callable[..., dict[str, Any]]:
    """A ``callback_on_step_end`` reporting steps (and previews) to the running node."""
    ctx = current_context()

    def on_step_end(_pipe: Any, step: int, _timestep: Any, kwargs: dict[str, Any],
                    ) -> dict[str, Any]:
        if ctx is not None:
            latents = kwargs.get("latents")
            preview = latent_preview(latents) if isinstance(latents, torch.Tensor) else None
            ctx.progress(step + 1, total_steps, ("JPEG", preview, PREVIEW_SIZE)
                         if preview is not None else None)
        return {}

    return on_step_end


def legacy_step_callback(total_steps: int) -> Callable[[int, Any, torch.Tensor], None]:
    """The same for pipelines that still take ``callback(step, timestep, latents)``."""
    on_step_end = step_callback(total_steps)

    def callback(step: int, timestep: Any, latents: torch.Tensor) -> None:
        on_step_end(None, step, timestep, {"latents": latents})

    return callback
