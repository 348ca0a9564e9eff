"""The browser's canvas → API conversion gives exactly what the engine's converter gives."""

from __future__ import annotations

import json

import pytest

import nodes
from engine.registry import build_registry
from engine.workflow import canvas_to_api
from tests.app.live_server import ROOT, SERVER_NODES

FIXTURES = sorted((ROOT / "tests" / "fixtures" / "workflows").glob("*.json")) + sorted(
    (ROOT / "workflows").glob("*.json"))


@pytest.fixture(scope="module")
def registry():
    return build_registry(nodes, [SERVER_NODES], entry_points=False)


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.name)
def test_browser_and_engine_convert_the_same(page, registry, path):
    workflow = json.loads(path.read_text())
    in_browser = page.evaluate("""async (wf) => {
        const convert = await import("/scripts/convert.js");
        return convert.graphToPrompt(wf, window.kinema.objectInfo).output;
    }""", workflow)
    assert in_browser == canvas_to_api(workflow, registry)


def test_the_live_graph_converts_like_the_engine(page, registry):
    # What the canvas itself serialises (after loading) must convert identically too.
    serialized, in_browser = page.evaluate("""() => {
        const wf = window.kinema.serialize();
        return [wf, window.kinema.graphToPrompt().output];
    }""")
    assert in_browser == canvas_to_api(serialized, registry)
