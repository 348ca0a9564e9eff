"""Frame interpolation without weights: dense optical flow (OpenCV DIS), backward warping and
occlusion-aware blending.

For an in-between frame at time ``t`` (0 = frame A, 1 = frame B) every output pixel ``x``
looks up where its content was in A and in B. The flow A→B says where each pixel of A goes,
so the pixel of A that reaches ``x`` at time ``t`` solves ``p + t·F_AB(p) = x``; a few
fixed-point steps ``p ← x - t·F_AB(p)``, started from ``x + t·F_BA(x)``, find it (and the same
for B with ``1 - t`` and F_BA). Where that lookup has no solution the content is not in A
(it was uncovered between A and B), and where the forward and backward flows of the pixel
found in the other frame disagree it is hidden in one of them: each side's weight drops
there, so the frame that shows the content wins. Elsewhere the weights are ``(1 - t, t)``.
"""

from __future__ import annotations

import numpy as np

# OpenCV is imported where it is used: it adds ~16 MiB to every process, and is needed only
# when a clip is interpolated (see nodes/video/__init__.py).

# Fixed-point steps that invert the flow to time t; one or two already settle smooth motion.
INVERSION_STEPS = 2
# Flow disagreements (pixels) at which a sample's weight falls to 1/e.
OCCLUSION_TOLERANCE = 1.0
# Keeps the plain (1 - t, t) blend where both sides look occluded.
FLOOR_WEIGHT = 1e-3


def estimate_flow(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dense flows ``(A→B, B→A)`` of two uint8 RGB frames, float32 ``[H,W,2]`` in pixels."""
    import cv2

    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    gray_a = cv2.cvtColor(a, cv2.COLOR_RGB2GRAY)
    gray_b = cv2.cvtColor(b, cv2.COLOR_RGB2GRAY)
    return dis.calc(gray_a, gray_b, None), dis.calc(gray_b, gray_a, None)


def interpolate_pair(a: np.ndarray, b: np.ndarray, times: list[float]) -> list[np.ndarray]:
    """Frames between uint8 RGB frames ``a`` and ``b`` ``[H,W,3]`` at each of ``times``
    (0 < t < 1), as uint8 ``[H,W,3]``. The flows are estimated once for all the times."""
    flow_ab, flow_ba = estimate_flow(a, b)
    grid = _pixel_grid(a.shape[0], a.shape[1])
    # How far each pixel's round trip misses (0 where it is visible in both frames).
    mismatch_a = _round_trip_error(flow_ab, flow_ba, grid)
    mismatch_b = _round_trip_error(flow_ba, flow_ab, grid)
    frames = []
    for t in times:
        from_a, miss_a = _source_positions(flow_ab, flow_ba, t, grid)
        from_b, miss_b = _source_positions(flow_ba, flow_ab, 1.0 - t, grid)
        # Content found in B but hidden in A makes the sample from A wrong, and vice versa.
        trust_a = _confidence(miss_a, _sample(mismatch_b, from_b))
        trust_b = _confidence(miss_b, _sample(mismatch_a, from_a))
        weight_a = ((1.0 - t) * (trust_a + FLOOR_WEIGHT))[..., None]
        weight_b = (t * (trust_b + FLOOR_WEIGHT))[..., None]
        warped_a = _sample(a, from_a).astype(np.float32)
        warped_b = _sample(b, from_b).astype(np.float32)
        mixed = (weight_a * warped_a + weight_b * warped_b) / (weight_a + weight_b)
        frames.append(np.clip(np.rint(mixed), 0, 255).astype(np.uint8))
    return frames


def _pixel_grid(height: int, width: int) -> np.ndarray:
    xs, ys = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    return np.stack([xs, ys], axis=-1)


def _sample(image: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """``image`` read at float ``positions`` ``[H,W,2]`` (x, y), bilinear, edges repeated."""
    import cv2

    return cv2.remap(image, positions[..., 0], positions[..., 1], cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)


def _round_trip_error(forward: np.ndarray, backward: np.ndarray, grid: np.ndarray,
                      ) -> np.ndarray:
    """``|F(x) + B(x + F(x))|``: large where a pixel has no counterpart in the other frame."""
    returned = _sample(backward, grid + forward)
    return np.linalg.norm(forward + returned, axis=-1)


def _source_positions(forward: np.ndarray, backward: np.ndarray, t: float, grid: np.ndarray,
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Where the content of each pixel at time ``t`` sits in the frame ``forward`` starts from,
    and how far that position misses solving ``p + t·forward(p) = x``."""
    positions = grid + t * backward
    for _ in range(INVERSION_STEPS):
        positions = grid - t * _sample(forward, positions)
    miss = np.linalg.norm(positions + t * _sample(forward, positions) - grid, axis=-1)
    return positions, miss


def _confidence(*errors: np.ndarray) -> np.ndarray:
    squared = sum(e * e for e in errors)
    return np.exp(-squared / (OCCLUSION_TOLERANCE * OCCLUSION_TOLERANCE))
