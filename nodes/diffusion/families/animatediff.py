"""AnimateDiff: an SD 1.x model plus a motion adapter (v1-5, v2, v3), or an AnimateDiff diffusers
folder that already carries its motion UNet.

SD 1.x + an adapter becomes ``AnimateDiffPipeline`` over ``UNetMotionModel.from_unet2d(unet,
adapter)`` sharing their weights (kept for re-runs). The motion modules were trained on
16-frame clips, which is the window; their position tables are the hard limit.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from accelerate import init_empty_weights
from diffusers import AnimateDiffPipeline, MotionAdapter, UNetMotionModel

from nodes.diffusion.bundle import ANIMATEDIFF, Conditioning, ModelBundle, MotionModule
from nodes.diffusion.device import inference_device, inference_dtype
from nodes.diffusion.families.base import (
    Family,
    Shapes,
    VideoLatents,
    VideoSettings,
    first_sentence,
    no_motion,
    quiet,
)
from nodes.diffusion.families.unet_text_video import text_video_args
from nodes.diffusion.model_files import (
    CONFIGS,
    MOTION_DIR,
    SIDECAR_SUFFIX,
    ModelLoadError,
    read_json,
    sidecar_for,
)
from nodes.diffusion.progress import step_callback
from nodes.diffusion.schedulers import make_scheduler
from nodes.diffusion.weights import check_fully_loaded, read_state_dict, shapes_of
from nodes.diffusion.windows import ContextWindows, denoise_animatediff

# Where they move well; the adapters' position tables (motion_max_seq_length, 32) are the limit.
ANIMATEDIFF_WINDOW = 16

MOTION_PE = ("down_blocks.0.motion_modules.0.temporal_transformer.transformer_blocks.0."
             "attention_blocks.0.pos_encoder.pe")
MOTION_MID = "mid_block.motion_modules.0.temporal_transformer.norm.bias"
DIFFUSERS_MOTION_NORM = "down_blocks.0.motion_modules.0.norm.weight"
DIFFUSERS_MOTION_PE = "down_blocks.0.motion_modules.0.transformer_blocks.0.pos_embed.pe"
DIFFUSERS_MOTION_MID = "mid_block.motion_modules.0.norm.bias"
MOTION_VERSIONS = ("v1-5", "v2", "v3")


class AnimateDiff(Family):
    names = (ANIMATEDIFF,)
    pipelines = {"AnimateDiffPipeline": ANIMATEDIFF}

    def recognise(self, name: str, shapes: Shapes) -> str | None:
        if any(".motion_modules." in k for k in shapes):
            raise ModelLoadError(
                f"{name} is an AnimateDiff motion module, not a checkpoint: put it in "
                f"{MOTION_DIR} and load it with the Motion Adapter Loader.")
        return None

    def video_pipeline(self, model: ModelBundle, motion: MotionModule | None,
                       scheduler: str) -> Any:
        no_motion(model, motion)
        parts = model.pipe.components
        return _pipeline(model, parts["unet"], parts["motion_adapter"], scheduler)

    def window(self, pipe: Any) -> int | None:
        return min(ANIMATEDIFF_WINDOW, int(pipe.unet.config.motion_max_seq_length))

    def context_windows(self, pipe: Any, s: VideoSettings) -> ContextWindows | None:
        windows = super().context_windows(pipe, s)
        limit = int(pipe.unet.config.motion_max_seq_length)
        at_once = s.frames if windows is None else windows.length
        if at_once > limit:  # the motion modules' position tables end there
            raise ValueError(f"this motion adapter sees at most {limit} frames at once (its "
                             f"limit), asked for {at_once}: set context_length to {limit} or "
                             "less")
        return windows

    def denoise(self, model: ModelBundle, s: VideoSettings, conditioning: Conditioning | None,
                motion: MotionModule | None, keyframe: torch.Tensor | None) -> VideoLatents:
        pipe = self.video_pipeline(model, motion, s.scheduler)
        return denoise_with(self, pipe, model, s, conditioning, keyframe)


def denoise_with(family: Family, pipe: Any, model: ModelBundle, s: VideoSettings,
                 conditioning: Conditioning | None, keyframe: torch.Tensor | None,
                 ) -> VideoLatents:
    """One clip on an AnimateDiff pipeline (plain call, or sliding windows when longer)."""
    windows = family.context_windows(pipe, s)
    args = text_video_args(pipe, model, s, conditioning, keyframe)
    if windows is not None:
        latents = denoise_animatediff(pipe, windows, callback_on_step_end=step_callback(), **args)
    else:
        latents = pipe(num_frames=s.frames, output_type="latent",
                       callback_on_step_end=step_callback(), **args).frames
    return VideoLatents(latents, pipe, model.family)


def animatediff_pipeline(model: ModelBundle, motion: MotionModule, scheduler: str) -> Any:
    """AnimateDiff over an SD 1.x model's components and a separately loaded adapter."""
    unet = model.pipe.components["unet"]
    return _pipeline(model, motion_unet(unet, motion.adapter), motion.adapter, scheduler)


