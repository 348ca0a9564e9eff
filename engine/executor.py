"""Run one validated prompt: cache lookups, node calls, events, interrupt and errors.

Events use ComfyUI's names and payloads (execution_start, execution_cached, executing,
progress, executed, execution_error, execution_interrupted, execution_success) and go to one
sink: the CLI renders them with tqdm, the server forwards them over its websocket.
"""

from __future__ import annotations

import gc
import inspect
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from engine.cache import OutputCache, compute_signatures
from engine.context import InterruptFlag, InterruptProcessingException, NodeContext, node_context
from engine.frames import adapt_input
from engine.graph import ExecutionPlan, is_link
from engine.registry import NodeRegistry, NodeType

EventSink = Callable[[str, dict[str, Any]], None]


class NodeOutputError(RuntimeError):
    """A node returned something that breaks its own declaration."""


@dataclass
class ExecutionResult:
    """How a prompt ended, the UI outputs of its output nodes, and what ran or came cached."""

    prompt_id: str
    status: Literal["success", "error", "interrupted"]
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    executed: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)
    error: dict[str, Any] | None = None


class Executor:
    """Runs prompts one at a time against one registry and one output cache."""

    def __init__(self, registry: NodeRegistry, cache: OutputCache | None = None,
                 on_event: EventSink | None = None):
        self.registry = registry
        self.cache = cache if cache is not None else OutputCache()
        self.on_event = on_event or (lambda _type, _data: None)
        self.interrupt_flag = InterruptFlag()
        self._instances: dict[tuple[str, type], Any] = {}

    def interrupt(self) -> None:
        """Stop the running prompt at its next node or progress tick (safe from any thread)."""
        self.interrupt_flag.set()

    def execute(self, plan: ExecutionPlan, prompt_id: str | None = None,
                extra_data: dict[str, Any] | None = None) -> ExecutionResult:
        """Run what the plan's outputs need, reusing cached outputs; never raises for a node."""
        run = _PromptRun(self, plan, prompt_id or str(uuid.uuid4()), extra_data or {})
        return run.execute()

    def node_instance(self, nid: str, node_type: NodeType) -> Any:
        # Kept across prompts: some plugins keep state (a loaded model) on the instance.
        key = (nid, node_type.cls)
        if key not in self._instances:
            self._instances[key] = node_type.cls()
        return self._instances[key]


