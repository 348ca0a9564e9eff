"""Canvas speed in headless Chromium: load time and ms per rendered frame, 500-node workflow.

Run: ``.venv/bin/python bench/canvas.py [--nodes 500] [--frames 120]``. It starts a real
server, opens the canvas in Debian's Chromium (software rendering, as in CI), loads a
generated workflow of ``--nodes`` image nodes and reports: page load until the canvas is
ready, loading the big workflow, and the time per full redraw, idle and while panning.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from playwright.sync_api import sync_playwright

import nodes
from engine.registry import build_registry
from engine.workflow import api_to_canvas
from tests.app.live_server import LiveServer
from tests.web.conftest import CHROMIUM, CHROMIUM_ARGS

CHAIN = ("ImageInvert", "ImageBlur", "ImageSharpen", "ImageScaleBy")


def big_workflow(count: int) -> dict:
    """EmptyImage feeding ``count - 2`` image nodes in parallel chains, ending in previews."""
    prompt = {"1": {"class_type": "EmptyImage",
                    "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0}}}
    chains, per_chain = 10, max(1, (count - 1) // 10 - 1)
    nid = 2
    for _ in range(chains):
        source = "1"
        for step in range(per_chain):
            kind = CHAIN[step % len(CHAIN)]
            inputs = {"image": [source, 0]}
            inputs.update({"ImageBlur": {"blur_radius": 1, "sigma": 1.0},
                           "ImageSharpen": {"sharpen_radius": 1, "sigma": 1.0, "alpha": 0.5},
                           "ImageScaleBy": {"upscale_method": "bilinear", "scale_by": 1.0},
                           }.get(kind, {}))
            prompt[str(nid)] = {"class_type": kind, "inputs": inputs}
            source, nid = str(nid), nid + 1
        prompt[str(nid)] = {"class_type": "PreviewImage", "inputs": {"images": [source, 0]}}
        nid += 1
    while nid <= count:  # top up to exactly ``count`` nodes with primitives
        prompt[str(nid)] = {"class_type": "PrimitiveInt", "inputs": {"value": nid}}
        nid += 1
    return api_to_canvas(prompt, build_registry(nodes, entry_points=False))


def measure(url: str, workflow: dict, frames: int) -> dict[str, float]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 720})
        start = time.perf_counter()
        page.goto(url + "/")
        page.wait_for_function("window.kinema && window.kinema.graph && "
                               "window.kinema.graph._nodes.length > 0", timeout=60_000)
        ready = time.perf_counter() - start
        load_ms = page.evaluate("""async (wf) => {
            const t0 = performance.now();
            await window.kinema.loadWorkflow(wf);
            window.kinema.canvas.draw(true, true);
            return performance.now() - t0;
        }""", workflow)
        count = page.evaluate("window.kinema.graph._nodes.length")
        draw = page.evaluate("""(frames) => {
            const c = window.kinema.canvas, nodes = window.kinema.graph._nodes;
            const time = () => { const t0 = performance.now(); c.draw(true, true);
                                 return performance.now() - t0; };
            c.ds.scale = 0.5; c.ds.offset = [0, 0];
            const idle = [], pan = [], all = [];
            for (let i = 0; i < frames; i++) idle.push(time());
            for (let i = 0; i < frames; i++) {
                c.ds.offset[0] -= 15; c.ds.offset[1] -= 5; pan.push(time());
            }
            // Zoomed out until every node is on screen: nothing is culled.
            const right = Math.max(...nodes.map((n) => n.pos[0] + n.size[0]));
            const bottom = Math.max(...nodes.map((n) => n.pos[1] + n.size[1]));
            c.ds.scale = Math.min(c.canvas.width / right, c.canvas.height / bottom);
            c.ds.offset = [0, 0];
            const visible = nodes.filter((n) => c.ds.convertOffsetToCanvas(n.pos)[0]
                                                < c.canvas.width).length;
            for (let i = 0; i < frames; i++) all.push(time());
            return {idle, pan, all, visible};
        }""", frames)
        browser.close()
    return {"ready_s": ready, "load_ms": load_ms, "nodes": count,
            "idle_ms": statistics.median(draw["idle"]),
            "idle_p95_ms": sorted(draw["idle"])[int(0.95 * len(draw["idle"])) - 1],
            "pan_ms": statistics.median(draw["pan"]),
            "pan_p95_ms": sorted(draw["pan"])[int(0.95 * len(draw["pan"])) - 1],
            "all_visible": draw["visible"], "all_ms": statistics.median(draw["all"]),
            "all_p95_ms": sorted(draw["all"])[int(0.95 * len(draw["all"])) - 1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=500)
    parser.add_argument("--frames", type=int, default=120)
    args = parser.parse_args()
    workflow = big_workflow(args.nodes)
    with tempfile.TemporaryDirectory() as base, LiveServer(Path(base)) as server:
        figures = measure(server.url, workflow, args.frames)
    print(f"canvas bench: {figures['nodes']}-node workflow, Chromium headless (software)")
    print(f"  page load until the canvas is ready        {figures['ready_s'] * 1000:8.0f} ms")
    print(f"  loading the {figures['nodes']}-node workflow            {figures['load_ms']:8.1f} ms")
    print(f"  full redraw, idle: median / p95            {figures['idle_ms']:8.2f} / "
          f"{figures['idle_p95_ms']:.2f} ms")
    print(f"  full redraw while panning: median / p95    {figures['pan_ms']:8.2f} / "
          f"{figures['pan_p95_ms']:.2f} ms")
    print(f"  full redraw, all {figures['all_visible']} nodes on screen: median / p95"
          f"  {figures['all_ms']:6.2f} / {figures['all_p95_ms']:.2f} ms")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
