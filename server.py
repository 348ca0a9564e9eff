"""Kinema's entry point: ``python server.py run WORKFLOW.json`` runs a workflow headless.

ComfyUI plugins import ``server`` for ``PromptServer``; the HTTP server itself is built on
the same engine in ``app/``.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["run"]:
        from app.cli import main as run_main

        return run_main(argv[1:])
    print("usage: python server.py run WORKFLOW.json [--output-dir DIR] "
          "[--set NODE.INPUT=VALUE ...]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
