"""ComfyUI's core node classes that Kinema does not provide, as plugins find them in ``nodes``.

Plugins subclass ComfyUI's core nodes (``class BatchedVAEEncode(nodes.VAEEncode)``) or call
them. ``import nodes`` gives such a plugin a class with the core node's name that says, when
used, that it is not available; only the plugin's nodes built on it are refused (at
registration when their INPUT_TYPES asks the base class, else when they run), and the rest of
the pack loads.
"""

from __future__ import annotations

from functools import cache
from typing import Any, NoReturn

# ComfyUI's nodes.py NODE_CLASS_MAPPINGS, less what Kinema's nodes provide under the same name.
MISSING_CORE_NODES = frozenset({
    "KSampler", "KSamplerAdvanced", "CheckpointLoaderSimple", "CheckpointLoader",
    "DiffusersLoader", "unCLIPCheckpointLoader", "CLIPTextEncode", "CLIPSetLastLayer",
    "CLIPLoader", "DualCLIPLoader", "UNETLoader", "VAELoader", "VAEDecode", "VAEEncode",
    "VAEDecodeTiled", "VAEEncodeTiled", "VAEEncodeForInpaint", "EmptyLatentImage",
    "LatentUpscale", "LatentUpscaleBy", "LatentFromBatch", "RepeatLatentBatch",
    "LatentComposite", "LatentBlend", "LatentRotate", "LatentFlip", "LatentCrop",
    "SetLatentNoiseMask", "LoadLatent", "SaveLatent", "LoadImageMask", "LoadImageOutput",
    "ImagePadForOutpaint", "ConditioningAverage", "ConditioningCombine", "ConditioningConcat",
    "ConditioningSetArea", "ConditioningSetAreaPercentage", "ConditioningSetAreaStrength",
    "ConditioningSetMask", "ConditioningZeroOut", "ConditioningSetTimestepRange",
    "InpaintModelConditioning", "LoraLoader", "LoraLoaderModelOnly", "CLIPVisionLoader",
    "CLIPVisionEncode", "StyleModelLoader", "StyleModelApply", "unCLIPConditioning",
    "ControlNetLoader", "DiffControlNetLoader", "ControlNetApply", "ControlNetApplyAdvanced",
    "GLIGENLoader", "GLIGENTextBoxApply",
})


# The FUNCTION and helper method names of those nodes, which plugins call on them directly or
# through super() (a super() lookup never reaches __getattr__).
CORE_METHODS = (
    "addWeighted", "append", "apply_adm", "apply_controlnet", "apply_stylemodel", "blend",
    "combine", "composite", "concat", "crop", "decode", "encode", "expand_image", "flip",
    "frombatch", "generate", "load", "load_checkpoint", "load_clip", "load_controlnet",
    "load_gligen", "load_image", "load_lora", "load_lora_model_only", "load_style_model",
    "load_taesd", "load_unet", "load_vae", "repeat", "rotate", "sample", "save",
    "set_last_layer", "set_mask", "set_range", "upscale", "vae_list", "zero_out",
)


def _is_method_name(name: str) -> bool:
    # ComfyUI's declarations (RETURN_NAMES ...) are upper case and must read as absent.
    return not name.startswith("_") and not name.isupper()


class _RefusingType(type):
    """Class-level use of any other method (``VAEEncode.vae_encode_crop_pixels(...)``)."""

    def __getattr__(cls, name: str) -> Any:
        if not _is_method_name(name):
            raise AttributeError(name)
        return lambda *_args, **_kwargs: cls._refuse()


class UnavailableCoreNode(metaclass=_RefusingType):
    """Stands for a ComfyUI core node Kinema does not have; any use says so."""

    CATEGORY = "unavailable"
    RETURN_TYPES: tuple[str, ...] = ()
    FUNCTION = "unavailable"
    CORE_NODE = ""  # the ComfyUI node it stands for (subclasses keep it)

    @classmethod
    def _refuse(cls) -> NoReturn:
        raise NotImplementedError(f"this node needs ComfyUI's core node {cls.CORE_NODE}, "
                                  "which Kinema does not provide")

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        cls._refuse()

    def unavailable(self, *_args: Any, **_inputs: Any) -> NoReturn:
        self._refuse()

    def __getattr__(self, name: str) -> Any:
        if not _is_method_name(name):
            raise AttributeError(name)
        return self.unavailable


for _name in CORE_METHODS:
    setattr(UnavailableCoreNode, _name, UnavailableCoreNode.unavailable)


@cache
def unavailable_core_node(name: str) -> type:
    """The stand-in class for ComfyUI's core node ``name`` (one class per name)."""
    return _RefusingType(name, (UnavailableCoreNode,), {"__module__": "nodes", "CORE_NODE": name})
