"""Kinema-Tiny evaluation: generate every caption through the Kinema graph, read the clips back.

For each caption of the training and held-out sets (``tools/tiny_world.py``), the graph
KinemaModelLoader → KinemaTextEncode → KeyframeGenerator → TemporalDenoiser (the keyframe
anchoring frame 0; both models share the text encoder, so the prompt is encoded once) runs
with a fixed seed, and the detector (``tools/tiny_detect.py``) reads background, colour,
shape and motion from the clip. Prints the accuracy of each per set, the temporal smoothness
(centroid jitter) and the generation time. Targets: colour and motion >= 90% on training
captions and >= 75% on held-out ones.

Run: ``.venv/bin/python bench/tiny_eval.py [--models models/diffusers] [--limit N]
[--steps 20] [--threads 1]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tools.tiny_detect import Reading, read_clip  # noqa: E402
from tools.tiny_world import (  # noqa: E402
    FRAMES,
    SIZE,
    Scene,
    held_out_scenes,
    training_scenes,
)
from tools.train_tiny import KEYFRAME_FOLDER, VIDEO_FOLDER  # noqa: E402

ATTRIBUTES = ("background", "colour", "shape", "motion")
TARGETS = {("training", "colour"): 0.9, ("training", "motion"): 0.9,
           ("held-out", "colour"): 0.75, ("held-out", "motion"): 0.75}


def prompt(caption: str, seed: int, steps: int, cfg: float) -> dict[str, Any]:
    """The API prompt that turns one caption into a clip with the tiny models."""
    return {
        "1": {"class_type": "KinemaModelLoader", "inputs": {"model": KEYFRAME_FOLDER}},
        "2": {"class_type": "KinemaModelLoader", "inputs": {"model": VIDEO_FOLDER}},
        "3": {"class_type": "KinemaTextEncode",
              "inputs": {"model": ["1", 0], "prompt": caption, "negative_prompt": ""}},
        "5": {"class_type": "KeyframeGenerator",
              "inputs": {"model": ["1", 0], "conditioning": ["3", 0], "seed": seed,
                         "steps": steps, "cfg": cfg, "width": SIZE, "height": SIZE,
                         "scheduler": "ddim"}},
        "6": {"class_type": "TemporalDenoiser",
              "inputs": {"model": ["2", 0], "conditioning": ["3", 0], "keyframe": ["5", 0],
                         "frames": FRAMES, "steps": steps, "cfg": cfg, "min_cfg": 1.0,
                         "seed": seed, "scheduler": "ddim", "width": SIZE, "height": SIZE,
                         "fps": 8, "motion_bucket_id": 127, "noise_aug_strength": 0.02,
                         "context_length": 0, "context_overlap": 4, "context_blend": "cosine",
                         "decode": True, "decode_chunk_size": 0}},
        "7": {"class_type": "CaptureClip", "inputs": {"frames": ["6", 1]}},
    }


class CaptureClip:
    """Keeps the clip the graph made (an output node for the evaluation)."""

    CATEGORY = "bench"
    RETURN_TYPES = ()
    FUNCTION = "capture"
    OUTPUT_NODE = True
    last: np.ndarray | None = None

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"frames": ("IMAGE",)}}

    def capture(self, frames):
        CaptureClip.last = (frames.clamp(0, 1) * 255).round().byte().numpy()
        return {}


def graph_generator(models: Path, seed: int, steps: int, cfg: float,
                    ) -> Callable[[str], np.ndarray]:
    """A function caption → uint8 clip that runs the Kinema graph over ``models`` (added to the
    active folders' diffusers folders)."""
    import nodes
    from engine.executor import Executor
    from engine.folders import active_folders
    from engine.graph import validate_prompt
    from engine.registry import build_registry

    kinds = active_folders().model_kinds
    dirs, extensions = kinds["diffusers"]
    kinds["diffusers"] = ([models, *dirs], extensions)
    registry = build_registry(nodes, entry_points=False)
    registry.register_mappings({"CaptureClip": CaptureClip}, source="bench")
    executor = Executor(registry)

    def generate(caption: str) -> np.ndarray:
        result = executor.execute(validate_prompt(prompt(caption, seed, steps, cfg), registry))
        if result.status != "success":
            raise SystemExit(f"{caption!r}: {result.error['exception_message']}")
        assert CaptureClip.last is not None
        return CaptureClip.last

    return generate


@dataclass
class Scores:
    """Correct readings per attribute, over the clips of one caption set."""

    name: str
    total: int = 0
    correct: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ATTRIBUTES, 0))
    jitter: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    def add(self, scene: Scene, reading: Reading, seconds: float) -> None:
        self.total += 1
        for attribute, ok in reading.matches(scene).items():
            self.correct[attribute] += ok
        if np.isfinite(reading.jitter):
            self.jitter.append(reading.jitter)
        self.seconds.append(seconds)

    def accuracy(self, attribute: str) -> float:
        return self.correct[attribute] / max(self.total, 1)


def evaluate(generate: Callable[[str], np.ndarray], sets: dict[str, list[Scene]],
             ) -> list[Scores]:
    out = []
    for name, scenes in sets.items():
        scores = Scores(name)
        for scene in scenes:
            start = time.perf_counter()
            clip = generate(scene.caption)
            scores.add(scene, read_clip(clip), time.perf_counter() - start)
        out.append(scores)
    return out


def report(all_scores: list[Scores]) -> bool:
    met = True
    print(f"{'set':<10}{'clips':>6}" + "".join(f"{a:>12}" for a in ATTRIBUTES)
          + f"{'jitter px':>11}{'s/clip':>8}")
    for s in all_scores:
        cells = []
        for attribute in ATTRIBUTES:
            target = TARGETS.get((s.name, attribute))
            ok = target is None or s.accuracy(attribute) >= target
            met &= ok
            cells.append(f"{s.accuracy(attribute):>10.0%}{'' if ok else ' !':<2}")
        jitter = np.mean(s.jitter) if s.jitter else float("nan")
        print(f"{s.name:<10}{s.total:>6}" + "".join(cells)
              + f"{jitter:>11.2f}{np.median(s.seconds):>8.2f}")
    print("targets: colour and motion >= 90% (training), >= 75% (held-out); "
          + ("all met" if met else "NOT MET (!)"))
    return met


def sample(scenes: list[Scene], limit: int, seed: int) -> list[Scene]:
    if not limit or limit >= len(scenes):
        return scenes
    rng = np.random.default_rng(seed)
    return [scenes[i] for i in sorted(rng.choice(len(scenes), limit, replace=False))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=ROOT / "models" / "diffusers",
                        help="the folder holding kinema-tiny-keyframe and kinema-tiny-video")
    parser.add_argument("--limit", type=int, default=0, help="captions per set (0: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--cfg", type=float, default=4.0)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads; more collapse on a busy 2-core machine")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from engine.folders import Folders, use_folders

    use_folders(Folders.under(ROOT))
    generate = graph_generator(args.models, args.seed, args.steps, args.cfg)
    sets = {"training": sample(training_scenes(), args.limit, args.seed),
            "held-out": sample(held_out_scenes(), args.limit, args.seed)}
    raise SystemExit(0 if report(evaluate(generate, sets)) else 1)


if __name__ == "__main__":
    main()
