"""Scene cuts: telling a hard cut between two frames from motion, and what to show across one.

Motion moves colours around a frame but keeps most of them; a cut replaces them. So the
measure is the share of the colour histogram (8 levels per channel, on a downscaled copy) that
differs between the two frames: near 0 for moving shapes, near 1 for a cut to another scene.
"""

from __future__ import annotations

import numpy as np

# Frames are compared at about this width: enough for the colour mix, cheap at 4K.
COMPARE_WIDTH = 64
LEVELS_PER_CHANNEL = 8


def scene_change(a: np.ndarray, b: np.ndarray) -> float:
    """The share (0..1) of colour that differs between uint8 RGB frames ``a`` and ``b``."""
    hist_a, hist_b = _colour_histogram(a), _colour_histogram(b)
    return float(0.5 * np.abs(hist_a - hist_b).sum())


def is_scene_cut(a: np.ndarray, b: np.ndarray, threshold: float) -> bool:
    """Whether more than ``threshold`` of the colour changes from ``a`` to ``b``; a threshold
    of 0 (or less) never finds a cut."""
    return threshold > 0 and scene_change(a, b) > threshold


def hold_across_cut(a: np.ndarray, b: np.ndarray, times: list[float]) -> list[np.ndarray]:
    """In-between frames for a cut: each repeats the nearer original (``a`` up to the middle,
    ``b`` after it), so no frame mixes the two scenes."""
    return [a.copy() if t <= 0.5 else b.copy() for t in times]


def _colour_histogram(frame: np.ndarray) -> np.ndarray:
    height, width = frame.shape[:2]
    if width > COMPARE_WIDTH:
        import cv2  # only here: see nodes/video/__init__.py

        size = (COMPARE_WIDTH, max(1, round(height * COMPARE_WIDTH / width)))
        frame = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
    step = 256 // LEVELS_PER_CHANNEL
    levels = frame.reshape(-1, frame.shape[-1]).astype(np.int64) // step
    codes = (levels[:, 0] * LEVELS_PER_CHANNEL + levels[:, 1]) * LEVELS_PER_CHANNEL + levels[:, 2]
    counts = np.bincount(codes, minlength=LEVELS_PER_CHANNEL ** 3).astype(np.float64)
    return counts / counts.sum()
