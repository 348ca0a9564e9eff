"""The DiT Options node: attention backend, regional compile and step caching for the
diffusion-transformer families, carried with the model to the temporal denoiser."""

from __future__ import annotations

import dataclasses

from nodes.diffusion.acceleration import (
    ATTENTION_BACKENDS,
    KINEMA_ACCELERATION,
    STEP_CACHES,
    Acceleration,
)
from nodes.diffusion.bundle import KINEMA_MODEL, ModelBundle


class DiTOptions:
    """Speed options for a diffusion-transformer video model (Wan ...), applied while the
    temporal denoiser runs and undone after, so the loaded model stays as it was."""

    DESCRIPTION = ("Speed options for a diffusion-transformer video model: the attention "
                   "backend (sdpa is PyTorch's own; flash, sage and xformers when installed), "
                   "regional torch.compile of the transformer blocks (the first run compiles), "
                   "and First Block Cache (skips most of the network on steps where its first "
                   "block's output barely changes: faster, slightly different frames). The "
                   "UNet families do not use them.")
    CATEGORY = "kinema/loaders"
    RETURN_TYPES = (KINEMA_MODEL,)
    RETURN_NAMES = ("model",)
    FUNCTION = "apply"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {
            "model": (KINEMA_MODEL, {"tooltip": "A diffusion-transformer video model."}),
            "attention": (list(ATTENTION_BACKENDS), {
                "default": "sdpa", "tooltip": "The attention kernel; others than sdpa need "
                                              "their package installed."}),
            "compile": ("BOOLEAN", {"default": False, "tooltip": "torch.compile each repeated "
                                    "transformer block (needs a GPU and a C++ compiler; the "
                                    "model stays compiled)."}),
            "step_cache": (list(STEP_CACHES), {"default": "off", "tooltip": "Reuse the "
                           "network's output on steps that change little."}),
            "cache_threshold": ("FLOAT", {"default": 0.05, "min": 0.0, "max": 1.0,
                                          "step": 0.01, "tooltip": "How small a change of the "
                                          "first block's output lets a step reuse the rest "
                                          "(higher: faster, further from uncached)."}),
        }}

    def apply(self, model: ModelBundle, attention: str, compile: bool, step_cache: str,
              cache_threshold: float) -> tuple[ModelBundle]:
        options = Acceleration(attention, compile, step_cache, cache_threshold)
        details = {**model.details, KINEMA_ACCELERATION: options}
        return (dataclasses.replace(model, details=details, shares_pipe=True),)


NODE_CLASS_MAPPINGS = {"DiTOptions": DiTOptions}
NODE_DISPLAY_NAME_MAPPINGS = {"DiTOptions": "DiT Options (attention, compile, cache)"}
