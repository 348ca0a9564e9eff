"""The output formats Encode Video writes: container, codec, and how its settings map.

One quality scale and one speed scale serve every codec: ``crf`` is given on x264's scale
(0 = best, 51 = worst) and ``preset`` by x264's names, and each codec gets the equivalent of
its own (x265's CRF is about 5 higher for the same quality, VP9 and AV1 count to 63, WebP
counts quality up to 100, PNG has compression levels).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower",
           "veryslow")
PIX_FMTS = ("yuv420p", "yuv444p", "yuv420p10le")
MAX_CRF = 51
# SVT-AV1 prints its configuration to stderr unless told otherwise; it reads this once.
os.environ.setdefault("SVT_LOG", "1")


@dataclass(frozen=True)
class VideoFormat:
    """One choice of the ``format`` input."""

    name: str
    extension: str  # of the file, or "" for a folder of PNGs
    mime: str
    muxer: str = ""
    codec: str = ""
    audio_codec: str = ""  # "" drops the audio
    muxer_options: dict[str, str] = field(default_factory=dict)
    codec_tag: str = ""
    takes_pix_fmt: bool = True  # False: the codec chooses (GIF palettes, WebP, PNG)
    min_side: int = 1  # the encoder refuses smaller frames
    # Widths this build of the encoder corrupts memory on (the process dies): refused.
    broken_widths: range = range(0)

    def supported_pix_fmts(self) -> list[str]:
        """The ``pix_fmt`` choices this build of the codec accepts."""
        if not self.takes_pix_fmt:
            return []
        import av  # only here: see nodes/video/__init__.py

        formats = av.Codec(self.codec, "w").video_formats or []
        names = {f.name for f in formats}
        return [p for p in PIX_FMTS if p in names]

    def check_pix_fmt(self, pix_fmt: str) -> None:
        """A clear error when the codec cannot write ``pix_fmt``."""
        if self.takes_pix_fmt and pix_fmt not in self.supported_pix_fmts():
            raise ValueError(f"input 'pix_fmt': {self.name} cannot be written as {pix_fmt}; "
                             f"choose {' or '.join(self.supported_pix_fmts())}")

    def check_size(self, width: int, height: int) -> None:
        """A clear error for frame sizes the encoder cannot take."""
        if min(width, height) < self.min_side:
            raise ValueError(f"input 'frames': {self.name} needs frames of at least "
                             f"{self.min_side}x{self.min_side}, these are {width}x{height}; "
                             "resize them or choose another format")
        if width in self.broken_widths:
            raise ValueError(f"input 'frames': {self.name} cannot encode frames "
                             f"{self.broken_widths.start} to {self.broken_widths.stop - 1} "
                             f"pixels wide (libx265 in this build fails on them), these are "
                             f"{width} wide; resize them or choose h264-mp4")

    def codec_options(self, crf: int, preset: str) -> dict[str, str]:
        """The encoder's own options for a quality (x264 CRF) and a speed (x264 preset)."""
        speed = PRESETS.index(preset)  # 0 = fastest
        scaled = str(round(crf * 63 / MAX_CRF))
        if self.codec == "libx264":
            return {"crf": str(crf), "preset": preset}
        if self.codec == "libx265":
            params = "log-level=error" + (":lossless=1" if crf == 0 else "")
            return {"crf": str(min(crf + 5, MAX_CRF) if crf else 0), "preset": preset,
                    "x265-params": params}
        if self.codec == "libvpx-vp9":
            cpu_used = 8 - speed
            options = {"crf": scaled, "b": "0", "cpu-used": str(cpu_used), "row-mt": "1",
                       # libvpx caps cpu-used at 5 unless it runs in realtime mode
                       "deadline": "realtime" if cpu_used > 5 else "good"}
            if crf == 0:
                options["lossless"] = "1"
            return options
        if self.codec == "libsvtav1":
            return {"crf": scaled, "preset": str((13, 12, 11, 10, 9, 8, 6, 4, 2)[speed])}
        if self.codec == "libwebp_anim":
            return {"quality": str(100 - crf), "lossless": "1" if crf == 0 else "0",
                    "compression_level": str((0, 1, 2, 3, 3, 4, 5, 6, 6)[speed])}
        return {}

    @staticmethod
    def png_compress_level(preset: str) -> int:
        """zlib level for PNG frames: medium is SaveImage's 4."""
        return (1, 1, 2, 3, 3, 4, 6, 8, 9)[PRESETS.index(preset)]


FORMATS: dict[str, VideoFormat] = {f.name: f for f in (
    VideoFormat("h264-mp4", "mp4", "video/mp4", "mp4", "libx264", "aac",
                {"movflags": "use_metadata_tags+faststart"}),
    VideoFormat("h265-mp4", "mp4", "video/mp4", "mp4", "libx265", "aac",
                {"movflags": "use_metadata_tags+faststart"}, codec_tag="hvc1", min_side=16,
                broken_widths=range(33, 50)),
    VideoFormat("vp9-webm", "webm", "video/webm", "webm", "libvpx-vp9", "libopus"),
    VideoFormat("av1-mp4", "mp4", "video/mp4", "mp4", "libsvtav1", "aac",
                {"movflags": "use_metadata_tags+faststart"}, min_side=8),
    VideoFormat("av1-webm", "webm", "video/webm", "webm", "libsvtav1", "libopus", min_side=8),
    VideoFormat("gif", "gif", "image/gif", "gif", "gif", muxer_options={"loop": "0"},
                takes_pix_fmt=False),
    VideoFormat("webp", "webp", "image/webp", "webp", "libwebp_anim",
                muxer_options={"loop": "0"}, takes_pix_fmt=False),
    VideoFormat("png-sequence", "", "image/png", takes_pix_fmt=False),
)}
