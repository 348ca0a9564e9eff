"""Engine overhead on a 500-node chain of trivial nodes.

Prints: per-node overhead of a first run beyond the nodes' own work, a fully cached re-run,
the re-run after changing the last node, and validation time. With ``--process``, also the
whole process's overhead per node with ``server.py run`` (loading and checking the workflow,
planning, executing, events, the workflow embedded in the PNG): chains of 1 and of
``--process-nodes`` built-in ImageInvert nodes on a 1x1 EmptyImage, ending in a SaveImage,
run interleaved; the difference of their median times, divided by the difference of their
lengths. A process's start varies by a tenth of a second or more, so this needs repeats;
the standard error of the paired differences, per node, is printed with it. Run:
``.venv/bin/python bench/engine.py [--nodes 500] [--repeat 5]
[--process [--process-nodes 300] [--process-repeat 9]]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.cache import OutputCache
from engine.executor import Executor
from engine.graph import validate_prompt
from engine.registry import NodeRegistry

ROOT = Path(__file__).resolve().parent.parent


class Increment:
    """value + step: as little work as a node can do."""

    RETURN_TYPES = ("INT",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("INT", {"forceInput": True}),
                             "step": ("INT", {"default": 1, "min": -10, "max": 10})}}

    def run(self, value, step):
        return (value + step,)


class Seed:
    RETURN_TYPES = ("INT",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("INT", {"default": 0})}}

    def run(self, value):
        return (value,)


class Sink:
    RETURN_TYPES = ()
    FUNCTION = "run"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("INT", {"forceInput": True})}}

    def run(self, value):
        return {"ui": {"value": [value]}}


def chain(n: int, last_step: int = 1) -> dict:
    prompt = {"0": {"class_type": "Seed", "inputs": {"value": 0}}}
    for i in range(1, n - 1):
        step = last_step if i == n - 2 else 1
        prompt[str(i)] = {"class_type": "Increment", "inputs": {"value": [str(i - 1), 0],
                                                                 "step": step}}
    prompt[str(n - 1)] = {"class_type": "Sink", "inputs": {"value": [str(n - 2), 0]}}
    return prompt


def own_work_seconds(n: int) -> float:
    """What the nodes' functions alone cost for one pass over the chain."""
    inc, start = Increment(), time.perf_counter()
    value = 0
    for _ in range(n):
        (value,) = inc.run(value, 1)
    return time.perf_counter() - start


def measure(n: int) -> dict[str, float]:
    registry = NodeRegistry()
    registry.register_mappings({"Seed": Seed, "Increment": Increment, "Sink": Sink})
    executor = Executor(registry, OutputCache(1 << 30))
    prompt = chain(n)

    t0 = time.perf_counter()
    plan = validate_prompt(prompt, registry)
    t1 = time.perf_counter()
    first = executor.execute(plan)
    t2 = time.perf_counter()
    assert first.status == "success" and len(first.executed) == n

    t3 = time.perf_counter()
    cached = executor.execute(validate_prompt(prompt, registry))
    t4 = time.perf_counter()
    assert cached.executed == []

    changed = validate_prompt(chain(n, last_step=2), registry)
    t5 = time.perf_counter()
    rerun = executor.execute(changed)
    t6 = time.perf_counter()
    assert rerun.executed == [str(n - 2), str(n - 1)]

    return {"validate_ms": (t1 - t0) * 1e3,
            "overhead_us_per_node": ((t2 - t1) - own_work_seconds(n)) / n * 1e6,
            "cached_rerun_ms": (t4 - t3) * 1e3,
            "changed_last_rerun_ms": (t6 - t5) * 1e3}


def invert_chain(inverts: int) -> dict:
    """API-format workflow: a 1x1 EmptyImage, ``inverts`` ImageInvert nodes, a SaveImage."""
    prompt = {"0": {"class_type": "EmptyImage",
                    "inputs": {"width": 1, "height": 1, "batch_size": 1, "color": 0}}}
    for i in range(1, inverts + 1):
        prompt[str(i)] = {"class_type": "ImageInvert", "inputs": {"image": [str(i - 1), 0]}}
    prompt[str(inverts + 1)] = {"class_type": "SaveImage",
                                "inputs": {"images": [str(inverts), 0],
                                           "filename_prefix": "bench"}}
    return prompt


def process_overhead(long: int, repeat: int) -> dict[str, float]:
    """Median seconds of ``server.py run`` on chains of 1 and ``long`` inverts, interleaved."""
    times: dict[int, list[float]] = {1: [], long: []}
    with tempfile.TemporaryDirectory() as tmp:
        files = {}
        for inverts in times:
            files[inverts] = Path(tmp) / f"chain_{inverts}.json"
            files[inverts].write_text(json.dumps(invert_chain(inverts)))
        for _ in range(repeat):
            for inverts, path in files.items():
                start = time.perf_counter()
                subprocess.run([sys.executable, "server.py", "run", str(path), "--quiet",
                                "--output-dir", str(Path(tmp) / "output")], cwd=ROOT,
                               check=True, stdout=subprocess.DEVNULL)
                times[inverts].append(time.perf_counter() - start)
    short_s, long_s = statistics.median(times[1]), statistics.median(times[long])
    diffs = [b - a for a, b in zip(times[1], times[long], strict=True)]
    return {"short_s": short_s, "long_s": long_s,
            "us_per_node": (long_s - short_s) / (long - 1) * 1e6,
            "error_us_per_node": statistics.stdev(diffs) / len(diffs) ** 0.5 / (long - 1) * 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--process", action="store_true",
                        help="also time whole `server.py run` processes (slow: seconds each)")
    parser.add_argument("--process-nodes", type=int, default=300)
    parser.add_argument("--process-repeat", type=int, default=9)
    args = parser.parse_args()
    runs = [measure(args.nodes) for _ in range(args.repeat)]
    print(f"engine bench: {args.nodes}-node chain, median of {args.repeat} runs")
    rows = [("validation", "validate_ms", "ms", None),
            ("first run overhead", "overhead_us_per_node", "us/node", 100),
            ("fully cached re-run (validate + execute)", "cached_rerun_ms", "ms", 20),
            ("re-run after changing the last node", "changed_last_rerun_ms", "ms", None)]
    for label, key, unit, target in rows:
        value = statistics.median(r[key] for r in runs)
        goal = f"(target < {target} {unit})" if target else ""
        print(f"  {label:42s} {value:9.2f} {unit:8s} {goal}")
    if args.process:
        proc = process_overhead(args.process_nodes, args.process_repeat)
        print(f"server.py run, chains of 1 and {args.process_nodes} ImageInvert nodes, "
              f"median of {args.process_repeat} interleaved runs")
        print(f"  {'1 node':42s} {proc['short_s']:9.2f} s")
        print(f"  {f'{args.process_nodes} nodes':42s} {proc['long_s']:9.2f} s")
        print(f"  {'whole-process overhead':42s} {proc['us_per_node']:9.2f} us/node  "
              f"± {proc['error_us_per_node']:.0f} (target < 100 us/node)")


if __name__ == "__main__":
    main()
