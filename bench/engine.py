"""Engine overhead on a 500-node chain of trivial nodes.

Prints: per-node overhead of a first run beyond the nodes' own work, a fully cached re-run,
the re-run after changing the last node, and validation time. Run:
``.venv/bin/python bench/engine.py [--nodes 500] [--repeat 5]``
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.cache import OutputCache
from engine.executor import Executor
from engine.graph import validate_prompt
from engine.registry import NodeRegistry


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=5)
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


if __name__ == "__main__":
    main()
