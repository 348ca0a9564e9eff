"""A models folder with tiny SD models and motion adapters, and a way to run graphs over it.

Built once per test session (conftest's ``sd_workspace``; well under a second); tests make
its folders active and run prompts through the real engine: validate_prompt → Executor.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from diffusers import StableDiffusionPipeline

import nodes
from engine.cache import OutputCache
from engine.executor import ExecutionResult, Executor
from engine.folders import Folders
from engine.graph import validate_prompt
from engine.registry import NodeRegistry, build_registry
from tests.generation.tiny_motion import (
    build_motion_adapter,
    save_motion_folder,
    write_original_motion_file,
)
from tests.generation.tiny_sd import build_sd_folder, write_ldm_checkpoint

FOLDER, SAFETENSORS, CKPT = "tiny-sd", "tiny-sd.safetensors", "tiny-sd.ckpt"


@dataclass
class Workspace:
    """Where the tiny models are, and the reference pipeline they were saved from."""

    base: Path
    folders: Folders
    pipe: StableDiffusionPipeline

    @property
    def models(self) -> Path:
        return self.folders.models


def build_workspace(base: Path) -> Workspace:
    folders = Folders.under(base)
    folders.ensure()
    models = folders.models
    pipe = build_sd_folder(models / "diffusers" / FOLDER, base / "tokenizer")
    write_ldm_checkpoint(pipe, models / "checkpoints" / SAFETENSORS)
    write_ldm_checkpoint(pipe, models / "checkpoints" / CKPT)
    for name, frames, mid in (("tiny-v1-5", 24, False), ("tiny-v2", 32, True)):
        adapter = build_motion_adapter(max_frames=frames, mid_block=mid)
        save_motion_folder(adapter, models / "motion" / name)
        write_original_motion_file(adapter, models / "motion" / f"{name}.safetensors")
    return Workspace(base, folders, pipe)


class CaptureOutputs:
    """A test-only output node that keeps whatever reaches it (IMAGE, LATENT ...), by node id."""

    DESCRIPTION = "Keeps its input for the test."
    CATEGORY = "testing"
    RETURN_TYPES = ()
    FUNCTION = "capture"
    OUTPUT_NODE = True
    seen: dict[str, Any] = {}

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {"value": ("*", {"tooltip": "Anything."})},
                "hidden": {"node_id": "UNIQUE_ID"}}

    def capture(self, value: Any, node_id: str = "") -> dict:
        CaptureOutputs.seen[node_id] = value
        return {"ui": {}}


def registry() -> NodeRegistry:
    found = build_registry(nodes, entry_points=False)
    found.register("CaptureOutputs", CaptureOutputs)
    return found


@dataclass
class GraphRun:
    """One executed prompt: its result, every event, and what the capture node received."""

    result: ExecutionResult
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    captured: dict[str, Any] = field(default_factory=dict)

    def progress(self, node: str) -> list[tuple[int, int]]:
        return [(e["value"], e["max"]) for t, e in self.events
                if t == "progress" and e["node"] == node]


def run_graph(prompt: dict[str, Any], executor: Executor | None = None,
              on_event: Callable[[Executor, str, dict[str, Any]], None] | None = None,
              ) -> GraphRun:
    """Validate and execute ``prompt`` (add a CaptureOutputs node to get values back)."""
    found = executor.registry if executor else registry()
    plan = validate_prompt(prompt, found)
    events: list[tuple[str, dict[str, Any]]] = []
    executor = executor or Executor(found, OutputCache(1 << 30))

    def record(type_: str, data: dict[str, Any]) -> None:
        events.append((type_, data))
        if on_event is not None:
            on_event(executor, type_, data)

    executor.on_event = record
    CaptureOutputs.seen = {}
    result = executor.execute(plan)
    return GraphRun(result, events, dict(CaptureOutputs.seen))


def keyframe_prompt(model: str, *, seed: int = 3, steps: int = 3, cfg: float = 7.5,
                    scheduler: str = "ddim", size: int = 32, prompt: str = "a red circle",
                    negative: str = "blurry", init_image: bool = False,
                    strength: float = 0.6) -> dict[str, Any]:
    """Loader → text encode → keyframe, capturing the IMAGE (node 5) and the LATENT (node 6)."""
    keyframe_inputs: dict[str, Any] = {
        "model": ["1", 0], "conditioning": ["2", 0], "seed": seed, "steps": steps, "cfg": cfg,
        "width": size, "height": size, "scheduler": scheduler}
    graph: dict[str, Any] = {
        "1": {"class_type": "KinemaModelLoader", "inputs": {"model": model}},
        "2": {"class_type": "KinemaTextEncode", "inputs": {
            "model": ["1", 0], "prompt": prompt, "negative_prompt": negative}},
        "3": {"class_type": "KeyframeGenerator", "inputs": keyframe_inputs},
        "5": {"class_type": "CaptureOutputs", "inputs": {"value": ["3", 0]}},
        "6": {"class_type": "CaptureOutputs", "inputs": {"value": ["3", 1]}},
    }
    if init_image:  # input/init.png, captured as node 7 for the reference pipeline
        graph["4"] = {"class_type": "LoadImage", "inputs": {"image": "init.png"}}
        graph["7"] = {"class_type": "CaptureOutputs", "inputs": {"value": ["4", 0]}}
        keyframe_inputs.update(init_image=["4", 0], strength=strength)
    return graph


def max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().max())
