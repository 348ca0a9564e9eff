"""Validate an API-format prompt and plan what must run, reporting every problem at once.

Errors come in ComfyUI's shape, so clients written for it can show them::

    {"error": {"type", "message", "details", "extra_info"},
     "node_errors": {id: {"errors": [...], "dependent_outputs": [...], "class_type": ...}}}

Only nodes that feed an output node are validated and run.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import networkx as nx

from engine.registry import WIDGET_TYPES, InputSpec, NodeRegistry, NodeType
from engine.workflow import WorkflowError, check_api, parse_workflow


class PromptError(Exception):
    """A prompt that cannot run; ``payload`` is the structured error a client receives."""

    def __init__(self, error: dict[str, Any], node_errors: dict[str, Any] | None = None):
        super().__init__(error.get("message", "invalid prompt"))
        self.error = error
        self.node_errors = node_errors or {}

    @property
    def payload(self) -> dict[str, Any]:
        return {"error": self.error, "node_errors": self.node_errors}


@dataclass
class ExecutionPlan:
    """A validated prompt: its nodes (values coerced), the DAG of what runs, in order."""

    prompt: dict[str, dict[str, Any]]
    graph: nx.DiGraph
    order: list[str]
    outputs: list[str]
    # Each planned class's declared inputs, read once at validation: INPUT_TYPES may scan
    # model folders, so nothing after validation calls it again for this prompt.
    specs: dict[str, dict[str, InputSpec]]


def is_link(value: Any) -> bool:
    """Whether an API-format input value is a link ``[source_id, slot]``."""
    return (isinstance(value, list) and len(value) == 2 and isinstance(value[0], (str, int))
            and not isinstance(value[0], bool) and isinstance(value[1], int)
            and not isinstance(value[1], bool))


def error_entry(type_: str, message: str, details: str = "", **extra: Any) -> dict[str, Any]:
    """One error in ComfyUI's shape."""
    return {"type": type_, "message": message, "details": details, "extra_info": extra}


# Socket types a link converts between: a FRAMES store and an IMAGE batch (engine/frames.py).
CONVERTING_TYPES = frozenset({"IMAGE", "FRAMES"})


def types_compatible(output_type: str, input_type: str) -> bool:
    """``*`` matches anything; comma lists (``IMAGE,MASK``) match when they share a type;
    IMAGE and FRAMES convert into each other (``engine/frames.py``)."""
    if "*" in (output_type, input_type) or {output_type, input_type} == CONVERTING_TYPES:
        return True
    return bool(set(output_type.split(",")) & set(input_type.split(",")))


def prepare_prompt(data: Any, registry: NodeRegistry,
                   outputs: Iterable[str] | None = None) -> ExecutionPlan:
    """Parse a workflow in either format and validate it; raises PromptError only."""
    try:
        prompt = parse_workflow(data, registry)
    except WorkflowError as exc:
        raise PromptError(exc.error) from None
    return validate_prompt(prompt, registry, outputs)


def validate_prompt(prompt: Any, registry: NodeRegistry,
                    outputs: Iterable[str] | None = None) -> ExecutionPlan:
    """Check an API-format prompt and return its execution plan, or raise PromptError."""
    prompt = _check_shape(prompt)
    output_ids = _output_ids(prompt, registry, outputs)
    # Every unknown type is reported, needed or not, as ComfyUI does: the user must install it.
    missing = {nid: node["class_type"] for nid, node in prompt.items()
               if node["class_type"] not in registry}
    if missing:
        raise _missing_types_error(missing, _dependency_graph(prompt, output_ids), output_ids)
    facts = _TypeFacts(registry)
    prompt = _declared_inputs_only(prompt, facts)
    graph = _dependency_graph(prompt, output_ids)

    node_errors: dict[str, list[dict[str, Any]]] = {}
    for cycle_node in _cycle_nodes(graph):
        node_errors.setdefault(cycle_node, []).append(error_entry(
            "dependency_cycle", "Dependency cycle detected",
            f"node {cycle_node} depends on its own output"))
    checked: dict[str, dict[str, Any]] = {}
    for nid in graph.nodes:
        inputs, errors = _validate_node(nid, prompt, facts)
        checked[nid] = {**prompt[nid], "inputs": inputs}
        if errors:
            node_errors.setdefault(nid, []).extend(errors)
    if node_errors:
        raise _node_errors(node_errors, prompt, graph, output_ids)

    order = list(nx.topological_sort(graph))
    specs = {node["class_type"]: facts.specs(node["class_type"]) for node in checked.values()}
    return ExecutionPlan(checked, graph, order, output_ids, specs)


