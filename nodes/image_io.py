"""Load images from the input folder; save images (with their workflow) to output or temp.

Every name a user gives is resolved inside its folder (``resolve_inside``); files are
written atomically; saved PNGs carry the prompt and the canvas workflow as text chunks,
so dropping one back on the canvas reopens the graph that made it.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, ImageSequence

from engine.folders import (
    UnsafePathError,
    active_folders,
    atomic_write,
    numbered_path,
    resolve_inside,
)
from nodes.imaging import encode_png, pil_to_tensor, report_progress, tensor_to_pil

# "name.png [output]" reads from the output folder (ComfyUI's annotated file names).
ANNOTATIONS = {"[input]": "input", "[output]": "output", "[temp]": "temp"}
SINGLE_FRAME_FORMATS = frozenset({"MPO"})  # multi-picture JPEGs: stereo pairs, not animations


def check_input_file(name: str, kind: str) -> bool | str:
    """``VALIDATE_INPUTS`` for a file input: True, or ComfyUI's "Invalid <kind> file" message."""
    try:
        path = resolve_annotated(name)
    except UnsafePathError as exc:
        return f"Invalid {kind} file: {exc}"
    if not path.is_file():
        return f"Invalid {kind} file: {name}"
    return True


def split_annotation(name: str) -> tuple[str, str | None]:
    """``"x.png [output]"`` → ``("x.png", "output")``; an unannotated name gives ``None``."""
    for suffix, kind in ANNOTATIONS.items():
        if name.endswith(suffix):
            return name[: -len(suffix)].rstrip(), kind
    return name, None


def resolve_annotated(name: str, default: str = "input") -> Path:
    """The file an (optionally annotated) name points at, refusing names that leave the folder."""
    name, kind = split_annotation(name)
    return resolve_inside(active_folders().directory(kind or default), name)


def expand_prefix(prefix: str, width: int = 0, height: int = 0) -> str:
    """Fill ComfyUI's ``%width%``, ``%height%``, ``%year%`` … ``%second%`` in a filename prefix."""
    if "%" not in prefix:
        return prefix
    now = time.localtime()
    values = {"width": width, "height": height, "year": now.tm_year,
              "month": f"{now.tm_mon:02}", "day": f"{now.tm_mday:02}",
              "hour": f"{now.tm_hour:02}", "minute": f"{now.tm_min:02}",
              "second": f"{now.tm_sec:02}"}
    for key, value in values.items():
        prefix = prefix.replace(f"%{key}%", str(value))
    return prefix


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _frame_with_mask(frame: Image.Image) -> tuple[torch.Tensor, torch.Tensor]:
    """One decoded frame → (RGB ``[H,W,3]``, mask ``[H,W]`` = 1 - alpha, zeros when opaque)."""
    frame = ImageOps.exif_transpose(frame)
    if frame.mode == "P" and "transparency" in frame.info:
        frame = frame.convert("RGBA")
    if frame.mode in ("I", "F") or frame.mode.startswith("I;16"):
        rgb = pil_to_tensor(frame).expand(-1, -1, 3)
    else:
        rgb = pil_to_tensor(frame.convert("RGB"))
    if "A" in frame.getbands():
        alpha = np.asarray(frame.getchannel("A"), dtype=np.float32) / 255.0
        mask = 1.0 - torch.from_numpy(alpha)
    else:
        mask = torch.zeros(rgb.shape[:2], dtype=torch.float32)
    return rgb.contiguous(), mask


