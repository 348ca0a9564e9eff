"""Reading a tiny-world clip back: background, colour, shape and motion, and smoothness.

A simple detector is enough because the world is simple: the background is the colour of the
border, the object is what differs from it, its colour is the nearest palette colour, its
shape is how much of its minimum-area rectangle its outline fills, and its motion comes from
the track of its centroid, its area and its orientation over the clip.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import cv2
import numpy as np

from tools.tiny_world import BACKGROUNDS, COLOURS, TRAVEL, Scene

OBJECT_DISTANCE = 60.0  # RGB distance from the background that counts as the object
MIN_DISTANCE = 12.0  # below this a pixel is background (noise), even for sub-pixel centroids
MIN_PIXELS = 6  # fewer object pixels than this: nothing was drawn
MOVE_FRACTION = 0.4  # of the world's travel: the least displacement that counts as moving
SCALE_CHANGE = 1.4  # last/first area ratio that counts as growing (or its inverse, shrinking)
MIN_TURN_DEGREES = 15.0  # orientation change that counts as spinning
SYMMETRY = {"square": 4, "triangle": 3}  # rotations that leave the shape unchanged


@dataclass(frozen=True)
class Reading:
    """What the detector sees in a clip; ``None`` where it cannot tell."""

    background: str | None
    colour: str | None
    shape: str | None
    motion: str | None
    jitter: float  # mean |second difference| of the centroid track, pixels per frame²

    def matches(self, scene: Scene) -> dict[str, bool]:
        return {"background": self.background == scene.background,
                "colour": self.colour == scene.colour, "shape": self.shape == scene.shape,
                "motion": self.motion == scene.motion}


def read_clip(clip: np.ndarray) -> Reading:
    """Detect the attributes of a uint8 clip ``[F,H,W,3]``."""
    pixels = clip.astype(np.float32)
    border = np.concatenate([pixels[:, 0], pixels[:, -1], pixels[:, :, 0], pixels[:, :, -1]],
                            axis=1).reshape(-1, 3)
    bg_rgb = np.median(border, axis=0)
    background = _nearest(bg_rgb, BACKGROUNDS)
    distance = np.linalg.norm(pixels - bg_rgb, axis=-1)
    masks = distance > OBJECT_DISTANCE
    areas = masks.sum(axis=(1, 2))
    if areas.min() < MIN_PIXELS:
        return Reading(background, None, None, None, float("nan"))
    colour = _nearest(np.median(pixels[masks], axis=0), COLOURS)
    # Sub-pixel centroids: edge pixels count by how much of the object they show.
    weights = np.clip(distance / np.median(distance[masks]), 0, 1) * (distance > MIN_DISTANCE)
    ys, xs = np.mgrid[0:clip.shape[1], 0:clip.shape[2]]
    total = weights.sum(axis=(1, 2))
    centroids = np.stack([(weights * xs).sum(axis=(1, 2)) / total,
                          (weights * ys).sum(axis=(1, 2)) / total], axis=1)  # (x, y)
    shape = _shape(masks[int(areas.argmax())])  # the largest view: its outline is clearest
    folds = SYMMETRY.get(shape or "", 0)
    angles = [_orientation(m, folds) for m in masks] if folds else []
    steps = np.diff(centroids, axis=0)
    jitter = float(np.abs(np.diff(steps, axis=0)).sum(axis=1).mean()) if len(steps) > 1 else 0.0
    return Reading(background, colour, shape, _motion(centroids, areas, angles, folds), jitter)


def _nearest(rgb: np.ndarray, palette: dict[str, tuple[int, int, int]]) -> str:
    return min(palette, key=lambda name: float(np.linalg.norm(rgb - np.array(palette[name]))))


def _shape(mask: np.ndarray) -> str | None:
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_NONE)
    if not contours:
        return None
    outline = max(contours, key=cv2.contourArea)
    area = cv2.contourArea(outline)
    if area <= 0:
        return None
    hull = cv2.convexHull(outline)
    # A square fills its minimum-area rectangle, a circle fills pi/4 of it, a triangle half.
    (_, _), (w, h), _ = cv2.minAreaRect(hull)
    fill = area / max(w * h, 1e-6)
    if fill > 0.88:
        return "square"
    if fill > 0.66:
        return "circle"
    return "triangle"


def _orientation(mask: np.ndarray, folds: int) -> float:
    """The shape's angle in degrees, modulo its symmetry (360/``folds``): the phase of the
    ``folds``-fold harmonic of its pixels around the centroid, weighted towards the corners."""
    points = np.argwhere(mask)[:, ::-1].astype(np.float64)
    offsets = points - points.mean(axis=0)
    radius = np.hypot(offsets[:, 0], offsets[:, 1])
    phase = np.exp(1j * folds * np.arctan2(offsets[:, 1], offsets[:, 0]))
    return float(np.degrees(np.angle((radius ** 4 * phase).sum())) / folds)


def _motion(centroids: np.ndarray, areas: np.ndarray, angles: list[float],
            folds: int) -> str | None:
    dx, dy = centroids[-1] - centroids[0]
    if max(abs(dx), abs(dy)) >= MOVE_FRACTION * TRAVEL:
        if abs(dx) >= abs(dy):
            return "moving right" if dx > 0 else "moving left"
        return "moving down" if dy > 0 else "moving up"
    ratio = areas[-1] / max(areas[0], 1)
    if ratio >= SCALE_CHANGE:
        return "growing"
    if ratio <= 1 / SCALE_CHANGE:
        return "shrinking"
    # Orientation unwrapped frame to frame (small steps), modulo the shape's symmetry.
    period = 360.0 / folds if folds else 0.0
    turned = 0.0
    for before, after in itertools.pairwise(angles):
        turned += (after - before + period / 2) % period - period / 2
    if abs(turned) >= MIN_TURN_DEGREES:
        return "spinning"
    return None
