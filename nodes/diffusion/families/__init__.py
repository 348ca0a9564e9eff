"""Kinema's model families, one module each, behind the contract in ``base.py``.

This package is heavy (its modules import diffusers): the worker modules import it when a
generation node runs, never the node declarations (``nodes/diffusion/__init__.py``).
"""

from __future__ import annotations

from pathlib import Path

from nodes.diffusion.bundle import ModelBundle
from nodes.diffusion.families import animatediff, cogvideox, hunyuan, ltx, modelscope, sd, svd, wan
from nodes.diffusion.families.base import Family, Shapes
from nodes.diffusion.model_files import (
    CHECKPOINTS_DIR,
    DIFFUSERS_DIR,
    FOLDER_FAMILIES,
    MOTION_DIR,
    SINGLE_FILE_FAMILIES,
    ModelLoadError,
    read_json,
)

# Asked in this order: a family that refuses a file it recognises (SVD's single files, motion
# modules) comes before one whose keys it shares.
FAMILIES: tuple[Family, ...] = (svd.FAMILY, animatediff.FAMILY, sd.FAMILY, modelscope.FAMILY,
                                wan.FAMILY, cogvideox.FAMILY, ltx.FAMILY, hunyuan.FAMILY)
_BY_NAME = {name: family for family in FAMILIES for name in family.names}
_BY_PIPELINE = {cls: family for family in FAMILIES for cls in family.pipelines}


def family_of(model: ModelBundle) -> Family:
    """The family module that runs a loaded model."""
    return family_named(model.family)


def family_named(name: str) -> Family:
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ValueError(f"no model family named {name!r}; Kinema runs "
                         f"{', '.join(_BY_NAME)}") from None


def folder_family(folder: Path) -> tuple[Family, str, str]:
    """(family module, family name, pipeline class) of a diffusers folder, from model_index.json."""
    index = read_json(folder / "model_index.json")
    class_name = str(index.get("_class_name", ""))
    family = _BY_PIPELINE.get(class_name)
    if family is None:
        raise ModelLoadError(
            f"{folder.name}: diffusers pipeline {class_name or '(none)'} is not a family Kinema "
            f"runs. Supported: {FOLDER_FAMILIES} ({', '.join(_BY_PIPELINE)}).")
    return family, family.folder_family(folder, class_name), class_name


def checkpoint_family(name: str, shapes: Shapes) -> tuple[Family, str]:
    """(family module, family name) of a single file from its keys; a clear error otherwise."""
    for family in FAMILIES:
        found = family.recognise(name, shapes)
        if found is not None:
            return family, found
    raise ModelLoadError(
        f"{name} holds no weights of a known family (found keys like "
        f"{', '.join(sorted(shapes)[:3]) or 'none'}). Expected {SINGLE_FILE_FAMILIES} "
        f"(.safetensors, or .pth/.ckpt) in {CHECKPOINTS_DIR}, a diffusers folder of "
        f"{FOLDER_FAMILIES} in {DIFFUSERS_DIR}, or an AnimateDiff motion module in {MOTION_DIR}.")
