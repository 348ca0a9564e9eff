"""FRAMES: chunked frame sequences for videos larger than RAM.

A minute of 1080p at 24 fps is 9 GB as uint8 and 36 GB as an IMAGE batch, so video nodes pass
a ``Frames`` store instead: frames ``[H,W,C]`` held in chunks, uint8 (decoded video) or
float16 (images made by the graph), in RAM while the process-wide frame budget lasts and in
``.npy`` files under the temp folder beyond it. A node reads it a chunk at a time (with the
overlap an interpolator needs) and writes its result into a new store, so peak memory follows
the chunk, not the length of the clip.

A store is written once (``FramesWriter``) and then read-only, so the output cache can hold
and share it like any output; ``nbytes`` is the RAM it holds, which the cache counts. Any
IMAGE output can feed a FRAMES input (``as_frames``), and a FRAMES output feeds an IMAGE input
by being materialised (``as_images``), refused with a clear error when it would not fit.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.cache import available_memory
from engine.folders import active_folders

FRAMES = "FRAMES"
IMAGE = "IMAGE"
DEFAULT_FPS = 8.0
# Frames per chunk are chosen so a chunk is about this big: large enough that per-chunk
# costs vanish, small enough that a few chunks in flight stay far below the budget.
CHUNK_BYTES = 32 << 20
DTYPES = {"uint8": np.uint8, "float16": np.float16}
# Materialising refuses to take more than this share of the memory still available.
MATERIALISE_FRACTION = 0.5


class FramesError(ValueError):
    """A frame sequence that cannot be used as asked (too large, mismatched sizes ...)."""


@dataclass(frozen=True)
class AudioSource:
    """Audio that belongs with a clip: a stream of a source file, from ``start`` seconds, for
    ``duration`` seconds (None: to the end). The encoder copies it into its output."""

    path: Path
    stream: int = 0
    start: float = 0.0
    duration: float | None = None

    def trimmed(self, start: float, duration: float | None) -> AudioSource:
        """The part of this audio from ``start`` seconds (relative to it), ``duration`` long."""
        remaining = None if self.duration is None else max(self.duration - start, 0.0)
        if duration is None or remaining is None:
            length = remaining if duration is None else duration
        else:
            length = min(duration, remaining)
        return replace(self, start=self.start + start, duration=length)


class FramePool:
    """The process-wide RAM budget for frame chunks; a chunk that does not fit goes to disk."""

    def __init__(self, budget_bytes: int | None = None):
        self.budget_bytes = default_frames_budget() if budget_bytes is None else budget_bytes
        self.used_bytes = 0
        self._lock = threading.Lock()

    def reserve(self, nbytes: int) -> bool:
        with self._lock:
            if self.used_bytes + nbytes > self.budget_bytes:
                return False
            self.used_bytes += nbytes
            return True

    def release(self, nbytes: int) -> None:
        with self._lock:
            self.used_bytes -= nbytes


def default_frames_budget() -> int:
    """``KINEMA_FRAMES_RAM`` (bytes) when set, else a quarter of the available memory."""
    configured = os.environ.get("KINEMA_FRAMES_RAM")
    if configured:
        return int(configured)
    return available_memory() // 4


_pool = FramePool()


def frame_pool() -> FramePool:
    return _pool


def set_frames_budget(budget_bytes: int) -> None:
    """Change the RAM budget for chunks written from now on (a server or bench setting)."""
    _pool.budget_bytes = budget_bytes


@dataclass
class _Chunk:
    start: int
    length: int
    data: np.ndarray | None = None  # in RAM
    path: Path | None = None  # spilled


@dataclass
class _Storage:
    """What a store owns; released when the store is collected."""

    chunks: list[_Chunk] = field(default_factory=list)
    ram_bytes: int = 0
    spill_dir: Path | None = None

    def release(self) -> None:
        _pool.release(self.ram_bytes)
        self.ram_bytes = 0
        self.chunks.clear()
        if self.spill_dir is not None:
            shutil.rmtree(self.spill_dir, ignore_errors=True)


class Frames:
    """A read-only sequence of ``length`` frames of ``height`` x ``width`` x ``channels``.

    Read it with ``chunks`` (float32 tensors ``[n,H,W,C]`` in 0..1, the IMAGE convention),
    ``read`` for a range, or ``to_images`` for all of it; write one with ``Frames.writer``.
    """

    def __init__(self, storage: _Storage, width: int, height: int, channels: int, fps: float,
                 dtype: str, length: int, audio: AudioSource | None):
        self._storage = storage
        self.width, self.height, self.channels = width, height, channels
        self.fps, self.dtype, self.length, self.audio = fps, dtype, length, audio
        weakref.finalize(self, storage.release)

    # --- writing ---------------------------------------------------------------------------

    @staticmethod
    def writer(width: int, height: int, fps: float, dtype: str = "uint8", channels: int = 3,
               audio: AudioSource | None = None) -> FramesWriter:
        """A writer for a new store; ``finish()`` gives the store."""
        return FramesWriter(width, height, fps, dtype, channels, audio)

    @staticmethod
    def from_images(images: torch.Tensor, fps: float = DEFAULT_FPS, dtype: str = "float16",
                    ) -> Frames:
        """An IMAGE batch ``[B,H,W,C]`` as a store (float16 by default: no visible loss)."""
        if images.ndim != 4:
            raise FramesError(f"an IMAGE batch is [B,H,W,C], got shape {list(images.shape)}")
        writer = Frames.writer(images.shape[2], images.shape[1], fps, dtype, images.shape[3])
        writer.append(images)
        return writer.finish()

    # --- reading ---------------------------------------------------------------------------

    def __len__(self) -> int:
        return self.length

    @property
    def nbytes(self) -> int:
        """Bytes held in RAM (what the output cache counts); spilled chunks are on disk."""
        return self._storage.ram_bytes

    @property
    def disk_bytes(self) -> int:
        return sum(c.length * self.frame_bytes for c in self._storage.chunks if c.path)

    @property
    def frame_bytes(self) -> int:
        return self.width * self.height * self.channels * np.dtype(DTYPES[self.dtype]).itemsize

    @property
    def duration(self) -> float:
        return self.length / self.fps if self.fps else 0.0

    @property
    def image_bytes(self) -> int:
        """What the whole clip takes as an IMAGE batch (float32)."""
        return self.length * self.width * self.height * self.channels * 4

    def read_raw(self, start: int, stop: int) -> np.ndarray:
        """A copy of frames ``start:stop`` in the stored dtype, ``[n,H,W,C]``."""
        start, stop = max(start, 0), min(stop, self.length)
        parts = []
        for chunk in self._storage.chunks:
            lo, hi = max(start, chunk.start), min(stop, chunk.start + chunk.length)
            if lo >= hi:
                continue
            data = chunk.data if chunk.data is not None else np.load(chunk.path, mmap_mode="r")
            parts.append(np.array(data[lo - chunk.start:hi - chunk.start]))
        if not parts:
            return np.zeros((0, self.height, self.width, self.channels), DTYPES[self.dtype])
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def read(self, start: int, stop: int) -> torch.Tensor:
        """Frames ``start:stop`` as float32 ``[n,H,W,C]`` in 0..1."""
        return to_float(self.read_raw(start, stop))

    def raw_chunks(self, size: int | None = None, overlap: int = 0,
                   ) -> Iterator[tuple[int, np.ndarray]]:
        """``(start, frames)`` for consecutive chunks of ``size`` new frames in the stored
        dtype, each preceded by up to ``overlap`` frames of the previous chunk (so ``start``
        may be before the new ones)."""
        size = size or self.chunk_frames()
        for first in range(0, self.length, size):
            begin = max(first - overlap, 0)
            yield begin, self.read_raw(begin, min(first + size, self.length))

    def chunks(self, size: int | None = None, overlap: int = 0,
               ) -> Iterator[tuple[int, torch.Tensor]]:
        """``raw_chunks`` as float32 tensors ``[n,H,W,C]`` in 0..1 (the IMAGE convention)."""
        for start, raw in self.raw_chunks(size, overlap):
            yield start, to_float(raw)

    def chunk_frames(self, chunk_bytes: int = CHUNK_BYTES) -> int:
        """Frames in a chunk of about ``chunk_bytes`` as float32 (at least one)."""
        return max(1, chunk_bytes // max(self.width * self.height * self.channels * 4, 1))

    def to_images(self, input_name: str = "images") -> torch.Tensor:
        """The whole clip as an IMAGE batch, if it fits in the memory left."""
        limit = int(available_memory() * MATERIALISE_FRACTION)
        if self.image_bytes > limit:
            raise FramesError(
                f"input '{input_name}' takes an IMAGE batch, and these FRAMES ({self.length} "
                f"frames of {self.width}x{self.height}) would take {_gib(self.image_bytes)} as "
                f"one; only {_gib(limit)} can be spared. Trim the clip or lower its size first, "
                "or use nodes that take FRAMES (they work chunk by chunk).")
        return self.read(0, self.length)

    def describe(self) -> str:
        return (f"Frames[{self.length} x {self.width}x{self.height}x{self.channels} "
                f"{self.dtype} @ {self.fps:g} fps]")

    def __repr__(self) -> str:
        return self.describe()


class FramesWriter:
    """Appends frames into chunks of a new store; whatever does not fit the budget spills."""

    def __init__(self, width: int, height: int, fps: float, dtype: str, channels: int,
                 audio: AudioSource | None):
        if dtype not in DTYPES:
            raise FramesError(f"frames are stored as {' or '.join(DTYPES)}, not {dtype!r}")
        if width < 1 or height < 1:
            raise FramesError(f"frames need a size, got {width}x{height}")
        if not fps > 0:
            raise FramesError(f"fps must be positive, got {fps}")
        self.width, self.height, self.channels = width, height, channels
        self.fps, self.dtype, self.audio = float(fps), dtype, audio
        self._storage = _Storage()
        self._finalizer = weakref.finalize(self, self._storage.release)
        frame = width * height * channels * np.dtype(DTYPES[dtype]).itemsize
        self._chunk_frames = max(1, CHUNK_BYTES // 2 // frame)
        self._pending: list[np.ndarray] = []
        self._pending_frames = 0
        self.length = 0

    def append(self, frames: torch.Tensor | np.ndarray) -> None:
        """Add frames ``[n,H,W,C]`` (a float tensor in 0..1, or uint8/float16 arrays)."""
        array = self._convert(frames)
        if array.shape[1:] != (self.height, self.width, self.channels):
            raise FramesError(f"frames of {array.shape[2]}x{array.shape[1]}x{array.shape[3]} "
                              f"cannot join a clip of {self.width}x{self.height}x"
                              f"{self.channels}; resize them first")
        self._pending.append(array)
        self._pending_frames += len(array)
        while self._pending_frames >= self._chunk_frames:
            self._flush(self._chunk_frames)

    def finish(self) -> Frames:
        """The finished, read-only store."""
        if self._pending_frames:
            self._flush(self._pending_frames)
        self._finalizer.detach()
        return Frames(self._storage, self.width, self.height, self.channels, self.fps,
                      self.dtype, self.length, self.audio)

    def _convert(self, frames: torch.Tensor | np.ndarray) -> np.ndarray:
        if isinstance(frames, torch.Tensor):
            frames = frames.detach().cpu()
            if frames.dtype.is_floating_point:
                frames = frames.float().clamp(0, 1)
                if self.dtype == "uint8":
                    frames = frames.mul(255).round().to(torch.uint8)
            frames = frames.numpy()
        if frames.ndim == 3:
            frames = frames[None]
        target = DTYPES[self.dtype]
        if frames.dtype == target:
            return np.ascontiguousarray(frames)
        if frames.dtype == np.uint8:
            return (frames.astype(np.float32) / 255).astype(target)
        if self.dtype == "uint8":
            return to_uint8(frames)
        return frames.astype(target)

    def _flush(self, count: int) -> None:
        merged = np.concatenate(self._pending) if len(self._pending) > 1 else self._pending[0]
        data, rest = merged[:count], merged[count:]
        self._pending = [rest] if len(rest) else []
        self._pending_frames = len(rest)
        chunk = _Chunk(self.length, len(data))
        nbytes = data.nbytes
        if _pool.reserve(nbytes):
            chunk.data = np.ascontiguousarray(data)
            self._storage.ram_bytes += nbytes
        else:
            chunk.path = self._spill_dir() / f"{self.length:09d}.npy"
            np.save(chunk.path, data)
        self._storage.chunks.append(chunk)
        self.length += len(data)

    def _spill_dir(self) -> Path:
        if self._storage.spill_dir is None:
            root = active_folders().temp / "frames"
            root.mkdir(parents=True, exist_ok=True)
            # The pid in the name tells a later process which spills are orphans.
            self._storage.spill_dir = Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=root))
        return self._storage.spill_dir


def remove_orphan_spills(temp: Path) -> None:
    """Delete the spilled chunks of processes that are gone (a crash leaves them behind)."""
    root = temp / "frames"
    if not root.is_dir():
        return
    for folder in root.iterdir():
        pid = folder.name.split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def to_uint8(array: np.ndarray) -> np.ndarray:
    """Frames as uint8: uint8 ones as they are, floats in 0..1 rounded to 0..255."""
    if array.dtype == np.uint8:
        return array
    return (np.clip(array.astype(np.float32), 0, 1) * 255).round().astype(np.uint8)


def to_float(array: np.ndarray) -> torch.Tensor:
    """Stored frames as a new float32 tensor in 0..1."""
    out = array.astype(np.float32)
    if array.dtype == np.uint8:
        out /= 255
    return torch.from_numpy(out)


def adapt_input(value: Any, input_type: str, input_name: str) -> Any:
    """A value as the input's declared type: an IMAGE batch for a FRAMES input becomes a store,
    a store for an IMAGE input is materialised (or refused, naming the input)."""
    if input_type == FRAMES and isinstance(value, torch.Tensor):
        return Frames.from_images(value)
    if input_type == IMAGE and isinstance(value, Frames):
        return value.to_images(input_name)
    return value


def _gib(nbytes: int) -> str:
    return f"{nbytes / (1 << 30):.1f} GiB" if nbytes >= 1 << 30 else f"{nbytes / (1 << 20):.0f} MiB"
