"""ComfyUI's ``extra_model_paths.yaml``: point Kinema at the model folders of an existing
ComfyUI (or A1111) install.

The file is read as ComfyUI reads it: each top-level section has an optional ``base_path``
(relative to the file's folder when not absolute, ``~`` expanded) and ``is_default`` (its
folders are searched first), and maps ComfyUI folder names (``checkpoints``, ``unet``,
``clip``, ``text_encoders``, ``vae`` ...) to one folder or several, one per line, relative to
``base_path``. ``custom_nodes`` folders are returned for the plugin loader.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from engine.folders import COMFY_KIND_NAMES, Folders

SECTION_KEYS = ("base_path", "is_default")


class ExtraModelPathsError(ValueError):
    """The file cannot be read as an extra_model_paths.yaml."""


def load_extra_model_paths(path: Path, folders: Folders) -> list[Path]:
    """Add the file's model folders to ``folders``; returns its ``custom_nodes`` folders."""
    import yaml  # only when there is a file to read: start-up does not pay for it

    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ExtraModelPathsError(f"cannot read {path}: {exc}") from exc
    if not isinstance(config, dict):
        raise ExtraModelPathsError(f"{path}: expected sections of folder names")
    here = path.resolve().parent
    custom_nodes: list[Path] = []
    for name, section in config.items():
        if not isinstance(section, dict):
            raise ExtraModelPathsError(f"{path}: section {name!r} is not a mapping")
        base = _base_path(section.get("base_path"), here)
        first = bool(section.get("is_default", False))
        for key, value in section.items():
            if key in SECTION_KEYS:
                continue
            for line in _lines(value):
                folder = Path(os.path.expanduser(line))
                folder = (base or here) / folder if not folder.is_absolute() else folder
                if key == "custom_nodes":
                    custom_nodes.append(folder)
                else:
                    folders.add_model_dir(COMFY_KIND_NAMES.get(key, key), folder, first=first)
    return custom_nodes


def _base_path(value: Any, here: Path) -> Path | None:
    if not value:
        return None
    base = Path(os.path.expandvars(os.path.expanduser(str(value))))
    return base if base.is_absolute() else here / base


def _lines(value: Any) -> list[str]:
    # One folder, or several as a block of lines ("|" in YAML), or a YAML list.
    items = value if isinstance(value, list) else str(value or "").splitlines()
    return [str(item).strip() for item in items if str(item).strip()]
