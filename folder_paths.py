"""ComfyUI's ``folder_paths`` module, mapped onto Kinema's folders for plugins that import it.

Everything reads ``engine.folders.active_folders()`` at call time, so switching folders (tests,
the CLI's ``--output-dir``) is seen at once. ``folder_names_and_paths`` is a live view of the
active folders' model kinds: reading, assigning and mutating its lists and sets write through.
"""

from __future__ import annotations

import mimetypes
import os
from collections.abc import Collection, Iterable, Iterator, MutableMapping, MutableSequence
from collections.abc import MutableSet as AbcMutableSet
from pathlib import Path
from typing import Any, overload

from engine.folders import (
    COMFY_KIND_NAMES,
    MODEL_EXTENSIONS,
    Folders,
    UnsafePathError,
    active_folders,
    numbered_path,
    resolve_inside,
)
from nodes.image_io import expand_prefix, split_annotation

supported_pt_extensions: set[str] = set(MODEL_EXTENSIONS)

# ComfyUI's standard kinds that Kinema has no name of its own for: models/<kind>.
COMFY_KINDS: dict[str, frozenset[str]] = {
    **{kind: MODEL_EXTENSIONS for kind in (
        "style_models", "embeddings", "vae_approx",
        "controlnet", "gligen", "hypernetworks", "photomaker", "model_patches")},
    "configs": frozenset({".yaml"}),
    "custom_nodes": frozenset(),
}


def _folders() -> Folders:
    """The active folders, with ComfyUI's standard kinds present (plugins expect them)."""
    folders = active_folders()
    for kind, exts in COMFY_KINDS.items():
        if kind not in folders.model_kinds:
            root = folders.base if kind == "custom_nodes" else folders.models
            folders.model_kinds[kind] = ([root / kind], exts)
    return folders


def map_legacy(folder_name: str) -> str:
    return COMFY_KIND_NAMES.get(folder_name, folder_name)


class _FolderList(MutableSequence[str]):
    """The folders of one model kind, as strings, writing through to the active Folders."""

    def __init__(self, kind: str) -> None:
        self._kind = kind

    def _dirs(self) -> list[Path]:
        return _folders().model_kinds[self._kind][0]

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> list[str]: ...
    def __getitem__(self, index: int | slice) -> str | list[str]:
        if isinstance(index, slice):
            return [str(p) for p in self._dirs()[index]]
        return str(self._dirs()[index])

    def __setitem__(self, index: Any, value: Any) -> None:
        dirs = self._dirs()
        dirs[index] = [Path(v) for v in value] if isinstance(index, slice) else Path(value)

    def __delitem__(self, index: int | slice) -> None:
        del self._dirs()[index]

    def __len__(self) -> int:
        return len(self._dirs())

    def insert(self, index: int, value: str | os.PathLike) -> None:
        self._dirs().insert(index, Path(value))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, (list, tuple, _FolderList)) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return repr(list(self))


class _ExtensionSet(AbcMutableSet[str]):
    """The file extensions of one model kind, writing through to the active Folders."""

    def __init__(self, kind: str) -> None:
        self._kind = kind

    def _exts(self) -> frozenset[str]:
        return _folders().model_kinds[self._kind][1]

    def _replace(self, exts: Iterable[str]) -> None:
        folders = _folders()
        dirs, _ = folders.model_kinds[self._kind]
        folders.model_kinds[self._kind] = (dirs, frozenset(exts))

    def __contains__(self, ext: object) -> bool:
        return ext in self._exts()

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._exts()))

    def __len__(self) -> int:
        return len(self._exts())

    def add(self, value: str) -> None:
        self._replace(self._exts() | {value})

    def discard(self, value: str) -> None:
        self._replace(self._exts() - {value})

    def update(self, *others: Iterable[str]) -> None:
        self._replace(self._exts().union(*others))

    def __repr__(self) -> str:
        return repr(set(self))


class _ModelKinds(MutableMapping[str, tuple[list[str], set[str]]]):
    """``kind → (folders, extensions)`` over the active folders, as ComfyUI's dict is shaped."""

    def __getitem__(self, name: str) -> tuple[Any, Any]:
        kind = map_legacy(name)
        if kind not in _folders().model_kinds:
            raise KeyError(name)
        return _FolderList(kind), _ExtensionSet(kind)

    def __setitem__(self, name: str, value: tuple[Iterable[Any], Iterable[str]]) -> None:
        dirs, exts = value
        entry = ([Path(d) for d in dirs], frozenset(str(e) for e in exts))
        _folders().model_kinds[map_legacy(name)] = entry

    def __delitem__(self, name: str) -> None:
        del _folders().model_kinds[map_legacy(name)]

    def __iter__(self) -> Iterator[str]:
        return iter(list(_folders().model_kinds))

    def __len__(self) -> int:
        return len(_folders().model_kinds)

    def __repr__(self) -> str:
        return repr({kind: (list(d), set(e)) for kind, (d, e) in self.items()})


folder_names_and_paths = _ModelKinds()

_LIVE_ATTRIBUTES = {
    "base_path": lambda f: f.base,
    "models_dir": lambda f: f.models,
    "output_directory": lambda f: f.output,
    "input_directory": lambda f: f.input,
    "temp_directory": lambda f: f.temp,
    "user_directory": lambda f: f.base / "user",
}


