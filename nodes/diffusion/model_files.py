"""Where model files go and where a family's configuration lives (shipped with Kinema, or a
sidecar next to the file); the error every loader raises.

A light module (``nodes/diffusion/__init__.py``): the loader nodes name these folders in their
tooltips and errors. Which family a file belongs to is each family's own business
(``nodes/diffusion/families/``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CONFIGS = Path(__file__).resolve().parent / "configs"
SIDECAR_SUFFIX = ".config"

# Where users put things (relative to the models folder): said in every error message.
CHECKPOINTS_DIR = "models/checkpoints/"
DIFFUSERS_DIR = "models/diffusers/<name>/"
MOTION_DIR = "models/motion/"
DIFFUSION_MODELS_DIR = "models/diffusion_models/"
TEXT_ENCODERS_DIR = "models/text_encoders/"
VAE_DIR = "models/vae/"
CLIP_VISION_DIR = "models/clip_vision/"
TOKENIZER_NAME = "clip-tokenizer"
TOKENIZER_DIR = f"models/text_encoders/{TOKENIZER_NAME}/"

SINGLE_FILE_FAMILIES = "Stable Diffusion 1.x (sd1) or 2.x (sd2) in the original (LDM) key layout"
FOLDER_FAMILIES = ("Stable Diffusion 1.x/2.x, ModelScope/Zeroscope text-to-video, AnimateDiff, "
                   "Stable Video Diffusion (SVD, SVD-XT), Wan 2.1/2.2, LTX-Video, CogVideoX, "
                   "HunyuanVideo")


class ModelLoadError(Exception):
    """A model could not be loaded; the message says what was expected and where it goes."""


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
