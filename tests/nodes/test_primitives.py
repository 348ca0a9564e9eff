"""Primitive nodes: ComfyUI's node ids and input name, values passed through."""

from __future__ import annotations

import pytest

from nodes.primitives import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS


@pytest.mark.parametrize(("node_id", "value", "socket"), [
    ("PrimitiveInt", 42, "INT"),
    ("PrimitiveFloat", 2.5, "FLOAT"),
    ("PrimitiveString", "a cat", "STRING"),
    ("PrimitiveStringMultiline", "line one\nline two", "STRING"),
    ("PrimitiveBoolean", True, "BOOLEAN"),
])
def test_primitive_outputs_its_value(node_id, value, socket):
    cls = NODE_CLASS_MAPPINGS[node_id]
    returns = cls.RETURN_TYPES
    assert returns == (socket,)
    assert cls.CATEGORY == "utils/primitive"
    assert list(cls.INPUT_TYPES()["required"]) == ["value"]
    assert getattr(cls(), cls.FUNCTION)(value=value) == (value,)


def test_only_the_multiline_string_is_multiline():
    def multiline(node_id):
        return NODE_CLASS_MAPPINGS[node_id].INPUT_TYPES()["required"]["value"][1]["multiline"]

    assert multiline("PrimitiveStringMultiline") is True
    assert multiline("PrimitiveString") is False
    assert NODE_DISPLAY_NAME_MAPPINGS["PrimitiveStringMultiline"] == "String (Multiline)"
