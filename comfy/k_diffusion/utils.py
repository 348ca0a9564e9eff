"""ComfyUI's ``comfy.k_diffusion.utils``, as far as plugins use it without ComfyUI's samplers:
``FolderOfImages``, whose ``IMG_EXTENSIONS`` plugins use to list image files."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from PIL import Image


class FolderOfImages(torch.utils.data.Dataset):
    """Every image under a folder (recursively), sorted, as a dataset of ``(image,)``."""

    IMG_EXTENSIONS = {".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff",
                      ".webp"}

    def __init__(self, root: str | Path, transform: Callable[[Any], Any] | None = None):
        super().__init__()
        self.root = Path(root)
        self.transform = transform or (lambda image: image)
        self.paths = sorted(p for p in self.root.rglob("*")
                            if p.suffix.lower() in self.IMG_EXTENSIONS)

    def __repr__(self) -> str:
        return f"FolderOfImages(root={str(self.root)!r}, len={len(self)})"

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, key: int) -> tuple[Any]:
        with Image.open(self.paths[key]) as image:
            return (self.transform(image.convert("RGB")),)


def __getattr__(name: str) -> Any:
    raise AttributeError(f"comfy.k_diffusion.utils.{name} is not supported by Kinema "
                         "(it has ComfyUI's FolderOfImages only, not its samplers)")
