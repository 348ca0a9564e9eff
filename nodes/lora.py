"""The DiT LoRA node: a LoRA from ``models/loras/`` on a diffusion-transformer video model."""

from __future__ import annotations

import dataclasses

from engine.folders import active_folders, path_stamp
from nodes.diffusion.bundle import FP8_STORAGE, KINEMA_MODEL, ModelBundle
from nodes.diffusion.loras import EXPERTS, LORAS, LoraChoice, adapter_name
from nodes.diffusion.model_files import ModelLoadError

LORAS_DIR = "models/loras/"


class DiTLoraLoader:
    """Applies a LoRA (ComfyUI's, musubi-tuner's or diffusers' format) to a diffusion
    transformer (Wan, LTX-Video, CogVideoX, HunyuanVideo)."""

    DESCRIPTION = ("Applies a LoRA from models/loras/ to a diffusion-transformer video model "
                   "(Wan 2.1 / 2.2, LTX-Video, CogVideoX, HunyuanVideo), at a strength. Chain "
                   "several. For Wan 2.2 A14B choose the expert: the 4-step distillation LoRAs "
                   "come as a high-noise and a low-noise file, one for each. The loaded model "
                   "itself is unchanged for graphs without the LoRA.")
    CATEGORY = "kinema/loaders"
    RETURN_TYPES = (KINEMA_MODEL,)
    RETURN_NAMES = ("model",)
    FUNCTION = "apply"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        files = active_folders().model_files("loras")
        options: dict = {"tooltip": f"A LoRA file in {LORAS_DIR}."}
        if files:
            options["default"] = files[0]
        return {"required": {
            "model": (KINEMA_MODEL, {"tooltip": "A diffusion-transformer video model."}),
            "lora": (files, options),
            "strength": ("FLOAT", {"default": 1.0, "min": -10.0, "max": 10.0, "step": 0.01,
                                   "tooltip": "How strongly the LoRA applies (0: not at all)."}),
            "expert": (list(EXPERTS), {"default": "both", "tooltip": "Wan 2.2 A14B: which "
                       "expert takes the LoRA (ignored by single-model families)."}),
        }}

    @classmethod
    def VALIDATE_INPUTS(cls, lora: str) -> bool | str:
        if isinstance(lora, str) and lora and active_folders().model_path("loras", lora):
            return True
        return f"LoRA {lora!r} was not found: put it in {LORAS_DIR}"

    @classmethod
    def IS_CHANGED(cls, lora: str) -> str:
        path = active_folders().model_path("loras", lora)
        return "missing" if path is None else path_stamp(path)

    def apply(self, model: ModelBundle, lora: str, strength: float, expert: str,
              ) -> tuple[ModelBundle]:
        path = active_folders().model_path("loras", lora)
        if path is None:
            raise ModelLoadError(self.VALIDATE_INPUTS(lora))
        if model.details.get(FP8_STORAGE):
            # peft would store the LoRA in fp8 beside the weights and multiply in fp8.
            raise ValueError(f"{model.source} keeps its weights in fp8, which LoRAs cannot be "
                             "applied to: load it with weight_dtype default")
        # The family is a heavy module (diffusers), loaded when the node runs.
        from nodes.diffusion.families import family_of
        from nodes.diffusion.weights import read_state_dict

        adapter = adapter_name(lora, path_stamp(path))
        targets = family_of(model).load_lora(model, read_state_dict(path, LORAS_DIR), adapter,
                                             expert, lora)
        chosen = [*model.details.get(LORAS, []), LoraChoice(adapter, strength, targets)]
        return (dataclasses.replace(model, details={**model.details, LORAS: chosen},
                                    shares_pipe=True),)


NODE_CLASS_MAPPINGS = {"DiTLoraLoader": DiTLoraLoader}
NODE_DISPLAY_NAME_MAPPINGS = {"DiTLoraLoader": "Load DiT LoRA"}
