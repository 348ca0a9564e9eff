"""Load videos and image sequences from the input folder as FRAMES, chunk by chunk.

Decoding never holds the whole clip: frames go into a FRAMES store as they are decoded (the
store spills to disk past its RAM budget). A video's audio is not decoded here; the store
remembers which part of the source's audio stream belongs with the kept frames, and the
encoder copies that part into its output.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from engine.folders import (
    IMAGE_EXTENSIONS,
    VIDEO_EXTENSIONS,
    UnsafePathError,
    active_folders,
    files_stamp,
    resolve_inside,
)
from engine.frames import CHUNK_BYTES, AudioSource, Frames, FramesWriter, to_uint8
from nodes.image_io import check_input_file, resolve_annotated
from nodes.imaging import MAX_RESOLUTION, pil_to_tensor, report_progress, resample

if TYPE_CHECKING:
    from nodes.video.decode import FrameSelection

CATEGORY = "kinema/video"
MAX_FRAMES = 1_000_000
MAX_FPS = 240.0
HIGH_DEPTH_MODES = frozenset({"I", "F", "I;16", "I;16B", "I;16L", "I;16N"})


def _selection_inputs(fps_name: str, fps_tooltip: str, fps_default: float, fps_min: float,
                      ) -> dict[str, tuple]:
    """The inputs LoadVideo and LoadImageSequence share: which frames, at what rate and size."""
    return {
        "skip_first_frames": ("INT", {
            "default": 0, "min": 0, "max": MAX_FRAMES,
            "tooltip": "Frames to drop from the start (counted at the loading rate)."}),
        "frame_cap": ("INT", {
            "default": 0, "min": 0, "max": MAX_FRAMES,
            "tooltip": "Most frames to load; 0 loads all."}),
        "every_nth": ("INT", {
            "default": 1, "min": 1, "max": 1000,
            "tooltip": "Keep one frame in n; the fps output drops by n, so the clip keeps its "
                       "duration."}),
        fps_name: ("FLOAT", {
            "default": fps_default, "min": fps_min, "max": MAX_FPS, "step": 0.01,
            "tooltip": fps_tooltip}),
        "force_width": ("INT", {
            "default": 0, "min": 0, "max": MAX_RESOLUTION, "step": 1,
            "tooltip": "Resize to this width; 0 keeps it (or follows the height's aspect)."}),
        "force_height": ("INT", {
            "default": 0, "min": 0, "max": MAX_RESOLUTION, "step": 1,
            "tooltip": "Resize to this height; 0 keeps it (or follows the width's aspect)."}),
    }


def target_size(width: int, height: int, force_width: int, force_height: int,
                ) -> tuple[int, int]:
    """The size frames are resized to: forced sides, the other one following the aspect."""
    if force_width and force_height:
        return force_width, force_height
    if force_width:
        return force_width, max(1, round(height * force_width / width))
    if force_height:
        return max(1, round(width * force_height / height)), force_height
    return width, height


class FrameSink:
    """Collects decoded frames into a FRAMES store, resized in batches, reporting progress."""

    def __init__(self, size: tuple[int, int], fps: float, expected: int,
                 dtype: str = "uint8", audio: AudioSource | None = None):
        self.width, self.height = size
        self.expected = expected
        self.dtype = dtype
        self._writer: FramesWriter = Frames.writer(self.width, self.height, fps, dtype,
                                                   audio=audio)
        self._batch: list[np.ndarray] = []
        self._batch_bytes = 0
        self.count = 0

    def add(self, frame: np.ndarray) -> None:
        """One frame ``[H,W,3]``: uint8, or float in 0..1 for deeper sources."""
        if self.dtype == "uint8" and frame.dtype != np.uint8:
            frame = to_uint8(frame)
        elif self.dtype != "uint8" and frame.dtype == np.uint8:
            frame = frame.astype(np.float32) / 255
        self._batch.append(frame)
        self.count += 1
        self._batch_bytes += frame.size * 4  # as float32 while resizing
        if self._batch_bytes >= CHUNK_BYTES:
            self._flush()

    def finish(self, audio: AudioSource | None = None) -> Frames:
        """The store (``audio`` replaces the one given at the start, once the length is
        known)."""
        self._flush()
        if audio is not None:
            self._writer.audio = audio
        return self._writer.finish()

    def _flush(self) -> None:
        if not self._batch:
            return
        self._writer.append(self._fit(self._batch))
        self._batch, self._batch_bytes = [], 0
        report_progress(self.count, max(self.expected, self.count))

    def _fit(self, frames: list[np.ndarray]) -> np.ndarray | torch.Tensor:
        """The batch at the store's size: resized by torch (area when shrinking, bicubic when
        enlarging), each frame on its own when their sizes differ."""
        if all(f.shape[:2] == (self.height, self.width) for f in frames):
            return np.stack(frames)
        return torch.cat([self._resize(f) for f in frames])

    def _resize(self, frame: np.ndarray) -> torch.Tensor:
        pixels = frame.astype(np.float32)
        if frame.dtype == np.uint8:
            pixels /= 255
        x = torch.from_numpy(pixels)[None].movedim(-1, 1)
        shrinking = self.width <= frame.shape[1] and self.height <= frame.shape[0]
        out = resample(x, self.width, self.height, "area" if shrinking else "bicubic")
        return out.movedim(1, -1).clamp(0, 1)


class LoadVideo:
    """Loads a video from the input folder as FRAMES, with its fps, frame count and audio."""

    DESCRIPTION = ("Decodes a video from the input folder (anything FFmpeg reads, plus animated "
                   "GIF and WebP) into FRAMES, chunk by chunk. The audio of the kept part goes "
                   "along, for Encode Video to copy.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("FRAMES", "FLOAT", "INT")
    RETURN_NAMES = ("frames", "fps", "frame_count")
    OUTPUT_TOOLTIPS = ("The kept frames, uint8.", "Their rate: the loading rate / every_nth.",
                       "How many frames were kept.")
    FUNCTION = "load_video"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        files = active_folders().input_files(VIDEO_EXTENSIONS)
        options: dict[str, Any] = {"video_upload": True,
                                   "tooltip": "A video in the input folder (upload adds one)."}
        if files:
            options["default"] = files[0]
        inputs = _selection_inputs("force_fps", "Load at this rate, repeating or dropping "
                                   "frames by time; 0 keeps the video's own frames.", 0.0, 0.0)
        return {"required": {"video": (files, options), **inputs}}

    def load_video(self, video: str, skip_first_frames: int = 0, frame_cap: int = 0,
                   every_nth: int = 1, force_fps: float = 0.0, force_width: int = 0,
                   force_height: int = 0) -> tuple[Frames, float, int]:
        # PyAV loads when a video is decoded, not with the nodes (nodes/video/__init__.py).
        from nodes.video.decode import FrameSelection, open_video, select_frames

        selection = FrameSelection(skip_first_frames, frame_cap, every_nth, force_fps)
        reader = open_video(resolve_annotated(video))
        try:
            fps = selection.output_fps(reader)
            kept = select_frames(reader, selection)
            first = next(kept, None)
            if first is None:
                raise ValueError(
                    f"input 'skip_first_frames': {video!r} has about {reader.frame_count} "
                    f"frames and skipping {skip_first_frames} leaves none; skip fewer frames")
            first_time, frame = first
            pixels = frame.rgb()  # its size, not the header's, is what decoding gives
            size = target_size(pixels.shape[1], pixels.shape[0], force_width, force_height)
            sink = FrameSink(size, fps, selection.expected_count(reader))
            sink.add(pixels)
            for _, frame in kept:
                sink.add(frame.rgb())
        finally:
            reader.close()
        audio = None
        if reader.audio_stream is not None:
            audio = AudioSource(reader.path, reader.audio_stream, first_time, sink.count / fps)
        frames = sink.finish(audio)
        return frames, fps, len(frames)

    @classmethod
    def IS_CHANGED(cls, video: str, **_: Any) -> str:
        return files_stamp([resolve_annotated(video)])

    @classmethod
    def VALIDATE_INPUTS(cls, video: str) -> bool | str:
        return check_input_file(video, "video")


def natural_key(name: str) -> list[Any]:
    """Sort key that puts ``frame2`` before ``frame10``."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def image_folders() -> list[str]:
    """Folders under the input folder that hold images, as names LoadImageSequence accepts."""
    root = active_folders().input
    if not root.is_dir():
        return []
    folders = {p.parent.relative_to(root).as_posix() for p in root.rglob("*")
               if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and p.parent != root}
    return sorted(folders, key=natural_key)


