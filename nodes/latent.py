"""Latent nodes: decode LATENT samples (images or video frames) to IMAGE, and encode back.

Decoding runs a chunk of frames at a time, so a long clip never sits in the VAE at once, and
can tile each frame for sizes the VAE cannot decode whole.
"""

from __future__ import annotations

import torch

from nodes.diffusion.bundle import KINEMA_MODEL, ModelBundle
from nodes.imaging import MAX_RESOLUTION


def _model_input() -> tuple:
    return (KINEMA_MODEL, {"tooltip": "The model whose VAE decodes or encodes (from Load Model)."})


def _chunk_input() -> tuple:
    return ("INT", {"default": 8, "min": 0, "max": 4096,
                    "tooltip": "Images or frames per VAE call (0: all at once). Lower it to "
                               "save memory; the result is the same."})


class LatentDecode:
    """Decodes LATENT samples (``[B,C,h,w]`` or video ``[B,C,F,h,w]``) to an IMAGE batch."""

    DESCRIPTION = ("Decodes latents to images with the model's VAE. Video latents give one "
                   "image per frame. Decodes chunk_size frames at a time; 'tile' splits large "
                   "frames into overlapping tiles to fit in memory (seams are blended).")
    CATEGORY = "kinema/latent"
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("image",)
    FUNCTION = "decode"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {
            "model": _model_input(),
            "latent": ("LATENT", {"tooltip": "The latents to decode (image or video)."}),
            "chunk_size": _chunk_input(),
            "tile": ("BOOLEAN", {"default": False,
                                 "tooltip": "Decode each frame in tiles (for large frames)."}),
            "tile_size": ("INT", {"default": 512, "min": 16, "max": MAX_RESOLUTION, "step": 8,
                                  "tooltip": "Tile side in pixels, when tiling."}),
            "tile_overlap": ("INT", {"default": 64, "min": 0, "max": 4096, "step": 8,
                                     "tooltip": "Pixels shared by neighbouring tiles, blended "
                                                "to hide seams."}),
        }}

    def decode(self, model: ModelBundle, latent: dict, chunk_size: int = 8, tile: bool = False,
               tile_size: int = 512, tile_overlap: int = 64) -> tuple[torch.Tensor]:
        # diffusers loads when the node runs, not with the nodes (nodes/diffusion/__init__.py).
        from nodes.diffusion.latents import decode_latents

        return (decode_latents(model, latent["samples"], chunk_size,
                               tile_size if tile else 0, tile_overlap),)


class LatentEncode:
    """Encodes an IMAGE batch to LATENT samples with the model's VAE."""

    DESCRIPTION = ("Encodes images to latents with the model's VAE (the distribution's mode, "
                   "so the same image always gives the same latent). Sides must be multiples "
                   "of 8.")
    CATEGORY = "kinema/latent"
    RETURN_TYPES = ("LATENT",)
    RETURN_NAMES = ("latent",)
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {
            "model": _model_input(),
            "image": ("IMAGE", {"tooltip": "The images (or frames) to encode."}),
            "chunk_size": _chunk_input(),
        }}

    def encode(self, model: ModelBundle, image: torch.Tensor, chunk_size: int = 8,
               ) -> tuple[dict[str, torch.Tensor]]:
        # diffusers loads when the node runs, not with the nodes (nodes/diffusion/__init__.py).
        from nodes.diffusion.latents import encode_images

        return ({"samples": encode_images(model, image, chunk_size)},)


NODE_CLASS_MAPPINGS = {"LatentDecode": LatentDecode, "LatentEncode": LatentEncode}
NODE_DISPLAY_NAME_MAPPINGS = {"LatentDecode": "Latent Decode (Kinema)",
                              "LatentEncode": "Latent Encode (Kinema)"}
