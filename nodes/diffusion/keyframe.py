"""Text (and optionally an init image) → one image, with SD 1.x/2.x: the keyframe generator's work.

It calls diffusers' own StableDiffusionPipeline (or StableDiffusionImg2ImgPipeline) built from
the loaded model's components (the same modules, no copies, only a fresh scheduler), exactly
as a user would call it: embeddings from the text node, a CPU ``torch.Generator`` seeded with
the seed. The latents come back and are decoded as the pipeline decodes them, so a graph and a
pipeline call with the same weights, seed and settings give the same picture.
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers import StableDiffusionImg2ImgPipeline, StableDiffusionPipeline

from nodes.diffusion.bundle import Conditioning, ModelBundle
from nodes.diffusion.families import family_of
from nodes.diffusion.latents import decode_latents
from nodes.diffusion.progress import step_callback
from nodes.diffusion.schedulers import make_scheduler
from nodes.imaging import resample


def generate_keyframe(model: ModelBundle, conditioning: Conditioning, seed: int, steps: int,
                      cfg: float, width: int, height: int, scheduler: str,
                      init_image: torch.Tensor | None = None, strength: float = 0.75,
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the SD pipeline on the model's components → (IMAGE ``[B,H,W,3]``, latents)."""
    # 1. Check the inputs
    if not family_of(model).makes_images:
        raise ValueError(f"{model.source} is a {model.family} model; the keyframe generator "
                         "needs Stable Diffusion 1.x/2.x (video models go to the temporal "
                         "denoiser)")
    if width % 8 or height % 8:
        raise ValueError(f"width and height must be multiples of 8, got {width}x{height}")
    expected = model.pipe.unet.config.cross_attention_dim
    if conditioning.prompt_embeds.shape[-1] != expected:
        raise ValueError(f"the conditioning was encoded by {conditioning.source} "
                         f"({conditioning.family}, {conditioning.prompt_embeds.shape[-1]} wide); "
                         f"{model.source} needs {expected}-wide embeddings: encode the prompt "
                         "with the same model")
    # 2. A pipeline over the very same modules; then the chosen scheduler, set as a user sets
    # it (after construction) and fresh each run, since schedulers keep per-run state
    embeds = conditioning.prompt_embeds.to(model.device)
    negative = conditioning.negative_prompt_embeds
    negative = negative.to(model.device) if negative is not None else None
    kwargs: dict[str, Any] = {}
    if init_image is None:
        pipe = StableDiffusionPipeline(**model.pipe.components, requires_safety_checker=False)
        kwargs.update(height=height, width=width)
    else:
        if int(steps * strength) < 1:
            raise ValueError(f"strength {strength} leaves no denoising step out of {steps}; "
                             "raise the strength or the steps")
        pipe = StableDiffusionImg2ImgPipeline(**model.pipe.components,
                                              requires_safety_checker=False)
        image = init_image[..., :3].movedim(-1, 1)
        if image.shape[-2:] != (height, width):
            image = resample(image, width, height, "bilinear", "center")
        # One prompt per init image, as a user passing a batch of images would.
        embeds = embeds.repeat(image.shape[0], 1, 1)
        negative = negative.repeat(image.shape[0], 1, 1) if negative is not None else None
        kwargs.update(image=image, strength=strength)
    pipe.scheduler = make_scheduler(scheduler, model.pipe.scheduler)
    pipe.set_progress_bar_config(disable=True)
    # 3. Denoise, exactly as a user calls the pipeline; each step reports and may interrupt
    latents = pipe(prompt_embeds=embeds, negative_prompt_embeds=negative,
                   num_inference_steps=steps, guidance_scale=cfg,
                   generator=torch.Generator().manual_seed(seed), output_type="latent",
                   callback_on_step_end=step_callback(), **kwargs).images
    # 4. Decode as the pipeline's postprocess does (the steps were this node's progress)
    return decode_latents(model, latents, report=False), latents.cpu().float()
