"""Streaming a FRAMES store into a video file (or a folder of PNGs), a chunk at a time.

Each chunk is read from the store in its stored dtype, converted to the pixels the codec
takes and encoded before the next is read, so memory follows the chunk, not the clip. The
audio that belongs with the frames is encoded alongside, up to the time the video reached.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

from engine.frames import Frames, to_uint8
from nodes.imaging import encode_png
from nodes.video.audio import AudioCopier
from nodes.video.formats import VideoFormat
from nodes.video.metadata import (
    add_gif_comment,
    add_webp_exif,
    comment_text,
    container_tags,
    webp_exif,
)

# Tags for what the RGB → YUV conversion writes (BT.709, limited range), so every player
# converts back with the same matrix.
BT709 = 1
LIMITED_RANGE = 1
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class EncodeSettings:
    """How to encode: quality and speed on x264's scales, the pixel format and the rate."""

    crf: int
    preset: str
    pix_fmt: str
    fps: float


def frame_rate(fps: float) -> Fraction:
    """``fps`` as the exact fraction a container stores (29.97… → 30000/1001)."""
    return Fraction(fps).limit_denominator(1001)


def encode_video(frames: Frames, path: Path, fmt: VideoFormat, settings: EncodeSettings,
                 texts: dict[str, str], progress: Progress) -> None:
    """Write ``frames`` to ``path`` as ``fmt``, with the workflow ``texts`` and the frames'
    audio (when the format carries audio)."""
    container = av.open(str(path), "w", format=fmt.muxer, options=fmt.muxer_options)
    audio: AudioCopier | None = None
    try:
        if fmt.muxer in ("mp4", "webm"):
            container.metadata.update(container_tags(texts, with_comment=fmt.muxer == "mp4"))
        stream, to_frame = _video_stream(container, frames, fmt, settings)
        if frames.audio is not None and fmt.audio_codec:
            audio = AudioCopier(frames.audio, container, fmt.audio_codec,
                                len(frames) / settings.fps)
        for start, chunk in frames.raw_chunks():
            stop = start + len(chunk)
            for index, pixels in enumerate(chunk, start):
                frame = to_frame(pixels)
                frame.pts = index
                container.mux(stream.encode(frame))
            if audio is not None:
                audio.write_until(stop / settings.fps)
            progress(stop, len(frames))
        container.mux(stream.encode(None))
        if audio is not None:
            audio.finish()
    except BaseException:
        # The original error is the one to report, not a trailer that cannot be written.
        with contextlib.suppress(Exception):
            container.close()
        raise
    finally:
        if audio is not None:
            audio.close()
    container.close()
    if fmt.name == "webp" and texts:
        add_webp_exif(path, webp_exif(texts))
    elif fmt.name == "gif" and texts:
        add_gif_comment(path, comment_text(texts))


def _video_stream(container: av.container.OutputContainer, frames: Frames, fmt: VideoFormat,
                  settings: EncodeSettings,
                  ) -> tuple[av.VideoStream, Callable[[np.ndarray], av.VideoFrame]]:
    """The output stream and the conversion from a stored frame to what it encodes."""
    stream = container.add_stream(fmt.codec, rate=frame_rate(settings.fps),
                                  options=fmt.codec_options(settings.crf, settings.preset))
    if fmt.codec_tag:
        stream.codec_tag = fmt.codec_tag
    width, height = frames.width, frames.height
    if fmt.name == "gif":
        stream.width, stream.height, stream.pix_fmt = width, height, "pal8"
        return stream, _paletted
    if fmt.name == "webp":
        stream.width, stream.height, stream.pix_fmt = width, height, "bgra"
        return stream, lambda pixels: av.VideoFrame.from_ndarray(
            _rgba(pixels), format="rgba").reformat(format="bgra")
    # 4:2:0 needs even sides: the last row or column is repeated (x264 refuses odd ones).
    subsampled = settings.pix_fmt.startswith("yuv420")
    pad = (height % 2, width % 2) if subsampled else (0, 0)
    stream.width, stream.height = width + pad[1], height + pad[0]
    stream.pix_fmt = settings.pix_fmt
    ctx = stream.codec_context
    ctx.colorspace = ctx.color_primaries = ctx.color_trc = BT709
    ctx.color_range = LIMITED_RANGE
    deep = "10" in settings.pix_fmt

    def to_yuv(pixels: np.ndarray) -> av.VideoFrame:
        rgb = _rgb(pixels, deep)
        if any(pad):
            rgb = np.pad(rgb, ((0, pad[0]), (0, pad[1]), (0, 0)), mode="edge")
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb48le" if deep else "rgb24")
        return frame.reformat(format=settings.pix_fmt, dst_colorspace=BT709,
                              dst_color_range=LIMITED_RANGE, dst_color_trc=BT709,
                              dst_color_primaries=BT709)

    return stream, to_yuv


def _rgb(pixels: np.ndarray, deep: bool = False) -> np.ndarray:
    """A stored frame ``[H,W,C]`` as RGB: uint8, or uint16 for 10-bit codecs."""
    channels = pixels.shape[-1]
    rgb = pixels[..., :3] if channels >= 3 else np.repeat(pixels[..., :1], 3, axis=-1)
    if deep:
        if rgb.dtype == np.uint8:
            return rgb.astype(np.uint16) * 257
        return (np.clip(rgb.astype(np.float32), 0, 1) * 65535).round().astype(np.uint16)
    return np.ascontiguousarray(to_uint8(rgb))


def _rgba(pixels: np.ndarray) -> np.ndarray:
    """A stored frame as uint8 RGBA: its alpha when it has one (4 or 2 channels), else opaque."""
    rgb = _rgb(pixels)
    if pixels.shape[-1] in (2, 4):
        alpha = _rgb(pixels[..., -1:])[..., :1]
    else:
        alpha = np.full((*rgb.shape[:2], 1), 255, np.uint8)
    return np.concatenate([rgb, alpha], axis=-1)


def _paletted(pixels: np.ndarray) -> av.VideoFrame:
    """A frame as 8-bit palette colour: its own 256-colour palette (median cut), dithered."""
    image = Image.fromarray(_rgb(pixels)).quantize(256, method=Image.Quantize.MEDIANCUT,
                                                   dither=Image.Dither.FLOYDSTEINBERG)
    colours = np.asarray(image.getpalette() or [], np.uint8).reshape(-1, 3)[:256]
    palette = np.zeros((256, 4), np.uint8)  # ARGB, opaque
    palette[:len(colours), 0] = 255
    palette[:len(colours), 1:] = colours
    return av.VideoFrame.from_ndarray((np.asarray(image), palette), format="pal8")


def write_png_sequence(frames: Frames, folder: Path, texts: dict[str, str], compress_level: int,
                       progress: Progress) -> list[str]:
    """One PNG per frame in ``folder`` (``frame_00001.png`` …), each carrying ``texts``;
    returns the file names."""
    names = []
    digits = max(5, math.ceil(math.log10(len(frames) + 1)))
    for start, chunk in frames.raw_chunks():
        stop = start + len(chunk)
        for index, pixels in enumerate(chunk, start + 1):
            name = f"frame_{index:0{digits}}.png"
            image = Image.fromarray(_rgba(pixels) if pixels.shape[-1] in (2, 4)
                                    else _rgb(pixels))
            (folder / name).write_bytes(encode_png(image, texts, compress_level))
            names.append(name)
        progress(stop, len(frames))
    return names
