"""Loader nodes: a generation model (SD, ModelScope, SVD ...) and an AnimateDiff motion adapter
from the user's ``models/`` folders, offline.

The weights are read when the node runs, not when the graph is built, so listing models reads
no weights; the engine's cache keeps a loaded model for as long as its budget allows, and
``IS_CHANGED`` reloads it when the file on disk changes.
"""

from __future__ import annotations

import os
from pathlib import Path

from engine.folders import active_folders, path_stamp
from nodes.diffusion.bundle import KINEMA_MODEL, KINEMA_MOTION, ModelBundle, MotionModule
from nodes.diffusion.model_files import (
    CHECKPOINTS_DIR,
    CLIP_VISION_DIR,
    DIFFUSERS_DIR,
    DIFFUSION_MODELS_DIR,
    FOLDER_FAMILIES,
    MOTION_DIR,
    SINGLE_FILE_FAMILIES,
    TEXT_ENCODERS_DIR,
    VAE_DIR,
    ModelLoadError,
    is_sidecar,
)

CHECKPOINTS, DIFFUSERS, MOTION = "checkpoints", "diffusers", "motion"
# A folder holding one of these is a model: its inner files are not listed on their own.
MODEL_FOLDER_MARKERS = ("model_index.json", "config.json")


def model_choices() -> list[str]:
    """Checkpoint files and diffusers folders, as names the loader resolves (files first)."""
    files, _ = _scan(CHECKPOINTS, "")
    _, folders = _scan(DIFFUSERS, "model_index.json")
    return list(dict.fromkeys(files + folders))


def motion_choices() -> list[str]:
    """Motion module files and diffusers MotionAdapter folders in ``models/motion``."""
    # Adapter folders hold a config.json, not a model_index.json.
    files, folders = _scan(MOTION, "config.json")
    return sorted(dict.fromkeys(files + folders))


def _scan(kind: str, folder_marker: str) -> tuple[list[str], list[str]]:
    """(weights files, model folders holding ``folder_marker``) of one kind, sorted.

    The walk stops at a model's folder: its inner files are parts, not models, and a studio's
    ``models/`` holds thousands of them, listed on every prompt's validation otherwise.
    Sidecar config folders are skipped.
    """
    roots, exts = active_folders().model_kinds.get(kind, ([], frozenset()))
    files: list[str] = []
    folders: list[str] = []
    for root in roots:
        for here, subdirs, names in os.walk(root, followlinks=True):
            path = Path(here)
            relative = path.relative_to(root).as_posix()
            if path != root and any(m in names for m in MODEL_FOLDER_MARKERS):
                if folder_marker and folder_marker in names:
                    folders.append(relative)
                subdirs.clear()
                continue
            subdirs[:] = [d for d in subdirs if not is_sidecar(path / d)]
            prefix = "" if path == root else f"{relative}/"
            files += [prefix + n for n in names if exts and Path(n).suffix.lower() in exts]
    return sorted(files), sorted(folders)


def resolve_model(name: str) -> Path | None:
    folders = active_folders()
    for kind in (CHECKPOINTS, DIFFUSERS):
        path = folders.model_path(kind, name)
        if path is not None:
            return path
    return None


def _stamp(path: Path | None) -> str:
    return "missing" if path is None else path_stamp(path)


def _combo(choices: list[str], tooltip: str) -> tuple:
    options: dict = {"tooltip": tooltip}
    if choices:
        options["default"] = choices[0]
    return (choices, options)


class KinemaModelLoader:
    """Loads a text-to-image or video model from ``models/checkpoints`` or ``models/diffusers``."""

    DESCRIPTION = ("Loads a model from your models folder, offline: a single-file Stable "
                   "Diffusion 1.x/2.x checkpoint (.safetensors, or .pth/.ckpt) from "
                   "models/checkpoints/, or a diffusers folder (SD, ModelScope/Zeroscope, "
                   "AnimateDiff, Stable Video Diffusion, Wan 2.1/2.2, LTX-Video, CogVideoX, "
                   "HunyuanVideo) from "
                   "models/diffusers/<name>/. The family is detected from the weights. "
                   "ComfyUI's single files of those load with Load DiT Video Model.")
    CATEGORY = "kinema/loaders"
    RETURN_TYPES = (KINEMA_MODEL,)
    RETURN_NAMES = ("model",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {"model": _combo(model_choices(), (
            f"A checkpoint file in {CHECKPOINTS_DIR} or a diffusers folder in "
            f"{DIFFUSERS_DIR}."))}}

    @classmethod
    def VALIDATE_INPUTS(cls, model: str) -> bool | str:
        # Checked here rather than as a plain combo so the error says where the file goes.
        if isinstance(model, str) and model and resolve_model(model) is not None:
            return True
        return (f"model {model!r} was not found: put {SINGLE_FILE_FAMILIES} checkpoints "
                f"(.safetensors, or .pth/.ckpt) in {CHECKPOINTS_DIR}, or diffusers folders of "
                f"{FOLDER_FAMILIES} in {DIFFUSERS_DIR}")

    @classmethod
    def IS_CHANGED(cls, model: str) -> str:
        return _stamp(resolve_model(model))

    def load(self, model: str) -> tuple[ModelBundle]:
        path = resolve_model(model)
        if path is None:
            raise ModelLoadError(self.VALIDATE_INPUTS(model))
        # diffusers loads when the node runs, not with the nodes (nodes/diffusion/__init__.py).
        from nodes.diffusion.loading import load_model

        return (load_model(path, model),)


