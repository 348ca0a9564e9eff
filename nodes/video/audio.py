"""Copying the audio that belongs with a clip into an encoded file.

The part of the source's audio stream named by an ``AudioSource`` is decoded, cut to the
sample, converted to what the output's codec takes (AAC for MP4, Opus for WebM) and encoded a
piece at a time, as the video is written, so the two streams interleave in the file.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from fractions import Fraction

import av
import numpy as np

from engine.frames import AudioSource

# The sample rate used when the codec cannot take the source's (Opus takes 48 kHz and less).
DEFAULT_RATE = 48000


class AudioCopier:
    """Writes ``source`` into ``output`` as ``codec``, at most ``limit`` seconds of it."""

    def __init__(self, source: AudioSource, output: av.container.OutputContainer, codec: str,
                 limit: float):
        if not source.path.is_file():
            raise ValueError(f"input 'frames': their audio comes from {source.path.name!r}, "
                             "which no longer exists; load the video again")
        self._input = av.open(str(source.path))
        try:
            in_stream = self._input.streams[source.stream]
            if in_stream.type != "audio":
                raise ValueError(f"input 'frames': stream {source.stream} of "
                                 f"{source.path.name!r} is not audio")
            self.stream = self._add_output_stream(output, codec, in_stream)
        except BaseException:
            self._input.close()
            raise
        ctx = self.stream.codec_context
        self._resampler = av.AudioResampler(format=ctx.format.name, layout=ctx.layout.name,
                                            rate=ctx.sample_rate)
        self._rate = ctx.sample_rate
        self._output = output
        self._start = source.start
        length = limit if source.duration is None else min(source.duration, limit)
        self._end = source.start + length
        self._position = source.start  # how far into the source the copy has read
        self._samples: int | None = None  # output samples written (None: none yet)
        self._frames = self._decoded(in_stream)

    @staticmethod
    def _add_output_stream(output: av.container.OutputContainer, codec: str,
                           in_stream: av.AudioStream) -> av.AudioStream:
        source = in_stream.codec_context
        rates = av.Codec(codec, "w").audio_rates
        rate = source.sample_rate if not rates or source.sample_rate in rates else DEFAULT_RATE
        layout = "mono" if source.channels == 1 else "stereo"
        stream = output.add_stream(codec, rate=rate, layout=layout)
        formats = [f.name for f in av.Codec(codec, "w").audio_formats or []]
        stream.codec_context.format = "fltp" if "fltp" in formats else formats[0]
        return stream

    def _decoded(self, stream: av.AudioStream) -> Iterator[av.AudioFrame]:
        if self._start > 0:
            self._input.seek(int(self._start / stream.time_base), stream=stream, backward=True)
        for packet in self._input.demux(stream):
            try:
                yield from packet.decode()
            except av.InvalidDataError:
                continue  # a damaged packet: a short gap, not a failed encode

    def write_until(self, seconds: float) -> None:
        """Encode the audio up to ``seconds`` into the output clip."""
        target = min(self._start + seconds, self._end)
        while self._position < target:
            frame = next(self._frames, None)
            if frame is None:
                self._position = math.inf
                return
            self._copy(frame)

    def _copy(self, frame: av.AudioFrame) -> None:
        rate = frame.sample_rate
        begin = frame.time if frame.time is not None else self._position
        self._position = begin + frame.samples / rate
        first = max(0, round((self._start - begin) * rate))
        last = min(frame.samples, round((self._end - begin) * rate))
        if last <= first:
            return
        if self._samples is None:  # audio that starts late keeps its place on the timeline
            self._samples = round(max(begin + first / rate - self._start, 0) * self._rate)
        if (first, last) != (0, frame.samples):
            frame = _cut(frame, first, last)
        frame.pts = None
        for out in self._resampler.resample(frame):
            self._encode(out)

    def _encode(self, frame: av.AudioFrame | None) -> None:
        if frame is not None:
            frame.pts = self._samples
            frame.time_base = Fraction(1, self._rate)
            self._samples = (self._samples or 0) + frame.samples
        for packet in self.stream.encode(frame):
            self._output.mux(packet)

    def finish(self) -> None:
        """Write what is left, flush the encoder and close the source."""
        try:
            self.write_until(math.inf)
            for out in self._resampler.resample(None):
                self._encode(out)
            self._encode(None)
        finally:
            self.close()

    def close(self) -> None:
        self._input.close()


def _cut(frame: av.AudioFrame, first: int, last: int) -> av.AudioFrame:
    """Samples ``first:last`` of ``frame`` as a new frame."""
    array = frame.to_ndarray()
    if frame.format.is_planar:
        array = array[:, first:last]
    else:  # packed: channels interleaved in one row
        channels = len(frame.layout.channels)
        array = array[:, first * channels:last * channels]
    cut = av.AudioFrame.from_ndarray(np.ascontiguousarray(array), format=frame.format.name,
                                     layout=frame.layout.name)
    cut.sample_rate = frame.sample_rate
    return cut
