"""The project's folders (input, output, temp, models by kind) and safe paths inside them.

Every file a node or the server reads or writes by a user-given name goes through
``resolve_inside``, so no name can leave its folder (``..``, absolute paths, symlinks out).
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
# Files LoadVideo lists: what FFmpeg decodes, plus animated GIF/WebP (also images).
VIDEO_EXTENSIONS = frozenset({".mp4", ".m4v", ".mov", ".webm", ".mkv", ".avi", ".gif", ".webp",
                              ".mpg", ".mpeg", ".ogv", ".flv", ".wmv", ".3gp"})
MODEL_EXTENSIONS = frozenset({".safetensors", ".pth", ".pt", ".ckpt", ".bin", ".sft"})

# Model kinds and the extensions their files carry; a plugin may add more kinds.
DEFAULT_MODEL_KINDS: dict[str, frozenset[str]] = {
    "checkpoints": MODEL_EXTENSIONS,
    "diffusers": frozenset(),
    "diffusion_models": MODEL_EXTENSIONS,
    "motion": MODEL_EXTENSIONS,
    "vae": MODEL_EXTENSIONS,
    "text_encoders": MODEL_EXTENSIONS,
    "clip_vision": MODEL_EXTENSIONS,
    "loras": MODEL_EXTENSIONS,
    "upscale": MODEL_EXTENSIONS,
    "interpolate": MODEL_EXTENSIONS,
}
# ComfyUI's other names for kinds: models/<name> is read after the kind's own folder, so a
# ComfyUI models folder works as it is, and plugins may ask for a kind by either name.
COMFY_KIND_NAMES = {"unet": "diffusion_models", "clip": "text_encoders",
                    "upscale_models": "upscale"}


class UnsafePathError(ValueError):
    """A user-given name would resolve outside the folder it must stay in."""


@dataclass
class Folders:
    """Where Kinema reads inputs, writes outputs and temp files, and finds models."""

    base: Path
    input: Path
    output: Path
    temp: Path
    models: Path
    model_kinds: dict[str, tuple[list[Path], frozenset[str]]] = field(default_factory=dict)

    @classmethod
    def under(cls, base: Path, *, output: Path | None = None) -> Folders:
        base = Path(base).resolve()
        models = base / "models"
        folders = cls(base=base, input=base / "input", output=(output or base / "output"),
                      temp=base / "temp", models=models)
        for kind, exts in DEFAULT_MODEL_KINDS.items():
            dirs = [models / kind] + [models / name for name, same in COMFY_KIND_NAMES.items()
                                      if same == kind]
            folders.model_kinds[kind] = (dirs, exts)
        return folders

    def add_model_dir(self, kind: str, path: Path, *, first: bool = False) -> None:
        """Read models of ``kind`` from ``path`` too (before the others when ``first``); a
        new kind lists every file."""
        dirs, exts = self.model_kinds.get(kind, ([], frozenset()))
        dirs = [d for d in dirs if d != path]
        dirs.insert(0 if first else len(dirs), path)
        self.model_kinds[kind] = (dirs, exts)

    def directory(self, kind: str) -> Path:
        """The input, output or temp folder by name."""
        if kind not in ("input", "output", "temp"):
            raise UnsafePathError(f"unknown folder type {kind!r}: use input, output or temp")
        return getattr(self, kind)

    def model_files(self, kind: str) -> list[str]:
        """Relative names of the model files (or diffusers folders) of one kind, sorted."""
        dirs, exts = self.model_kinds.get(kind, ([], frozenset()))
        names: set[str] = set()
        for root in dirs:
            if not root.is_dir():
                continue
            for path in root.rglob("*"):
                is_weights = path.is_file() and (not exts or path.suffix.lower() in exts)
                is_diffusers_folder = path.is_dir() and (path / "model_index.json").is_file()
                if is_weights or is_diffusers_folder:
                    names.add(path.relative_to(root).as_posix())
        return sorted(names)

    def model_path(self, kind: str, name: str) -> Path | None:
        """The full path of a model listed by ``model_files``, or None."""
        dirs, _ = self.model_kinds.get(kind, ([], frozenset()))
        for root in dirs:
            try:
                path = resolve_inside(root, name)
            except UnsafePathError:
                continue
            if path.exists():
                return path
        return None

    def input_files(self, extensions: frozenset[str] = IMAGE_EXTENSIONS) -> list[str]:
        """Files in the input folder (recursively) with one of ``extensions`` (images by
        default), as names LoadImage and LoadVideo accept."""
        if not self.input.is_dir():
            return []
        return sorted(p.relative_to(self.input).as_posix() for p in self.input.rglob("*")
                      if p.is_file() and p.suffix.lower() in extensions)

    def ensure(self) -> None:
        for path in (self.input, self.output, self.temp, self.models):
            path.mkdir(parents=True, exist_ok=True)


def files_stamp(paths: Iterable[Path]) -> str:
    """A digest of the files' names, sizes and modification times: it changes when any of
    them changes, without reading their contents (gigabytes of weights or video)."""
    digest = hashlib.sha256()
    for path in paths:
        stat = path.stat()
        digest.update(f"{path.name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def path_stamp(path: Path) -> str:
    """``files_stamp`` of a file, or of every file inside a folder (a diffusers model)."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return files_stamp(files)


