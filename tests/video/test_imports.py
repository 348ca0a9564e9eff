"""PyAV and OpenCV load when a video node runs, not with the nodes (about 32 MiB saved in
every process that only serves the canvas or runs generation graphs)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_listing_the_nodes_loads_neither_pyav_nor_opencv():
    code = ("import sys, nodes; from engine.registry import build_registry; "
            "build_registry(nodes, entry_points=False).get('VideoEncode').inputs(); "
            "print(sorted({'av', 'cv2'} & set(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]"