def _check_shape(prompt: Any) -> dict[str, dict[str, Any]]:
    try:
        return check_api(prompt)
    except WorkflowError as exc:
        raise PromptError(exc.error) from None


def _output_ids(prompt: dict[str, dict[str, Any]], registry: NodeRegistry,
                requested: Iterable[str] | None) -> list[str]:
    if requested is not None:
        ids = [str(o) for o in requested]
        unknown = [o for o in ids if o not in prompt]
        if unknown:
            raise PromptError(error_entry("invalid_prompt", "Requested outputs are not in the "
                                          "prompt", ", ".join(unknown)))
    else:
        ids = [nid for nid, node in prompt.items()
               if (t := registry.get(node["class_type"])) is not None and t.output_node]
    if not ids and all(node["class_type"] in registry for node in prompt.values()):
        raise PromptError(error_entry("prompt_no_outputs", "Prompt has no outputs",
                                      "add an output node such as SaveImage"))
    return sorted(ids, key=_id_key)


def _declared_inputs_only(prompt: dict[str, dict[str, Any]], facts: _TypeFacts,
                          ) -> dict[str, dict[str, Any]]:
    """Drop inputs a node does not declare (ComfyUI ignores them): they must not add links."""
    clean = {}
    for nid, node in prompt.items():
        try:
            specs = facts.specs(node["class_type"])
        except Exception:
            clean[nid] = node  # reported when the node is validated
            continue
        inputs = {n: v for n, v in node["inputs"].items() if n in specs}
        clean[nid] = {**node, "inputs": inputs}
    return clean


def _dependency_graph(prompt: dict[str, dict[str, Any]], outputs: list[str]) -> nx.DiGraph:
    """The nodes that feed the outputs, with an edge from each source to its consumer."""
    graph = nx.DiGraph()
    graph.add_nodes_from(outputs)
    seen: set[str] = set()
    stack = list(outputs)
    while stack:
        nid = stack.pop()
        if nid in seen:
            continue
        seen.add(nid)
        for value in prompt[nid]["inputs"].values():
            if is_link(value) and str(value[0]) in prompt:
                src = str(value[0])
                graph.add_edge(src, nid)
                stack.append(src)
    return graph


def _cycle_nodes(graph: nx.DiGraph) -> list[str]:
    if nx.is_directed_acyclic_graph(graph):
        return []
    return sorted({n for comp in nx.strongly_connected_components(graph)
                   if len(comp) > 1 or graph.has_edge(*(next(iter(comp)),) * 2) for n in comp},
                  key=_id_key)


class _TypeFacts:
    """Each node type's parsed inputs, read once per validation (INPUT_TYPES may list files)."""

    def __init__(self, registry: NodeRegistry):
        self.registry = registry
        self._specs: dict[str, dict[str, InputSpec]] = {}
        self._custom: dict[str, set[str]] = {}

    def node_type(self, class_type: str) -> NodeType:
        node_type = self.registry.get(class_type)
        assert node_type is not None, "unknown types are rejected before node validation"
        return node_type

    def specs(self, class_type: str) -> dict[str, InputSpec]:
        if class_type not in self._specs:
            self._specs[class_type] = self.node_type(class_type).inputs()
        return self._specs[class_type]

    def custom_validated(self, class_type: str) -> set[str]:
        if class_type not in self._custom:
            self._custom[class_type] = _custom_validated_inputs(self.node_type(class_type))
        return self._custom[class_type]