def resolve_inside(root: Path, name: str) -> Path:
    """``root/name`` fully resolved, refusing anything that escapes ``root``."""
    if not isinstance(name, str) or not name or "\x00" in name:
        raise UnsafePathError(f"invalid file name {name!r}")
    if os.path.isabs(name) or re.match(r"^[A-Za-z]:", name):
        raise UnsafePathError(f"absolute paths are not allowed: {name!r}")
    root = Path(root).resolve()
    path = (root / name).resolve()
    if path != root and root not in path.parents:
        raise UnsafePathError(f"{name!r} leaves its folder")
    return path


def numbered_path(folder: Path, prefix: str, ext: str) -> tuple[Path, str]:
    """The next free ``{prefix}_{NNNNN}_.{ext}`` in ``folder`` (ComfyUI's naming) and subfolder.

    ``prefix`` may contain a subfolder (``videos/clip``); it must stay inside ``folder``.
    Folders named ``{prefix}_{NNNNN}_`` (PNG sequences) take their number too.
    """
    target = resolve_inside(folder, f"{prefix}_")
    directory, stem = target.parent, target.name[:-1]
    directory.mkdir(parents=True, exist_ok=True)
    pattern = re.compile(rf"^{re.escape(stem)}_(\d+)_(?:\.|$)")
    taken = [int(m.group(1)) for p in directory.iterdir() if (m := pattern.match(p.name))]
    counter = max(taken, default=0) + 1
    subfolder = directory.relative_to(Path(folder).resolve()).as_posix()
    return directory / f"{stem}_{counter:05}_.{ext}", "" if subfolder == "." else subfolder


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so readers see the old file or the whole new one, never half."""
    with atomic_output(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)


@contextmanager
def atomic_output(path: Path) -> Iterator[Path]:
    """A hidden temporary file beside ``path`` for a writer that needs a file name (an
    encoder); when the block ends it becomes ``path`` whole, and on an error it is removed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        # mkstemp creates 0600; give the file the permissions a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


PROJECT_ROOT = Path(__file__).resolve().parent.parent
_active: Folders | None = None


def active_folders() -> Folders:
    """The folders in use by this process (the project's own unless ``use_folders`` changed them).

    A process-wide setting because node classes list files in ``INPUT_TYPES``, a classmethod
    that runs outside any execution.
    """
    global _active
    if _active is None:
        _active = Folders.under(PROJECT_ROOT)
    return _active


def use_folders(folders: Folders) -> Folders:
    """Make ``folders`` the active ones (the server, the CLI and tests choose them)."""
    global _active
    _active = folders
    return folders
