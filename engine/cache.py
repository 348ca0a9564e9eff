"""Signatures of node inputs and a byte-bounded LRU cache of node outputs.

A node's signature hashes its class, its constant inputs, the signatures of the nodes that
feed it and its IS_CHANGED value. Signatures are computed once per prompt in topological
order, so the cost is linear in the size of the graph (ComfyUI re-walks every ancestry).
"""

from __future__ import annotations

import hashlib
import math
import os
import sys
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.graph import ExecutionPlan, is_link
from engine.registry import InputSpec, NodeRegistry, NodeType

DEFAULT_RAM_FRACTION = 0.5


def compute_signatures(plan: ExecutionPlan, registry: NodeRegistry,
                       is_changed: Callable[[str, NodeType], Any]) -> dict[str, str]:
    """Signature of every planned node, by node id."""
    signatures: dict[str, str] = {}
    keyed_on_id: dict[str, bool] = {}
    for nid in plan.order:
        node = plan.prompt[nid]
        node_type = registry.get(node["class_type"])
        assert node_type is not None
        if node_type.name not in keyed_on_id:
            keyed_on_id[node_type.name] = _depends_on_identity(node_type,
                                                               plan.specs[node_type.name])
        inputs = []
        for name, value in sorted(node["inputs"].items()):
            if is_link(value):
                inputs.append((name, "link", signatures[str(value[0])], value[1]))
            else:
                inputs.append((name, "value", _canonical(value)))
        parts: list[Any] = [node_type.name, inputs, _canonical(is_changed(nid, node_type))]
        if keyed_on_id[node_type.name]:
            parts.append(nid)
        # repr of canonical values (str, numbers, lists, sorted dicts) is deterministic.
        digest = hashlib.sha256(repr(parts).encode()).hexdigest()
        signatures[nid] = digest
    return signatures


def _depends_on_identity(node_type: NodeType, specs: dict[str, InputSpec]) -> bool:
    """Nodes that read their own id, or declare they must not be shared, key on their id."""
    if getattr(node_type.cls, "NOT_IDEMPOTENT", False):
        return True
    return any(s.section == "hidden" and s.type == "UNIQUE_ID" for s in specs.values())


def _canonical(value: Any) -> Any:
    """A JSON-able stand-in for a value; NaN (ComfyUI's "always changed") is never equal."""
    if isinstance(value, float) and math.isnan(value):
        return f"changed:{uuid.uuid4()}"
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    return repr(value)


def estimate_nbytes(value: Any, _seen: set[int] | None = None) -> int:
    """Bytes held by an output: tensor and array payloads, walked through containers.

    Objects that manage their own memory (a frame store) declare it with an ``nbytes`` int.
    """
    seen = _seen if _seen is not None else set()
    if id(value) in seen:
        return 0
    seen.add(id(value))
    if isinstance(value, torch.Tensor):
        return value.element_size() * value.nelement()
    if isinstance(value, np.ndarray):
        return int(value.nbytes)
    if isinstance(value, dict):
        return sum(estimate_nbytes(v, seen) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(estimate_nbytes(v, seen) for v in value)
    nbytes = getattr(value, "nbytes", None)
    if isinstance(nbytes, int):
        return nbytes
    return sys.getsizeof(value)


@dataclass
class CacheEntry:
    """One node's outputs (a list of values per output slot) and its UI output."""

    outputs: list[list[Any]]
    ui: dict[str, Any] | None
    nbytes: int


class OutputCache:
    """Node outputs by signature, least recently used evicted first, bounded in bytes.

    ``budget_bytes=0`` disables caching across prompts.
    """

    def __init__(self, budget_bytes: int | None = None):
        self.budget_bytes = default_budget() if budget_bytes is None else int(budget_bytes)
        self._entries: OrderedDict[str, CacheEntry] = OrderedDict()
        self.total_bytes = 0
        self.evictions = 0

    @property
    def enabled(self) -> bool:
        return self.budget_bytes > 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, signature: str) -> bool:
        return signature in self._entries

    def get(self, signature: str) -> CacheEntry | None:
        entry = self._entries.get(signature)
        if entry is not None:
            self._entries.move_to_end(signature)
        return entry

    def put(self, signature: str, outputs: list[list[Any]], ui: dict[str, Any] | None,
            ) -> CacheEntry:
        """Store outputs, evicting the least recently used until the budget holds.

        An output larger than the whole budget is not stored; the caller still has it.
        """
        entry = CacheEntry(outputs, ui, estimate_nbytes(outputs))
        self.discard(signature)
        if not self.enabled or entry.nbytes > self.budget_bytes:
            return entry
        while self._entries and self.total_bytes + entry.nbytes > self.budget_bytes:
            _, old = self._entries.popitem(last=False)
            self.total_bytes -= old.nbytes
            self.evictions += 1
        self._entries[signature] = entry
        self.total_bytes += entry.nbytes
        return entry

    def discard(self, signature: str) -> None:
        old = self._entries.pop(signature, None)
        if old is not None:
            self.total_bytes -= old.nbytes

    def clear(self) -> None:
        self._entries.clear()
        self.total_bytes = 0


def default_budget(fraction: float = DEFAULT_RAM_FRACTION) -> int:
    """A fraction of the memory this process may still use, honouring cgroup limits."""
    return int(available_memory() * fraction)


def available_memory() -> int:
    """Bytes available: the smaller of the host's MemAvailable and the cgroup's headroom."""
    candidates = [_meminfo_available()]
    cgroup = _cgroup_headroom()
    if cgroup is not None:
        candidates.append(cgroup)
    return max(0, min(c for c in candidates if c is not None))


def total_memory() -> int:
    """Bytes of RAM on the host (``MemTotal``)."""
    return _meminfo("MemTotal") or os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _meminfo_available() -> int:
    return _meminfo("MemAvailable") or os.sysconf("SC_PAGE_SIZE") * os.sysconf(
        "SC_AVPHYS_PAGES")


def _meminfo(key: str) -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith(f"{key}:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _cgroup_headroom(root: Path = Path("/sys/fs/cgroup")) -> int | None:
    """Limit minus usage from cgroup v2 (memory.max) or v1 (memory.limit_in_bytes)."""
    for limit_file, usage_file in (("memory.max", "memory.current"),
                                   ("memory/memory.limit_in_bytes",
                                    "memory/memory.usage_in_bytes")):
        try:
            limit = (root / limit_file).read_text().strip()
            usage = int((root / usage_file).read_text().strip())
        except (OSError, ValueError):
            continue
        # v1 reports "no limit" as a huge number rather than "max".
        if limit == "max" or int(limit) >= 1 << 60:
            return None
        return int(limit) - usage
    return None
