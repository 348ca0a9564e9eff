"""ComfyUI's ``comfy.comfy_types``: the names of socket types, for plugins' declarations."""

from comfy.comfy_types.node_typing import IO, ComfyNodeABC, InputTypeDict

__all__ = ["IO", "ComfyNodeABC", "InputTypeDict"]
