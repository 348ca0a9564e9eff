"""Upscale FRAMES chunk by chunk: Lanczos or bicubic resampling, or a super-resolution model.

Kinema reads Real-ESRGAN's networks itself (``nodes/video/esrgan.py``: ESRGAN / Real-ESRGAN
RRDBNet and SRVGGNetCompact, from .pth or .safetensors in ``models/upscale/``); every other
architecture (SwinIR, HAT, DAT, OmniSR ...) goes through spandrel when it is installed, an
optional extra. Large frames run tile by tile (``nodes/video/tiling.py``) so the model's
activations fit, with blended seams.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from engine.folders import active_folders, path_stamp
from engine.frames import FRAMES, Frames
from nodes.diffusion.device import inference_device, inference_dtype
from nodes.diffusion.model_files import ModelLoadError
from nodes.diffusion.weights import read_state_dict
from nodes.imaging import report_progress, resample
from nodes.video.esrgan import network_from_state
from nodes.video.tiling import upscale_tiled

UPSCALE = "upscale"  # the model kind, i.e. models/upscale/
UPSCALE_DIR = "models/upscale/"
METHODS = ("lanczos", "bicubic", "model")
NO_MODEL = "none"
KINEMA_ARCHITECTURES = ("ESRGAN / Real-ESRGAN RRDBNet (RealESRGAN_x4plus, x2plus, anime_6B, "
                        "BSRGAN) and SRVGGNetCompact (realesr-animevideov3, realesr-general-x4v3)")
# BasicSR's training checkpoints keep the weights under one of these (EMA ones preferred).
# Output pixels the model makes in one pass (frames of a batch times tile area): bounds the
# activations of a 64-feature RRDBNet to a few GB in fp16.
PASS_PIXELS = 2048 * 2048


@dataclass
class UpscaleModel:
    """A loaded super-resolution network and what running it needs to know."""

    network: torch.nn.Module
    scale: int
    architecture: str
    size_multiple: int = 1  # input sides must be multiples of this
    supports_half: bool = True
    channels: int = 3


def load_upscale_model(path: Path) -> UpscaleModel:
    """The upscaler in ``path``: Kinema's own networks first, then spandrel's if installed."""
    state = read_state_dict(path, UPSCALE_DIR)
    try:
        network = network_from_state(state)
    except ValueError as exc:
        raise ModelLoadError(f"{path.name}: {exc}. The file may be truncated or converted "
                             f"wrongly; download it again into {UPSCALE_DIR}") from None
    if network is not None:
        return UpscaleModel(network, network.scale, type(network).__name__,
                            network.size_multiple, channels=network.channels)
    return _spandrel_model(state, path.name)


def _spandrel_model(state: dict[str, torch.Tensor], name: str) -> UpscaleModel:
    try:
        import spandrel
    except ImportError:
        raise ModelLoadError(
            f"{name} is not an architecture Kinema reads by itself ({KINEMA_ARCHITECTURES}). "
            "`pip install spandrel` adds the others (SwinIR, HAT, DAT, OmniSR, SPAN ...).",
        ) from None
    # From the state dict rather than the file: Kinema has read it with weights_only=True.
    try:
        descriptor = spandrel.ModelLoader().load_from_state_dict(state)
    except Exception as exc:  # spandrel raises its own error types per architecture
        raise ModelLoadError(f"{name} is not an upscaling model spandrel knows either "
                             f"({exc})") from None
    if getattr(descriptor, "purpose", "SR") not in ("SR", "Restoration"):
        raise ModelLoadError(f"{name} is a {descriptor.purpose} model, not an upscaler")
    requirements = getattr(descriptor, "size_requirements", None)
    network = descriptor.model.eval().requires_grad_(False)
    return UpscaleModel(network, int(descriptor.scale), type(network).__name__,
                        getattr(requirements, "multiple_of", 1),
                        getattr(descriptor, "supports_half", False),
                        getattr(descriptor, "input_channels", 3))


def model_choices() -> list[str]:
    return active_folders().model_files(UPSCALE) or [NO_MODEL]


def _run_dtype(model: UpscaleModel, device: torch.device) -> torch.dtype:
    dtype = inference_dtype(device)
    return dtype if dtype == torch.float32 or model.supports_half else torch.float32


def upscale_frames(frames: Frames, scale: int, method: str, model: UpscaleModel | None = None,
                   tile_size: int = 0, tile_overlap: int = 0) -> Frames:
    """``frames`` enlarged ``scale`` times into a new uint8 store, a chunk at a time."""
    width, height = frames.width * scale, frames.height * scale
    writer = Frames.writer(width, height, frames.fps, "uint8", frames.channels, frames.audio)
    # The output chunk is scale² larger than the input's: keep it near the usual chunk size.
    chunk = max(1, frames.chunk_frames() // (scale * scale))
    if model is not None:
        device = inference_device()
        model.network.to(device, _run_dtype(model, device))
    for start, images in frames.chunks(chunk):
        if model is None:
            writer.append(resample(images.movedim(-1, 1), width, height, method).movedim(1, -1))
        else:
            with torch.inference_mode():
                writer.append(_model_upscale(model, images, width, height, tile_size,
                                             tile_overlap))
        report_progress(start + len(images), len(frames))
    return writer.finish()


def _model_upscale(model: UpscaleModel, images: torch.Tensor, width: int, height: int,
                   tile_size: int, tile_overlap: int) -> torch.Tensor:
    weight = next(model.network.parameters())
    tile_h, tile_w = (min(tile_size or n, n) for n in images.shape[1:3])
    per_pass = max(1, PASS_PIXELS // (tile_h * tile_w * model.scale ** 2))
    parts = []
    for batch in images.split(per_pass):
        x = batch.movedim(-1, 1).to(weight.device, weight.dtype)
        y = upscale_tiled(model.network, x, model.scale, tile_size, tile_overlap,
                          model.size_multiple)
        if y.shape[-2:] != (height, width):  # the model's scale is not the one asked for
            mode = "area" if y.shape[-1] > width else "bicubic"
            y = F.interpolate(y, size=(height, width), mode=mode)
        parts.append(y.clamp(0, 1).mul(255).round().to(torch.uint8).movedim(1, -1).cpu())
    return torch.cat(parts)


class FrameUpscale:
    """Upscales every frame of a clip by 2 or 4: Lanczos, bicubic, or a super-resolution
    model (Real-ESRGAN and others) run tile by tile."""

    DESCRIPTION = ("Enlarges every frame 2x or 4x, chunk by chunk. 'lanczos' and 'bicubic' "
                   "resample; 'model' runs a super-resolution model from models/upscale/ "
                   "(ESRGAN / Real-ESRGAN, SRVGGNetCompact; other architectures with spandrel "
                   "installed) in overlapping tiles, then resizes if its own scale differs.")
    CATEGORY = "kinema/video"
    RETURN_TYPES = (FRAMES,)
    RETURN_NAMES = ("frames",)
    FUNCTION = "upscale"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        models = model_choices()
        return {"required": {
            "frames": (FRAMES, {"tooltip": "The clip to upscale."}),
            "method": (list(METHODS), {"default": "lanczos", "tooltip": (
                "lanczos: sharp resampling; bicubic: smooth resampling; model: the "
                "super-resolution model chosen below.")}),
            "scale": ("INT", {"default": 2, "min": 2, "max": 4, "step": 2, "tooltip": (
                "How many times larger each side gets. A model of another scale is run, then "
                "its output resized to this.")}),
            "upscale_model": (models, {"default": models[0], "tooltip": (
                f"A .pth or .safetensors upscaler in {UPSCALE_DIR} (used by method 'model').")}),
            "tile_size": ("INT", {"default": 512, "min": 0, "max": 4096, "step": 8, "tooltip": (
                "Input pixels per tile side when running a model; smaller uses less memory. "
                "0 runs whole frames.")}),
            "tile_overlap": ("INT", {"default": 32, "min": 0, "max": 1024, "step": 8, "tooltip": (
                "Pixels neighbouring tiles share; their seams are blended over it.")}),
        }}

    @classmethod
    def IS_CHANGED(cls, method: str, upscale_model: str) -> str:
        path = active_folders().model_path(UPSCALE, upscale_model) if method == "model" else None
        return "" if path is None else path_stamp(path)

    def upscale(self, frames: Frames, method: str, scale: int, upscale_model: str = NO_MODEL,
                tile_size: int = 512, tile_overlap: int = 32) -> tuple[Frames]:
        if method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, not {method!r}")
        if scale < 1:
            raise ValueError(f"scale must be at least 1, got {scale}")
        if method != "model":
            return (upscale_frames(frames, scale, method),)
        if tile_size and not 0 <= tile_overlap < tile_size:
            raise ValueError(f"tile_overlap ({tile_overlap}) must be smaller than tile_size "
                             f"({tile_size}); lower it or raise tile_size")
        model = self._load(upscale_model)
        if frames.channels != model.channels:
            raise ValueError(f"input 'frames' has {frames.channels} channels; "
                             f"{upscale_model} takes {model.channels} (RGB frames)")
        return (upscale_frames(frames, scale, method, model, tile_size, tile_overlap),)

    @staticmethod
    def _load(upscale_model: str) -> UpscaleModel:
        path = None
        if upscale_model != NO_MODEL:
            path = active_folders().model_path(UPSCALE, upscale_model)
        if path is None or not path.is_file():
            found = f"{upscale_model!r} was not found" if upscale_model != NO_MODEL else "none"
            raise ValueError(f"method 'model' needs an upscale_model ({found}): put a .pth or "
                             f".safetensors upscaler in {UPSCALE_DIR}, or pick lanczos or "
                             f"bicubic")
        return load_upscale_model(path)


NODE_CLASS_MAPPINGS = {"FrameUpscale": FrameUpscale}
NODE_DISPLAY_NAME_MAPPINGS = {"FrameUpscale": "Upscale Frames"}
