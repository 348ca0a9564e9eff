"""Loading models from ``models/``, fully offline: diffusers folders, single-file SD
checkpoints in the original (LDM) layout, and AnimateDiff motion adapters.

Single files get their configuration from ``nodes/diffusion/configs/<family>/`` (or from a
``<stem>.config/`` sidecar beside them) and are built component by component with diffusers'
own ``from_single_file`` conversions, so the weights end up exactly where diffusers puts them.
Nothing is ever fetched from a hub: every call passes ``local_files_only=True``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import diffusers
import torch
from diffusers import AutoencoderKL, MotionAdapter, StableDiffusionPipeline, UNet2DConditionModel
from diffusers.loaders.single_file_utils import create_diffusers_clip_model_from_ldm
from transformers import CLIPTextModel, CLIPTokenizer

from engine.folders import active_folders
from nodes.diffusion.bundle import ModelBundle, MotionModule
from nodes.diffusion.device import inference_device, inference_dtype
from nodes.diffusion.families import (
    CHECKPOINTS_DIR,
    DIFFUSERS_DIR,
    FOLDER_FAMILIES,
    MOTION_DIR,
    SIDECAR_SUFFIX,
    TOKENIZER_DIR,
    TOKENIZER_NAME,
    ModelLoadError,
    adapter_version,
    checkpoint_family,
    component_root,
    folder_family,
    motion_config,
    motion_version,
    read_json,
    shipped_config,
    sidecar_for,
)
from nodes.diffusion.weights import (
    StateDict,
    check_fully_loaded,
    dequantize_fp8,
    read_state_dict,
    shapes_of,
)

SD_PIPELINES = frozenset({"StableDiffusionPipeline", "StableDiffusionImg2ImgPipeline"})
TOKENIZER_FILES = ("vocab.json", "merges.txt")
# Tokenizer settings a family fixes whatever vocabulary folder they come with (SD 2.x pads
# with "!", SD 1.x with the end token; both read 77 tokens).
TOKENIZER_SETTINGS = ("model_max_length", "pad_token", "bos_token", "eos_token", "unk_token",
                      "do_lower_case")


def load_model(path: Path, name: str) -> ModelBundle:
    """A diffusers folder or a single-file checkpoint → a ModelBundle on the inference device."""
    device = inference_device()
    dtype = inference_dtype(device)
    if path.is_dir():
        pipe, family = _load_folder(path, name, dtype)
        details: dict[str, Any] = {"format": "diffusers", "path": str(path)}
    elif path.is_file():
        pipe, family = _load_single_file(path, name, dtype)
        details = {"format": "single-file", "path": str(path)}
    else:
        raise ModelLoadError(f"{name} was not found: put single-file checkpoints in "
                             f"{CHECKPOINTS_DIR} and diffusers folders in {DIFFUSERS_DIR}")
    pipe.to(device)
    # Progress goes through the engine's hook, not tqdm on the server's stdout.
    pipe.set_progress_bar_config(disable=True)
    return ModelBundle(family, pipe, name, device, dtype, details)


def _load_folder(folder: Path, name: str, dtype: torch.dtype) -> tuple[Any, str]:
    if not (folder / "model_index.json").is_file():
        raise ModelLoadError(f"{name} is a folder without model_index.json: expected a diffusers "
                             f"pipeline folder of {FOLDER_FAMILIES} in {DIFFUSERS_DIR}")
    family, class_name = folder_family(folder)
    kwargs: dict[str, Any] = {}
    if class_name in SD_PIPELINES:
        # One class for every SD folder (img2img is built from its components when needed);
        # the safety checker is never loaded.
        pipeline_cls: Any = StableDiffusionPipeline
        kwargs = {"safety_checker": None, "feature_extractor": None,
                  "requires_safety_checker": False}
    else:
        pipeline_cls = getattr(diffusers, class_name)
    try:
        pipe = pipeline_cls.from_pretrained(str(folder), local_files_only=True, dtype=dtype,
                                            **kwargs)
    except Exception as exc:
        raise ModelLoadError(
            f"{name}: the diffusers folder could not be loaded ({type(exc).__name__}: {exc}). "
            f"Expected a complete {class_name} folder (model_index.json, and each component's "
            f"config and weights) in {DIFFUSERS_DIR}.") from exc
    return pipe, family


def _load_single_file(path: Path, name: str, dtype: torch.dtype) -> tuple[Any, str]:
    state = dequantize_fp8(read_state_dict(path, CHECKPOINTS_DIR), dtype)
    family = checkpoint_family(name, shapes_of(state))
    sidecar = sidecar_for(path)
    hint = (f"A fine-tune whose shapes differ from {family}'s needs its diffusers configs in a "
            f"sidecar folder {path.stem}{SIDECAR_SUFFIX}/ next to it.")
    try:
        components = _single_file_components(state, family, sidecar, name, dtype, hint)
    except ModelLoadError:
        raise
    except Exception as exc:
        raise ModelLoadError(f"{name}: the {family} checkpoint does not fit its configuration "
                             f"({_first_sentence(exc)}). {hint}") from exc
    pipe = StableDiffusionPipeline(**components, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    return pipe, family


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
            "scheduler": _scheduler(component_root("scheduler", family, sidecar))}


def _scheduler(root: Path) -> Any:
    config = read_json(root / "scheduler" / "scheduler_config.json")
    cls = getattr(diffusers, str(config.get("_class_name")), None)
    if not (isinstance(cls, type) and issubclass(cls, diffusers.SchedulerMixin)):
        raise ModelLoadError(f"{root / 'scheduler'}: unknown scheduler "
                             f"{config.get('_class_name')!r}")
    return cls.from_pretrained(str(root), subfolder="scheduler", local_files_only=True)


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


def load_motion_adapter(path: Path, name: str) -> MotionModule:
    """An AnimateDiff motion adapter (diffusers folder or original single file) → MotionModule."""
    device = inference_device()
    dtype = inference_dtype(device)
    if path.is_dir():
        adapter, version = _motion_folder(path, name, dtype)
    elif path.is_file():
        adapter, version = _motion_file(path, name, dtype)
    else:
        raise ModelLoadError(f"{name} was not found: put AnimateDiff motion modules (files or "
                             f"diffusers MotionAdapter folders) in {MOTION_DIR}")
    return MotionModule(adapter.to(device), version, name)


def _motion_folder(folder: Path, name: str, dtype: torch.dtype) -> tuple[Any, str]:
    config = read_json(folder / "config.json")
    if config.get("_class_name") != "MotionAdapter":
        raise ModelLoadError(f"{name}: config.json describes a {config.get('_class_name')}, "
                             f"not a MotionAdapter; expected an AnimateDiff adapter in "
                             f"{MOTION_DIR}")
    try:
        adapter = MotionAdapter.from_pretrained(str(folder), local_files_only=True, dtype=dtype)
    except Exception as exc:
        raise ModelLoadError(f"{name}: the MotionAdapter folder could not be loaded "
                             f"({type(exc).__name__}: {exc}). Expected config.json and "
                             f"complete weights in {MOTION_DIR}{name}/.") from exc
    return adapter, adapter_version(config)


def _motion_file(path: Path, name: str, dtype: torch.dtype) -> tuple[Any, str]:
    state = read_state_dict(path, MOTION_DIR)
    version = motion_version(name, shapes_of(state))
    sidecar = sidecar_for(path)
    root = sidecar if sidecar and (sidecar / "config.json").is_file() else motion_config(version)
    hint = (f"An adapter whose shapes differ from AnimateDiff {version}'s needs its config.json "
            f"in a sidecar folder {path.stem}{SIDECAR_SUFFIX}/ next to it.")
    try:
        adapter = MotionAdapter.from_single_file(state, config=str(root), local_files_only=True,
                                                 dtype=dtype)
    except Exception as exc:
        raise ModelLoadError(f"{name}: the motion module does not fit the AnimateDiff {version} "
                             f"configuration ({_first_sentence(exc)}). {hint}") from exc
    check_fully_loaded(adapter, "motion module", name, hint)
    return adapter, version


def _first_sentence(exc: Exception) -> str:
    """diffusers' shape errors go on with advice for its own API; keep what went wrong."""
    text = " ".join(str(exc).split())
    cut = text.find(". ")
    return f"{type(exc).__name__}: {text[:cut + 1] if cut > 0 else text}"
