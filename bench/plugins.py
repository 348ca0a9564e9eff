"""ComfyUI plugin packs on Kinema: which load, which nodes are refused and why, which run.

Each pack in DIR is loaded in a fresh process by a ``PromptServer``, as ``server.py`` loads
``custom_nodes/`` (with temporary input/output/models folders), so one pack's state cannot
help or break the next.
Every node of the pack whose required inputs are IMAGE, MASK, LATENT, STRING, INT, FLOAT,
BOOLEAN, a combo or ``*`` is then run once through Kinema's own validation and executor on a
small input (a 1x64x64 RGB image, a 64x64 mask, a 1x4x8x8 latent, widgets at their defaults);
nodes that need other types (MODEL, CLIP, CONDITIONING, a pack's own types ...) are counted as
"not runnable here". Prints one row per pack and, with ``--details``, each refusal and failure.

Packs are other people's code: pip is disabled in the child processes (some packs try to
install their requirements at import), and each pack has ``--timeout`` seconds: a node still
running then is reported as hung and the pack is measured again without it. Run:
``.venv/bin/python bench/plugins.py DIR [--details] [--json OUT.json]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.registry import plugin_paths  # noqa: E402  (after the path: run as a script)

SIZE = 64
RUNNABLE_TYPES = {"IMAGE", "MASK", "LATENT", "STRING", "INT", "FLOAT", "BOOLEAN", "COMBO", "*"}


def _sources() -> dict[str, type]:
    """Bench-only source nodes feeding the node under test."""
    import torch

    def source(type_name: str, value: Any) -> type:
        class Source:
            RETURN_TYPES = (type_name,)
            FUNCTION = "make"

            @classmethod
            def INPUT_TYPES(cls) -> dict:
                return {"required": {}}

            def make(self) -> tuple:
                return (value() if callable(value) else value,)

        return Source

    def image() -> torch.Tensor:
        ramp = torch.linspace(0, 1, SIZE)
        return torch.stack([ramp.expand(SIZE, SIZE), ramp[:, None].expand(SIZE, SIZE),
                            torch.full((SIZE, SIZE), 0.5)], -1)[None].contiguous()

    return {"BenchImage": source("IMAGE", image),
            "BenchMask": source("MASK", lambda: (image()[..., 0] > 0.5).float()),
            "BenchLatent": source("LATENT", lambda: {"samples": torch.zeros(1, 4, 8, 8)})}


RUNNING = "running node: "
SOURCE_FOR = {"IMAGE": "BenchImage", "MASK": "BenchMask", "LATENT": "BenchLatent",
              "*": "BenchImage"}


def widget_value(spec: Any) -> Any:
    """The value a user who opens the node and presses Queue would send."""
    options = spec.options
    if spec.is_combo:
        return options.get("default", spec.choices[0] if spec.choices else "")
    if "default" in options:
        return options["default"]
    return {"INT": options.get("min", 0), "FLOAT": options.get("min", 0.0),
            "BOOLEAN": False, "STRING": ""}[spec.type]


def prompt_for(node_type: Any) -> tuple[dict[str, Any], str | None]:
    """An API prompt running ``node_type`` on bench sources, as the canvas would send it
    (required inputs, and optional widgets at their defaults), or the type it cannot feed."""
    prompt: dict[str, Any] = {}
    inputs: dict[str, Any] = {}
    for name, spec in node_type.inputs().items():
        if spec.section == "optional" and spec.is_widget:
            inputs[name] = widget_value(spec)
        if spec.section != "required":
            continue
        kind = "COMBO" if spec.is_combo else spec.type
        if "," in kind or kind not in RUNNABLE_TYPES:
            return {}, kind
        source = SOURCE_FOR.get(kind)
        if source is None:
            inputs[name] = widget_value(spec)
        else:
            prompt[source] = {"class_type": source, "inputs": {}}
            inputs[name] = [source, 0]
    prompt["test"] = {"class_type": node_type.name, "inputs": inputs}
    return prompt, None


def measure_pack(pack: Path, skip: list[str]) -> dict[str, Any]:
    """Load one pack in this process and run its runnable nodes (the child's side)."""
    import logging

    logging.disable(logging.WARNING)
    from app.server import PromptServer, ServerConfig
    from engine.graph import PromptError, validate_prompt

    with tempfile.TemporaryDirectory() as base:
        folder = Path(base) / "custom_nodes"
        folder.mkdir()
        (folder / pack.name).symlink_to(pack.resolve(), target_is_directory=pack.is_dir())
        # As server.py loads plugins: PromptServer.instance exists for packs adding routes.
        runtime = PromptServer(ServerConfig(base_dir=Path(base), custom_nodes=[folder],
                                            cache_bytes=0)).runtime
        registry = runtime.registry
        for name, cls in _sources().items():
            registry.register(name, cls, source="bench")
        report: dict[str, Any] = {
            "pack": pack.name,
            "pack_error": registry.import_errors.get(pack.name),
            "refused": dict(registry.node_errors.get(pack.name, {})),
            "nodes": sorted(n for n, t in registry.types.items() if t.source == pack.name),
            "ran": [], "failed": {}, "not_runnable": {},
        }
        for name in report["nodes"]:
            if name in skip:
                continue
            print(RUNNING + name, file=sys.stderr, flush=True)
            try:
                prompt, missing = prompt_for(registry.types[name])
            except Exception as exc:  # a broken INPUT_TYPES is the pack's failure to report
                report["failed"][name] = f"INPUT_TYPES: {type(exc).__name__}: {exc}"
                continue
            if missing:
                report["not_runnable"][name] = missing
                continue
            try:
                result = runtime.executor.execute(validate_prompt(prompt, registry, ["test"]))
            except PromptError as exc:
                report["failed"][name] = "invalid: " + json.dumps(exc.error)[:300]
                continue
            if result.status == "success":
                report["ran"].append(name)
            else:
                error = result.error or {}
                report["failed"][name] = (f"{error.get('exception_type', '')}: "
                                          f"{error.get('exception_message', '')}")[:300]
        return report


def child_env() -> dict[str, str]:
    """The environment of a child measuring a pack: this one, with pip unable to install."""
    env = dict(os.environ)
    # Packs that pip-install their requirements at import must not change this venv.
    env.update(PIP_NO_INDEX="1", PIP_CONFIG_FILE=os.devnull, PIP_FIND_LINKS="",
               PYTHONDONTWRITEBYTECODE="1")
    return env


def run_child(pack: Path, timeout: float, attempts: int = 4) -> dict[str, Any]:
    """Measure one pack in a child process; a node that hangs is skipped and reported."""
    hung: list[str] = []
    for _ in range(attempts):
        args = [sys.executable, __file__, "--one", str(pack)]
        for name in hung:
            args += ["--skip", name]
        try:
            done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True,
                                  timeout=timeout, env=child_env(), stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as exc:
            stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) \
                else (exc.stderr or "")
            running = [line[len(RUNNING):] for line in stderr.splitlines()
                       if line.startswith(RUNNING)]
            if not running or running[-1] in hung:
                return {"pack": pack.name, "pack_error": f"timed out after {timeout:.0f} s"}
            hung.append(running[-1])
            continue
        for line in reversed(done.stdout.splitlines()):
            if line.startswith("{"):
                report = json.loads(line)
                for name in hung:
                    report["failed"][name] = f"still running after {timeout:.0f} s (stopped)"
                return report
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        return {"pack": pack.name, "pack_error": f"process exited {done.returncode}: "
                                                 + " | ".join(tail)}
    return {"pack": pack.name, "pack_error": f"{len(hung)} nodes hung: {', '.join(hung)}"}


