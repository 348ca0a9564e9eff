"""Start-up time: how long after launch Kinema is useful, next to the torch import floor.

Prints, side by side from one run (the three are interleaved, so machine noise hits each
alike), the median wall time of:

- ``python -c "import torch"``: the floor every torch program pays;
- ``python server.py run workflows/image_basics.json``: a headless run, to exit;
- ``python server.py``: launch until ``GET /object_info`` answers.

and each one's distance from the floor. Run:
``.venv/bin/python bench/startup.py [--repeat 5] [--workflow workflows/image_basics.json]``
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def time_command(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(args, cwd=ROOT, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def time_server(base_dir: Path, timeout: float = 120.0) -> float:
    """Seconds from launching the server to its first answer from /object_info."""
    port = free_port()
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "server.py", "--port", str(port),
                             "--base-dir", str(base_dir)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while time.perf_counter() - start < timeout:
            if proc.poll() is not None:
                raise RuntimeError(f"the server exited with {proc.returncode}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/object_info",
                                            timeout=5) as response:
                    response.read()
                return time.perf_counter() - start
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.01)  # polling a port that is not open yet
        raise TimeoutError("the server did not answer /object_info in time")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--workflow", default="workflows/image_basics.json")
    args = parser.parse_args()
    samples: dict[str, list[float]] = {"import torch (floor)": [], "server.py run": [],
                                       "server.py until /object_info": []}
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        for _ in range(args.repeat):
            samples["import torch (floor)"].append(
                time_command([sys.executable, "-c", "import torch"]))
            samples["server.py run"].append(time_command(
                [sys.executable, "server.py", "run", args.workflow, "--quiet",
                 "--output-dir", str(base / "output")]))
            samples["server.py until /object_info"].append(time_server(base))
    floor = statistics.median(samples["import torch (floor)"])
    print(f"{'what':32} {'median s':>9} {'min s':>7} {'minus floor':>12}")
    for name, values in samples.items():
        median = statistics.median(values)
        print(f"{name:32} {median:9.2f} {min(values):7.2f} {median - floor:+12.2f}")


if __name__ == "__main__":
    main()