def sequence_files(directory: Path) -> list[Path]:
    """The images directly inside ``directory``, in natural order."""
    files = [p for p in directory.iterdir()
             if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
    return sorted(files, key=lambda p: natural_key(p.name))


def _read_image(path: Path) -> np.ndarray:
    """One image as ``[H,W,3]``: uint8, or float32 in 0..1 for 16-bit and float images."""
    try:
        with Image.open(path) as img:
            img = ImageOps.exif_transpose(img)
            if img.mode in HIGH_DEPTH_MODES:
                return pil_to_tensor(img).expand(-1, -1, 3).numpy()
            return np.asarray(img.convert("RGB"))
    except (OSError, UnidentifiedImageError) as exc:
        raise ValueError(f"input 'directory': cannot read {path.name!r} ({exc}); remove it "
                         "from the folder or replace it") from exc


def _selected(paths: list[Path], selection: FrameSelection) -> Iterator[Path]:
    kept = paths[selection.skip::selection.every_nth]
    return iter(kept[:selection.cap] if selection.cap else kept)


class LoadImageSequence:
    """Loads a folder of images (in natural order) from the input folder as FRAMES."""

    DESCRIPTION = ("Loads the images of a folder under input/ as FRAMES, sorted naturally "
                   "(frame2 before frame10), at the given fps. Images of another size are "
                   "resized to the first one's (or the forced size); 16-bit images keep their "
                   "depth (float16 frames).")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("FRAMES", "FLOAT", "INT")
    RETURN_NAMES = ("frames", "fps", "frame_count")
    OUTPUT_TOOLTIPS = ("The kept frames.", "Their rate: fps / every_nth.",
                       "How many frames were kept.")
    FUNCTION = "load_sequence"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        folders = image_folders()
        options: dict[str, Any] = {"tooltip": "A folder of images under the input folder."}
        if folders:
            options["default"] = folders[0]
        inputs = _selection_inputs("fps", "The rate the images play at.", 24.0, 0.01)
        return {"required": {"directory": (folders, options), **inputs}}

    def load_sequence(self, directory: str, skip_first_frames: int = 0, frame_cap: int = 0,
                      every_nth: int = 1, fps: float = 24.0, force_width: int = 0,
                      force_height: int = 0) -> tuple[Frames, float, int]:
        paths = sequence_files(self._folder(directory))
        if not paths:
            raise ValueError(f"input 'directory': {directory!r} holds no images "
                             f"({', '.join(sorted(IMAGE_EXTENSIONS))})")
        from nodes.video.decode import FrameSelection

        selection = FrameSelection(skip_first_frames, frame_cap, every_nth)
        chosen = list(_selected(paths, selection))
        if not chosen:
            raise ValueError(f"input 'skip_first_frames': {directory!r} has {len(paths)} "
                             f"images and skipping {skip_first_frames} leaves none")
        first = _read_image(chosen[0])
        size = target_size(first.shape[1], first.shape[0], force_width, force_height)
        dtype = "uint8" if first.dtype == np.uint8 else "float16"
        sink = FrameSink(size, fps / every_nth, len(chosen), dtype)
        sink.add(first)
        for path in chosen[1:]:
            sink.add(_read_image(path))
        frames = sink.finish()
        return frames, frames.fps, len(frames)

    @staticmethod
    def _folder(directory: str) -> Path:
        try:
            path = resolve_inside(active_folders().input, directory)
        except UnsafePathError as exc:
            raise ValueError(f"input 'directory': {exc}") from exc
        if not path.is_dir():
            raise ValueError(f"input 'directory': {directory!r} is not a folder in the input "
                             "folder")
        return path

    @classmethod
    def IS_CHANGED(cls, directory: str, **_: Any) -> str:
        return files_stamp(sequence_files(cls._folder(directory)))

    @classmethod
    def VALIDATE_INPUTS(cls, directory: str) -> bool | str:
        try:
            cls._folder(directory)
        except ValueError as exc:
            return str(exc)
        return True


NODE_CLASS_MAPPINGS = {
    "LoadVideo": LoadVideo,
    "LoadImageSequence": LoadImageSequence,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "LoadVideo": "Load Video",
    "LoadImageSequence": "Load Image Sequence",
}
