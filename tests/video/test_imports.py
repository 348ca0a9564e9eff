"""The heavy libraries (diffusers, transformers, accelerate, PyAV, OpenCV) load when a node that
needs them runs, not with the nodes: a process that only lists the nodes (the canvas's
``/object_info``) or runs image graphs starts about as fast as ``import torch``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("diffusers", "transformers", "accelerate", "av", "cv2")


def test_describing_every_node_loads_no_heavy_library():
    code = ("import sys, nodes; from engine.registry import build_registry; "
            "from app.object_info import object_info; "
            "info = object_info(build_registry(nodes, entry_points=False)); "
            "assert set(info) == set(nodes.NODE_CLASS_MAPPINGS), 'a node was not described'; "
            f"print(sorted(set({HEAVY!r}) & set(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]"
