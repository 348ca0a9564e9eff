"""A synthetic moving-shapes clip: a test pattern whose every in-between frame is known.

Rendering it at a fractional time gives the exact frame an interpolator should synthesise,
which is what the interpolation tests and benchmarks compare against.
"""

from __future__ import annotations

import numpy as np


def render(t: float, width: int = 128, height: int = 128, speed: float = 4.0,
           scene: int = 0) -> np.ndarray:
    """The frame at time ``t`` (in frames), uint8 ``[H,W,3]``: a disc and a square moving
    ``speed`` pixels a frame over a smooth gradient. ``scene`` picks another background and
    colours: a hard cut between scenes."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    rng = np.random.default_rng(scene)
    base = rng.uniform(40, 200, 3).astype(np.float32)
    frame = base + 30 * np.sin(x[..., None] / 9 + y[..., None] / 13 + np.arange(3))
    size = min(width, height)
    cx = (width * 0.25 + speed * t) % width
    cy = (height * 0.4 + 0.25 * speed * t) % height
    frame[(x - cx) ** 2 + (y - cy) ** 2 <= (size * 0.12) ** 2] = rng.uniform(0, 255, 3)
    sx = (width * 0.7 - 0.5 * speed * t) % width
    half = size * 0.1
    frame[(np.abs(x - sx) <= half) & (np.abs(y - height * 0.7) <= half)] = rng.uniform(0, 255, 3)
    return np.clip(frame, 0, 255).astype(np.uint8)


def clip(frames: int, width: int = 128, height: int = 128, speed: float = 4.0,
         step: float = 1.0, cut_at: int | None = None) -> np.ndarray:
    """``frames`` frames ``[N,H,W,3]`` uint8 at times 0, step, 2·step ...; from ``cut_at`` on,
    a second scene."""
    return np.stack([render(i * step, width, height, speed,
                            scene=int(cut_at is not None and i >= cut_at))
                     for i in range(frames)])
