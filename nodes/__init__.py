"""Kinema's built-in nodes, one module per family, merged into one mapping.

This package is also what ComfyUI plugins get with ``import nodes``: it carries
``MAX_RESOLUTION``, ``NODE_CLASS_MAPPINGS``, ``NODE_DISPLAY_NAME_MAPPINGS`` and the node
classes by name (``nodes.SaveImage``, ``nodes.LoadImage`` ...), which plugins subclass.
ComfyUI's other core node classes are stand-ins that refuse to be used
(``nodes/comfy_core.py``).
"""

from __future__ import annotations

import nodes.quiet_imports  # noqa: F401  (first: before anything imports diffusers)
from nodes import (
    acceleration,
    comfy_core,
    encode,
    frame_ops,
    image,
    image_io,
    interpolate,
    keyframe,
    latent,
    loaders,
    lora,
    primitives,
    synthetic,
    temporal,
    text,
    upscale,
    video_io,
)
from nodes.image import (
    EmptyImage,
    ImageBatch,
    ImageBlend,
    ImageBlur,
    ImageFromBatch,
    ImageInvert,
    ImageScale,
    ImageScaleBy,
    ImageSharpen,
    RepeatImageBatch,
)
from nodes.image_io import LoadImage, PreviewImage, SaveImage
from nodes.imaging import MAX_RESOLUTION
from nodes.primitives import (
    PrimitiveBoolean,
    PrimitiveFloat,
    PrimitiveInt,
    PrimitiveString,
    PrimitiveStringMultiline,
)
from nodes.temporal import TemporalDenoiser

FAMILIES = (image, image_io, primitives, temporal, loaders, text, keyframe, latent, video_io,
            synthetic, frame_ops, interpolate, upscale, encode, acceleration,
            lora)

NODE_CLASS_MAPPINGS: dict[str, type] = {}
NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {}
for _family in FAMILIES:
    _clash = NODE_CLASS_MAPPINGS.keys() & _family.NODE_CLASS_MAPPINGS.keys()
    if _clash:
        raise RuntimeError(f"{_family.__name__} redefines built-in nodes {sorted(_clash)}")
    NODE_CLASS_MAPPINGS.update(_family.NODE_CLASS_MAPPINGS)
    NODE_DISPLAY_NAME_MAPPINGS.update(_family.NODE_DISPLAY_NAME_MAPPINGS)

__all__ = [
    "MAX_RESOLUTION",
    "NODE_CLASS_MAPPINGS",
    "NODE_DISPLAY_NAME_MAPPINGS",
    "EmptyImage",
    "ImageBatch",
    "ImageBlend",
    "ImageBlur",
    "ImageFromBatch",
    "ImageInvert",
    "ImageScale",
    "ImageScaleBy",
    "ImageSharpen",
    "LoadImage",
    "PreviewImage",
    "PrimitiveBoolean",
    "PrimitiveFloat",
    "PrimitiveInt",
    "PrimitiveString",
    "PrimitiveStringMultiline",
    "RepeatImageBatch",
    "SaveImage",
    "TemporalDenoiser",
]


def __getattr__(name: str) -> type:
    """``nodes.VAEEncode`` and ComfyUI's other core nodes Kinema lacks: refusing stand-ins."""
    if name in comfy_core.MISSING_CORE_NODES:
        return comfy_core.unavailable_core_node(name)
    raise AttributeError(f"module 'nodes' has no attribute {name!r}")
