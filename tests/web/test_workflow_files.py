"""Workflows carried inside output files open in the canvas: PNG, MP4, WebM, WebP.

The media fixtures were made with Debian's FFmpeg (`-metadata workflow=...`, with
`-movflags use_metadata_tags` for the MP4 that keeps custom keys) and Pillow.
"""

from __future__ import annotations

import base64

import pytest

from tests.app.live_server import ROOT
from tests.web.test_canvas import drop_file

MEDIA = ROOT / "tests" / "fixtures" / "media"

CASES = [  # file, the metadata reader that must find it, what it carries
    ("mdta.mp4", "mp4Metadata", "canvas"),
    ("cmt.mp4", "mp4Metadata", "canvas"),
    ("tags.webm", "webmTags", "canvas"),
    ("prompt_only.webm", "webmTags", "api"),
    ("anim.webp", "webpMetadata", "canvas"),
    ("itxt.png", "pngTextChunks", "canvas"),
]


def read_in_page(page, name: str, reader: str) -> dict:
    data = base64.b64encode((MEDIA / name).read_bytes()).decode()
    return page.evaluate("""async ([name, b64, reader]) => {
        const m = await import("/scripts/metadata.js");
        const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
        const found = await m.workflowFromFile(new File([bytes], name));
        const entries = await m[reader](bytes);
        return {kind: found ? (m.isCanvasWorkflow(found) ? "canvas" : "api") : null,
                nodes: found ? (found.nodes ? found.nodes.length : Object.keys(found).length) : 0,
                keys: entries.map((e) => String(e[0]).toLowerCase())};
    }""", [name, data, reader])


@pytest.mark.parametrize(("name", "reader", "kind"), CASES)
def test_the_container_metadata_reader_finds_the_workflow(page, name, reader, kind):
    found = read_in_page(page, name, reader)
    assert found["kind"] == kind
    assert found["nodes"] == (8 if kind == "canvas" else 2)
    # Found through the container's own metadata, not only by scanning the bytes.
    assert any(key in ("workflow", "prompt", "comment", "©cmt") or "workflow" in key
               for key in found["keys"]), found["keys"]


def test_dropping_a_video_opens_its_workflow_and_a_plain_file_says_so(page):
    page.evaluate("window.kinema.graph.clear()")
    drop_file(page, "tags.webm", (MEDIA / "tags.webm").read_bytes(), "video/webm")
    page.wait_for_function("window.kinema.graph._nodes.length === 8")
    drop_file(page, "nometa.png", (MEDIA / "nometa.png").read_bytes(), "image/png")
    page.locator("#toast", has_text="No workflow").wait_for()
    assert page.evaluate("window.kinema.graph._nodes.length") == 8
