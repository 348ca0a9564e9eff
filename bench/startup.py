"""Start-up time: how long after launch Kinema is useful, next to the torch import floor.

Prints, side by side from one run (the four are interleaved, so machine noise hits each
alike), the median wall time of:

- ``python -c "import torch"``, to exit: the floor every torch program pays (the interpreter's
  exit after importing torch takes about half a second of it);
- the same until torch is imported (its exit not timed): the floor of a process timed to a
  point before its exit;
- ``python server.py run workflows/image_basics.json``: a headless run, to exit;
- ``python server.py``: launch until ``GET /object_info`` answers (its exit not timed);

and each one's distance from its floor: the run's from the first, the server's from the
second. Run:
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


def time_until_line(args: list[str]) -> float:
    """Seconds from launch to the process's first line on stdout (its exit is not timed)."""
    start = time.perf_counter()
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)
    proc.stdout.readline()
    elapsed = time.perf_counter() - start
    proc.communicate()
    return elapsed


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
    exit_floor, import_floor = "import torch, to exit", "import torch, until imported"
    # What each is compared with: its floor, timed to the same point (exit or not).
    floors = {exit_floor: exit_floor, import_floor: import_floor,
              "server.py run": exit_floor, "server.py until /object_info": import_floor}
    samples: dict[str, list[float]] = {name: [] for name in floors}
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        for _ in range(args.repeat):
            samples[exit_floor].append(time_command([sys.executable, "-c", "import torch"]))
            samples[import_floor].append(time_until_line(
                [sys.executable, "-c", "import torch; print('imported', flush=True)"]))
            samples["server.py run"].append(time_command(
                [sys.executable, "server.py", "run", args.workflow, "--quiet",
                 "--output-dir", str(base / "output")]))
            samples["server.py until /object_info"].append(time_server(base))
    medians = {name: statistics.median(values) for name, values in samples.items()}
    print(f"{'what':32} {'median s':>9} {'min s':>7} {'minus floor':>12}  floor")
    for name, values in samples.items():
        floor = floors[name]
        print(f"{name:32} {medians[name]:9.2f} {min(values):7.2f} "
              f"{medians[name] - medians[floor]:+12.2f}  {floor}")


if __name__ == "__main__":
    main()