class _PromptRun:
    """The state of one prompt's execution."""

    def __init__(self, executor: Executor, plan: ExecutionPlan, prompt_id: str,
                 extra_data: dict[str, Any]):
        self.ex = executor
        self.plan = plan
        self.prompt_id = prompt_id
        self.extra_data = extra_data
        self.values: dict[str, list[list[Any]]] = {}
        self.signatures: dict[str, str] = {}
        self.result = ExecutionResult(prompt_id, "success")

    def emit(self, type_: str, **data: Any) -> None:
        self.ex.on_event(type_, {**data, "prompt_id": self.prompt_id})

    def execute(self) -> ExecutionResult:
        self.ex.interrupt_flag.clear()
        self.emit("execution_start", timestamp=_now_ms())
        current = None
        try:
            to_run = self._lookup_cache()
            for nid in self.plan.order:
                if nid not in to_run:
                    continue
                current = nid
                self.ex.interrupt_flag.raise_if_set()
                self._run_node(nid)
                self.result.executed.append(nid)
            current = None
        except InterruptProcessingException:
            self.result.status = "interrupted"
            self.emit("execution_interrupted", node_id=current,
                      node_type=self._class_of(current), executed=list(self.result.executed),
                      timestamp=_now_ms())
        except Exception as exc:
            self._fail(current, exc)
        finally:
            self.values.clear()
        if self.result.status == "success":
            self.emit("execution_success", timestamp=_now_ms())
        # Clients (ComfyUI API scripts) wait for this message to know the prompt is over.
        self.emit("executing", node=None, display_node=None)
        return self.result

    def _lookup_cache(self) -> set[str]:
        """Fill values from the cache; return the nodes that must run (stops at cache hits)."""
        self.signatures = compute_signatures(self.plan, self.ex.registry, self._is_changed)
        hits = {}
        for nid in self.plan.order:
            entry = self.ex.cache.get(self.signatures[nid])
            if entry is not None:
                hits[nid] = entry
        needed = {o for o in self.plan.outputs if o not in hits}
        for nid in reversed(self.plan.order):
            if nid in needed:
                needed.update(src for src in self.plan.graph.predecessors(nid) if src not in hits)
        for nid, entry in hits.items():
            self.values[nid] = entry.outputs
        self.result.cached = [nid for nid in self.plan.order if nid in hits]
        self.emit("execution_cached", nodes=list(self.result.cached), timestamp=_now_ms())
        for nid in self.result.cached:
            ui = hits[nid].ui
            if ui:
                self.result.outputs[nid] = ui
                self.emit("executed", node=nid, display_node=nid, output=ui)
        return needed

    def _is_changed(self, nid: str, node_type: NodeType) -> Any:
        fn = getattr(node_type.cls, "IS_CHANGED", None)
        if fn is None:
            return ""
        inputs = self.plan.prompt[nid]["inputs"]
        constants = {k: v for k, v in inputs.items() if not is_link(v)}
        try:
            return fn(**_accepted(fn, constants))
        except Exception:
            # A failing IS_CHANGED means "cannot tell": treat the node as changed.
            return float("nan")

    def _run_node(self, nid: str) -> None:
        node = self.plan.prompt[nid]
        node_type = self.ex.registry.get(node["class_type"])
        assert node_type is not None
        self.emit("executing", node=nid, display_node=nid)
        ctx = NodeContext(self.prompt_id, nid, node_type.name, self._reporter(nid),
                          self.ex.interrupt_flag)
        instance = self.ex.node_instance(nid, node_type)
        with node_context(ctx):
            outputs, ui = self._call(instance, node_type, self._inputs(nid, node_type))
        self.values[nid] = outputs
        self.ex.cache.put(self.signatures[nid], outputs, ui)
        if ui:
            self.result.outputs[nid] = ui
            self.emit("executed", node=nid, display_node=nid, output=ui)

    def _reporter(self, nid: str) -> Callable[[int, int, Any], None]:
        def report(value: int, total: int, preview: Any) -> None:
            self.emit("progress", value=value, max=total, node=nid)
            if preview is not None:
                self.emit("preview", node=nid, image=preview)
        return report

    def _inputs(self, nid: str, node_type: NodeType) -> dict[str, list[Any]]:
        """Each input as a list of values (ComfyUI's internal shape), hidden ones included."""
        inputs: dict[str, list[Any]] = {}
        specs = self.plan.specs[node_type.name]
        for name, value in self.plan.prompt[nid]["inputs"].items():
            if is_link(value):
                values = self.values[str(value[0])][value[1]]
                spec = specs.get(name)
                if spec is not None:
                    values = [adapt_input(v, spec.type, name) for v in values]
                inputs[name] = values
            else:
                inputs[name] = [value]
        sources = {"PROMPT": self.plan.prompt, "UNIQUE_ID": nid,
                   "EXTRA_PNGINFO": self.extra_data.get("extra_pnginfo")}
        for name, spec in specs.items():
            if spec.section == "hidden":
                inputs[name] = [sources.get(spec.type)]
        return inputs

    def _call(self, instance: Any, node_type: NodeType, inputs: dict[str, list[Any]],
              ) -> tuple[list[list[Any]], dict[str, Any] | None]:
        """Call the node, mapping over list inputs unless it takes lists itself."""
        fn = getattr(instance, node_type.function)
        n_out = len(node_type.return_types)
        outputs: list[list[Any]] = [[] for _ in range(n_out)]
        ui: dict[str, list[Any]] = {}
        if node_type.input_is_list:
            calls = [inputs]
        else:
            count = max((len(v) for v in inputs.values()), default=1)
            if any(len(v) == 0 for v in inputs.values()):
                count = 0
            calls = [{k: v[min(i, len(v) - 1)] for k, v in inputs.items()} for i in range(count)]
        for kwargs in calls:
            result = fn(**kwargs)
            values, call_ui = _split_result(node_type, result)
            for slot, value in enumerate(values):
                if node_type.output_is_list[slot]:
                    outputs[slot].extend(value)
                else:
                    outputs[slot].append(value)
            for key, items in (call_ui or {}).items():
                ui.setdefault(key, []).extend(items if isinstance(items, list) else [items])
        return outputs, (ui or None)

    def _fail(self, nid: str | None, exc: Exception) -> None:
        self.result.status = "error"
        out_of_memory = isinstance(exc, (MemoryError, torch.OutOfMemoryError))
        message = str(exc) or type(exc).__name__
        if out_of_memory:
            message = (f"Out of memory while running this node ({message}). The output cache "
                       "was emptied; try a smaller size or batch.")
        self.result.error = {
            "prompt_id": self.prompt_id, "node_id": nid, "node_type": self._class_of(nid),
            "executed": list(self.result.executed), "exception_message": message,
            "exception_type": f"{type(exc).__module__}.{type(exc).__qualname__}",
            "traceback": traceback.format_exception(exc),
            "current_inputs": self._input_summary(nid), "current_outputs": [],
            "timestamp": _now_ms(),
        }
        if out_of_memory:
            self.values.clear()
            self.ex.cache.clear()
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        self.ex.on_event("execution_error", self.result.error)

    def _class_of(self, nid: str | None) -> str | None:
        return None if nid is None else self.plan.prompt[nid]["class_type"]

    def _input_summary(self, nid: str | None) -> dict[str, Any]:
        if nid is None:
            return {}
        summary = {}
        for name, value in self.plan.prompt[nid]["inputs"].items():
            if is_link(value):
                src = self.values.get(str(value[0]))
                items = src[value[1]] if src is not None else []
                summary[name] = [describe_value(v) for v in items]
            else:
                summary[name] = describe_value(value)
        return summary


