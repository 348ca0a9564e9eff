"""CLIP vision encoders from ComfyUI's ``clip_vision/`` files (``clip_vision_h.safetensors``, the
image encoder Wan 2.1 I2V reads), which are in transformers' key layout, sized from the shapes.

The head count is not in any shape: ComfyUI's own configs give 16 heads to the 1024- and
1280-wide encoders (OpenAI ViT-L/14, OpenCLIP ViT-H/14) and 64-wide heads to smaller ones; the
activation is OpenCLIP's GELU for ViT-H, OpenAI's quick GELU otherwise.
"""

from __future__ import annotations

import math
import re

import torch
from accelerate import init_empty_weights
from transformers import CLIPVisionConfig, CLIPVisionModel
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

from nodes.diffusion.families.base import ComponentFile, fill_model
from nodes.diffusion.model_files import CLIP_VISION_DIR, ModelLoadError
from nodes.diffusion.weights import shapes_of

PREFIX = "vision_model."
LAYER = re.compile(r"vision_model\.encoder\.layers\.(\d+)\.")
OPENCLIP_H_WIDTH = 1280


def clip_vision_config(shapes: dict[str, tuple[int, ...]]) -> CLIPVisionConfig:
    """A CLIP vision config from a transformers-layout state dict's shapes."""
    width = shapes[PREFIX + "embeddings.class_embedding"][0]
    patch = shapes[PREFIX + "embeddings.patch_embedding.weight"][-1]
    positions = shapes[PREFIX + "embeddings.position_embedding.weight"][0]
    return CLIPVisionConfig(
        hidden_size=width,
        intermediate_size=shapes[PREFIX + "encoder.layers.0.mlp.fc1.weight"][0],
        num_hidden_layers=1 + max(int(m.group(1)) for k in shapes if (m := LAYER.match(k))),
        num_attention_heads=16 if width >= 1024 else max(1, width // 64),
        patch_size=patch, image_size=patch * math.isqrt(positions - 1),
        hidden_act="gelu" if width == OPENCLIP_H_WIDTH else "quick_gelu",
        projection_dim=shapes.get("visual_projection.weight", (width,))[0])


def load_clip_vision(part: ComponentFile, dtype: torch.dtype) -> CLIPVisionModel:
    """The vision tower of a ComfyUI CLIP vision file (its projection is not used)."""
    shapes = shapes_of(part.state)
    if PREFIX + "embeddings.class_embedding" not in shapes:
        raise ModelLoadError(f"{part.name} is not a CLIP vision model in transformers' layout "
                             f"(as ComfyUI's clip_vision_h.safetensors); put it in "
                             f"{CLIP_VISION_DIR}")
    with init_empty_weights():
        model = CLIPVisionModel(clip_vision_config(shapes))
    # Files keep transformers 4's "vision_model." prefix; transformers 5's model has none.
    prefixed = any(k.startswith(PREFIX) for k in model.state_dict())
    weights = {(k if prefixed else k.removeprefix(PREFIX)): v
               for k, v in part.state.items() if k.startswith(PREFIX)}
    return fill_model(model, weights, dtype, part.name, "CLIP vision", CLIP_VISION_DIR)


def clip_image_processor(model: CLIPVisionModel) -> CLIPImageProcessorPil:
    """CLIP's preprocessing (resize, centre crop, OpenAI mean/std) at the model's size."""
    size = model.config.image_size
    return CLIPImageProcessorPil(size={"shortest_edge": size},
                                 crop_size={"height": size, "width": size})
