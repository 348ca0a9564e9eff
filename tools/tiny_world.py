"""The world Kinema-Tiny learns: coloured shapes moving over plain backgrounds, with captions.

Every clip is rendered from its caption's attributes (colour, shape, motion, background), so
the training set is unlimited and every generated clip can be checked against what its
caption asks for (``tools/tiny_detect.py``). Some colour-motion pairings are held out of
training altogether: every colour and every motion is seen, but not together, so the held-out
captions measure whether the model composes what it learnt.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

SIZE = 64  # pixels, square
FRAMES = 16
SUPERSAMPLE = 4  # anti-aliased edges: rendered 4x larger, then averaged

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40), "green": (40, 180, 60), "blue": (40, 80, 230),
    "yellow": (240, 220, 40), "white": (245, 245, 245), "purple": (150, 60, 200),
}
SHAPES = ("circle", "square", "triangle")
MOTIONS = ("moving left", "moving right", "moving up", "moving down", "growing", "shrinking",
           "spinning")
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "black": (0, 0, 0), "grey": (128, 128, 128), "sky blue": (135, 206, 235),
}
# Held out of training: each colour once, with a motion it is never seen doing.
HELD_OUT_PAIRS = frozenset({("red", "moving up"), ("green", "moving left"),
                            ("blue", "growing"), ("yellow", "moving right"),
                            ("white", "spinning"), ("purple", "shrinking")})

TRAVEL = 24.0  # pixels a moving shape covers over the clip
RADIUS = 10.0  # half the side of a square, the radius of a circle
GROW_RANGE = (6.0, 16.0)  # radius at the first and last frame of a growing shape
SPIN_DEGREES = 60.0  # over the clip: under a square's 90 and a triangle's 120 symmetry


@dataclass(frozen=True)
class Scene:
    """One caption's attributes."""

    colour: str
    shape: str
    motion: str
    background: str

    @property
    def caption(self) -> str:
        return f"a {self.colour} {self.shape} {self.motion} on a {self.background} background"

    @property
    def held_out(self) -> bool:
        return (self.colour, self.motion) in HELD_OUT_PAIRS


def all_scenes() -> list[Scene]:
    """Every combination, except a spinning circle (it looks exactly like a still one)."""
    return [Scene(c, s, m, b) for c, s, m, b in itertools.product(COLOURS, SHAPES, MOTIONS,
                                                                   BACKGROUNDS)
            if not (s == "circle" and m == "spinning")]


def training_scenes() -> list[Scene]:
    return [s for s in all_scenes() if not s.held_out]


def held_out_scenes() -> list[Scene]:
    return [s for s in all_scenes() if s.held_out]


def parse_caption(caption: str) -> Scene:
    """The scene a caption describes (the inverse of ``Scene.caption``)."""
    for scene in all_scenes():
        if scene.caption == caption.strip().lower():
            return scene
    raise ValueError(f"{caption!r} is not a caption of the tiny world: 'a <colour> <shape> "
                     f"<motion> on a <background> background' with colour in "
                     f"{', '.join(COLOURS)}, shape in {', '.join(SHAPES)}, motion in "
                     f"{', '.join(MOTIONS)}, background in {', '.join(BACKGROUNDS)}")


@dataclass(frozen=True)
class Variation:
    """How one rendering of a scene departs from the canonical one (training variety)."""

    dx: float = 0.0  # start offset, pixels
    dy: float = 0.0
    scale: float = 1.0  # of the radius
    speed: float = 1.0  # of the travel, growth and spin
    shade: float = 0.0  # added to the colour, -1..1 of 20 levels

    @staticmethod
    def random(rng: np.random.Generator) -> Variation:
        return Variation(dx=rng.uniform(-4, 4), dy=rng.uniform(-4, 4),
                         scale=rng.uniform(0.85, 1.15), speed=rng.uniform(0.8, 1.2),
                         shade=rng.uniform(-1, 1))


def track(scene: Scene, variation: Variation = Variation(), frames: int = FRAMES,
          ) -> list[tuple[float, float, float, float]]:
    """``(cx, cy, radius, angle_degrees)`` of the shape at each frame, in pixels."""
    centre = SIZE / 2
    travel = TRAVEL * variation.speed
    steps = np.linspace(0.0, 1.0, frames)
    out = []
    for t in steps:
        cx, cy = centre + variation.dx, centre + variation.dy
        radius, angle = RADIUS * variation.scale, 0.0
        if scene.motion.startswith("moving"):
            direction = {"left": (-1, 0), "right": (1, 0), "up": (0, -1),
                         "down": (0, 1)}[scene.motion.split()[1]]
            cx += direction[0] * travel * (t - 0.5)
            cy += direction[1] * travel * (t - 0.5)
        elif scene.motion in ("growing", "shrinking"):
            low, high = GROW_RANGE
            if scene.motion == "shrinking":
                low, high = high, low
            radius = (low + (high - low) * min(t * variation.speed, 1.0)) * variation.scale
        elif scene.motion == "spinning":
            angle = SPIN_DEGREES * variation.speed * t
        out.append((cx, cy, radius, angle))
    return out


def render(scene: Scene, variation: Variation = Variation(), frames: int = FRAMES,
           ) -> np.ndarray:
    """The clip, uint8 ``[F, SIZE, SIZE, 3]``."""
    n = SIZE * SUPERSAMPLE
    coords = (np.arange(n, dtype=np.float32) + 0.5) / SUPERSAMPLE
    ys, xs = np.meshgrid(coords, coords, indexing="ij")
    background = np.array(BACKGROUNDS[scene.background], np.float32)
    colour = np.clip(np.array(COLOURS[scene.colour], np.float32) + 20 * variation.shade, 0, 255)
    clip = np.empty((frames, SIZE, SIZE, 3), np.uint8)
    for i, (cx, cy, radius, angle) in enumerate(track(scene, variation, frames)):
        inside = shape_mask(scene.shape, xs - cx, ys - cy, radius, angle)
        coverage = inside.reshape(SIZE, SUPERSAMPLE, SIZE, SUPERSAMPLE).mean(axis=(1, 3))
        pixels = background + coverage[..., None] * (colour - background)
        clip[i] = np.clip(np.rint(pixels), 0, 255).astype(np.uint8)
    return clip


def shape_mask(shape: str, x: np.ndarray, y: np.ndarray, radius: float,
               angle: float) -> np.ndarray:
    """Which points (offsets from the centre, y down) lie inside the shape."""
    theta = np.deg2rad(angle)
    u = x * np.cos(theta) + y * np.sin(theta)  # the points in the shape's own frame
    v = -x * np.sin(theta) + y * np.cos(theta)
    if shape == "circle":
        return u * u + v * v <= radius * radius
    if shape == "square":
        return (np.abs(u) <= radius) & (np.abs(v) <= radius)
    if shape == "triangle":  # equilateral, pointing up, circumradius 1.3 r
        r = 1.3 * radius
        inside = np.ones_like(u, dtype=bool)
        for k in range(3):  # inside all three edges' half-planes
            normal = np.deg2rad(90 + 120 * k)  # outward normals point down, up-left, up-right
            inside &= u * np.cos(normal) + v * np.sin(normal) <= r / 2
        return inside
    raise ValueError(f"unknown shape {shape!r}; one of {', '.join(SHAPES)}")
