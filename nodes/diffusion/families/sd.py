"""Stable Diffusion 1.x and 2.x: the keyframe generator's text-to-image models.

Single files in the original (LDM) layout get their configuration from
``nodes/diffusion/configs/<family>/`` (or a ``<stem>.config/`` sidecar beside them) and are
built component by component with diffusers' own ``from_single_file`` conversions. An SD 1.x
model with a motion adapter is animated by AnimateDiff (``animatediff.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel
from diffusers.loaders.single_file_utils import create_diffusers_clip_model_from_ldm
from transformers import CLIPTextModel, CLIPTokenizer

from engine.folders import active_folders
from nodes.diffusion.bundle import SD1, SD2, Conditioning, ModelBundle, MotionModule
from nodes.diffusion.families import animatediff
from nodes.diffusion.families.base import (
    Family,
    Shapes,
    VideoLatents,
    VideoSettings,
    first_sentence,
    key_prefixes,
    scheduler_from,
)
from nodes.diffusion.model_files import (
    CHECKPOINTS_DIR,
    SIDECAR_SUFFIX,
    SINGLE_FILE_FAMILIES,
    TOKENIZER_DIR,
    TOKENIZER_NAME,
    ModelLoadError,
    component_root,
    read_json,
    shipped_config,
    sidecar_for,
)
from nodes.diffusion.weights import StateDict, check_fully_loaded

# Key names of the original layouts.
LDM_UNET = "model.diffusion_model."
LDM_UNET_INPUT = LDM_UNET + "input_blocks.0.0.weight"
LDM_CLIP = "cond_stage_model.transformer."  # SD 1.x: OpenAI CLIP ViT-L/14 (transformers layout)
LDM_OPEN_CLIP = "cond_stage_model.model."  # SD 2.x: OpenCLIP ViT-H/14
SGM_CONDITIONER = "conditioner.embedders."  # SDXL and SVD (generative-models layout)

TOKENIZER_FILES = ("vocab.json", "merges.txt")
# Tokenizer settings a family fixes whatever vocabulary folder they come with (SD 2.x pads
# with "!", SD 1.x with the end token; both read 77 tokens).
TOKENIZER_SETTINGS = ("model_max_length", "pad_token", "bos_token", "eos_token", "unk_token",
                      "do_lower_case")


def sd_family_from_unet(unet_config: dict[str, Any]) -> str:
    """SD 2.x conditions on 1024-wide OpenCLIP embeddings; everything else SD-shaped is 1.x."""
    return SD2 if unet_config.get("cross_attention_dim") == 1024 else SD1


class StableDiffusion(Family):
    names = (SD1, SD2)
    pipelines = {"StableDiffusionPipeline": SD1, "StableDiffusionImg2ImgPipeline": SD1}
    makes_images = True

    def recognise(self, name: str, shapes: Shapes) -> str | None:
        has = key_prefixes(shapes)
        if has(SGM_CONDITIONER):
            raise ModelLoadError(f"{name} looks like an SDXL checkpoint, which Kinema does not "
                                 f"run; expected {SINGLE_FILE_FAMILIES}.")
        if LDM_UNET_INPUT not in shapes:
            return None
        first_conv = shapes[LDM_UNET_INPUT]
        if len(first_conv) == 4 and first_conv[1] != 4:
            raise ModelLoadError(f"{name} has a {first_conv[1]}-channel UNet input (an inpainting "
                                 f"or instruct model); expected a 4-channel text-to-image model.")
        if has(LDM_CLIP):
            return SD1
        if has(LDM_OPEN_CLIP):
            return SD2
        raise ModelLoadError(
            f"{name} has a UNet but no text encoder ({LDM_CLIP}* for SD 1.x, {LDM_OPEN_CLIP}* "
            f"for SD 2.x); expected a full {SINGLE_FILE_FAMILIES} checkpoint in {CHECKPOINTS_DIR}.")

    def folder_family(self, folder: Path, class_name: str) -> str:
        return sd_family_from_unet(read_json(folder / "unet" / "config.json"))

    def folder_pipeline(self, class_name: str) -> tuple[Any, dict[str, Any]]:
        # One class for every SD folder (img2img is built from its components when needed);
        # the safety checker is never loaded.
        return StableDiffusionPipeline, {"safety_checker": None, "feature_extractor": None,
                                         "requires_safety_checker": False}

    def load_single_file(self, path: Path, state: StateDict, family: str, name: str,
                         dtype: torch.dtype) -> Any:
        sidecar = sidecar_for(path)
        hint = (f"A fine-tune whose shapes differ from {family}'s needs its diffusers configs in "
                f"a sidecar folder {path.stem}{SIDECAR_SUFFIX}/ next to it.")
        try:
            components = _single_file_components(state, family, sidecar, name, dtype, hint)
        except ModelLoadError:
            raise
        except Exception as exc:
            raise ModelLoadError(f"{name}: the {family} checkpoint does not fit its "
                                 f"configuration ({first_sentence(exc)}). {hint}") from exc
        return StableDiffusionPipeline(**components, safety_checker=None,
                                       feature_extractor=None, requires_safety_checker=False)

    def video_pipeline(self, model: ModelBundle, motion: MotionModule | None,
                       scheduler: str) -> Any:
        if model.family != SD1 or motion is None:
            return super().video_pipeline(model, motion, scheduler)
        return animatediff.animatediff_pipeline(model, motion, scheduler)

    def window(self, pipe: Any) -> int | None:
        return animatediff.FAMILY.window(pipe)

    def context_windows(self, pipe: Any, s: VideoSettings) -> Any:
        return animatediff.FAMILY.context_windows(pipe, s)

    def denoise(self, model: ModelBundle, s: VideoSettings, conditioning: Conditioning | None,
                motion: MotionModule | None, keyframe: torch.Tensor | None) -> VideoLatents:
        if model.family == SD1 and motion is None:
            raise ValueError(f"{model.source} is a Stable Diffusion 1.x model: connect a motion "
                             "adapter (MotionAdapterLoader) to animate it with AnimateDiff")
        pipe = self.video_pipeline(model, motion, s.scheduler)
        return animatediff.denoise_with(self, pipe, model, s, conditioning, keyframe)


def _single_file_components(state: StateDict, family: str, sidecar: Path | None, name: str,
                            dtype: torch.dtype, hint: str) -> dict[str, Any]:
    """UNet, VAE, text encoder, tokenizer and scheduler of one SD checkpoint, in diffusers form."""
    common = {"local_files_only": True, "dtype": dtype}
    unet = UNet2DConditionModel.from_single_file(
        state, config=str(component_root("unet", family, sidecar)), subfolder="unet", **common)
    vae = AutoencoderKL.from_single_file(
        state, config=str(component_root("vae", family, sidecar)), subfolder="vae", **common)
    text_encoder = create_diffusers_clip_model_from_ldm(
        CLIPTextModel, state, config=str(component_root("text_encoder", family, sidecar)),
        subfolder="text_encoder", local_files_only=True, torch_dtype=dtype)
    for what, module in (("UNet", unet), ("VAE", vae), ("text encoder", text_encoder)):
        check_fully_loaded(module, what, name, hint)
    return {"unet": unet, "vae": vae, "text_encoder": text_encoder,
            "tokenizer": load_tokenizer(family, sidecar, name),
            "scheduler": scheduler_from(component_root("scheduler", family, sidecar))}


def load_tokenizer(family: str, sidecar: Path | None, name: str) -> CLIPTokenizer:
    """The CLIP tokenizer of a single-file model.

    No installable package ships CLIP's BPE vocabulary, and Kinema fetches nothing, so the
    files come from the user: a complete tokenizer in the sidecar (used as is), or the shared
    ``models/text_encoders/clip-tokenizer/`` folder (vocab.json + merges.txt, the same for SD
    1.x and 2.x), to which the family's own settings (padding token, length) are applied.
    """
    shipped = shipped_config(family) / "tokenizer"
    for folder in ([sidecar / "tokenizer"] if sidecar else []) + [shipped]:
        if _has_vocabulary(folder):
            return CLIPTokenizer.from_pretrained(str(folder), local_files_only=True)
    shared = active_folders().model_path("text_encoders", TOKENIZER_NAME)
    if shared is not None:
        settings = read_json(shipped / "tokenizer_config.json")
        overrides = {k: settings[k] for k in TOKENIZER_SETTINGS if k in settings}
        for folder in (shared, shared / "tokenizer"):
            if _has_vocabulary(folder):
                return CLIPTokenizer.from_pretrained(str(folder), local_files_only=True,
                                                     **overrides)
    raise ModelLoadError(
        f"{name} needs the CLIP tokenizer files, which Kinema cannot ship or download: put "
        f"vocab.json and merges.txt (or tokenizer.json) in {TOKENIZER_DIR} (copy them from the "
        f"tokenizer/ folder "
        f"of any Stable Diffusion diffusers model, or from openai/clip-vit-large-patch14), "
        f"or a complete tokenizer/ in the sidecar folder {Path(name).stem}{SIDECAR_SUFFIX}/.")


def _has_vocabulary(folder: Path) -> bool:
    """vocab.json + merges.txt (the slow format), or tokenizer.json (what transformers 5 saves)."""
    return (folder / "tokenizer.json").is_file() or all(
        (folder / f).is_file() for f in TOKENIZER_FILES)


FAMILY = StableDiffusion()