def print_table(reports: list[dict[str, Any]], details: bool) -> None:
    print(f"{'pack':40} {'loaded':>6} {'nodes':>5} {'refused':>7} {'runnable':>8} "
          f"{'ran':>4} {'failed':>6}")
    totals = [0] * 6
    for r in reports:
        loaded = r.get("pack_error") is None
        row = [int(loaded), len(r.get("nodes", [])), len(r.get("refused", {})),
               len(r.get("ran", [])) + len(r.get("failed", {})), len(r.get("ran", [])),
               len(r.get("failed", {}))]
        totals = [a + b for a, b in zip(totals, row, strict=True)]
        print(f"{r['pack'][:40]:40} {'yes' if loaded else 'NO':>6} {row[1]:5} {row[2]:7} "
              f"{row[3]:8} {row[4]:4} {row[5]:6}")
        if not loaded:
            print(f"    refused: {r['pack_error'].splitlines()[-1][:200]}")
    print(f"{'total (' + str(len(reports)) + ' packs)':40} {totals[0]:6} {totals[1]:5} "
          f"{totals[2]:7} {totals[3]:8} {totals[4]:4} {totals[5]:6}")
    if not details:
        return
    for r in reports:
        for kind in ("refused", "failed"):
            for node, why in sorted(r.get(kind, {}).items()):
                print(f"{r['pack']}: {kind} {node}: {why}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, nargs="?", help="a folder of plugin packs")
    parser.add_argument("--one", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--skip", action="append", default=[], help=argparse.SUPPRESS)
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="seconds a pack may take; a node still running then is skipped")
    parser.add_argument("--details", action="store_true", help="list refusals and failures")
    parser.add_argument("--json", type=Path, help="also write the reports here")
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure_pack(args.one, args.skip)))
        return
    if args.folder is None:
        parser.error("give a folder of plugin packs")
    reports = []
    for pack in plugin_paths(args.folder):
        print(f"... {pack.name}", file=sys.stderr, flush=True)
        reports.append(run_child(pack, args.timeout))
    print_table(reports, args.details)
    if args.json:
        args.json.write_text(json.dumps(reports, indent=1))


if __name__ == "__main__":
    main()
