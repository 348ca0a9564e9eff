"""The keyframe generator: text (and optionally an init image) → one image, with SD 1.x/2.x.

The work is in ``nodes/diffusion/keyframe.py``: diffusers' own StableDiffusionPipeline (or
StableDiffusionImg2ImgPipeline) over the loaded model's components, so a graph and a pipeline
call with the same weights, seed and settings give the same picture.
"""

from __future__ import annotations

import torch

from nodes.diffusion.bundle import KINEMA_CONDITIONING, KINEMA_MODEL, Conditioning, ModelBundle
from nodes.diffusion.schedulers import SCHEDULER_NAMES
from nodes.imaging import MAX_RESOLUTION

MAX_SEED = 0xFFFFFFFFFFFFFFFF  # torch.Generator.manual_seed takes any 64-bit value


class KeyframeGenerator:
    """Generates a keyframe image from text (optionally from an init image) with SD 1.x/2.x."""

    DESCRIPTION = ("Generates a keyframe image from the encoded prompt with a Stable Diffusion "
                   "1.x/2.x model. With an init image, it re-imagines that image instead "
                   "(strength: how much changes). Outputs the image and its latent.")
    CATEGORY = "kinema/keyframe"
    RETURN_TYPES = ("IMAGE", "LATENT")
    RETURN_NAMES = ("image", "latent")
    FUNCTION = "generate"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "model": (KINEMA_MODEL, {"tooltip": "An SD 1.x/2.x model (from Load Model)."}),
                "conditioning": (KINEMA_CONDITIONING, {
                    "tooltip": "The prompt, encoded with the same model (Text Encode)."}),
                "seed": ("INT", {"default": 0, "min": 0, "max": MAX_SEED,
                                 "control_after_generate": True,
                                 "tooltip": "Seed of the starting noise; the same seed and "
                                            "settings give the same image."}),
                "steps": ("INT", {"default": 25, "min": 1, "max": 1000,
                                  "tooltip": "Denoising steps: more is slower and finer."}),
                "cfg": ("FLOAT", {"default": 7.5, "min": 0.0, "max": 100.0, "step": 0.1,
                                  "round": 0.01, "tooltip": "Classifier-free guidance: how "
                                  "strongly the prompt is followed (1 or less: ignored)."}),
                "width": ("INT", {"default": 512, "min": 8, "max": MAX_RESOLUTION, "step": 8,
                                  "tooltip": "Image width in pixels (a multiple of 8)."}),
                "height": ("INT", {"default": 512, "min": 8, "max": MAX_RESOLUTION, "step": 8,
                                   "tooltip": "Image height in pixels (a multiple of 8)."}),
                "scheduler": (list(SCHEDULER_NAMES), {
                    "default": SCHEDULER_NAMES[0],
                    "tooltip": "The sampler; 'default' is the model's own scheduler."}),
            },
            "optional": {
                "init_image": ("IMAGE", {"tooltip": "Optional image to start from (img2img); "
                                                    "resized to width x height."}),
                "strength": ("FLOAT", {"default": 0.75, "min": 0.0, "max": 1.0, "step": 0.01,
                                       "tooltip": "With an init image: how much of it is "
                                                  "re-imagined (0 keeps it, 1 replaces it)."}),
            },
        }

    def generate(self, model: ModelBundle, conditioning: Conditioning, seed: int, steps: int,
                 cfg: float, width: int, height: int, scheduler: str,
                 init_image: torch.Tensor | None = None, strength: float = 0.75,
                 ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        # diffusers loads when the node runs, not with the nodes (nodes/diffusion/__init__.py).
        from nodes.diffusion.keyframe import generate_keyframe

        image, latents = generate_keyframe(model, conditioning, seed, steps, cfg, width, height,
                                           scheduler, init_image, strength)
        return image, {"samples": latents}


NODE_CLASS_MAPPINGS = {"KeyframeGenerator": KeyframeGenerator}
NODE_DISPLAY_NAME_MAPPINGS = {"KeyframeGenerator": "Keyframe Generator"}