def __getattr__(name: str) -> str:
    """``base_path``, ``models_dir`` and the ``*_directory`` attributes, read live."""
    if name in _LIVE_ATTRIBUTES:
        return str(_LIVE_ATTRIBUTES[name](active_folders()))
    raise AttributeError(f"folder_paths.{name} is not supported by Kinema")


def get_input_directory() -> str:
    folder = active_folders().input
    folder.mkdir(parents=True, exist_ok=True)  # ComfyUI guarantees it exists
    return str(folder)


def get_output_directory() -> str:
    return str(active_folders().output)


def get_temp_directory() -> str:
    return str(active_folders().temp)


def get_user_directory() -> str:
    return str(active_folders().base / "user")


def set_input_directory(path: str | os.PathLike) -> None:
    active_folders().input = Path(path).resolve()


def set_output_directory(path: str | os.PathLike) -> None:
    active_folders().output = Path(path).resolve()


def set_temp_directory(path: str | os.PathLike) -> None:
    active_folders().temp = Path(path).resolve()


def get_directory_by_type(type_name: str) -> str | None:
    """The input, output or temp folder; None for any other name."""
    if type_name not in ("input", "output", "temp"):
        return None
    return str(active_folders().directory(type_name))


def annotated_filepath(name: str) -> tuple[str, str | None]:
    """``"x.png [output]"`` → ``("x.png", output folder)``; no annotation gives None."""
    name, kind = split_annotation(name)
    return name, (get_directory_by_type(kind) if kind else None)


def get_annotated_filepath(name: str, default_dir: str | None = None) -> str:
    """The full path of an annotated name, refusing any name that leaves its folder."""
    name, base = annotated_filepath(name)
    return str(resolve_inside(Path(base or default_dir or get_input_directory()), name))


def exists_annotated_filepath(name: str) -> bool:
    try:
        return Path(get_annotated_filepath(name)).exists()
    except UnsafePathError:
        return False


def add_model_folder_path(folder_name: str, full_folder_path: str | os.PathLike,
                          is_default: bool = False) -> None:
    """Add a folder to a model kind (first when ``is_default``); a new kind lists every file."""
    _folders().add_model_dir(map_legacy(folder_name), Path(full_folder_path), first=is_default)


def get_folder_paths(folder_name: str) -> list[str]:
    return list(folder_names_and_paths[folder_name][0])


def get_filename_list(folder_name: str) -> list[str]:
    """Model files of one kind, relative to their folder, sorted."""
    kind = map_legacy(folder_name)
    if kind not in _folders().model_kinds:
        raise KeyError(f"unknown model kind {folder_name!r}")
    return active_folders().model_files(kind)


def get_full_path(folder_name: str, filename: str) -> str | None:
    kind = map_legacy(folder_name)
    if kind not in _folders().model_kinds:
        return None
    path = active_folders().model_path(kind, filename)
    return str(path) if path is not None else None


def get_full_path_or_raise(folder_name: str, filename: str) -> str:
    path = get_full_path(folder_name, filename)
    if path is None:
        raise FileNotFoundError(f"Model in folder '{folder_name}' with filename '{filename}' "
                                "not found.")
    return path


def get_save_image_path(filename_prefix: str, output_dir: str, image_width: int = 0,
                        image_height: int = 0) -> tuple[str, str, int, str, str]:
    """ComfyUI's ``(full_output_folder, filename, counter, subfolder, filename_prefix)``.

    The next file is ``f"{filename}_{counter:05}_.png"`` in ``full_output_folder``; a prefix
    that would leave ``output_dir`` is refused.
    """
    prefix = expand_prefix(filename_prefix, image_width, image_height)
    try:
        path, subfolder = numbered_path(Path(output_dir), prefix, "png")
    except UnsafePathError as exc:
        raise UnsafePathError(f"saving outside the output folder is not allowed: "
                              f"{filename_prefix!r}") from exc
    filename, counter, _ = path.name.rsplit("_", 2)
    return str(path.parent), filename, int(counter), subfolder, prefix


def recursive_search(directory: str,
                     excluded_dir_names: list[str] | None = None,
                     ) -> tuple[list[str], dict[str, float]]:
    """Files under ``directory`` (relative paths) and the modification time of each folder."""
    if not os.path.isdir(directory):
        return [], {}
    excluded = set(excluded_dir_names or ())
    files: list[str] = []
    dirs: dict[str, float] = {}
    for root, subdirs, names in os.walk(directory, followlinks=True):
        subdirs[:] = [d for d in subdirs if d not in excluded]
        dirs[root] = os.path.getmtime(root)
        files.extend(os.path.relpath(os.path.join(root, n), directory) for n in names)
    return files, dirs


def filter_files_extensions(files: Collection[str], extensions: Collection[str]) -> list[str]:
    """The files whose extension is listed (all files when ``extensions`` is empty), sorted."""
    return sorted(f for f in files
                  if not extensions or os.path.splitext(f)[-1].lower() in extensions)


def filter_files_content_types(files: Iterable[str], content_types: Collection[str]) -> list[str]:
    """The files whose MIME major type ("image", "video", "audio") is listed."""
    kept = []
    for name in files:
        mime, _ = mimetypes.guess_type(name, strict=False)
        if name.lower().endswith(".webp"):
            mime = "image/webp"
        if mime and mime.split("/")[0] in content_types:
            kept.append(name)
    return kept
