"""Synthetic clips for the video tests and benchmarks (``nodes/video/pattern.py``: shapes
moving over a textured background, every in-between frame known exactly) and PSNR."""

from __future__ import annotations

import numpy as np

from nodes.video.pattern import clip, render

__all__ = ["clip", "psnr", "render"]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio of two uint8 (or 0..255 float) images or clips, in dB."""
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0 ** 2 / mse))
