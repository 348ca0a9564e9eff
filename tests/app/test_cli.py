"""The headless runner, as a user runs it: ``python server.py run WORKFLOW``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "workflows" / "image_basics.json"


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "server.py", "run", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=180)


def test_example_workflow_runs_and_prints_its_outputs(tmp_path):
    proc = run_cli(str(EXAMPLE), "--output-dir", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    paths = [Path(line) for line in proc.stdout.split()]
    assert len(paths) == 4
    for path in paths:
        assert path.is_file() and tmp_path in path.parents
    with Image.open(paths[0]) as img:
        assert img.size == (384, 384)
        workflow = json.loads(img.info["workflow"])
        prompt = json.loads(img.info["prompt"])
    # The canvas form is embedded, so the PNG reopens on the canvas.
    assert workflow == json.loads(EXAMPLE.read_text())
    assert prompt["8"]["class_type"] == "SaveImage"
    assert "nodes" in proc.stderr  # tqdm's per-node bar


def test_overrides_by_title_and_rerun_from_png(tmp_path):
    proc = run_cli(str(EXAMPLE), "--output-dir", str(tmp_path), "--set", "Size.value=64",
                   "--set", "8.filename_prefix=small", "--quiet")
    assert proc.returncode == 0, proc.stderr
    first = Path(proc.stdout.split()[0])
    assert first.name.startswith("small_")
    with Image.open(first) as img:
        assert img.size == (96, 96)
    again = run_cli(str(first), "--output-dir", str(tmp_path / "again"), "--quiet")
    assert again.returncode == 0, again.stderr
    with Image.open(again.stdout.split()[0]) as img:
        assert img.size == (96, 96)


def test_invalid_workflow_exits_nonzero_with_structured_error(tmp_path):
    broken = json.loads(EXAMPLE.read_text())
    broken["nodes"][0]["type"] = "NoSuchNode"
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(broken))
    proc = run_cli(str(path), "--output-dir", str(tmp_path), "--quiet")
    assert proc.returncode == 2
    payload = json.loads(proc.stderr)
    assert payload["error"]["type"] == "missing_node_type"
    assert "NoSuchNode" in payload["error"]["message"]


def test_bad_override_and_bad_value_are_reported(tmp_path):
    proc = run_cli(str(EXAMPLE), "--output-dir", str(tmp_path), "--set", "4.blend_factor=5")
    assert proc.returncode == 2
    errors = json.loads(proc.stderr)["node_errors"]["4"]["errors"]
    assert errors[0]["type"] == "value_bigger_than_max"
    proc = run_cli(str(EXAMPLE), "--set", "Nope.value=1")
    assert proc.returncode == 2
    assert json.loads(proc.stderr)["error"]["type"] == "invalid_override"


def test_a_failing_node_exits_1_naming_the_node(tmp_path):
    # Linked values are not range-checked before running (as in ComfyUI): the node refuses.
    proc = run_cli(str(EXAMPLE), "--output-dir", str(tmp_path), "--quiet",
                   "--set", "Size.value=-5")
    assert proc.returncode == 1
    error = json.loads(proc.stderr)["error"]
    assert error["node_type"] == "EmptyImage"
    assert error["exception_message"]


def test_malformed_file_is_a_structured_error(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text("{ nope")
    proc = run_cli(str(path), "--quiet")
    assert proc.returncode == 2
    assert json.loads(proc.stderr)["error"]["type"] == "malformed_json"


def test_plugins_that_add_routes_load_and_run_headless(tmp_path):
    # routes_pack and compat_pack use PromptServer.instance (routes, app, prompt_queue) at
    # import; loose_pack is declared as loosely as ComfyUI allows and has one broken node.
    workflow = tmp_path / "loose.json"
    workflow.write_text(json.dumps({
        "1": {"class_type": "EmptyImage",
              "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0xFFFFFF}},
        "2": {"class_type": "LooseDarken", "inputs": {"image": ["1", 0], "amount": 0.5}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0],
                                                    "filename_prefix": "loose"}}}))
    proc = run_cli(str(workflow), "--output-dir", str(tmp_path), "--quiet",
                   "--custom-nodes", str(ROOT / "tests" / "fixtures" / "server_nodes"))
    assert proc.returncode == 0, proc.stderr
    with Image.open(proc.stdout.split()[0]) as img:
        assert img.getpixel((0, 0)) == (128, 128, 128)
    assert "failed to load" not in proc.stderr  # every pack loaded
    assert "routes_pack saw prompt ['1', '2', '3']" in proc.stderr  # its on-prompt handler ran
    assert "node LooseBroken skipped" in proc.stderr
