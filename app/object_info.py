"""``/object_info``: each node type described the way ComfyUI's clients and canvas read it."""

from __future__ import annotations

import json
import logging
from typing import Any

from engine.registry import NodeRegistry, NodeType

log = logging.getLogger(__name__)


def node_info(node_type: NodeType) -> dict[str, Any]:
    """One node type's description (inputs as declared, outputs, names, category ...)."""
    raw = node_type.raw_input_types()
    cls = node_type.cls
    info: dict[str, Any] = {
        "input": {section: _jsonable(entries) for section, entries in raw.items() if entries},
        "input_order": {section: list(entries) for section, entries in raw.items()
                        if entries and section != "hidden"},
        "output": list(node_type.return_types),
        "output_is_list": list(node_type.output_is_list),
        "output_name": list(node_type.return_names),
        "name": node_type.name,
        "display_name": node_type.display_name,
        "description": node_type.description,
        "python_module": ("nodes" if node_type.source == "builtin"
                          else f"custom_nodes.{node_type.source}"),
        "category": node_type.category,
        "output_node": node_type.output_node,
    }
    if getattr(cls, "OUTPUT_TOOLTIPS", None):
        info["output_tooltips"] = list(node_type.output_tooltips)
    for flag in ("DEPRECATED", "EXPERIMENTAL"):
        if getattr(cls, flag, False):
            info[flag.lower()] = True
    return info


def object_info(registry: NodeRegistry) -> dict[str, dict[str, Any]]:
    """Every node type; one whose INPUT_TYPES fails is left out (and logged), not fatal."""
    out = {}
    for name in registry.names():
        try:
            out[name] = node_info(registry.types[name])
        except Exception:
            log.exception("node %s could not be described", name)
    return out


def _jsonable(value: Any) -> Any:
    # Plugins put arbitrary objects in input options; clients only need their text.
    return json.loads(json.dumps(value, default=str))