def _pipeline(model: ModelBundle, unet: Any, adapter: Any, scheduler: str) -> Any:
    parts = model.pipe.components
    return quiet(AnimateDiffPipeline(
        vae=parts["vae"], text_encoder=parts["text_encoder"], tokenizer=parts["tokenizer"],
        unet=unet, motion_adapter=adapter,
        scheduler=make_scheduler(scheduler, parts["scheduler"])))


_motion_lock = threading.Lock()
_motion_unets: dict[tuple[int, int], UNetMotionModel] = {}


def motion_unet(unet: Any, adapter: Any) -> UNetMotionModel:
    """``UNetMotionModel.from_unet2d(unet, adapter)`` whose weights *are* the UNet's and the
    adapter's tensors, not copies of them.

    ``from_unet2d`` copies every UNet weight: a second UNet in memory that the output cache
    cannot see. Built on the meta device and then pointed at the loaded tensors, the motion
    UNet costs only its module objects. Building still takes tens of milliseconds, so the last
    pair is kept for re-runs; it goes when the UNet or the adapter does.
    """
    key = (id(unet), id(adapter))
    with _motion_lock:
        if key in _motion_unets:
            return _motion_unets[key]
    combined = _shared_motion_unet(unet, adapter)
    with _motion_lock:
        _motion_unets.clear()
        _motion_unets[key] = combined
    for owner in (unet, adapter):  # ids are reused after collection: drop the entry then
        weakref.finalize(owner, _motion_unets.pop, key, None)
    return combined


def _shared_motion_unet(unet: Any, adapter: Any) -> UNetMotionModel:
    if adapter.config.get("conv_in_channels"):  # PIA: a conv_in merged from both (a copy)
        return UNetMotionModel.from_unet2d(unet, adapter).to(unet.device, unet.dtype).eval()
    adapter.to(unet.device, unet.dtype)
    with init_empty_weights():
        combined = UNetMotionModel.from_unet2d(unet, adapter, load_weights=False)
    loaded = {**dict(unet.named_parameters()), **dict(unet.named_buffers()),
              **dict(adapter.named_parameters()), **dict(adapter.named_buffers())}
    for name, tensor in [*combined.named_parameters(), *combined.named_buffers()]:
        owner_name, _, attr = name.rpartition(".")
        owner = combined.get_submodule(owner_name)
        source = loaded.get(name)
        if source is None or source.shape != tensor.shape:
            if tensor.is_meta:  # a weight neither model has: the two do not fit together
                raise ValueError(f"the motion adapter does not fit this UNet: no weight for "
                                 f"{name} {tuple(tensor.shape)}")
            continue  # a computed buffer (position tables) made at construction
        table = owner._parameters if attr in owner._parameters else owner._buffers
        table[attr] = source
    return combined.to(unet.device).eval()


# --- motion adapters ----------------------------------------------------------------------


