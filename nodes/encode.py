"""Encode FRAMES into a video file (MP4, WebM, GIF, WebP) or a folder of PNGs in output/.

The store is streamed into the encoder a chunk at a time; the file is written under a hidden
temporary name and renamed into place when complete, so output/ never shows half a video.
The workflow goes into the file's metadata (see ``nodes/video/metadata.py``) and the frames'
audio, when they carry some, is copied along.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from engine.folders import active_folders, atomic_output, numbered_path
from engine.frames import Frames
from nodes.image_io import expand_prefix
from nodes.imaging import report_progress
from nodes.video.formats import FORMATS, PIX_FMTS, PRESETS, VideoFormat
from nodes.video.metadata import workflow_texts

DEFAULT_CRF = 19


class VideoEncode:
    """Encodes FRAMES into a video, animated image or PNG sequence in the output folder."""

    DESCRIPTION = ("Writes the frames to output/ as H.264/H.265/AV1 MP4, VP9/AV1 WebM, GIF, "
                   "animated WebP or a folder of PNGs, chunk by chunk, with the workflow "
                   "embedded and the source's audio copied (MP4 and WebM).")
    CATEGORY = "kinema/video"
    RETURN_TYPES = ()
    FUNCTION = "encode"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "frames": ("FRAMES", {"tooltip": "The frames to encode."}),
                "filename_prefix": ("STRING", {
                    "default": "Kinema",
                    "tooltip": "File name prefix; may hold a subfolder (clips/shot) and "
                               "%width%, %height%, %year%, %month%, %day%."}),
                "format": (list(FORMATS), {
                    "default": "h264-mp4",
                    "tooltip": "Container and codec. MP4 and WebM keep the audio; GIF, WebP "
                               "and PNG drop it."}),
                "crf": ("INT", {
                    "default": DEFAULT_CRF, "min": 0, "max": 51,
                    "tooltip": "Quality on x264's scale: 0 best (lossless), 18 about visually "
                               "lossless, 51 worst; other codecs get the same quality on their "
                               "own scale. GIF and PNG ignore it."}),
                "preset": (list(PRESETS), {
                    "default": "medium",
                    "tooltip": "Encoding speed: slower makes smaller files at the same "
                               "quality (mapped to each codec's speed setting)."}),
                "pix_fmt": (list(PIX_FMTS), {
                    "default": "yuv420p",
                    "tooltip": "Chroma and depth for H.264/H.265/VP9/AV1: yuv420p plays "
                               "everywhere, yuv444p keeps full colour, yuv420p10le is 10-bit. "
                               "GIF, WebP and PNG choose their own."}),
                "fps": ("FLOAT", {
                    "default": 0.0, "min": 0.0, "max": 240.0, "step": 0.01,
                    "tooltip": "Frame rate of the file; 0 uses the frames' own. The audio "
                               "keeps its speed."}),
            },
            "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"},
        }

    def encode(self, frames: Frames, filename_prefix: str = "Kinema", format: str = "h264-mp4",
               crf: int = DEFAULT_CRF, preset: str = "medium", pix_fmt: str = "yuv420p",
               fps: float = 0.0, prompt: Any = None,
               extra_pnginfo: Mapping[str, Any] | None = None) -> dict:
        # PyAV loads when a video is encoded, not with the nodes (nodes/video/__init__.py).
        import av

        from nodes.video.writer import EncodeSettings, encode_video, write_png_sequence

        fmt = _choice(FORMATS, format, "format")
        _choice(PRESETS, preset, "preset")
        fmt.check_pix_fmt(pix_fmt)
        if len(frames) == 0:
            raise ValueError("input 'frames': there are no frames to encode")
        fmt.check_size(frames.width, frames.height)
        settings = EncodeSettings(crf, preset, pix_fmt, fps or frames.fps)
        texts = workflow_texts(prompt, extra_pnginfo)
        output = active_folders().output
        prefix = expand_prefix(filename_prefix, frames.width, frames.height)
        if fmt.name == "png-sequence":
            entry = _png_sequence(output, prefix, lambda folder: write_png_sequence(
                frames, folder, texts, fmt.png_compress_level(preset), report_progress))
        else:
            path, subfolder = numbered_path(output, prefix, fmt.extension)
            try:
                with atomic_output(path) as tmp:
                    encode_video(frames, tmp, fmt, settings, texts, report_progress)
            except av.FFmpegError as exc:
                raise ValueError(f"input 'format': {fmt.name} failed on these {frames.width}x"
                                 f"{frames.height} frames at {settings.fps:g} fps ({exc}); "
                                 "try another format or size") from exc
            entry = {"filename": path.name, "subfolder": subfolder}
        return {"ui": {"images": [{**entry, "type": "output", "format": fmt.mime}],
                       "animated": [fmt.name != "png-sequence"]}}


def _choice(choices: Mapping[str, VideoFormat] | tuple[str, ...], value: str, name: str) -> Any:
    if value not in choices:
        raise ValueError(f"input '{name}': {value!r} is not one of {', '.join(choices)}")
    return choices[value] if isinstance(choices, Mapping) else value


def _png_sequence(output: Path, prefix: str,
                  write: Callable[[Path], list[str]]) -> dict[str, str]:
    """A new folder ``{prefix}_NNNNN_`` that ``write`` fills with PNGs under a hidden name,
    renamed when complete; the entry names the first frame (what the canvas shows)."""
    path, subfolder = numbered_path(output, prefix, "png")
    folder = path.with_suffix("")
    work = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.", suffix=".part"))
    try:
        names = write(work)
        os.chmod(work, 0o777 & ~_umask())
        os.replace(work, folder)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    inner = f"{subfolder}/{folder.name}" if subfolder else folder.name
    return {"filename": names[0], "subfolder": inner}


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


NODE_CLASS_MAPPINGS = {"VideoEncode": VideoEncode}
NODE_DISPLAY_NAME_MAPPINGS = {"VideoEncode": "Encode Video"}
