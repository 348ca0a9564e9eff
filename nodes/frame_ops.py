"""Edit FRAMES without materialising them: trim, keep every nth, join, reverse, ping-pong,
resize, crop, and read a clip's size and rate.

Each node reads its input a chunk at a time (in the stored dtype, so uint8 video stays uint8)
and writes a new store, so memory follows the chunk, not the clip. Audio travels along where
the timing survives (trims, resizes, crops, every nth frame at a divided rate) and is dropped
where it cannot (reversed, ping-pong, sped-up clips).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

from engine.frames import FRAMES, AudioSource, Frames, FramesWriter
from nodes.imaging import MAX_RESOLUTION, report_progress, resample

# Frames read at once; None lets each store choose (``Frames.chunk_frames``). Tests lower it.
CHUNK_FRAMES: int | None = None
RESIZE_METHODS = ("lanczos", "bicubic", "bilinear", "nearest")
RESIZE_FITS = ("crop", "stretch")
MAX_FRAMES = 1 << 24


def _frames_input(tooltip: str = "The clip.") -> tuple:
    return (FRAMES, {"tooltip": tooltip})


def _int(default: int, low: int, high: int, tooltip: str) -> tuple:
    return ("INT", {"default": default, "min": low, "max": high, "tooltip": tooltip})


def chunk_length(frames: Frames) -> int:
    return CHUNK_FRAMES or frames.chunk_frames()


def _writer_like(frames: Frames, fps: float | None = None, audio: AudioSource | None = None,
                 width: int | None = None, height: int | None = None) -> FramesWriter:
    return Frames.writer(width or frames.width, height or frames.height, fps or frames.fps,
                         frames.dtype, frames.channels, audio)


def _spans(start: int, stop: int, size: int) -> Iterator[tuple[int, int]]:
    for first in range(start, stop, size):
        yield first, min(first + size, stop)


def _copy(frames: Frames, spans: Iterable[tuple[int, int]], writer: FramesWriter,
          reverse: bool = False, done: int = 0, total: int | None = None) -> int:
    """Append ``frames[a:b]`` for each span (each reversed if asked); returns frames written."""
    total = total if total is not None else len(frames)
    for start, stop in spans:
        raw = frames.read_raw(start, stop)
        writer.append(raw[::-1] if reverse else raw)
        done += stop - start
        report_progress(done, total)
    return done


def _check_not_empty(frames: Frames, name: str = "frames") -> None:
    if len(frames) == 0:
        raise ValueError(f"input '{name}' has no frames")


class FramesTrim:
    """Keeps ``count`` frames from ``start`` (0 keeps the rest); the audio is cut to match."""

    DESCRIPTION = ("Keeps a part of the clip: 'count' frames from frame 'start' (0 = to the "
                   "end). The audio, if any, is trimmed to the same time span.")
    CATEGORY = "kinema/video"
    RETURN_TYPES = (FRAMES,)
    RETURN_NAMES = ("frames",)
    FUNCTION = "trim"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {
            "frames": _frames_input("The clip to trim."),
            "start": _int(0, 0, MAX_FRAMES, "Index of the first frame kept (0 = first)."),
            "count": _int(0, 0, MAX_FRAMES, "How many frames to keep; 0 keeps all to the end."),
        }}

    def trim(self, frames: Frames, start: int = 0, count: int = 0) -> tuple[Frames]:
        if not 0 <= start < len(frames):
            raise ValueError(f"start {start} is outside the clip's {len(frames)} frames "
                             f"(0 to {len(frames) - 1})")
        stop = len(frames) if count == 0 else min(start + count, len(frames))
        audio = None
        if frames.audio is not None:
            audio = frames.audio.trimmed(start / frames.fps, (stop - start) / frames.fps)
        writer = _writer_like(frames, audio=audio)
        _copy(frames, _spans(start, stop, chunk_length(frames)), writer, total=stop - start)
        return (writer.finish(),)


class FramesEveryNth:
    """Keeps frames ``offset``, ``offset + n``, ``offset + 2n`` ...; the rate is divided by
    ``n`` (same duration, audio kept) unless ``keep_fps`` (n times faster, audio dropped)."""

    DESCRIPTION = ("Keeps every nth frame from 'offset'. The frame rate is divided by n so the "
                   "clip lasts as long (audio kept); 'keep_fps' keeps the rate instead, which "
                   "plays it n times faster (audio dropped).")
    CATEGORY = "kinema/video"
    RETURN_TYPES = (FRAMES,)
    RETURN_NAMES = ("frames",)
    FUNCTION = "select"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {
            "frames": _frames_input("The clip to thin out."),
            "n": _int(2, 1, 1000, "Keep one frame in n."),
            "offset": _int(0, 0, MAX_FRAMES, "Index of the first frame kept."),
            "keep_fps": ("BOOLEAN", {"default": False, "tooltip": (
                "Keep the frame rate (the clip gets n times shorter and faster) instead of "
                "dividing it by n.")}),
        }}

    def select(self, frames: Frames, n: int = 2, offset: int = 0,
               keep_fps: bool = False) -> tuple[Frames]:
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n}")
        if not 0 <= offset < len(frames):
            raise ValueError(f"offset {offset} is outside the clip's {len(frames)} frames")
        fps, audio = frames.fps, None
        if not keep_fps:
            fps = frames.fps / n
            if frames.audio is not None:
                audio = frames.audio.trimmed(offset / frames.fps, None)
        writer = _writer_like(frames, fps=fps, audio=audio)
        kept = range(offset, len(frames), n)
        size = chunk_length(frames)
        if n <= size:  # read runs of a chunk (a multiple of n) and keep every nth frame
            spans = _spans(offset, len(frames), size - size % n)
            runs = ((start, stop, n) for start, stop in spans)
        else:  # the wanted frames are far apart: read just them
            runs = ((index, index + 1, 1) for index in kept)
        for start, stop, step in runs:
            writer.append(frames.read_raw(start, stop)[::step])
            report_progress(len(range(offset, stop, n)), len(kept))
        return (writer.finish(),)


class FramesConcat:
    """Plays ``second`` after ``first``; both must have the same size and channels."""

    DESCRIPTION = ("Joins two clips of the same size: 'first' then 'second', at the frame rate "
                   "of 'first'. Audio is kept when the second clip's audio continues the "
                   "first's (two trims of one source) or the second has none.")
    CATEGORY = "kinema/video"
    RETURN_TYPES = (FRAMES,)
    RETURN_NAMES = ("frames",)
    FUNCTION = "concat"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {
            "first": _frames_input("The clip that plays first (its frame rate is kept)."),
            "second": _frames_input("The clip that follows; same width, height and channels."),
        }}

    def concat(self, first: Frames, second: Frames) -> tuple[Frames]:
        if (second.width, second.height, second.channels) != (
                first.width, first.height, first.channels):
            raise ValueError(
                f"input 'second' is {second.width}x{second.height} with {second.channels} "
                f"channels but 'first' is {first.width}x{first.height} with {first.channels}; "
                "resize or crop 'second' (Resize Frames) to match first")
        dtype = first.dtype if first.dtype == second.dtype else "float16"
        writer = Frames.writer(first.width, first.height, first.fps, dtype, first.channels,
                               joined_audio(first, second))
        total = len(first) + len(second)
        done = _copy(first, _spans(0, len(first), chunk_length(first)), writer, total=total)
        _copy(second, _spans(0, len(second), chunk_length(second)), writer, done=done,
              total=total)
        return (writer.finish(),)


def joined_audio(first: Frames, second: Frames) -> AudioSource | None:
    """The audio of ``first`` then ``second``, when one source span can say it: the second's
    continues the first's in the same file, or the second has none (silence after the first's).
    """
    a, b = first.audio, second.audio
    if a is None:
        return None
    if b is None:
        return a.trimmed(0.0, first.duration)
    half_frame = 0.5 / first.fps
    if (a.path, a.stream) == (b.path, b.stream) and abs(b.start - a.start - first.duration) \
            < half_frame:
        return AudioSource(a.path, a.stream, a.start, first.duration + second.duration)
    return None


class FramesReverse:
    """Plays the clip backwards (read from the end, a chunk at a time); audio is dropped."""

    DESCRIPTION = "Plays the clip backwards. Its audio is dropped."
    CATEGORY = "kinema/video"
    RETURN_TYPES = (FRAMES,)
    RETURN_NAMES = ("frames",)
    FUNCTION = "reverse"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {"frames": _frames_input("The clip to reverse.")}}

    def reverse(self, frames: Frames) -> tuple[Frames]:
        writer = _writer_like(frames)
        _copy(frames, _backwards(0, len(frames), chunk_length(frames)), writer, reverse=True)
        return (writer.finish(),)


def _backwards(start: int, stop: int, size: int) -> Iterator[tuple[int, int]]:
    """Spans of ``size`` frames covering ``start:stop``, the last one first."""
    for end in range(stop, start, -size):
        yield max(end - size, start), end


class FramesPingPong:
    """Plays the clip forwards then backwards, ending just before the first frame, so it
    loops seamlessly (0 1 2 3 2 1); audio is dropped."""

    DESCRIPTION = ("Plays the clip forwards, then backwards without repeating the last or the "
                   "first frame, so the result loops smoothly (0 1 2 3 2 1 | 0 ...). Audio is "
                   "dropped.")
    CATEGORY = "kinema/video"
    RETURN_TYPES = (FRAMES,)
    RETURN_NAMES = ("frames",)
    FUNCTION = "ping_pong"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {"frames": _frames_input("The clip to bounce.")}}

    def ping_pong(self, frames: Frames) -> tuple[Frames]:
        _check_not_empty(frames)
        size, length = chunk_length(frames), len(frames)
        total = max(2 * length - 2, length)
        writer = _writer_like(frames)
        done = _copy(frames, _spans(0, length, size), writer, total=total)
        _copy(frames, _backwards(1, length - 1, size), writer, reverse=True, done=done,
              total=total)
        return (writer.finish(),)


class FramesResize:
    """Resizes every frame, cropping to the new aspect ratio or stretching to it."""

    DESCRIPTION = ("Resizes every frame to width x height. 'crop' cuts the sides (centred) to "
                   "the new aspect ratio first; 'stretch' distorts. A 0 side follows the "
                   "other's scale.")
    CATEGORY = "kinema/video"
    RETURN_TYPES = (FRAMES,)
    RETURN_NAMES = ("frames",)
    FUNCTION = "resize"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {
            "frames": _frames_input("The clip to resize."),
            "width": _int(512, 0, MAX_RESOLUTION, "New width; 0 keeps the aspect ratio."),
            "height": _int(512, 0, MAX_RESOLUTION, "New height; 0 keeps the aspect ratio."),
            "method": (list(RESIZE_METHODS), {"default": "lanczos", "tooltip": (
                "lanczos: sharpest; bicubic and bilinear: smoother; nearest: blocky pixels.")}),
            "fit": (list(RESIZE_FITS), {"default": "crop", "tooltip": (
                "crop: cut the sides to keep proportions; stretch: fill the size exactly.")}),
        }}

    def resize(self, frames: Frames, width: int, height: int, method: str = "lanczos",
               fit: str = "crop") -> tuple[Frames]:
        if width == 0 and height == 0:
            raise ValueError("width and height are both 0: give at least one")
        if fit not in RESIZE_FITS:
            raise ValueError(f"fit must be one of {', '.join(RESIZE_FITS)}, not {fit!r}")
        if width == 0:
            width = max(1, round(frames.width * height / frames.height))
        elif height == 0:
            height = max(1, round(frames.height * width / frames.width))
        writer = _writer_like(frames, audio=frames.audio, width=width, height=height)
        crop = "center" if fit == "crop" else "disabled"
        for start, images in frames.chunks(chunk_length(frames)):
            out = resample(images.movedim(-1, 1), width, height, method, crop)
            writer.append(out.movedim(1, -1))
            report_progress(start + len(images), len(frames))
        return (writer.finish(),)


class FramesCrop:
    """Cuts a rectangle out of every frame."""

    DESCRIPTION = "Keeps the width x height rectangle at (x, y) of every frame."
    CATEGORY = "kinema/video"
    RETURN_TYPES = (FRAMES,)
    RETURN_NAMES = ("frames",)
    FUNCTION = "crop"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {
            "frames": _frames_input("The clip to crop."),
            "x": _int(0, 0, MAX_RESOLUTION, "Left edge of the rectangle, in pixels."),
            "y": _int(0, 0, MAX_RESOLUTION, "Top edge of the rectangle, in pixels."),
            "width": _int(512, 1, MAX_RESOLUTION, "Width of the rectangle."),
            "height": _int(512, 1, MAX_RESOLUTION, "Height of the rectangle."),
        }}

    def crop(self, frames: Frames, x: int, y: int, width: int, height: int) -> tuple[Frames]:
        if x < 0 or y < 0 or width < 1 or height < 1 or x + width > frames.width \
                or y + height > frames.height:
            raise ValueError(
                f"the crop {width}x{height} at ({x}, {y}) does not fit in the "
                f"{frames.width}x{frames.height} frames of input 'frames': keep x + width <= "
                f"{frames.width} and y + height <= {frames.height}")
        writer = _writer_like(frames, audio=frames.audio, width=width, height=height)
        for start, raw in frames.raw_chunks(chunk_length(frames)):
            writer.append(np.ascontiguousarray(raw[:, y:y + height, x:x + width]))
            report_progress(start + len(raw), len(frames))
        return (writer.finish(),)


class FramesInfo:
    """The frame rate, frame count and size of a clip."""

    DESCRIPTION = "Outputs the clip's frame rate, number of frames, width and height."
    CATEGORY = "kinema/video"
    RETURN_TYPES = ("FLOAT", "INT", "INT", "INT")
    RETURN_NAMES = ("fps", "frame_count", "width", "height")
    FUNCTION = "info"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {"frames": _frames_input("The clip to describe.")}}

    def info(self, frames: Frames) -> tuple[float, int, int, int]:
        return (frames.fps, len(frames), frames.width, frames.height)


NODE_CLASS_MAPPINGS = {
    "FramesTrim": FramesTrim,
    "FramesEveryNth": FramesEveryNth,
    "FramesConcat": FramesConcat,
    "FramesReverse": FramesReverse,
    "FramesPingPong": FramesPingPong,
    "FramesResize": FramesResize,
    "FramesCrop": FramesCrop,
    "FramesInfo": FramesInfo,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "FramesTrim": "Trim Frames",
    "FramesEveryNth": "Every Nth Frame",
    "FramesConcat": "Concatenate Frames",
    "FramesReverse": "Reverse Frames",
    "FramesPingPong": "Ping-Pong Frames",
    "FramesResize": "Resize Frames",
    "FramesCrop": "Crop Frames",
    "FramesInfo": "Frames Info",
}
