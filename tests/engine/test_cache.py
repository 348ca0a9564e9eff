"""Signatures and the byte-bounded LRU output cache."""

from __future__ import annotations

import torch

from engine.cache import OutputCache, _cgroup_headroom, compute_signatures, estimate_nbytes
from engine.executor import Executor
from engine.graph import validate_prompt
from tests.engine.toy_nodes import chain_prompt, toy_registry


def signatures(prompt):
    registry = toy_registry()
    return compute_signatures(validate_prompt(prompt, registry), registry, lambda *_: "")


def test_signature_depends_on_constants_and_upstream_only():
    base = signatures(chain_prompt(6))
    changed = chain_prompt(6)
    changed["3"]["inputs"]["b"] = 2
    after = signatures(changed)
    assert [n for n in base if base[n] == after[n]] == ["1", "2"]


def test_deep_chain_signatures_do_not_recurse():
    # ComfyUI's recursive keys hit RecursionError near 1,000 nodes.
    sigs = signatures(chain_prompt(3000))
    assert len(set(sigs.values())) == 3000


def test_nbytes_counts_tensors_through_containers_once():
    t = torch.zeros(1000, dtype=torch.float32)
    assert estimate_nbytes([[t], [t, {"samples": torch.zeros(10, dtype=torch.float16)}]]) == 4020


def test_lru_evicts_oldest_by_bytes():
    cache = OutputCache(budget_bytes=10_000)
    cache.put("a", [[torch.zeros(1000)]], None)  # 4000 bytes
    cache.put("b", [[torch.zeros(1000)]], None)
    cache.get("a")  # a is now most recently used
    cache.put("c", [[torch.zeros(1000)]], None)
    assert "a" in cache and "c" in cache and "b" not in cache
    assert cache.total_bytes == 8000 and cache.evictions == 1


def test_entry_larger_than_budget_is_not_kept():
    cache = OutputCache(budget_bytes=100)
    cache.put("big", [[torch.zeros(1000)]], None)
    assert len(cache) == 0 and cache.total_bytes == 0


def scaled(value, factor):
    return {"1": {"class_type": "Tensor", "inputs": {"size": 1 << 20, "value": value}},
            "2": {"class_type": "Scale", "inputs": {"tensor": ["1", 0], "factor": factor}},
            "3": {"class_type": "Show", "inputs": {"value": ["2", 0]}}}


def test_eviction_by_bytes_forces_a_rerun_of_evicted_outputs_only():
    registry = toy_registry()
    budget = 10 * 1024 * 1024  # room for two of the 4 MiB tensors, not three
    executor = Executor(registry, OutputCache(budget))
    executor.execute(validate_prompt(scaled(1.0, 1.0), registry))
    executor.execute(validate_prompt(scaled(2.0, 1.0), registry))
    assert executor.cache.total_bytes <= budget
    assert executor.cache.evictions >= 2
    again = executor.execute(validate_prompt(scaled(1.0, 3.0), registry))
    assert again.executed == ["1", "2", "3"]  # the first tensor was evicted
    assert again.outputs["3"] == {"values": [3.0 * (1 << 20)]}
    latest = executor.execute(validate_prompt(scaled(1.0, 3.0), registry))
    assert latest.executed == []


def test_default_budget_honours_cgroup_limit(tmp_path):
    (tmp_path / "memory.max").write_text("2147483648\n")
    (tmp_path / "memory.current").write_text("1073741824\n")
    assert _cgroup_headroom(tmp_path) == 1 << 30
    (tmp_path / "memory.max").write_text("max\n")
    assert _cgroup_headroom(tmp_path) is None
    assert OutputCache().budget_bytes > 0
