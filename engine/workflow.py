"""Workflow JSON: load the API format and the litegraph canvas format, and convert between them.

The API format is what runs: ``{"id": {"class_type", "inputs": {name: value | [src_id, slot]},
"_meta": {"title"}}}``. The canvas format is what the browser saves (``nodes``, ``links``,
``widgets_values``); it is read the way ComfyUI's frontend turns a graph into a prompt: widget
values map onto the node type's widget inputs in declaration order, the frontend-only values
(control_after_generate, its combo filter, the upload button) are skipped, muted nodes are
dropped, bypassed nodes pass a matching input through, and Reroute, PrimitiveNode and Note
nodes are resolved away. Whatever a user sends, this module raises only :class:`WorkflowError`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import networkx as nx

from engine.registry import InputSpec, NodeRegistry, NodeType

MODE_NEVER, MODE_BYPASS = 2, 4
CONTROL_VALUES = frozenset({"fixed", "increment", "decrement", "randomize", "increment-wrap"})
SEED_NAMES = frozenset({"seed", "noise_seed"})
UPLOAD_OPTIONS = {"image_upload": "image", "video_upload": "video", "audio_upload": "audio"}
UPLOAD_VALUES = frozenset({None, "image", "video", "audio", "upload"})
DROPPED_TYPES = frozenset({"Note", "MarkdownNote"})
API_IDS_KEY = "kinema_api_ids"  # canvas extra: canvas node id -> API id, for non-numeric ids
COLUMN_GAP, ROW_GAP, NODE_WIDTH, TITLE_H, SLOT_H = 80, 50, 320, 30, 24

# How a canvas link resolves: ("link", node_id, slot), ("value", v, _), ("keep" | "drop", _, _)
_Source = tuple[str, Any, Any]


class WorkflowError(ValueError):
    """A workflow that cannot be read, with a ComfyUI-shaped error in :attr:`error`.

    Built from a message and its fields, or from a ready error dict of the same shape.
    """

    def __init__(self, message: str | Mapping[str, Any], *, type: str = "invalid_prompt",
                 details: str = "", extra_info: Mapping[str, Any] | None = None) -> None:
        if isinstance(message, Mapping):
            type, details = message.get("type", type), message.get("details", details)
            extra_info, message = message.get("extra_info"), str(message.get("message", ""))
        super().__init__(message)
        self.error: dict[str, Any] = {"type": type, "message": message, "details": details,
                                      "extra_info": dict(extra_info or {})}


def _bad(message: str, details: str = "", **extra_info: Any) -> WorkflowError:
    return WorkflowError(message, details=details, extra_info=extra_info)


def _bad_node(nid: str, message: str) -> WorkflowError:
    return _bad(message, f"Node ID '#{nid}'", node_id=nid)


def parse_workflow(data: str | bytes | bytearray | Mapping[str, Any],
                   registry: NodeRegistry) -> dict[str, dict[str, Any]]:
    """Read a workflow in any supported shape and return it as an API-format prompt.

    Accepts JSON text or a parsed object: an API prompt, a canvas workflow (``nodes`` and
    ``links``), or either wrapped as ``{"prompt": ...}``.
    """
    if isinstance(data, (str, bytes, bytearray)):
        try:
            data = json.loads(data)
        except (ValueError, RecursionError) as exc:
            raise WorkflowError("Workflow is not valid JSON.", type="malformed_json",
                                details=str(exc)[:500]) from None
    while isinstance(data, Mapping) and isinstance(data.get("prompt"), Mapping) \
            and "class_type" not in data["prompt"]:
        data = data["prompt"]
    if isinstance(data, Mapping) and isinstance(data.get("nodes"), list):
        return canvas_to_api(data, registry)
    return check_api(data)


def check_api(prompt: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Check the shape of an API prompt; return a copy with string ids and ``[str, int]`` links."""
    if not isinstance(prompt, Mapping):
        raise _bad("A workflow must be a JSON object.", f"got {type(prompt).__name__}")
    out: dict[str, dict[str, Any]] = {}
    for raw_id, node in prompt.items():
        nid = str(raw_id)
        if not isinstance(node, Mapping):
            raise _bad_node(nid, f"Node #{nid} is not an object.")
        if not isinstance(node.get("class_type"), str):
            raise _bad_node(nid, "Cannot execute because a node is missing the class_type "
                                 "property.")
        inputs = node.get("inputs", {})
        if not isinstance(inputs, Mapping):
            raise _bad_node(nid, f"Node #{nid}: inputs must be an object.")
        out[nid] = {**node, "inputs": {str(k): [str(v[0]), v[1]] if _is_int_link(v) else v
                                       for k, v in inputs.items()}}
    return out


