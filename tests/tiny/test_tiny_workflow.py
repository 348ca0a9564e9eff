"""The Kinema-Tiny workflow runs on what the training script exports: the models load through
the normal loaders and the graph turns its prompt into an MP4."""

from __future__ import annotations

import json
from pathlib import Path

import av

import nodes
from engine.executor import Executor
from engine.graph import prepare_prompt
from engine.registry import build_registry
from nodes.loaders import KinemaModelLoader
from tools import train_tiny

WORKFLOW = Path(__file__).resolve().parents[2] / "workflows" / "text_to_video_tiny.json"


def test_the_tiny_workflow_turns_its_prompt_into_a_256px_mp4(tmp_path, folders):
    train_tiny.main(["--stage", "all", "--steps", "1", "--batch", "1", "--work",
                     str(tmp_path / "work"), "--out", str(folders.models / "diffusers"),
                     "--device", "cpu"])
    listed = KinemaModelLoader.INPUT_TYPES()["required"]["model"][0]
    assert {train_tiny.KEYFRAME_FOLDER, train_tiny.VIDEO_FOLDER} <= set(listed)

    registry = build_registry(nodes, entry_points=False)
    result = Executor(registry).execute(prepare_prompt(json.loads(WORKFLOW.read_text()),
                                                       registry))
    assert result.status == "success", result.error
    (entry,) = next(iter(result.outputs.values()))["images"]
    with av.open(str(folders.output / entry["subfolder"] / entry["filename"])) as container:
        stream = container.streams.video[0]
        decoded = sum(1 for _ in container.decode(stream))
        assert (stream.width, stream.height) == (256, 256)
        assert decoded == (16 - 1) * 4 + 1
