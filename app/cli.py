"""Headless runner: ``python server.py run WORKFLOW.json [--output-dir DIR] [--set N.INPUT=V]``.

Runs a workflow in either format (or the one embedded in a PNG), shows tqdm bars per node and
per step, prints the output paths, and exits non-zero with the structured error on failure.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import sys
from pathlib import Path
from typing import Any

from PIL import Image
from tqdm import tqdm

from app.extra_model_paths import ExtraModelPathsError
from app.runtime import Runtime
from engine.executor import ExecutionResult
from engine.graph import ExecutionPlan, PromptError, error_entry, validate_prompt
from engine.workflow import WorkflowError, api_to_canvas, parse_workflow

log = logging.getLogger(__name__)

EXIT_INVALID = 2
EXIT_FAILED = 1


class TqdmProgress:
    """Renders executor events as a bar over nodes and a bar over the running node's steps."""

    def __init__(self, plan: ExecutionPlan, *, enabled: bool = True):
        self.plan = plan
        self.enabled = enabled
        self.nodes: tqdm | None = None
        self.steps: tqdm | None = None
        self.running: str | None = None

    def __call__(self, type_: str, data: dict[str, Any]) -> None:
        if not self.enabled:
            return
        if type_ == "execution_cached":
            total = len(self.plan.order) - len(data["nodes"])
            self.nodes = tqdm(total=total, desc="nodes", unit="node")
        elif type_ == "executing" and self.nodes is not None:
            # A node is done when the next one starts (or the prompt ends: node None).
            if self.running is not None:
                self.nodes.update(1)
            self._close_steps()
            node = self.running = data["node"]
            if node is None:
                self.nodes.close()
            else:
                self.nodes.set_description(f"{node} {self.plan.prompt[node]['class_type']}")
        elif type_ == "progress":
            if self.steps is None or self.steps.total != data["max"]:
                self._close_steps()
                self.steps = tqdm(total=data["max"], desc="  steps", unit="step", leave=False)
            self.steps.update(data["value"] - self.steps.n)

    def _close_steps(self) -> None:
        if self.steps is not None:
            self.steps.close()
            self.steps = None


def load_workflow_file(path: Path) -> tuple[str, dict[str, Any] | None]:
    """The workflow to run from a JSON file or a Kinema/ComfyUI PNG, and its canvas form.

    A PNG runs the prompt it carries (exactly what made it) and keeps its canvas workflow.
    """
    if path.suffix.lower() == ".png":
        with Image.open(path) as img:
            prompt_text, canvas_text = img.info.get("prompt"), img.info.get("workflow")
        if prompt_text is None and canvas_text is None:
            raise WorkflowError(error_entry("invalid_prompt", "This PNG carries no workflow",
                                            str(path)))
        text = prompt_text or canvas_text
    else:
        text = canvas_text = path.read_text(encoding="utf-8")
    try:
        canvas = json.loads(canvas_text) if canvas_text else None
    except json.JSONDecodeError:
        canvas = None
    is_canvas = isinstance(canvas, dict) and isinstance(canvas.get("nodes"), list)
    return text, canvas if is_canvas else None


def apply_overrides(prompt: dict[str, Any], overrides: list[str]) -> None:
    """Apply ``NODE.INPUT=VALUE`` overrides; NODE is an id or a title, VALUE JSON or text."""
    for item in overrides:
        target, sep, raw = item.partition("=")
        node_ref, dot, input_name = target.rpartition(".")
        if not sep or not dot or not node_ref or not input_name:
            raise PromptError(error_entry("invalid_override", "Overrides look like "
                                          "NODE.INPUT=VALUE", item))
        matches = [nid for nid, node in prompt.items()
                   if nid == node_ref or node.get("_meta", {}).get("title") == node_ref]
        if len(matches) != 1:
            why = "no node" if not matches else f"{len(matches)} nodes"
            raise PromptError(error_entry("invalid_override", f"{why} with id or title "
                                          f"{node_ref!r}", item))
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        prompt[matches[0]].setdefault("inputs", {})[input_name] = value


def output_paths(runtime: Runtime, result: ExecutionResult) -> list[Path]:
    """Files named in the UI outputs (images, videos, gifs ...) of the finished prompt."""
    paths = []
    for ui in result.outputs.values():
        for items in ui.values():
            for item in items if isinstance(items, list) else []:
                if isinstance(item, dict) and {"filename", "type"} <= item.keys():
                    folder = runtime.folders.directory(item["type"])
                    paths.append(folder / item.get("subfolder", "") / item["filename"])
    return paths


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="server.py run", description=__doc__.splitlines()[0])
    parser.add_argument("workflow", type=Path, help="workflow JSON (API or canvas) or a PNG")
    parser.add_argument("--output-dir", type=Path, help="where output nodes write files")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="NODE.INPUT=VALUE", help="override an input (repeatable)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--extra-model-paths", type=Path, action="append", metavar="FILE",
                        help="a ComfyUI extra_model_paths.yaml naming more model folders "
                        "(repeatable; default: the project's, when present)")
    parser.add_argument("--custom-nodes", type=Path, action="append",
                        help="a custom_nodes folder (repeatable; default: the project's "
                        "custom_nodes/)")
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        runtime = Runtime.create(
            output_dir=args.output_dir.resolve() if args.output_dir else None,
            custom_nodes=args.custom_nodes, extra_model_paths=args.extra_model_paths)
    except ExtraModelPathsError as exc:
        return _fail(EXIT_INVALID, {"error": error_entry(
            "invalid_extra_model_paths", "Cannot read the extra model paths file", str(exc)),
            "node_errors": {}})
    gc.freeze()  # the loaded libraries and nodes stay: the collector need not walk them again
    for line in runtime.registry.failure_lines():
        log.warning(line)
    try:
        text, canvas = load_workflow_file(args.workflow)
        prompt = parse_workflow(text, runtime.registry)
        apply_overrides(prompt, args.overrides)
        prompt = plugins_on_prompt(prompt)
        plan = validate_prompt(prompt, runtime.registry)
    except OSError as exc:
        return _fail(EXIT_INVALID, {"error": error_entry("invalid_prompt", "Cannot read the "
                                                         "workflow file", str(exc)),
                                    "node_errors": {}})
    except WorkflowError as exc:
        return _fail(EXIT_INVALID, {"error": exc.error, "node_errors": {}})
    except PromptError as exc:
        return _fail(EXIT_INVALID, exc.payload)
    runtime.executor.on_event = TqdmProgress(plan, enabled=not args.quiet)
    # Outputs embed the canvas form, so dropping them on the canvas reopens the graph.
    extra = {"extra_pnginfo": {"workflow": canvas or api_to_canvas(prompt, runtime.registry)}}
    result = runtime.executor.execute(plan, extra_data=extra)
    if result.status != "success":
        return _fail(EXIT_FAILED, {"status": result.status, "error": result.error})
    for path in output_paths(runtime, result):
        print(path)
    return 0


def plugins_on_prompt(prompt: dict[str, Any]) -> dict[str, Any]:
    """The prompt after plugins' on-prompt handlers, as the server would queue it.

    Only a plugin that imported ``server`` can have registered one; otherwise the server
    module (aiohttp) is not loaded at all.
    """
    server = sys.modules.get("app.server")
    if server is None:
        return prompt
    body = server.PromptServer.instance.trigger_on_prompt({"prompt": prompt})
    return body.get("prompt", prompt)


def _fail(code: int, payload: dict[str, Any]) -> int:
    print(json.dumps(payload, indent=2, default=str), file=sys.stderr)
    return code