def _is_int_link(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and all(map(_is_int, value))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# --- widget layout: the values a canvas node serialises, in order -----------------------------

def _controlled(spec: InputSpec) -> bool:
    return bool(spec.options.get("control_after_generate")) or (
        spec.type == "INT" and spec.name in SEED_NAMES)


def _widget_layout(inputs: Mapping[str, InputSpec]) -> list[tuple[str, str]]:
    """``(kind, name)`` per serialised widget value of a node type with these ``inputs``:
    widget, control, filter or upload.

    The frontend appends the upload button to the required inputs, so it follows the last
    required widget; a controlled combo also gets a filter-list widget after its control.
    """
    layout: list[tuple[str, str]] = []
    upload = None
    specs = [s for s in inputs.values() if s.section != "hidden"]
    for i, spec in enumerate(specs):
        if spec.is_widget:
            layout.append(("widget", spec.name))
            if _controlled(spec):
                layout.append(("control", spec.name))
                if spec.is_combo:
                    layout.append(("filter", spec.name))
        if spec.section == "required":
            upload = upload or next((v for k, v in UPLOAD_OPTIONS.items()
                                     if spec.options.get(k)), None)
        last_required = i + 1 == len(specs) or specs[i + 1].section != "required"
        if spec.section == "required" and last_required and upload:
            layout.append(("upload", upload))
    return layout


def _widget_inputs(node_type: NodeType, values: Any) -> dict[str, Any]:
    """Map a canvas node's ``widgets_values`` onto its widget inputs by name."""
    layout = _widget_layout(node_type.inputs())
    names = [n for kind, n in layout if kind == "widget"]
    if isinstance(values, Mapping):
        return {n: values[n] for n in names if n in values}
    if not isinstance(values, list):
        return {}
    full = len(values) == len(layout)
    out: dict[str, Any] = {}
    pos, controlled = 0, False
    for kind, name in layout:
        if pos >= len(values):
            break
        value = values[pos]
        if kind == "widget":
            out[name] = value
        elif not full and not (
                (kind == "control" and isinstance(value, str) and value in CONTROL_VALUES)
                or (kind == "filter" and controlled and isinstance(value, str))
                or (kind == "upload" and (value is None or isinstance(value, str))
                    and value in UPLOAD_VALUES)):
            controlled = False
            continue
        controlled = kind == "control"
        pos += 1
    return out


# --- canvas -> API ----------------------------------------------------------------------------

def _node_key(raw: Any, what: str) -> str:
    if _is_int(raw) or (isinstance(raw, str) and raw):
        return str(raw)
    if isinstance(raw, float) and raw.is_integer():
        return str(int(raw))
    raise _bad(f"Canvas workflow: {what} has an invalid node id {raw!r}.", what)


def _link_id(raw: Any, where: str) -> int:
    if _is_int(raw):
        return raw
    if isinstance(raw, str) and raw.isdigit():
        return int(raw)
    raise _bad(f"Canvas workflow: {where} has an invalid link id {raw!r}.", where)


def _read_links(raw: Any) -> dict[int, tuple[str, int, str]]:
    """Link id -> (origin node, origin slot, type), from arrays or schema-1 objects."""
    if raw is None:
        return {}
    if not isinstance(raw, list):
        raise _bad("Canvas workflow: links must be a list.", "links")
    links: dict[int, tuple[str, int, str]] = {}
    for i, link in enumerate(raw):
        if link is None:
            continue
        if isinstance(link, list) and len(link) >= 5:
            lid, origin, slot = link[0], link[1], link[2]
            ltype = link[5] if len(link) > 5 else "*"
        elif isinstance(link, Mapping):
            lid, origin, slot = link.get("id"), link.get("origin_id"), link.get("origin_slot")
            ltype = link.get("type", "*")
        else:
            raise _bad(f"Canvas workflow: link #{i} is neither a list of at least 5 items "
                       "nor an object.", f"links[{i}]")
        if not _is_int(slot):
            raise _bad(f"Canvas workflow: link #{i} has an invalid origin slot.", f"links[{i}]")
        links[_link_id(lid, f"links[{i}]")] = (_node_key(origin, f"links[{i}]"), slot,
                                               str(ltype))
    return links


def _read_nodes(raw: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(raw, list):
        raise _bad("Canvas workflow: nodes must be a list.", "nodes")
    nodes: dict[str, dict[str, Any]] = {}
    for i, node in enumerate(raw):
        if not isinstance(node, Mapping):
            raise _bad(f"Canvas workflow: node #{i} is not an object.", f"nodes[{i}]")
        key = _node_key(node.get("id"), f"nodes[{i}]")
        if key in nodes:
            raise _bad_node(key, f"Canvas workflow: node id {key} is used twice.")
        if not isinstance(node.get("type"), str):
            raise _bad_node(key, f"Canvas workflow: node {key} has no type.")
        for field in ("inputs", "outputs"):
            slots = node.get(field) or []
            if not isinstance(slots, list) or not all(isinstance(s, Mapping) for s in slots):
                raise _bad_node(key, f"Canvas workflow: node {key}: {field} must be a list "
                                     "of objects.")
        nodes[key] = dict(node)
    return nodes


class _CanvasReader:
    """Resolves canvas links through reroutes, bypassed, muted and primitive nodes."""

    def __init__(self, nodes: dict[str, dict[str, Any]], links: dict[int, tuple[str, int, str]]):
        self.nodes, self.links = nodes, links

    def resolve(self, link_id: int, where: str, seen: frozenset[int] = frozenset()) -> _Source:
        if link_id in seen:
            raise _bad(f"Canvas workflow: {where} loops through reroute or bypassed nodes.",
                       where)
        if link_id not in self.links:
            raise _bad(f"Canvas workflow: {where} uses link {link_id}, which does not exist.",
                       where, link_id=link_id)
        origin, slot, ltype = self.links[link_id]
        src = self.nodes.get(origin)
        if src is None:
            raise _bad(f"Canvas workflow: link {link_id} starts at node {origin}, which does "
                       "not exist.", where, link_id=link_id, node_id=origin)
        seen = seen | {link_id}
        kind, inputs = src["type"], src.get("inputs") or []
        if kind == "PrimitiveNode":
            values = src.get("widgets_values")
            if isinstance(values, list) and values:
                return ("value", values[0], None)
            return ("keep", None, None)
        if kind == "Reroute":
            upstream = inputs[0].get("link") if inputs else None
            return self._follow(upstream, where, seen)
        if kind in DROPPED_TYPES or src.get("mode") == MODE_NEVER:
            return ("drop", None, None)
        if src.get("mode") == MODE_BYPASS:
            outputs = src.get("outputs") or []
            want = outputs[slot].get("type", ltype) if slot < len(outputs) else ltype
            order = ([slot] if slot < len(inputs) else []) + list(range(len(inputs)))
            match = next((i for i in order if inputs[i].get("type") == want), None)
            upstream = None if match is None else inputs[match].get("link")
            return self._follow(upstream, where, seen)
        return ("link", origin, slot)

    def _follow(self, upstream: Any, where: str, seen: frozenset[int]) -> _Source:
        if upstream is None:
            return ("drop", None, None)
        return self.resolve(_link_id(upstream, where), where, seen)


def canvas_to_api(canvas: Mapping[str, Any], registry: NodeRegistry) -> dict[str, dict[str, Any]]:
    """Convert a litegraph canvas workflow into an API-format prompt (as the frontend queues it)."""
    if not isinstance(canvas, Mapping):
        raise _bad("A canvas workflow must be a JSON object.")
    try:
        return _canvas_to_api(canvas, registry)
    except WorkflowError:
        raise
    except Exception as exc:  # a shape this module did not foresee is still the user's data
        raise _bad(f"Canvas workflow could not be read: {exc}", type(exc).__name__) from exc


def _canvas_to_api(canvas: Mapping[str, Any], registry: NodeRegistry) -> dict[str, Any]:
    nodes = _read_nodes(canvas.get("nodes"))
    reader = _CanvasReader(nodes, _read_links(canvas.get("links")))
    extra = canvas.get("extra")
    ids = extra.get(API_IDS_KEY) if isinstance(extra, Mapping) else None
    ids = {str(k): str(v) for k, v in ids.items()} if isinstance(ids, Mapping) else {}
    prompt: dict[str, dict[str, Any]] = {}
    for key, node in nodes.items():
        kind = node["type"]
        if (node.get("mode") in (MODE_NEVER, MODE_BYPASS) or kind in DROPPED_TYPES
                or kind in ("Reroute", "PrimitiveNode")):
            continue
        node_type = registry.get(kind)
        values = node.get("widgets_values")
        if node_type is not None:
            inputs = _widget_inputs(node_type, values)
        else:
            inputs = dict(values) if isinstance(values, Mapping) else {}
        for slot in node.get("inputs") or []:
            if slot.get("link") is None:
                continue
            widget = slot.get("widget")
            name = widget.get("name") if isinstance(widget, Mapping) else None
            name = str(name or slot.get("name", ""))
            where = f"node {key} input '{name}'"
            how, src, src_slot = reader.resolve(_link_id(slot["link"], where), where)
            if how == "link":
                inputs[name] = [ids.get(src, src), src_slot]
            elif how == "value":
                inputs[name] = src
            elif how == "drop":
                inputs.pop(name, None)
        title = node.get("title") or (node_type.display_name if node_type else kind)
        prompt[ids.get(key, key)] = {"class_type": kind, "inputs": inputs,
                                     "_meta": {"title": str(title)}}
    return prompt


# --- API -> canvas ----------------------------------------------------------------------------

def _default(spec: InputSpec) -> Any:
    if "default" in spec.options:
        return spec.options["default"]
    if spec.choices:
        return spec.choices[0]
    return {"INT": 0, "FLOAT": 0.0, "BOOLEAN": False}.get(spec.type, "")


def _is_link(value: Any, prompt: Mapping[str, Any]) -> bool:
    return (isinstance(value, list) and len(value) == 2 and str(value[0]) in prompt
            and _is_int(value[1]))


def _canvas_ids(prompt: Mapping[str, Any]) -> tuple[dict[str, int], dict[str, str]]:
    """Integer canvas ids (numeric API ids kept), and canvas id -> API id for the others."""
    ids = {k: int(k) for k in prompt if k.isdigit() and str(int(k)) == k}
    others = [k for k in prompt if k not in ids]
    first = max(ids.values(), default=0) + 1
    ids.update({k: first + i for i, k in enumerate(others)})
    return ids, {str(ids[k]): k for k in others}


def _layers(prompt: Mapping[str, Any]) -> tuple[list[list[str]], list[str]]:
    """Columns of node ids by longest path from the sources, and a topological order."""
    graph = nx.DiGraph()
    graph.add_nodes_from(prompt)
    for nid, node in prompt.items():
        for value in node["inputs"].values():
            if _is_link(value, prompt):
                graph.add_edge(str(value[0]), nid)
    dag = nx.condensation(graph)  # a cycle (an invalid prompt) still gets a layout
    depth: dict[int, int] = {}
    order: list[str] = []
    position = {nid: i for i, nid in enumerate(prompt)}
    for comp in nx.lexicographical_topological_sort(
            dag, key=lambda c: min(position[n] for n in dag.nodes[c]["members"])):
        depth[comp] = max((depth[p] + 1 for p in dag.predecessors(comp)), default=0)
        order.extend(sorted(dag.nodes[comp]["members"], key=position.__getitem__))
    columns: list[list[str]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for nid in order:
        columns[depth[dag.graph["mapping"][nid]]].append(nid)
    rank = {nid: i for i, nid in enumerate(order)}
    row: dict[str, float] = {}
    for col in columns:  # barycentre ordering keeps links short and mostly uncrossed
        key = {n: sum(row[p] for p in graph.predecessors(n) if p in row)
               / max(1, sum(p in row for p in graph.predecessors(n))) for n in col}
        col.sort(key=lambda n: (key[n], rank[n]))
        row.update({n: float(i) for i, n in enumerate(col)})
    return columns, order


def api_to_canvas(prompt: Mapping[str, Any], registry: NodeRegistry) -> dict[str, Any]:
    """Build a litegraph canvas workflow from an API prompt, with an automatic layout."""
    prompt = check_api(prompt)
    ids, back = _canvas_ids(prompt)
    columns, order = _layers(prompt)
    links: list[list[Any]] = []
    nodes: dict[str, dict[str, Any]] = {}
    outputs: dict[str, list[dict[str, Any]]] = {}
    # Each type's inputs and widget layout, read once (INPUT_TYPES may list files).
    declared: dict[str, tuple[dict[str, InputSpec], list[tuple[str, str]]]] = {}
    for nid, node in prompt.items():  # unknown types get "*" outputs as links need them
        known = registry.get(node["class_type"])
        outputs[nid] = [{"name": name, "type": rtype, "links": [], "slot_index": i}
                        for i, (rtype, name) in enumerate(zip(
                            known.return_types, known.return_names, strict=False))] if known else []
    for nid in order:
        node = prompt[nid]
        node_type = registry.get(node["class_type"])
        if node_type is not None and node_type.name not in declared:
            type_inputs = node_type.inputs()
            declared[node_type.name] = (type_inputs, _widget_layout(type_inputs))
        specs, layout = declared[node_type.name] if node_type is not None else ({}, [])
        given = node["inputs"]
        names = [n for n, s in specs.items() if s.section != "hidden"]
        names += [n for n in given if n not in specs and _is_link(given[n], prompt)]
        inputs: list[dict[str, Any]] = []
        for name in names:
            spec, value = specs.get(name), given.get(name)
            linked = _is_link(value, prompt)
            if spec is not None and spec.is_widget and not linked:
                continue
            slot: dict[str, Any] = {"name": name, "type": spec.type if spec else "*",
                                    "link": len(links) + 1 if linked else None}
            if spec is not None and spec.is_widget:
                slot["widget"] = {"name": name}
            if linked:
                src, src_slot = str(value[0]), value[1]
                outs = outputs[src]
                outs.extend({"name": "*", "type": "*", "links": [], "slot_index": i}
                            for i in range(len(outs), src_slot + 1))
                links.append([slot["link"], ids[src], src_slot, ids[nid], len(inputs),
                              outs[src_slot]["type"]])
                outs[src_slot]["links"].append(slot["link"])
            inputs.append(slot)
        values: Any = {k: v for k, v in given.items() if not _is_link(v, prompt)}
        if node_type is not None:  # unknown types keep their values by name
            values = [values.get(name, _default(specs[name])) if kind == "widget"
                      else {"control": "fixed", "filter": ""}.get(kind, name)
                      for kind, name in layout]
        meta = node.get("_meta")
        title = meta.get("title") if isinstance(meta, Mapping) else None
        nodes[nid] = {
            "id": ids[nid], "type": node["class_type"], "pos": [0, 0],
            "size": _size(specs, inputs, outputs[nid], values), "flags": {},
            "order": len(nodes), "mode": 0, "inputs": inputs, "outputs": outputs[nid],
            "title": str(title or (node_type.display_name if node_type else node["class_type"])),
            "properties": {"Node name for S&R": node["class_type"]},
            "widgets_values": values,
        }
    x = 50.0
    for col in columns:
        y = 50.0 + TITLE_H
        for nid in col:
            nodes[nid]["pos"] = [x, y]
            y += nodes[nid]["size"][1] + TITLE_H + ROW_GAP
        x += max(nodes[n]["size"][0] for n in col) + COLUMN_GAP
    extra: dict[str, Any] = {API_IDS_KEY: back} if back else {}
    return {"last_node_id": max(ids.values(), default=0), "last_link_id": len(links),
            "nodes": [nodes[n] for n in order], "links": links, "groups": [], "config": {},
            "extra": extra, "version": 0.4}


def _size(specs: Mapping[str, InputSpec], inputs: list[Any], outputs: list[Any],
          values: Any) -> list[float]:
    """Estimated node size: slot rows, then a row per widget (multiline text is taller)."""
    multiline = sum(1 for s in specs.values() if s.is_widget and s.options.get("multiline"))
    rows = max(len(inputs), len(outputs), 1) + len(values) + 4 * multiline
    return [float(NODE_WIDTH + (80 if multiline else 0)), float(rows * SLOT_H + 10)]
