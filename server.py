"""Kinema's entry point: serve the canvas and API (default), or ``run`` a workflow headless.

``python server.py [--listen [HOST]] [--port 8188] [--auth-token T]`` serves;
``python server.py run WORKFLOW.json ...`` runs one workflow and exits. ComfyUI plugins
import this module for ``PromptServer`` and ``web``, which load on first use, so a headless
run without such plugins never imports the server (aiohttp).
"""

from __future__ import annotations

import argparse
import gc
import logging
import sys
import uuid  # noqa: F401  (plugins call server.uuid.uuid4(), as ComfyUI's module has it)
from pathlib import Path
from typing import Any

from engine.folders import PROJECT_ROOT

__all__ = ["main"]


def __getattr__(name: str) -> Any:
    # ComfyUI's server module has these names; plugins import them from here.
    if name == "PromptServer":
        from app.server import PromptServer

        return PromptServer
    if name == "web":
        from aiohttp import web

        return web
    raise AttributeError(f"module 'server' has no attribute {name!r}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="server.py", description=__doc__.splitlines()[0])
    parser.add_argument("--listen", nargs="?", const="0.0.0.0", default="127.0.0.1",
                        metavar="HOST", help="address to bind (default 127.0.0.1; alone: all)")
    parser.add_argument("--port", type=int, default=8188)
    parser.add_argument("--auth-token", help="require this token on every route and the "
                        "websocket (Authorization: Bearer T, or ?token=T)")
    parser.add_argument("--base-dir", type=Path, default=PROJECT_ROOT,
                        help="holds input/, output/, temp/, models/, custom_nodes/, user/")
    parser.add_argument("--output-directory", type=Path, help="where outputs are written")
    parser.add_argument("--custom-nodes", type=Path, action="append",
                        help="a custom_nodes folder (repeatable; default BASE/custom_nodes)")
    parser.add_argument("--extra-model-paths", type=Path, action="append", metavar="FILE",
                        help="a ComfyUI extra_model_paths.yaml naming more model folders "
                        "(repeatable; default BASE/extra_model_paths.yaml when present)")
    parser.add_argument("--cache-ram", type=float, metavar="GB",
                        help="output cache budget in GB (default: half the free RAM; 0: off)")
    parser.add_argument("--max-history", type=int, default=10_000)
    return parser


def serve(argv: list[str]) -> int:
    from app.extra_model_paths import ExtraModelPathsError
    from app.security import startup_warning
    from app.server import PromptServer, ServerConfig

    args = build_parser().parse_args(argv)
    base = args.base_dir.resolve()
    config = ServerConfig(
        host=args.listen, port=args.port, auth_token=args.auth_token, base_dir=base,
        output_dir=args.output_directory.resolve() if args.output_directory else None,
        custom_nodes=args.custom_nodes,
        extra_model_paths=[p.resolve() for p in args.extra_model_paths or []] or None,
        cache_bytes=None if args.cache_ram is None else int(args.cache_ram * 1024**3),
        max_history=args.max_history)
    warning = startup_warning(config.policy)
    if warning:
        print(f"WARNING: {warning}", file=sys.stderr)
    try:
        server = PromptServer(config)
    except ExtraModelPathsError as exc:
        print(f"extra model paths: {exc}", file=sys.stderr)
        return 2
    # What is loaded now (torch, nodes, plugins) lives as long as the process: keep it out of
    # the collector's full passes, which otherwise walk it again and again during runs.
    gc.freeze()
    for line in server.runtime.registry.failure_lines():
        print(line, file=sys.stderr)
    if server.requeued or server.failed:
        print(f"recovered after a crash: {len(server.requeued)} prompt(s) re-queued, "
              f"{len(server.failed)} marked failed", file=sys.stderr)
    host = f"[{args.listen}]" if ":" in args.listen else args.listen
    print(f"Kinema is serving at http://{host}:{args.port}/", flush=True)
    server.run()
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if argv[:1] == ["run"]:
        from app.cli import main as run_main

        return run_main(argv[1:])
    return serve(argv)


if __name__ == "__main__":
    sys.exit(main())
