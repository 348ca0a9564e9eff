"""Remake docs/canvas.png: the first screen (workflows/video_basics.json) after pressing Queue.

Run from the repository root, with a Kinema server on a throw-away base dir::

    .venv/bin/python server.py --port 8231 --base-dir /tmp/shotbase &
    .venv/bin/python docs/screenshot.py [--url http://127.0.0.1:8231/]
    kill %1

It drives Debian's Chromium (/usr/bin/chromium) with Playwright, waits for the canvas to be
set up, presses Queue, waits until the MP4 plays on the Encode node, and writes a quantized
1280x720 PNG to docs/canvas.png.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

from PIL import Image
from playwright.sync_api import sync_playwright

OUT = Path(__file__).resolve().parent / "canvas.png"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
VIEWPORT = {"width": 1280, "height": 720}
PLAYING = """(() => {
    const el = window.kinema.nodeForApiId('4')?.kinemaMedia;
    return el && el.tagName === 'VIDEO' && el.readyState >= 2 && !el.paused
        && el.currentTime > 0.5;
})()"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8231/")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport=VIEWPORT)
        page.goto(args.url)
        page.wait_for_function("window.kinema && window.kinema.isSetUp", timeout=60_000)
        for close in page.query_selector_all(".dismiss-problems, .close-panel"):
            if close.is_visible():
                close.click()
        page.click("#queue-button")
        page.wait_for_function(PLAYING, timeout=120_000)
        page.wait_for_timeout(500)
        png = page.screenshot()
        browser.close()
    image = Image.open(io.BytesIO(png)).convert("RGB")
    image.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
        args.out, optimize=True)
    print(f"{args.out}: {image.size[0]}x{image.size[1]}, {args.out.stat().st_size} bytes")


if __name__ == "__main__":
    main()