def load_frames(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """All frames of an image file (one for stills) as ``IMAGE`` ``[B,H,W,3]`` and ``MASK``.

    Frames whose size differs from the first are skipped, as ComfyUI does.
    """
    images: list[torch.Tensor] = []
    masks: list[torch.Tensor] = []
    with Image.open(path) as img:
        total = getattr(img, "n_frames", 1) if img.format not in SINGLE_FRAME_FORMATS else 1
        for index, frame in enumerate(ImageSequence.Iterator(img)):
            if index >= total:
                break
            rgb, mask = _frame_with_mask(frame)
            if images and rgb.shape != images[0].shape:
                continue
            images.append(rgb)
            masks.append(mask)
            if total > 1:
                report_progress(index + 1, total)
    return torch.stack(images), torch.stack(masks)


class LoadImage:
    """Loads an image (all frames of a GIF or animated WebP) from the input folder."""

    DESCRIPTION = ("Loads an image from the input folder. The mask is 1 - alpha (transparent "
                   "pixels are 1); animated files give one frame per batch entry.")
    CATEGORY = "image"
    RETURN_TYPES = ("IMAGE", "MASK")
    OUTPUT_TOOLTIPS = ("The frames, [B,H,W,3] in 0..1.", "1 - alpha per frame, [B,H,W].")
    FUNCTION = "load_image"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        files = active_folders().input_files()
        options: dict[str, Any] = {"image_upload": True,
                                   "tooltip": "An image in the input folder (upload adds one)."}
        if files:
            options["default"] = files[0]
        return {"required": {"image": (files, options)}}

    def load_image(self, image: str) -> tuple[torch.Tensor, torch.Tensor]:
        return load_frames(resolve_annotated(image))

    @classmethod
    def IS_CHANGED(cls, image: str) -> str:
        return file_sha256(resolve_annotated(image))

    @classmethod
    def VALIDATE_INPUTS(cls, image: str) -> bool | str:
        return check_input_file(image, "image")


class SaveImage:
    """Saves images as PNG files in the output folder, with the workflow embedded."""

    DESCRIPTION = ("Saves the images as PNGs in the output folder; each file carries the prompt "
                   "and the workflow, so it reopens on the canvas.")
    CATEGORY = "image"
    RETURN_TYPES = ()
    FUNCTION = "save_images"
    OUTPUT_NODE = True

    # ComfyUI plugins subclass SaveImage and set these four attributes in __init__.
    type = "output"
    prefix_append = ""
    compress_level = 4
    _output_dir: Path | None = None

    @property
    def output_dir(self) -> str:
        """The folder written to: set explicitly, else the active folder of ``type`` right now."""
        return str(self._output_dir or active_folders().directory(self.type))

    @output_dir.setter
    def output_dir(self, value: str | Path) -> None:
        self._output_dir = Path(value)

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "images": ("IMAGE", {"tooltip": "The images to save."}),
                "filename_prefix": ("STRING", {
                    "default": "Kinema",
                    "tooltip": "File name prefix; may hold a subfolder (clips/shot) and "
                               "%width%, %height%, %year%, %month%, %day% or %batch_num%."}),
            },
            "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"},
        }

    def save_images(self, images: torch.Tensor, filename_prefix: str = "Kinema",
                    prompt: Any = None, extra_pnginfo: Mapping[str, Any] | None = None,
                    ) -> dict:
        folder = Path(self.output_dir)
        prefix = expand_prefix(filename_prefix + self.prefix_append,
                               images.shape[2], images.shape[1])
        text = {"prompt": json.dumps(prompt)} if prompt is not None else {}
        for key, value in (extra_pnginfo or {}).items():
            text[key] = json.dumps(value)
        results = []
        paths = _numbered_paths(folder, prefix, len(images))
        for index, (image, (path, subfolder)) in enumerate(zip(images, paths, strict=True)):
            atomic_write(path, encode_png(tensor_to_pil(image), text, self.compress_level))
            results.append({"filename": path.name, "subfolder": subfolder, "type": self.type})
            report_progress(index + 1, len(images))
        return {"ui": {"images": results}}


def _numbered_paths(folder: Path, prefix: str, count: int) -> list[tuple[Path, str]]:
    """Paths for ``count`` PNGs: one counter run, or one name per frame with ``%batch_num%``."""
    if "%batch_num%" in prefix:
        return [numbered_path(folder, prefix.replace("%batch_num%", str(i)), "png")
                for i in range(count)]
    first, subfolder = numbered_path(folder, prefix, "png")
    stem, counter, _ = first.name.rsplit("_", 2)
    return [(first.with_name(f"{stem}_{int(counter) + i:05}_.png"), subfolder)
            for i in range(count)]


class PreviewImage(SaveImage):
    """Saves images to the temp folder so the canvas can show them."""

    DESCRIPTION = "Shows the images on the canvas (saved in the temp folder, cleared later)."
    type = "temp"
    compress_level = 1

    def __init__(self) -> None:
        self.prefix_append = "_temp_" + secrets.token_hex(3)[:5]

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {"images": ("IMAGE", {"tooltip": "The images to preview."})},
                "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}}


NODE_CLASS_MAPPINGS = {
    "LoadImage": LoadImage,
    "SaveImage": SaveImage,
    "PreviewImage": PreviewImage,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "LoadImage": "Load Image",
    "SaveImage": "Save Image",
    "PreviewImage": "Preview Image",
}
