"""Primitive value nodes: a constant INT, FLOAT, STRING or BOOLEAN to wire into other nodes.

Shapes follow ComfyUI's ``comfy_extras/nodes_primitive.py`` (node ids, input ``value``).
"""

from __future__ import annotations

import sys


class PrimitiveInt:
    """A constant integer."""

    DESCRIPTION = "Outputs the integer typed in; can change after each run (seed style)."
    CATEGORY = "utils/primitive"
    RETURN_TYPES = ("INT",)
    FUNCTION = "execute"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {"value": ("INT", {
            "default": 0, "min": -sys.maxsize, "max": sys.maxsize, "control_after_generate": True,
            "tooltip": "The integer to output."})}}

    def execute(self, value: int) -> tuple[int]:
        return (int(value),)


class PrimitiveFloat:
    """A constant floating-point number."""

    DESCRIPTION = "Outputs the number typed in."
    CATEGORY = "utils/primitive"
    RETURN_TYPES = ("FLOAT",)
    FUNCTION = "execute"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {"value": ("FLOAT", {
            "default": 0.0, "min": -sys.maxsize, "max": sys.maxsize, "step": 0.1,
            "tooltip": "The number to output."})}}

    def execute(self, value: float) -> tuple[float]:
        return (float(value),)


class PrimitiveString:
    """A constant one-line string."""

    DESCRIPTION = "Outputs the text typed in."
    CATEGORY = "utils/primitive"
    RETURN_TYPES = ("STRING",)
    FUNCTION = "execute"
    MULTILINE = False

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {"value": ("STRING", {
            "default": "", "multiline": cls.MULTILINE, "tooltip": "The text to output."})}}

    def execute(self, value: str) -> tuple[str]:
        return (str(value),)


class PrimitiveStringMultiline(PrimitiveString):
    """A constant multi-line string (a text box on the canvas)."""

    DESCRIPTION = "Outputs the text typed in a multi-line box."
    MULTILINE = True


class PrimitiveBoolean:
    """A constant true/false."""

    DESCRIPTION = "Outputs the boolean set on the toggle."
    CATEGORY = "utils/primitive"
    RETURN_TYPES = ("BOOLEAN",)
    FUNCTION = "execute"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {"value": ("BOOLEAN", {
            "default": False, "tooltip": "The boolean to output."})}}

    def execute(self, value: bool) -> tuple[bool]:
        return (bool(value),)


NODE_CLASS_MAPPINGS = {
    "PrimitiveInt": PrimitiveInt,
    "PrimitiveFloat": PrimitiveFloat,
    "PrimitiveString": PrimitiveString,
    "PrimitiveStringMultiline": PrimitiveStringMultiline,
    "PrimitiveBoolean": PrimitiveBoolean,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "PrimitiveInt": "Int",
    "PrimitiveFloat": "Float",
    "PrimitiveString": "String",
    "PrimitiveStringMultiline": "String (Multiline)",
    "PrimitiveBoolean": "Boolean",
}
