"""A clip that needs no weights and no files: the moving-shapes test pattern as FRAMES.

It lets a video workflow (interpolate → upscale → encode) run on a fresh install, and is the
pattern the interpolation tests and benchmarks measure against.
"""

from __future__ import annotations

from engine.frames import Frames
from nodes.imaging import MAX_RESOLUTION, report_progress
from nodes.video.pattern import render

RENDER_CHUNK = 16  # frames rendered between progress reports


class SyntheticClip:
    """A test clip: a disc and a square moving over a smooth gradient, optionally with a hard
    scene cut. Every frame is computed, so it runs anywhere with no input files or weights."""

    DESCRIPTION = ("A test clip made on the spot: shapes moving over a gradient, with an "
                   "optional hard cut. Use it to try a video workflow with no files or weights.")
    CATEGORY = "kinema/video"
    RETURN_TYPES = ("FRAMES",)
    RETURN_NAMES = ("frames",)
    FUNCTION = "make"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "width": ("INT", {"default": 256, "min": 16, "max": MAX_RESOLUTION, "step": 8,
                              "tooltip": "Frame width in pixels."}),
            "height": ("INT", {"default": 256, "min": 16, "max": MAX_RESOLUTION, "step": 8,
                               "tooltip": "Frame height in pixels."}),
            "frames": ("INT", {"default": 24, "min": 1, "max": 100000,
                               "tooltip": "Number of frames."}),
            "fps": ("FLOAT", {"default": 8.0, "min": 0.1, "max": 240.0, "step": 0.1,
                              "tooltip": "Frame rate of the clip."}),
            "speed": ("FLOAT", {"default": 4.0, "min": 0.0, "max": 256.0, "step": 0.5,
                                "tooltip": "How far the shapes move per frame, in pixels."}),
            "cut_at": ("INT", {"default": 0, "min": 0, "max": 100000,
                               "tooltip": "Frame where a second scene starts (a hard cut); "
                                          "0 for none."}),
        }}

    def make(self, width: int, height: int, frames: int, fps: float, speed: float,
             cut_at: int) -> tuple[Frames]:
        writer = Frames.writer(width, height, fps)
        for start in range(0, frames, RENDER_CHUNK):
            stop = min(start + RENDER_CHUNK, frames)
            for i in range(start, stop):
                writer.append(render(i, width, height, speed, scene=int(0 < cut_at <= i)))
            report_progress(stop, frames)
        return (writer.finish(),)


NODE_CLASS_MAPPINGS = {"SyntheticClip": SyntheticClip}
NODE_DISPLAY_NAME_MAPPINGS = {"SyntheticClip": "Synthetic Clip (test pattern)"}
