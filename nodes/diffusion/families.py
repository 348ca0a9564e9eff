"""Which family a model belongs to, told from its weights' keys or its diffusers config, and
where each family's configuration lives (shipped with Kinema, or a sidecar next to the file).

Nothing here loads weights: detection reads key names and shapes only, so a foreign file is
refused before any model is built.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nodes.diffusion.bundle import ANIMATEDIFF, MODELSCOPE, SD1, SD2, SVD

CONFIGS = Path(__file__).resolve().parent / "configs"
SIDECAR_SUFFIX = ".config"

# Where users put things (relative to the models folder): said in every error message.
CHECKPOINTS_DIR = "models/checkpoints/"
DIFFUSERS_DIR = "models/diffusers/<name>/"
MOTION_DIR = "models/motion/"
TOKENIZER_NAME = "clip-tokenizer"
TOKENIZER_DIR = f"models/text_encoders/{TOKENIZER_NAME}/"

SINGLE_FILE_FAMILIES = "Stable Diffusion 1.x (sd1) or 2.x (sd2) in the original (LDM) key layout"
FOLDER_FAMILIES = ("Stable Diffusion 1.x/2.x, ModelScope/Zeroscope text-to-video, AnimateDiff, "
                   "Stable Video Diffusion (SVD, SVD-XT)")

# diffusers pipeline class (model_index.json's _class_name) → family; SD's is told by its UNet.
PIPELINE_FAMILIES: dict[str, str | None] = {
    "StableDiffusionPipeline": None,
    "StableDiffusionImg2ImgPipeline": None,
    "TextToVideoSDPipeline": MODELSCOPE,
    "VideoToVideoSDPipeline": MODELSCOPE,
    "AnimateDiffPipeline": ANIMATEDIFF,
    "StableVideoDiffusionPipeline": SVD,
}

MOTION_VERSIONS = ("v1-5", "v2", "v3")

# Key names of the original layouts.
LDM_UNET = "model.diffusion_model."
LDM_VAE = "first_stage_model."
LDM_CLIP = "cond_stage_model.transformer."  # SD 1.x: OpenAI CLIP ViT-L/14 (transformers layout)
LDM_OPEN_CLIP = "cond_stage_model.model."  # SD 2.x: OpenCLIP ViT-H/14
SGM_CONDITIONER = "conditioner.embedders."  # SDXL and SVD (generative-models layout)
MOTION_PE = ("down_blocks.0.motion_modules.0.temporal_transformer.transformer_blocks.0."
             "attention_blocks.0.pos_encoder.pe")
MOTION_MID = "mid_block.motion_modules.0.temporal_transformer.norm.bias"
DIFFUSERS_MOTION_NORM = "down_blocks.0.motion_modules.0.norm.weight"
DIFFUSERS_MOTION_PE = "down_blocks.0.motion_modules.0.transformer_blocks.0.pos_embed.pe"
DIFFUSERS_MOTION_MID = "mid_block.motion_modules.0.norm.bias"


class ModelLoadError(Exception):
    """A model could not be loaded; the message says what was expected and where it goes."""


def sd_family_from_unet(unet_config: Mapping[str, Any]) -> str:
    """SD 2.x conditions on 1024-wide OpenCLIP embeddings; everything else SD-shaped is 1.x."""
    return SD2 if unet_config.get("cross_attention_dim") == 1024 else SD1


def folder_family(folder: Path) -> tuple[str, str]:
    """(family, pipeline class name) of a diffusers folder, from its model_index.json."""
    index = read_json(folder / "model_index.json")
    class_name = str(index.get("_class_name", ""))
    if class_name not in PIPELINE_FAMILIES:
        raise ModelLoadError(
            f"{folder.name}: diffusers pipeline {class_name or '(none)'} is not a family Kinema "
            f"runs. Supported: {FOLDER_FAMILIES} ({', '.join(PIPELINE_FAMILIES)}).")
    family = PIPELINE_FAMILIES[class_name]
    if family is None:
        family = sd_family_from_unet(read_json(folder / "unet" / "config.json"))
    return family, class_name


def checkpoint_family(name: str, shapes: Mapping[str, tuple[int, ...]]) -> str:
    """The family of a single-file checkpoint from its keys; a clear error for any other file."""
    has = _prefix_test(shapes)
    if has(SGM_CONDITIONER) and any(".time_stack." in k for k in shapes):
        raise ModelLoadError(
            f"{name} is a Stable Video Diffusion checkpoint. diffusers cannot build SVD from a "
            f"single file, so Kinema loads SVD only as a diffusers folder: put the "
            f"stable-video-diffusion-img2vid(-xt) folder (model_index.json, unet/, vae/, "
            f"image_encoder/, scheduler/, feature_extractor/) in {DIFFUSERS_DIR}.")
    if any(".motion_modules." in k for k in shapes):
        raise ModelLoadError(
            f"{name} is an AnimateDiff motion module, not a checkpoint: put it in {MOTION_DIR} "
            f"and load it with the Motion Adapter Loader.")
    if has(SGM_CONDITIONER):
        raise ModelLoadError(f"{name} looks like an SDXL checkpoint, which Kinema does not run; "
                             f"expected {SINGLE_FILE_FAMILIES}.")
    if has(LDM_UNET):
        first_conv = shapes.get(LDM_UNET + "input_blocks.0.0.weight")
        if first_conv is not None and len(first_conv) == 4 and first_conv[1] != 4:
            raise ModelLoadError(f"{name} has a {first_conv[1]}-channel UNet input (an inpainting "
                                 f"or instruct model); expected a 4-channel text-to-image model.")
        if has(LDM_CLIP):
            return SD1
        if has(LDM_OPEN_CLIP):
            return SD2
        raise ModelLoadError(
            f"{name} has a UNet but no text encoder ({LDM_CLIP}* for SD 1.x, {LDM_OPEN_CLIP}* "
            f"for SD 2.x); expected a full {SINGLE_FILE_FAMILIES} checkpoint in {CHECKPOINTS_DIR}.")
    raise ModelLoadError(
        f"{name} holds no weights of a known family (found keys like "
        f"{', '.join(sorted(shapes)[:3]) or 'none'}). Expected {SINGLE_FILE_FAMILIES} "
        f"(.safetensors, or .pth/.ckpt) in {CHECKPOINTS_DIR}, a diffusers folder of "
        f"{FOLDER_FAMILIES} in {DIFFUSERS_DIR}, or an AnimateDiff motion module in {MOTION_DIR}.")


def motion_version(name: str, shapes: Mapping[str, tuple[int, ...]]) -> str:
    """AnimateDiff v1-5 / v2 / v3 from a motion module's keys, as diffusers tells them apart:
    v2 has a mid-block motion module; v1-5 none and 24-frame position encodings; v3 none and 32.

    Files already in diffusers' layout (e.g. distilled adapters) are told the same way.
    """
    if MOTION_PE in shapes:
        pe, mid = shapes[MOTION_PE], MOTION_MID in shapes
    elif DIFFUSERS_MOTION_NORM in shapes:
        pe = shapes.get(DIFFUSERS_MOTION_PE, (1, 32))
        mid = DIFFUSERS_MOTION_MID in shapes
    else:
        raise ModelLoadError(
            f"{name} is not an AnimateDiff motion module (none of its keys are motion modules). "
            f"Expected an SD 1.5 motion module (v1-5, v2 or v3, e.g. mm_sd_v15_v2.ckpt or "
            f"v3_sd15_mm.safetensors) in {MOTION_DIR}, or a diffusers MotionAdapter folder "
            f"(config.json + weights) there.")
    if mid:
        return "v2"
    return "v1-5" if len(pe) >= 2 and pe[1] == 24 else "v3"


def adapter_version(config: Mapping[str, Any]) -> str:
    """The same, from a diffusers MotionAdapter config."""
    if config.get("use_motion_mid_block", True):
        return "v2"
    return "v1-5" if config.get("motion_max_seq_length") == 24 else "v3"


def sidecar_for(path: Path) -> Path | None:
    """``<stem>.config/`` next to a single file: its configuration overrides the shipped one."""
    folder = path.with_name(path.stem + SIDECAR_SUFFIX)
    return folder if folder.is_dir() else None


def is_sidecar(path: Path) -> bool:
    """Whether a folder is the sidecar config of a weights file beside it (not a model)."""
    if not path.name.endswith(SIDECAR_SUFFIX):
        return False
    stem = path.name[: -len(SIDECAR_SUFFIX)]
    return any(p.is_file() and p.stem == stem for p in path.parent.iterdir())


def shipped_config(family: str) -> Path:
    return CONFIGS / family


def motion_config(version: str) -> Path:
    return CONFIGS / "animatediff" / version


def component_root(component: str, family: str, sidecar: Path | None) -> Path:
    """The config folder that describes one component: the sidecar's, else Kinema's own.

    Per component, so a sidecar may override just one part (say, a scheduler config for a
    v-prediction fine-tune) and take the rest from the shipped family config.
    """
    for root in (sidecar, shipped_config(family)):
        if root is not None and (root / component).is_dir():
            return root
    raise ModelLoadError(f"no configuration for the {component} of a {family} model: expected "
                         f"{shipped_config(family) / component} or a sidecar "
                         f"<checkpoint stem>{SIDECAR_SUFFIX}/{component}/")


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelLoadError(f"{path} is missing") from None
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{path} is not readable JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path} should hold a JSON object")
    return data


def _prefix_test(shapes: Mapping[str, Any]):
    prefixes = {k.split(".", 1)[0] for k in shapes}

    def has(prefix: str) -> bool:
        head = prefix.split(".", 1)[0]
        return head in prefixes and any(k.startswith(prefix) for k in shapes)

    return has
