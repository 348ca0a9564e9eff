"""ComfyUI's ``comfy.comfy_types.node_typing``: socket type names and node typing aids.

Plugins write ``IO.IMAGE`` for ``"IMAGE"``; an ``IO`` member is the plain type name wherever
Kinema reads it (``str(IO.IMAGE) == "IMAGE"``).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class IO(StrEnum):
    """Socket type names as ComfyUI spells them."""

    STRING = "STRING"
    IMAGE = "IMAGE"
    MASK = "MASK"
    LATENT = "LATENT"
    BOOLEAN = "BOOLEAN"
    INT = "INT"
    FLOAT = "FLOAT"
    COMBO = "COMBO"
    CONDITIONING = "CONDITIONING"
    SAMPLER = "SAMPLER"
    SIGMAS = "SIGMAS"
    GUIDER = "GUIDER"
    NOISE = "NOISE"
    CLIP = "CLIP"
    CONTROL_NET = "CONTROL_NET"
    VAE = "VAE"
    MODEL = "MODEL"
    CLIP_VISION = "CLIP_VISION"
    CLIP_VISION_OUTPUT = "CLIP_VISION_OUTPUT"
    STYLE_MODEL = "STYLE_MODEL"
    GLIGEN = "GLIGEN"
    UPSCALE_MODEL = "UPSCALE_MODEL"
    AUDIO = "AUDIO"
    VIDEO = "VIDEO"
    WEBCAM = "WEBCAM"
    POINT = "POINT"
    FACE_ANALYSIS = "FACE_ANALYSIS"
    BBOX = "BBOX"
    SEGS = "SEGS"
    ANY = "*"
    NUMBER = "FLOAT,INT"
    PRIMITIVE = "STRING,FLOAT,INT,BOOLEAN"

    def __ne__(self, other: object) -> bool:
        # "*" matches every type, as ComfyUI's type check reads it.
        if self.value == "*" or other == "*":
            return False
        return str.__ne__(self, other)

    # Defining __ne__ would drop the hash; members must hash as their plain names ("*").
    __hash__ = str.__hash__


InputTypeDict = dict[str, Any]


class ComfyNodeABC:
    """The base class ComfyUI offers node classes for type checkers; it adds nothing."""
