"""Videos Kinema encodes play on their node and carry a workflow the canvas reads back."""

from __future__ import annotations

import base64
import json

import pytest

from engine.frames import Frames
from nodes.encode import VideoEncode
from nodes.video.pattern import clip
from tests.app.live_server import ROOT

EXAMPLE = json.loads((ROOT / "workflows" / "video_basics.json").read_text())


def workflow_in_page(page, name: str, data: bytes) -> dict | None:
    return page.evaluate("""async ([name, b64]) => {
        const m = await import("/scripts/metadata.js");
        const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
        return await m.workflowFromFile(new File([bytes], name));
    }""", [name, base64.b64encode(data).decode()])


def test_the_example_video_plays_on_its_node_and_reopens_its_workflow(first_screen):
    # The first screen opens this example: pressing Queue shows the video playing on its node.
    page = first_screen
    page.click("#queue-button")
    page.wait_for_function("(() => { const el = window.kinema.nodeForApiId('4').kinemaMedia;"
                           " return el && el.tagName === 'VIDEO' && el.readyState >= 1; })()",
                           timeout=60_000)
    src = page.evaluate("window.kinema.nodeForApiId('4').kinemaMedia.src")
    assert "/view?" in src and ".mp4" in src
    data = page.evaluate("""async (url) => {
        const bytes = new Uint8Array(await (await fetch(url)).arrayBuffer());
        let text = ""; for (const b of bytes) text += String.fromCharCode(b);
        return btoa(text);
    }""", src)
    found = workflow_in_page(page, "video_basics.mp4", base64.b64decode(data))
    assert [n["type"] for n in found["nodes"]] == [n["type"] for n in EXAMPLE["nodes"]]


@pytest.mark.parametrize("fmt", ["vp9-webm", "webp", "h265-mp4", "gif"])
def test_the_canvas_reads_the_workflow_kinema_embeds(page, folders, fmt):
    writer = Frames.writer(64, 48, 8)
    writer.append(clip(6, 64, 48))
    result = VideoEncode().encode(writer.finish(), "meta", fmt, prompt={"1": {}},
                                  extra_pnginfo={"workflow": EXAMPLE})
    entry = result["ui"]["images"][0]
    path = folders.output / entry["subfolder"] / entry["filename"]
    found = workflow_in_page(page, path.name, path.read_bytes())
    assert found is not None, f"{fmt}: the canvas found no workflow"
    assert len(found["nodes"]) == len(EXAMPLE["nodes"])


def test_the_gif_reader_finds_the_comment_extension(page, folders):
    writer = Frames.writer(40, 30, 8)
    writer.append(clip(4, 40, 30))
    result = VideoEncode().encode(writer.finish(), "meta", "gif", extra_pnginfo={
        "workflow": EXAMPLE})
    entry = result["ui"]["images"][0]
    data = (folders.output / entry["subfolder"] / entry["filename"]).read_bytes()
    keys = page.evaluate("""async (b64) => {
        const m = await import("/scripts/metadata.js");
        const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
        return m.gifComments(bytes).map((e) => e[0]);
    }""", base64.b64encode(data).decode())
    assert keys == ["comment"]
