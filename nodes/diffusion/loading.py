"""Loading models from ``models/``, fully offline: a diffusers folder or a single file goes to
the family that recognises it (``families/``), which builds its pipeline.

Nothing is ever fetched from a hub: every diffusers call passes ``local_files_only=True``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from nodes.diffusion.bundle import FP8_STORAGE, ModelBundle
from nodes.diffusion.device import inference_device, inference_dtype
from nodes.diffusion.families import checkpoint_family, folder_family
from nodes.diffusion.families.base import ComponentFile
from nodes.diffusion.model_files import (
    CHECKPOINTS_DIR,
    CLIP_VISION_DIR,
    DIFFUSERS_DIR,
    DIFFUSION_MODELS_DIR,
    FOLDER_FAMILIES,
    TEXT_ENCODERS_DIR,
    VAE_DIR,
    ModelLoadError,
)
from nodes.diffusion.placement import place
from nodes.diffusion.weights import StateDict, dequantize_fp8, read_state_dict, shapes_of


def load_model(path: Path, name: str) -> ModelBundle:
    """A diffusers folder or a single-file checkpoint → a ModelBundle on the inference device."""
    device = inference_device()
    details: dict[str, Any] = {"path": str(path)}
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise ModelLoadError(f"{name} is a folder without model_index.json: expected a "
                                 f"diffusers pipeline folder of {FOLDER_FAMILIES} in "
                                 f"{DIFFUSERS_DIR}")
        family, name_of_family, class_name = folder_family(path)
        dtype = inference_dtype(device, family.prefers_bf16)
        pipe = family.load_folder(path, name, class_name, dtype)
        details["format"] = "diffusers"
    elif path.is_file():
        state = read_state_dict(path, CHECKPOINTS_DIR)
        family, name_of_family = checkpoint_family(name, shapes_of(state))
        dtype = inference_dtype(device, family.prefers_bf16)
        pipe = family.load_single_file(path, dequantize_fp8(state, dtype), name_of_family, name,
                                       dtype)
        details["format"] = "single-file"
    else:
        raise ModelLoadError(f"{name} was not found: put single-file checkpoints in "
                             f"{CHECKPOINTS_DIR} and diffusers folders in {DIFFUSERS_DIR}")
    if family.offloads:
        details["placement"] = place(pipe, device).reason
    else:  # AnimateDiff's motion UNet shares the UNet's weights, not its offload hooks
        pipe.to(device)
    # Progress goes through the engine's hook, not tqdm on the server's stdout.
    pipe.set_progress_bar_config(disable=True)
    return ModelBundle(name_of_family, pipe, name, device, dtype, details)


def load_component_model(diffusion_model: Path, text_encoder: Path, vae: Path,
                         diffusion_model_2: Path | None, clip_vision: Path | None,
                         text_encoder_2: Path | None, names: tuple[str, ...],
                         fp8_storage: bool = False) -> ModelBundle:
    """A diffusion transformer kept as ComfyUI keeps it, one file per component, → a
    ModelBundle; ``names`` are the files' names as picked (for the messages). With
    ``fp8_storage`` the diffusion model(s) keep their weights in fp8, computed in ``dtype``."""
    device = inference_device()
    # Only the diffusion transformers come as one file per component.
    dtype = inference_dtype(device, prefer_bf16=True)
    paths = (diffusion_model, text_encoder, vae, diffusion_model_2, clip_vision, text_encoder_2)
    wheres = (DIFFUSION_MODELS_DIR, TEXT_ENCODERS_DIR, VAE_DIR, DIFFUSION_MODELS_DIR,
              CLIP_VISION_DIR, TEXT_ENCODERS_DIR)
    # LTX-Video's all-in-one file is both the diffusion model and the VAE: read it once.
    states: dict[Path, StateDict] = {}
    parts = []
    for path, where, name in zip(paths, wheres, names, strict=True):
        if path is not None and path not in states:
            states[path] = dequantize_fp8(read_state_dict(path, where), dtype)
        parts.append(None if path is None else ComponentFile(states[path], name))
    family, name_of_family = checkpoint_family(names[0], shapes_of(parts[0].state))
    pipe = family.load_parts(*parts[:4], dtype, clip_vision=parts[4], text_encoder_2=parts[5])
    if fp8_storage:
        for name, part in pipe.components.items():
            if name.startswith("transformer") and part is not None:
                part.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn,
                                              compute_dtype=dtype)
    details = {"format": "single files", "path": str(diffusion_model),
               "text_encoder": names[1], "vae": names[2], "placement": place(pipe, device).reason,
               FP8_STORAGE: fp8_storage}
    pipe.set_progress_bar_config(disable=True)
    return ModelBundle(name_of_family, pipe, names[0], device, dtype, details)
