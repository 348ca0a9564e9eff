"""Source files for the video loader and encoder tests, written with PyAV: clips with and
without an audio stream, and the audio signals they carry."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

AUDIO_RATE = 44100


def tone_after(seconds: float, total: float, rate: int = AUDIO_RATE) -> np.ndarray:
    """Mono float32 audio: silence for ``seconds``, then a 440 Hz tone until ``total``."""
    t = np.arange(round(total * rate)) / rate
    return np.where(t >= seconds, 0.5 * np.sin(2 * np.pi * 440 * t), 0.0).astype(np.float32)


def write_video(path: Path, frames: np.ndarray, fps: int = 8, audio: np.ndarray | None = None,
                gop: int = 0) -> Path:
    """``frames`` (uint8 ``[N,H,W,3]``) as near-lossless H.264 4:4:4 in MP4 (keyframes every
    ``gop`` frames when given), with ``audio`` (mono, 44.1 kHz) as AAC when given."""
    with av.open(str(path), "w", format="mp4") as container:
        video = container.add_stream("libx264", rate=fps, options={"crf": "0"})
        video.width, video.height, video.pix_fmt = frames.shape[2], frames.shape[1], "yuv444p"
        if gop:
            video.codec_context.gop_size = gop
        if audio is not None:
            write_audio(container, audio)
        for index, pixels in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts = index
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
    return path


def write_audio(container: av.container.OutputContainer, audio: np.ndarray) -> None:
    """``audio`` as an AAC stream of ``container``."""
    stream = container.add_stream("aac", rate=AUDIO_RATE, layout="mono")
    frame = av.AudioFrame.from_ndarray(audio[None], format="fltp", layout="mono")
    frame.sample_rate, frame.pts = AUDIO_RATE, 0
    container.mux(stream.encode(frame))
    container.mux(stream.encode(None))


def write_audio_only(path: Path, audio: np.ndarray) -> Path:
    """An MP4 holding nothing but ``audio``."""
    with av.open(str(path), "w", format="mp4") as container:
        write_audio(container, audio)
    return path


def decoded_audio(path: Path) -> tuple[np.ndarray, int]:
    """The first audio stream of ``path`` as mono float32 samples, and its rate."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        parts = [frame.to_ndarray().reshape(len(frame.layout.channels), -1).mean(axis=0)
                 if frame.format.is_planar else
                 frame.to_ndarray().reshape(-1, len(frame.layout.channels)).mean(axis=1)
                 for frame in container.decode(stream)]
        return np.concatenate(parts).astype(np.float32), stream.sample_rate


def decoded_frames(path: Path) -> tuple[np.ndarray, float]:
    """Every frame of ``path`` as uint8 RGB ``[N,H,W,3]``, and the stream's frame rate."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(stream)])
        return frames, float(stream.average_rate)