class MotionAdapterLoader:
    """Loads an AnimateDiff motion adapter (v1-5, v2 or v3) from ``models/motion``."""

    DESCRIPTION = ("Loads an AnimateDiff motion adapter for SD 1.5 models from models/motion/: "
                   "an original motion module file (mm_sd_v15*.ckpt, v3_sd15_mm ...; "
                   ".safetensors or .ckpt) or a diffusers MotionAdapter folder. The version "
                   "(v1-5, v2, v3) is detected from the weights.")
    CATEGORY = "kinema/loaders"
    RETURN_TYPES = (KINEMA_MOTION,)
    RETURN_NAMES = ("motion",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {"motion_adapter": _combo(motion_choices(), (
            f"A motion module file or MotionAdapter folder in {MOTION_DIR}."))}}

    @classmethod
    def VALIDATE_INPUTS(cls, motion_adapter: str) -> bool | str:
        if isinstance(motion_adapter, str) and motion_adapter and (
                active_folders().model_path(MOTION, motion_adapter) is not None):
            return True
        return (f"motion adapter {motion_adapter!r} was not found: put AnimateDiff motion "
                f"modules (v1-5, v2, v3; .safetensors or .ckpt) or diffusers MotionAdapter "
                f"folders in {MOTION_DIR}")

    @classmethod
    def IS_CHANGED(cls, motion_adapter: str) -> str:
        return _stamp(active_folders().model_path(MOTION, motion_adapter))

    def load(self, motion_adapter: str) -> tuple[MotionModule]:
        path = active_folders().model_path(MOTION, motion_adapter)
        if path is None:
            raise ModelLoadError(self.VALIDATE_INPUTS(motion_adapter))
        # diffusers loads when the node runs, not with the nodes (nodes/diffusion/__init__.py).
        from nodes.diffusion.families.animatediff import load_motion_adapter

        return (load_motion_adapter(path, motion_adapter),)


NONE = "none"
# Input → (the model kinds it lists, in order; where the user puts the file). Checkpoints are
# listed for the diffusion model and VAE too: LTX-Video ships both in one file there.
COMPONENT_KINDS = {
    "diffusion_model": (("diffusion_models", CHECKPOINTS), DIFFUSION_MODELS_DIR),
    "text_encoder": (("text_encoders",), TEXT_ENCODERS_DIR),
    "vae": (("vae", CHECKPOINTS), VAE_DIR),
    "diffusion_model_2": (("diffusion_models",), DIFFUSION_MODELS_DIR),
    "clip_vision": (("clip_vision",), CLIP_VISION_DIR),
    "text_encoder_2": (("text_encoders",), TEXT_ENCODERS_DIR)}
OPTIONAL_COMPONENTS = ("diffusion_model_2", "clip_vision", "text_encoder_2")
# ComfyUI's UNETLoader names: fp8 keeps the diffusion model's weights in 8 bits (half the memory
# of bf16), each layer cast up to the compute dtype when it runs.
WEIGHT_DTYPES = ("default", "fp8_e4m3fn")


def _component_files(input_name: str) -> list[str]:
    folders = active_folders()
    kinds = COMPONENT_KINDS[input_name][0]
    return list(dict.fromkeys(name for kind in kinds for name in folders.model_files(kind)))


def _component_path(input_name: str, name: str) -> Path | None:
    folders = active_folders()
    for kind in COMPONENT_KINDS[input_name][0]:
        path = folders.model_path(kind, name)
        if path is not None and path.is_file():
            return path
    return None


