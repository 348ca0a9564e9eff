"""The example video workflow runs on a fresh install: no files, no weights, an MP4 out."""

from __future__ import annotations

import json
from pathlib import Path

import av

import nodes
from engine.executor import Executor
from engine.graph import prepare_prompt
from engine.registry import build_registry

WORKFLOW = Path(__file__).resolve().parents[2] / "workflows" / "video_basics.json"


def test_video_basics_makes_a_24_fps_mp4_that_carries_its_workflow(folders):
    registry = build_registry(nodes, entry_points=False)
    canvas = json.loads(WORKFLOW.read_text())
    result = Executor(registry).execute(prepare_prompt(canvas, registry),
                                        extra_data={"extra_pnginfo": {"workflow": canvas}})
    assert result.status == "success", result.error
    (entry,) = next(iter(result.outputs.values()))["images"]
    path = folders.output / entry["subfolder"] / entry["filename"]
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        decoded = sum(1 for _ in container.decode(stream))
        assert (stream.width, stream.height, float(stream.average_rate)) == (512, 288, 24.0)
        assert decoded == (24 - 1) * 4 + 1
        assert json.loads(container.metadata["workflow"])["nodes"] == canvas["nodes"]