def _validate_node(nid: str, prompt: dict[str, dict[str, Any]], facts: _TypeFacts,
                   ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    class_type = prompt[nid]["class_type"]
    registry = facts.registry
    inputs = dict(prompt[nid]["inputs"])
    try:
        specs = facts.specs(class_type)
    except Exception as exc:
        return inputs, [error_entry("exception_during_validation",
                                    "INPUT_TYPES failed", f"{type(exc).__name__}: {exc}")]
    custom = facts.custom_validated(class_type)
    node_type = facts.node_type(class_type)
    errors: list[dict[str, Any]] = []
    for name, spec in specs.items():
        if spec.section == "hidden":
            continue
        if name not in inputs:
            if spec.section == "required":
                errors.append(error_entry("required_input_missing", "Required input is missing",
                                          name, input_name=name))
            continue
        value = inputs[name]
        if is_link(value):
            errors.extend(_check_link(name, spec, value, prompt, registry))
        elif isinstance(value, list) and not spec.is_combo and spec.type != "*":
            errors.append(error_entry("bad_linked_input",
                                      "Bad linked input, must be a length-2 list of "
                                      "[node_id, slot_index]", f"{name}, {value!r}",
                                      input_name=name, received_value=_short(value)))
        elif name not in custom:
            inputs[name], problem = _check_value(name, spec, value)
            if problem:
                errors.append(problem)
    if not errors and custom:
        linked_types = {n: registry.get(prompt[str(v[0])]["class_type"]).return_types[v[1]]
                        for n, v in inputs.items() if is_link(v)}
        errors.extend(_run_custom_validation(node_type, inputs, custom, linked_types))
    return inputs, errors


def _check_link(name: str, spec: InputSpec, value: list, prompt: dict[str, dict[str, Any]],
                registry: NodeRegistry) -> list[dict[str, Any]]:
    src_id, slot = str(value[0]), value[1]
    src = prompt.get(src_id)
    if src is None:
        return [error_entry("bad_linked_input", "Input is linked to a node that does not exist",
                            f"{name} → node {src_id}", input_name=name,
                            received_value=_short(value))]
    src_type = registry.get(src["class_type"])
    if src_type is None:
        return []  # reported as a missing node type
    if not 0 <= slot < len(src_type.return_types):
        return [error_entry("bad_linked_input", "Input is linked to an output slot that does "
                            "not exist", f"{name} → node {src_id} slot {slot} "
                            f"({src_type.name} has {len(src_type.return_types)} outputs)",
                            input_name=name, received_value=_short(value))]
    out_type = src_type.return_types[slot]
    in_type = "COMBO" if spec.is_combo else spec.type
    if not types_compatible(out_type, in_type):
        return [error_entry("return_type_mismatch", "Return type mismatch between linked nodes",
                            f"{name}, received_type({out_type}) mismatch input_type({in_type})",
                            input_name=name, input_config=_config(spec),
                            received_type=out_type, linked_node=[src_id, slot])]
    return []


def _check_value(name: str, spec: InputSpec, value: Any) -> tuple[Any, dict[str, Any] | None]:
    """Coerce a constant to its declared type and check bounds and choices."""
    extra = {"input_name": name, "input_config": _config(spec), "received_value": _short(value)}
    if spec.is_combo:
        if not _hashable_in(value, spec.choices or ()):
            return value, error_entry("value_not_in_list", "Value not in list",
                                      f"{name}: '{_short(value)}' not in {_short(spec.choices)}",
                                      **extra)
        return value, None
    if spec.type not in WIDGET_TYPES:
        return value, None
    try:
        value = _coerce(spec.type, value)
    except (TypeError, ValueError, OverflowError):
        return value, error_entry("invalid_input_type",
                                  f"Failed to convert an input value to a {spec.type} value",
                                  f"{name}, {_short(value)}", **extra)
    if spec.type in ("INT", "FLOAT"):
        lo, hi = spec.options.get("min"), spec.options.get("max")
        if isinstance(lo, (int, float)) and value < lo:
            return value, error_entry("value_smaller_than_min",
                                      f"Value {value} smaller than min of {lo}", name, **extra)
        if isinstance(hi, (int, float)) and value > hi:
            return value, error_entry("value_bigger_than_max",
                                      f"Value {value} bigger than max of {hi}", name, **extra)
    return value, None


def _coerce(type_: str, value: Any) -> Any:
    if type_ == "INT":
        if isinstance(value, float) and not value.is_integer():
            raise ValueError("not a whole number")
        if isinstance(value, (dict, list)):
            raise TypeError("not a number")
        return int(value)
    if type_ == "FLOAT":
        if isinstance(value, (dict, list)):
            raise TypeError("not a number")
        result = float(value)
        if math.isnan(result):
            raise ValueError("NaN")
        return result
    if type_ == "BOOLEAN":
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if not isinstance(value, (bool, int)):
            raise TypeError("not a boolean")
        return bool(value)
    if isinstance(value, (dict, list)):
        raise TypeError("not a string")
    return str(value)


def _hashable_in(value: Any, choices: Iterable[Any]) -> bool:
    try:
        return value in choices
    except TypeError:
        return False


def _custom_validated_inputs(node_type: NodeType) -> set[str]:
    """Inputs that VALIDATE_INPUTS names: the node checks those itself (ComfyUI's rule)."""
    validate = getattr(node_type.cls, "VALIDATE_INPUTS", None)
    if validate is None:
        return set()
    params = inspect.signature(validate).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return set(node_type.input_order())
    return set(params) - {"self", "cls", "input_types"}


def _run_custom_validation(node_type: NodeType, inputs: dict[str, Any], names: set[str],
                           linked_types: dict[str, str]) -> list[dict[str, Any]]:
    validate = node_type.cls.VALIDATE_INPUTS
    args = {n: v for n, v in inputs.items() if n in names and not is_link(v)}
    if "input_types" in inspect.signature(validate).parameters:
        args["input_types"] = linked_types
    try:
        result = validate(**args)
    except Exception as exc:
        return [error_entry("exception_during_inner_validation",
                            "Exception when validating inner node", f"{type(exc).__name__}: {exc}")]
    if result is True:
        return []
    return [error_entry("custom_validation_failed", "Custom validation failed for node",
                        f"{', '.join(sorted(args))} - {result}", received_value=_short(args))]


def _missing_types_error(missing: dict[str, str], graph: nx.DiGraph, outputs: list[str],
                         ) -> PromptError:
    types = sorted(set(missing.values()))
    node_errors = {nid: {"errors": [error_entry(
        "missing_node_type", f"Node type {ct} is not installed",
        f"node {nid} needs {ct}; install the custom node pack that provides it",
        node_id=nid, class_type=ct)],
        "dependent_outputs": _dependent_outputs(nid, graph, outputs), "class_type": ct}
        for nid, ct in missing.items()}
    return PromptError(error_entry(
        "missing_node_type", f"Cannot execute because node types are missing: "
        f"{', '.join(types)}", ", ".join(types), missing_types=types), node_errors)


def _node_errors(errors: dict[str, list[dict[str, Any]]], prompt: dict[str, dict[str, Any]],
                 graph: nx.DiGraph, outputs: list[str]) -> PromptError:
    node_errors = {nid: {"errors": errs,
                         "dependent_outputs": _dependent_outputs(nid, graph, outputs),
                         "class_type": prompt[nid]["class_type"]}
                   for nid, errs in sorted(errors.items(), key=lambda kv: _id_key(kv[0]))}
    kinds = sorted({e["type"] for errs in errors.values() for e in errs})
    if kinds == ["dependency_cycle"]:
        error = error_entry("dependency_cycle", "Dependency cycle detected",
                            f"nodes {', '.join(node_errors)} form a cycle")
    else:
        error = error_entry("prompt_outputs_failed_validation", "Prompt outputs failed "
                            "validation", f"{len(node_errors)} node(s) failed: "
                            f"{', '.join(kinds)}")
    return PromptError(error, node_errors)


def _dependent_outputs(nid: str, graph: nx.DiGraph, outputs: list[str]) -> list[str]:
    if nid not in graph:
        return []
    reach = nx.descendants(graph, nid) | {nid}
    return [o for o in outputs if o in reach]


def _config(spec: InputSpec) -> list[Any]:
    return [list(spec.choices) if spec.choices is not None else spec.type, dict(spec.options)]


def _short(value: Any, limit: int = 200) -> Any:
    if isinstance(value, (int, float, bool)) or value is None:
        return value
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


def _id_key(node_id: str) -> tuple[int, int, str]:
    """Sort numeric ids numerically, then others by text: '2' before '10'."""
    return (0, int(node_id), "") if node_id.isdigit() else (1, 0, node_id)