class DiTModelLoader:
    """Loads a diffusion-transformer video model kept as ComfyUI keeps it: one file each for
    the diffusion model, its text encoder and its VAE."""

    DESCRIPTION = ("Loads a video diffusion transformer (Wan 2.1 / 2.2, LTX-Video, CogVideoX, "
                   "HunyuanVideo) from "
                   "ComfyUI's single files: the diffusion model from models/diffusion_models/ "
                   "(or unet/), its text encoder from models/text_encoders/ (or clip/) and its "
                   "VAE from models/vae/; original or ComfyUI layout, fp16/bf16/fp8/fp8-scaled. "
                   "The architecture is read from the weights. Wan 2.2 A14B: the high-noise "
                   "expert as diffusion_model, the low-noise one as diffusion_model_2. "
                   "HunyuanVideo: its Llama as text_encoder, CLIP-L as text_encoder_2. Diffusers "
                   "folders load with Load Model (Kinema).")
    CATEGORY = "kinema/loaders"
    RETURN_TYPES = (KINEMA_MODEL,)
    RETURN_NAMES = ("model",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        def files(input_name: str, tooltip: str) -> tuple:
            return _combo(_component_files(input_name),
                          f"{tooltip} A file in {COMPONENT_KINDS[input_name][1]}.")

        second = [NONE, *_component_files("diffusion_model_2")]
        vision = [NONE, *_component_files("clip_vision")]
        encoders = [NONE, *_component_files("text_encoder_2")]
        return {"required": {
            "diffusion_model": files("diffusion_model", "The diffusion transformer (Wan 2.2 "
                                     "A14B: the high-noise expert)."),
            "text_encoder": files("text_encoder", "Its text encoder (Wan: umt5_xxl_*; "
                                  "LTX-Video: t5xxl_*)."),
            "vae": files("vae", "Its VAE (Wan 2.1 and Wan 2.2 A14B: wan_2.1_vae; LTX-Video: "
                         "its checkpoint again)."),
        }, "optional": {
            "diffusion_model_2": (second, {"default": NONE, "tooltip": (
                "Wan 2.2 A14B's low-noise expert, taking over from the first at its boundary "
                "(t = 875 for text-to-video); none for single-model families.")}),
            "weight_dtype": (list(WEIGHT_DTYPES), {"default": "default", "tooltip": (
                "How the diffusion model's weights are stored: default (the compute dtype: "
                "bf16 on a GPU that has it, else fp16), or fp8_e4m3fn (half of bf16's memory; "
                "computed in the compute dtype layer by layer; slightly different frames).")}),
            "clip_vision": (vision, {"default": NONE, "tooltip": (
                f"Wan 2.1 image-to-video: the CLIP vision encoder (clip_vision_h) in "
                f"{CLIP_VISION_DIR}; none otherwise.")}),
            "text_encoder_2": (encoders, {"default": NONE, "tooltip": (
                f"HunyuanVideo: CLIP-L (clip_l) in {TEXT_ENCODERS_DIR}, beside its Llama "
                "(llava_llama3_*) as text_encoder; none for single-encoder families.")}),
        }}

    @classmethod
    def VALIDATE_INPUTS(cls, diffusion_model: str, text_encoder: str, vae: str,
                        diffusion_model_2: str = NONE, clip_vision: str = NONE,
                        weight_dtype: str = "default", text_encoder_2: str = NONE) -> bool | str:
        chosen = {"diffusion_model": diffusion_model, "text_encoder": text_encoder, "vae": vae,
                  "diffusion_model_2": diffusion_model_2, "clip_vision": clip_vision,
                  "text_encoder_2": text_encoder_2}
        for input_name, name in chosen.items():
            if input_name in OPTIONAL_COMPONENTS and name == NONE:
                continue
            if not (isinstance(name, str) and name and _component_path(input_name, name)):
                return (f"{input_name} {name!r} was not found: put it in "
                        f"{COMPONENT_KINDS[input_name][1]}")
        return True

    @classmethod
    def IS_CHANGED(cls, diffusion_model: str, text_encoder: str, vae: str,
                   diffusion_model_2: str = NONE, clip_vision: str = NONE,
                   weight_dtype: str = "default", text_encoder_2: str = NONE) -> str:
        chosen = {"diffusion_model": diffusion_model, "text_encoder": text_encoder, "vae": vae,
                  "diffusion_model_2": diffusion_model_2, "clip_vision": clip_vision,
                  "text_encoder_2": text_encoder_2}
        return "|".join(_stamp(_component_path(k, v)) for k, v in chosen.items() if v != NONE)

    def load(self, diffusion_model: str, text_encoder: str, vae: str,
             diffusion_model_2: str = NONE, clip_vision: str = NONE,
             weight_dtype: str = "default", text_encoder_2: str = NONE) -> tuple[ModelBundle]:
        problem = self.VALIDATE_INPUTS(diffusion_model, text_encoder, vae, diffusion_model_2,
                                       clip_vision, text_encoder_2=text_encoder_2)
        if problem is not True:
            raise ModelLoadError(problem)
        names = (diffusion_model, text_encoder, vae, diffusion_model_2, clip_vision,
                 text_encoder_2)
        paths = [None if name == NONE else _component_path(input_name, name)
                 for input_name, name in zip(COMPONENT_KINDS, names, strict=True)]
        # diffusers loads when the node runs, not with the nodes (nodes/diffusion/__init__.py).
        from nodes.diffusion.loading import load_component_model

        return (load_component_model(*paths, names, fp8_storage=weight_dtype == "fp8_e4m3fn"),)


NODE_CLASS_MAPPINGS = {
    "KinemaModelLoader": KinemaModelLoader,
    "MotionAdapterLoader": MotionAdapterLoader,
    "DiTModelLoader": DiTModelLoader,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "KinemaModelLoader": "Load Model (Kinema)",
    "MotionAdapterLoader": "Load Motion Adapter (AnimateDiff)",
    "DiTModelLoader": "Load DiT Video Model (Wan, LTX, CogVideoX ...)",
}
