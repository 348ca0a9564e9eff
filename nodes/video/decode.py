"""Reading video files frame by frame: FFmpeg (PyAV) for videos, Pillow for animated WebP.

A reader opens the file once, tells its size, rate and length, and yields the decoded frames
in display order with their time on the source's timeline. A frame is converted to RGB only
when asked, so the frames a loader drops cost a decode but never a conversion.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import av
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Two times closer than this are the same instant (timestamps are rounded rationals).
TIME_EPS = 1e-4
# FFmpeg cannot decode animated WebP; Pillow can.
PILLOW_SUFFIXES = frozenset({".webp"})
FALLBACK_FPS = 24.0


class SourceFrame:
    """A decoded frame: its time in seconds and its pixels, converted on first use."""

    def __init__(self, time: float, convert: Callable[[], np.ndarray]):
        self.time = time
        self._convert: Callable[[], np.ndarray] | None = convert
        self._rgb: np.ndarray | None = None

    def rgb(self) -> np.ndarray:
        """The frame as uint8 ``[H,W,3]`` (converted once, however often it is shown)."""
        if self._convert is not None:
            self._rgb, self._convert = self._convert(), None
        assert self._rgb is not None
        return self._rgb


class VideoReader(Protocol):
    """An opened video: its rate and length, its frames, and the audio stream it carries."""

    path: Path
    fps: float
    frame_count: int
    start: float
    audio_stream: int | None

    @property
    def duration(self) -> float: ...

    def frames(self, from_time: float = 0.0) -> Iterator[SourceFrame]: ...

    def close(self) -> None: ...


def open_video(path: Path, input_name: str = "video") -> VideoReader:
    """A reader for ``path``; a missing or unreadable file, or one without a video stream, is
    a ValueError naming ``input_name``."""
    if not path.is_file():
        raise ValueError(f"input '{input_name}': {path.name!r} does not exist; upload it "
                         "or pick another file")
    if path.suffix.lower() in PILLOW_SUFFIXES:
        return AnimatedImageReader(path, input_name)
    return FFmpegReader(path, input_name)


class FFmpegReader:
    """A video file FFmpeg reads (MP4, WebM, MOV, MKV, AVI, GIF ...), through PyAV."""

    def __init__(self, path: Path, input_name: str = "video"):
        self.path = path
        try:
            self._container = av.open(str(path))
        except av.FFmpegError as exc:
            raise ValueError(f"input '{input_name}': {path.name!r} is not a video FFmpeg can "
                             f"read ({exc}); pick a video file (MP4, WebM, MOV, MKV, GIF ...)",
                             ) from exc
        if not self._container.streams.video:
            self._container.close()
            raise ValueError(f"input '{input_name}': {path.name!r} has no video stream "
                             "(an audio-only or data file?); pick a video file")
        stream = self._stream = self._container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        self.fps = float(rate) if rate else FALLBACK_FPS
        self.start = float(stream.start_time * stream.time_base) if stream.start_time else 0.0
        self._duration = self._probe_duration()
        self.frame_count = stream.frames or max(round(self._duration * self.fps), 1)
        audio = self._container.streams.audio
        self.audio_stream = audio[0].index if audio else None

    def _probe_duration(self) -> float:
        stream = self._stream
        if stream.duration:
            return float(stream.duration * stream.time_base)
        if self._container.duration:
            return self._container.duration / av.time_base
        return stream.frames / self.fps if stream.frames else 0.0

    @property
    def duration(self) -> float:
        return self._duration

    def frames(self, from_time: float = 0.0) -> Iterator[SourceFrame]:
        """Frames in display order, starting at the keyframe before ``from_time``."""
        stream = self._stream
        if from_time > self.start + TIME_EPS:
            # Not seekable (a pipe, some GIFs): decode from the start instead.
            with contextlib.suppress(av.FFmpegError):
                self._container.seek(int(from_time / stream.time_base), stream=stream,
                                     backward=True)
        index = 0
        for packet in self._container.demux(stream):
            try:
                decoded = packet.decode()
            except av.InvalidDataError:
                continue  # a damaged packet: skip it and go on, as FFmpeg does
            for frame in decoded:
                time = frame.time if frame.time is not None else self.start + index / self.fps
                index += 1
                yield SourceFrame(time, _converter(frame))

    def close(self) -> None:
        self._container.close()


def _converter(frame: av.VideoFrame) -> Callable[[], np.ndarray]:
    # The frame's own colorspace and range tags drive the conversion (PyAV's default).
    return lambda: frame.to_ndarray(format="rgb24")


class AnimatedImageReader:
    """An animated (or still) image Pillow reads, frame by frame (animated WebP)."""

    audio_stream = None
    start = 0.0

    def __init__(self, path: Path, input_name: str = "video"):
        self.path = path
        try:
            self._image = Image.open(path)
        except (OSError, UnidentifiedImageError) as exc:
            raise ValueError(f"input '{input_name}': {path.name!r} is not an image or video "
                             f"that can be read ({exc})") from exc
        self.frame_count = getattr(self._image, "n_frames", 1)
        self._image.load()
        first = self._image.info.get("duration") or 0
        self.fps = 1000.0 / first if first > 0 else FALLBACK_FPS

    @property
    def duration(self) -> float:
        return self.frame_count / self.fps

    def frames(self, from_time: float = 0.0) -> Iterator[SourceFrame]:
        elapsed_ms = 0.0
        for index in range(self.frame_count):
            self._image.seek(index)
            self._image.load()
            rgb = np.asarray(ImageOps.exif_transpose(self._image).convert("RGB"))
            yield SourceFrame(elapsed_ms / 1000.0, lambda rgb=rgb: rgb)
            elapsed_ms += self._image.info.get("duration") or 1000.0 / self.fps

    def close(self) -> None:
        self._image.close()


@dataclass(frozen=True)
class FrameSelection:
    """Which frames of a source to keep: the first ``skip`` frames are dropped, then every
    ``every_nth`` one is kept, at most ``cap`` (0: all). ``fps`` resamples the source to that
    rate first (frames repeated or dropped by time; 0: the source's own frames)."""

    skip: int = 0
    cap: int = 0
    every_nth: int = 1
    fps: float = 0.0

    def base_fps(self, reader: VideoReader) -> float:
        """The rate ``skip`` and ``every_nth`` count frames at."""
        return self.fps or reader.fps

    def output_fps(self, reader: VideoReader) -> float:
        """The kept frames' rate: one kept frame stands for ``every_nth`` source frames."""
        return self.base_fps(reader) / self.every_nth

    def expected_count(self, reader: VideoReader) -> int:
        """About how many frames will be kept (for progress; the exact count comes out)."""
        total = round(reader.duration * self.fps) if self.fps else reader.frame_count
        kept = math.ceil(max(total - self.skip, 0) / self.every_nth)
        return min(kept, self.cap) if self.cap else kept


def select_frames(reader: VideoReader, selection: FrameSelection,
                  ) -> Iterator[tuple[float, SourceFrame]]:
    """The kept frames as ``(time, frame)``: ``time`` is when the frame is shown on the
    source's timeline (for a resampled rate, the time of the slot it fills)."""
    base = selection.base_fps(reader)
    first_time = reader.start + selection.skip / base
    if selection.fps:
        timeline = _resampled(reader, first_time, selection.fps)
    else:
        timeline = ((f.time, f) for f in reader.frames(first_time)
                    if round((f.time - reader.start) * base) >= selection.skip)
    kept = 0
    for position, item in enumerate(timeline):
        if position % selection.every_nth:
            continue
        yield item
        kept += 1
        if selection.cap and kept >= selection.cap:
            return


def _resampled(reader: VideoReader, first_time: float, fps: float,
               ) -> Iterator[tuple[float, SourceFrame]]:
    """Slots at ``first_time + k / fps``, each filled by the frame on screen at that time."""
    slot = 0
    current: SourceFrame | None = None
    for frame in reader.frames(first_time):
        while current is not None and first_time + slot / fps < frame.time - TIME_EPS:
            yield first_time + slot / fps, current
            slot += 1
        current = frame
    if current is None:
        return
    end = current.time + 1 / reader.fps  # the last frame stays on screen one source frame
    while first_time + slot / fps < end - TIME_EPS:
        yield first_time + slot / fps, current
        slot += 1
