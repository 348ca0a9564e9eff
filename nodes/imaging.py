"""Small shared helpers for image nodes: tensors ↔ PIL, resampling, PNG encoding, progress.

Kinema's ``IMAGE`` is float32 ``[B,H,W,C]`` in 0..1; torch's resampling wants ``[B,C,H,W]``,
so ``resample`` takes channels-first samples like ComfyUI's ``common_upscale`` does.
"""

from __future__ import annotations

import io
from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from engine.context import current_context

MAX_RESOLUTION = 16384

UPSCALE_METHODS = ("nearest-exact", "bilinear", "area", "bicubic", "lanczos")
CROP_METHODS = ("disabled", "center")
# Modes torch resamples natively ("nearest" is accepted for plugins that ask for it).
_TORCH_MODES = frozenset({"nearest", "nearest-exact", "bilinear", "area", "bicubic"})


def report_progress(done: int, total: int, preview: object = None) -> None:
    """Report ``done`` of ``total`` to the running node's context; a no-op outside a node call.

    Each report is also an interrupt point (the context raises when the user interrupted).
    """
    ctx = current_context()
    if ctx is not None:
        ctx.progress(done, total, preview)


def tensor_to_pil(image: torch.Tensor) -> Image.Image:
    """One frame ``[H,W,C]`` (or ``[H,W]``) float 0..1 → an 8-bit PIL image (L, LA, RGB, RGBA)."""
    array = image.detach().float().cpu().numpy()
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim == 3 and array.shape[-1] not in (2, 3, 4):
        raise ValueError(f"cannot make an image of {array.shape[-1]} channels (want 1 to 4)")
    return Image.fromarray(np.clip(np.rint(array * 255.0), 0, 255).astype(np.uint8))


def pil_to_tensor(image: Image.Image) -> torch.Tensor:
    """A PIL image → ``[H,W,C]`` float32 in 0..1 (16-bit and float images are scaled to fit)."""
    if image.mode in ("I", "F") or image.mode.startswith("I;16"):
        array = np.asarray(image, dtype=np.float32)
        peak = 1.0 if image.mode == "F" else (65535.0 if array.max(initial=0) > 255 else 255.0)
        return torch.from_numpy(np.clip(array / peak, 0.0, 1.0))[..., None]
    array = np.asarray(image, dtype=np.float32) / 255.0
    if array.ndim == 2:
        array = array[..., None]
    return torch.from_numpy(array.copy())


def images_to_pil(images: torch.Tensor) -> list[Image.Image]:
    """A batch ``[B,H,W,C]`` → one PIL image per frame."""
    return [tensor_to_pil(frame) for frame in images]


def center_crop_box(width: int, height: int, target_w: int, target_h: int) -> tuple[int, int]:
    """Pixels to cut from each side (x, y) so ``width x height`` takes the target's aspect ratio."""
    old_aspect, new_aspect = width / height, target_w / target_h
    x = y = 0
    if old_aspect > new_aspect:
        x = round((width - width * (new_aspect / old_aspect)) / 2)
    elif old_aspect < new_aspect:
        y = round((height - height * (old_aspect / new_aspect)) / 2)
    return x, y


def resample(samples: torch.Tensor, width: int, height: int, method: str = "bilinear",
             crop: str = "disabled") -> torch.Tensor:
    """Resize channels-first ``samples`` ``[B,C,H,W]`` (or ``[B,C,T,H,W]``) to ``width x height``.

    ``crop="center"`` first cuts the sides so the aspect ratio matches the target, as ComfyUI
    does. ``lanczos`` runs PIL per image and channel in float (no 8-bit rounding); the other
    methods are torch's.
    """
    if method not in _TORCH_MODES and method != "lanczos":
        raise ValueError(f"unsupported upscale method {method!r}; use one of {UPSCALE_METHODS}")
    if crop not in CROP_METHODS:
        raise ValueError(f"unsupported crop {crop!r}; use one of {CROP_METHODS}")
    if width < 1 or height < 1:
        raise ValueError(f"target size must be at least 1x1, got {width}x{height}")
    shape = tuple(samples.shape)
    if len(shape) == 5:  # video latents [B,C,T,H,W]: resample each frame
        frames = samples.movedim(2, 1).reshape(-1, shape[1], shape[3], shape[4])
        out = resample(frames, width, height, method, crop)
        return out.reshape(shape[0], shape[2], shape[1], height, width).movedim(1, 2)
    if len(shape) != 4:
        raise ValueError(f"resample wants [B,C,H,W] samples, got shape {shape}")
    if crop == "center":
        x, y = center_crop_box(shape[3], shape[2], width, height)
        samples = samples[:, :, y:shape[2] - y, x:shape[3] - x]
    if method == "lanczos":
        return _lanczos(samples, width, height)
    work = samples if samples.dtype in (torch.float32, torch.float64) else samples.float()
    out = F.interpolate(work, size=(height, width), mode=method)
    return out.to(samples.dtype)


def _lanczos(samples: torch.Tensor, width: int, height: int) -> torch.Tensor:
    batch = samples.detach().float().cpu().numpy()
    out = np.empty((batch.shape[0], batch.shape[1], height, width), dtype=np.float32)
    for b, image in enumerate(batch):
        for c, plane in enumerate(image):
            resized = Image.fromarray(np.ascontiguousarray(plane)).resize(
                (width, height), Image.Resampling.LANCZOS)
            out[b, c] = np.asarray(resized)
    return torch.from_numpy(out).to(samples.device, samples.dtype)


def resize_like(images: torch.Tensor, reference: torch.Tensor, method: str,
                crop: str = "center") -> torch.Tensor:
    """``images`` ``[B,H,W,C]`` resized to the height and width of ``reference`` ``[B,H,W,C]``."""
    if images.shape[-1] != reference.shape[-1]:
        raise ValueError(f"images have {images.shape[-1]} channels and {reference.shape[-1]}; "
                         "they must match")
    if images.shape[1:3] == reference.shape[1:3]:
        return images
    out = resample(images.movedim(-1, 1), reference.shape[2], reference.shape[1], method, crop)
    return out.movedim(1, -1)


def encode_png(image: Image.Image, text: Mapping[str, str] | None = None,
               compress_level: int = 4) -> bytes:
    """PNG bytes of ``image`` carrying one tEXt chunk per ``text`` entry."""
    info = PngInfo()
    for key, value in (text or {}).items():
        info.add_text(key, value)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info, compress_level=compress_level)
    return buffer.getvalue()