def _split_result(node_type: NodeType, result: Any) -> tuple[tuple[Any, ...], dict | None]:
    """A node returns a tuple, or ``{"ui": ..., "result": ...}``; check it against RETURN_TYPES."""
    ui = None
    if isinstance(result, dict):
        if "expand" in result:
            raise NodeOutputError(f"{node_type.name} returned a node expansion, which Kinema "
                                  "does not support")
        ui = result.get("ui")
        result = result.get("result", ())
    expected = len(node_type.return_types)
    # ComfyUI reads only the declared outputs: what a node without outputs returns is
    # ignored, and values past the declared ones are dropped.
    if result is None or expected == 0:
        result = ()
    if not isinstance(result, (tuple, list)):
        raise NodeOutputError(f"{node_type.name} must return a tuple, got "
                              f"{type(result).__name__}")
    result = tuple(result)[:expected]
    if len(result) != expected and not (ui is not None and not result):
        raise NodeOutputError(f"{node_type.name} returned {len(result)} values but declares "
                              f"{expected} outputs {list(node_type.return_types)}")
    if len(result) != expected:
        result = (None,) * expected
    return result, ui


def _accepted(fn: Callable[..., Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments ``fn`` can take (IS_CHANGED often names only a few inputs)."""
    params = inspect.signature(fn).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return kwargs
    return {k: v for k, v in kwargs.items() if k in params}


def describe_value(value: Any) -> Any:
    """A short, JSON-safe description of an input for error reports."""
    if isinstance(value, torch.Tensor):
        return f"Tensor{list(value.shape)} {str(value.dtype).removeprefix('torch.')}"
    if isinstance(value, (int, float, bool)) or value is None:
        return value
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= 200 else text[:200] + "…"


def _now_ms() -> int:
    return int(time.time() * 1000)
