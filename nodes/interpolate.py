"""Frame interpolation: more frames per second from FRAMES, chunk by chunk.

Three ways to make an in-between frame: ``optical_flow`` (OpenCV DIS flow, warping and
occlusion-aware blending; needs no weights), ``rife`` (RIFE 4.x weights from
``models/interpolate/``; CUDA when present) and ``blend`` (a cross-fade, the baseline). At a
scene cut no method blends: the in-between frames repeat the nearer original.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from fractions import Fraction
from functools import lru_cache
from pathlib import Path

import numpy as np

from engine.folders import active_folders, path_stamp
from engine.frames import Frames, to_uint8
from nodes.imaging import report_progress
from nodes.video import flow
from nodes.video.rife import RifeInterpolator, load_ifnet
from nodes.video.scenes import hold_across_cut, is_scene_cut

CATEGORY = "kinema/video"
METHODS = ("optical_flow", "rife", "blend")
MODEL_KIND = "interpolate"
NO_MODEL = "none"
MAX_FPS = 1000.0
# Input frames read per chunk; None lets the store choose (about 32 MB as float32).
CHUNK_FRAMES: int | None = None
# Frame rates are matched as fractions; this bounds the denominators (23.976 = 24000/1001).
FPS_DENOMINATOR = 1001 * 1000

PairInterpolator = Callable[[np.ndarray, np.ndarray, list[float]], list[np.ndarray]]


def blend_pair(a: np.ndarray, b: np.ndarray, times: list[float]) -> list[np.ndarray]:
    """Cross-fades of uint8 frames ``a`` and ``b``: ``(1 - t)·a + t·b`` for each time."""
    a32, b32 = a.astype(np.float32), b.astype(np.float32)
    return [np.rint(a32 + t * (b32 - a32)).astype(np.uint8) for t in times]


def interpolate_frames(frames: Frames, interpolate_pair: PairInterpolator, step: Fraction,
                       fps: float, scene_threshold: float = 0.0,
                       chunk_size: int | None = None) -> Frames:
    """A uint8 store at ``fps`` whose frame ``k`` is the input at position ``k·step`` (in input
    frames): the original where that is a whole number, else made by ``interpolate_pair``
    from the two frames around it (or held across a scene cut). It ends at the last input
    frame when a position falls on it, as every whole multiplier's does.

    The input is read ``chunk_size`` frames at a time, each chunk with the last frame of the
    one before, so every pair of neighbours is seen once.
    """
    writer = Frames.writer(frames.width, frames.height, fps, "uint8", audio=frames.audio)
    total = len(frames)
    for start, chunk in frames.raw_chunks(chunk_size, overlap=1):
        originals = to_uint8(chunk)
        end = start + len(originals)
        for index in range(start, end - 1):
            a, b = originals[index - start], originals[index - start + 1]
            made = _frames_between(a, b, _times_in(index, step), interpolate_pair,
                                   scene_threshold)
            if made:
                writer.append(np.stack(made))
        if end == total and ((total - 1) / step).denominator == 1:
            writer.append(originals[-1:])
        report_progress(end, total)
    return writer.finish()


def _times_in(index: int, step: Fraction) -> list[Fraction]:
    """Offsets (0 <= t < 1) from input frame ``index`` of the output positions before the
    next input frame."""
    first, stop = math.ceil(index / step), math.ceil((index + 1) / step)
    return [k * step - index for k in range(first, stop)]


def _frames_between(a: np.ndarray, b: np.ndarray, times: list[Fraction],
                    interpolate_pair: PairInterpolator, scene_threshold: float,
                    ) -> list[np.ndarray]:
    between = [float(t) for t in times if t > 0]
    if not between:
        made: list[np.ndarray] = []
    elif is_scene_cut(a, b, scene_threshold):
        made = hold_across_cut(a, b, between)
    else:
        made = interpolate_pair(a, b, between)
    # Only an output at t = 0 (the original) can come before the made ones.
    return [a, *made] if times and times[0] == 0 else made


def _as_fraction(value: float) -> Fraction:
    return Fraction(value).limit_denominator(FPS_DENOMINATOR)


@lru_cache(maxsize=1)
def _loaded_rife(path: Path, stamp: str) -> RifeInterpolator:
    """The last RIFE model used, kept while its file is unchanged (``stamp``: its
    ``path_stamp``)."""
    return RifeInterpolator(load_ifnet(path, path.name))


class FrameInterpolate:
    """Raises the frame rate of a clip by making in-between frames.

    A clip of n frames times m gives (n-1)·m + 1 frames at m times the fps: m frames for each
    pair of neighbours (the earlier original, then m-1 made ones), then the last original.
    ComfyUI-Frame-Interpolation (its RIFE/FILM nodes) and Practical-RIFE's inference_video.py
    count the same way: nothing is invented after the last frame, so the clip is (m-1)/m of a
    source frame shorter. With ``target_fps`` the output frames sit at k/target_fps seconds,
    from 0 up to the last input frame, each made between the two input frames around it.
    """

    DESCRIPTION = ("Makes in-between frames to raise the frame rate (x2, x4, x8 ... or to a "
                   "target fps): optical flow (no weights needed), RIFE 4.x (weights in "
                   "models/interpolate/) or a plain blend. Scene cuts are held, not blended.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("FRAMES",)
    RETURN_NAMES = ("frames",)
    FUNCTION = "interpolate"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        models = active_folders().model_files(MODEL_KIND) or [NO_MODEL]
        return {"required": {
            "frames": ("FRAMES", {"tooltip": "The clip to interpolate (RGB)."}),
            "method": (list(METHODS), {
                "default": METHODS[0],
                "tooltip": "optical_flow: dense flow, warping and occlusion-aware blending, no "
                           "weights. rife: RIFE 4.x network (sharper on large motion), needs "
                           "rife_model. blend: cross-fade of the two frames."}),
            "multiplier": ("INT", {
                "default": 2, "min": 2, "max": 16,
                "tooltip": "Frames per input frame (2, 4, 8 ...): the fps is multiplied by it. "
                           "Ignored when target_fps is set."}),
            "target_fps": ("FLOAT", {
                "default": 0.0, "min": 0.0, "max": MAX_FPS, "step": 0.001,
                "tooltip": "Output frame rate; frames are made at those times. 0 uses the "
                           "multiplier."}),
            "rife_model": (models, {
                "default": models[0],
                "tooltip": "RIFE 4.5-4.26 weights (flownet.pkl renamed, .pth or .safetensors) "
                           "in models/interpolate/; only used by the rife method."}),
            "scene_threshold": ("FLOAT", {
                "default": 0.5, "min": 0.0, "max": 1.0, "step": 0.01,
                "tooltip": "Scene cut sensitivity: a cut is found where more than this share "
                           "of the colours changes between two frames; across it frames are "
                           "repeated, not blended. Lower finds more cuts; 0 turns it off."}),
        }}

    @classmethod
    def VALIDATE_INPUTS(cls, method: str = METHODS[0], rife_model: str = NO_MODEL) -> bool | str:
        # rife_model is checked here, not as a combo, so a workflow naming weights this
        # machine lacks still runs with the other methods.
        if method not in METHODS:
            return f"method must be one of {', '.join(METHODS)}, got {method!r}"
        if method == "rife" and active_folders().model_path(MODEL_KIND, rife_model) is None:
            return (f"rife_model {rife_model!r} was not found: put RIFE 4.x weights "
                    "(flownet.pkl renamed to e.g. rife46.pth, or .safetensors) in "
                    "models/interpolate/, or choose the optical_flow method")
        return True

    @classmethod
    def IS_CHANGED(cls, method: str = METHODS[0], rife_model: str = NO_MODEL) -> str:
        path = active_folders().model_path(MODEL_KIND, rife_model) if method == "rife" else None
        return "" if path is None else path_stamp(path)

    def interpolate(self, frames: Frames, method: str = METHODS[0], multiplier: int = 2,
                    target_fps: float = 0.0, rife_model: str = NO_MODEL,
                    scene_threshold: float = 0.5) -> tuple[Frames]:
        if frames.channels != 3:
            raise ValueError(f"input 'frames' has {frames.channels} channels; Interpolate "
                             "Frames works on RGB clips (3 channels)")
        if target_fps < 0 or (target_fps == 0 and multiplier < 1):
            raise ValueError("target_fps must be positive (or 0 to use multiplier, which must "
                             f"be at least 1); got target_fps={target_fps}, "
                             f"multiplier={multiplier}")
        if target_fps > 0:
            step, fps = _as_fraction(frames.fps) / _as_fraction(target_fps), target_fps
        else:
            step, fps = Fraction(1, multiplier), frames.fps * multiplier
        store = interpolate_frames(frames, self._pair_interpolator(method, rife_model), step,
                                   fps, scene_threshold, CHUNK_FRAMES)
        return (store,)

    @staticmethod
    def _pair_interpolator(method: str, rife_model: str) -> PairInterpolator:
        if method == "optical_flow":
            return flow.interpolate_pair
        if method == "blend":
            return blend_pair
        if method == "rife":
            path = active_folders().model_path(MODEL_KIND, rife_model)
            if path is None or not path.is_file():
                raise ValueError(FrameInterpolate.VALIDATE_INPUTS(method, rife_model))
            return _loaded_rife(path, path_stamp(path)).interpolate_pair
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")


NODE_CLASS_MAPPINGS = {"FrameInterpolate": FrameInterpolate}
NODE_DISPLAY_NAME_MAPPINGS = {"FrameInterpolate": "Interpolate Frames"}