def motion_version(name: str, shapes: Shapes) -> str:
    """AnimateDiff v1-5 / v2 / v3 from a motion module's keys, as diffusers tells them apart:
    v2 has a mid-block motion module; v1-5 none and 24-frame position encodings; v3 none and 32.

    Files already in diffusers' layout (e.g. distilled adapters) are told the same way.
    """
    if MOTION_PE in shapes:
        pe, mid = shapes[MOTION_PE], MOTION_MID in shapes
    elif DIFFUSERS_MOTION_NORM in shapes:
        pe = shapes.get(DIFFUSERS_MOTION_PE, (1, 32))
        mid = DIFFUSERS_MOTION_MID in shapes
    else:
        raise ModelLoadError(
            f"{name} is not an AnimateDiff motion module (none of its keys are motion modules). "
            f"Expected an SD 1.5 motion module (v1-5, v2 or v3, e.g. mm_sd_v15_v2.ckpt or "
            f"v3_sd15_mm.safetensors) in {MOTION_DIR}, or a diffusers MotionAdapter folder "
            f"(config.json + weights) there.")
    if mid:
        return "v2"
    return "v1-5" if len(pe) >= 2 and pe[1] == 24 else "v3"


def adapter_version(config: Mapping[str, Any]) -> str:
    """The same, from a diffusers MotionAdapter config."""
    if config.get("use_motion_mid_block", True):
        return "v2"
    return "v1-5" if config.get("motion_max_seq_length") == 24 else "v3"


def motion_config(version: str) -> Path:
    return CONFIGS / "animatediff" / version


def load_motion_adapter(path: Path, name: str) -> MotionModule:
    """An AnimateDiff motion adapter (diffusers folder or original single file) → MotionModule."""
    device = inference_device()
    dtype = inference_dtype(device)
    if path.is_dir():
        adapter, version = _motion_folder(path, name, dtype)
    elif path.is_file():
        adapter, version = _motion_file(path, name, dtype)
    else:
        raise ModelLoadError(f"{name} was not found: put AnimateDiff motion modules (files or "
                             f"diffusers MotionAdapter folders) in {MOTION_DIR}")
    return MotionModule(adapter.to(device), version, name)


def _motion_folder(folder: Path, name: str, dtype: torch.dtype) -> tuple[Any, str]:
    config = read_json(folder / "config.json")
    if config.get("_class_name") != "MotionAdapter":
        raise ModelLoadError(f"{name}: config.json describes a {config.get('_class_name')}, "
                             f"not a MotionAdapter; expected an AnimateDiff adapter in "
                             f"{MOTION_DIR}")
    try:
        adapter = MotionAdapter.from_pretrained(str(folder), local_files_only=True, dtype=dtype)
    except Exception as exc:
        raise ModelLoadError(f"{name}: the MotionAdapter folder could not be loaded "
                             f"({type(exc).__name__}: {exc}). Expected config.json and "
                             f"complete weights in {MOTION_DIR}{name}/.") from exc
    return adapter, adapter_version(config)


def _motion_file(path: Path, name: str, dtype: torch.dtype) -> tuple[Any, str]:
    state = read_state_dict(path, MOTION_DIR)
    version = motion_version(name, shapes_of(state))
    sidecar = sidecar_for(path)
    root = sidecar if sidecar and (sidecar / "config.json").is_file() else motion_config(version)
    hint = (f"An adapter whose shapes differ from AnimateDiff {version}'s needs its config.json "
            f"in a sidecar folder {path.stem}{SIDECAR_SUFFIX}/ next to it.")
    try:
        adapter = MotionAdapter.from_single_file(state, config=str(root), local_files_only=True,
                                                 dtype=dtype)
    except Exception as exc:
        raise ModelLoadError(f"{name}: the motion module does not fit the AnimateDiff {version} "
                             f"configuration ({first_sentence(exc)}). {hint}") from exc
    check_fully_loaded(adapter, "motion module", name, hint)
    return adapter, version


FAMILY = AnimateDiff()
