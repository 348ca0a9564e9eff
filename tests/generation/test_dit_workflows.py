"""The DiT example workflows run as shipped, with tiny models saved under the file names their
notes tell the user to download (only the size, length and steps are made small)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import av
import pytest
from safetensors.torch import load_file, save_file

import nodes
from engine.executor import Executor
from engine.graph import validate_prompt
from engine.registry import build_registry
from engine.workflow import canvas_to_api
from tests.generation import tiny_ltx, tiny_wan
from tests.generation.test_ltx import STEM, ltx
from tests.generation.test_wan import TI2V, WAN21, wan

__all__ = ["ltx", "wan"]  # the module-scoped models fixtures, shared with their tests
WORKFLOWS = Path(__file__).resolve().parents[2] / "workflows"
# Workflow → (its files → the tiny files standing in for them).
EXAMPLES = {
    "wan21_t2v_1.3B.json": {
        "diffusion_models/wan2.1_t2v_1.3B_fp16.safetensors":
            f"diffusion_models/{WAN21}_comfy_fp16.safetensors",
        "text_encoders/umt5_xxl_fp8_e4m3fn_scaled.safetensors":
            f"text_encoders/{WAN21}_umt5.safetensors",
        "vae/wan_2.1_vae.safetensors": f"vae/{WAN21}_vae.safetensors"},
    "wan22_ti2v_5B.json": {
        "diffusion_models/wan2.2_ti2v_5B_fp16.safetensors":
            f"diffusion_models/{TI2V}_comfy_fp16.safetensors",
        "text_encoders/umt5_xxl_fp8_e4m3fn_scaled.safetensors":
            f"text_encoders/{TI2V}_umt5.safetensors",
        "vae/wan2.2_vae.safetensors": f"vae/{TI2V}_vae.safetensors"},
}


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_the_example_runs_to_an_mp4_with_the_files_its_note_names(wan, name):
    models = wan["folders"].models
    for wanted, tiny in EXAMPLES[name].items():
        (models / wanted).unlink(missing_ok=True)
        shutil.copy(models / tiny, models / wanted)
    run_example(name, list(EXAMPLES[name]), wan["folders"], tiny_wan.FRAMES, tiny_wan.SIZE)


def test_the_ltx_example_runs_with_comfyuis_files_and_a_t5_tokenizer_folder(ltx):
    """ComfyUI's LTX template files: the all-in-one checkpoint in checkpoints/, a T5-XXL file
    without a tokenizer, T5's tokenizer folder beside it."""
    models = ltx["folders"].models
    (models / "checkpoints").mkdir(exist_ok=True)
    shutil.copy(models / "diffusion_models" / f"{STEM}_fp16.safetensors",
                models / "checkpoints" / "ltx-video-2b-v0.9.5.safetensors")
    encoder = load_file(models / "text_encoders" / f"{STEM}_t5xxl.safetensors")
    encoder.pop("spiece_model")
    save_file(encoder, models / "text_encoders" / "t5xxl_fp16.safetensors")
    ltx["pipe"].tokenizer.save_pretrained(models / "text_encoders" / "t5-tokenizer")
    files = ["checkpoints/ltx-video-2b-v0.9.5.safetensors",
             "text_encoders/t5xxl_fp16.safetensors", "text_encoders/t5-tokenizer/"]
    run_example("ltx_video_t2v.json", files, ltx["folders"], tiny_ltx.FRAMES, tiny_ltx.SIZE)


def run_example(name: str, files: list[str], folders: Any, frames: int, size: int) -> None:
    """Run a shipped workflow, only made small, and check its MP4 and its note."""
    canvas = json.loads((WORKFLOWS / name).read_text())
    note = next(n for n in canvas["nodes"] if n["type"] == "Note")["widgets_values"][0]
    assert all(f"models/{wanted}" in note for wanted in files)
    registry = build_registry(nodes, entry_points=False)
    prompt = canvas_to_api(canvas, registry)
    denoiser = next(n for n in prompt.values() if n["class_type"] == "TemporalDenoiser")
    denoiser["inputs"].update(frames=frames, steps=2, width=size, height=size)
    result = Executor(registry).execute(validate_prompt(prompt, registry))
    assert result.status == "success", result.error and result.error["exception_message"]
    (entry,) = next(iter(result.outputs.values()))["images"]
    path = folders.output / entry["subfolder"] / entry["filename"]
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert sum(1 for _ in container.decode(stream)) == frames
