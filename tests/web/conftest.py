"""Browser fixtures: Debian's Chromium driven by Playwright against a live Kinema server."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, sync_playwright

from tests.app.live_server import ROOT, LiveServer

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking"]
ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def live(tmp_path_factory) -> Iterator[LiveServer]:
    with LiveServer(tmp_path_factory.mktemp("canvas")) as server:
        yield server


class ConsoleLog:
    """Console errors and uncaught page errors seen while a test ran."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.expected: list[str] = []

    def expect(self, fragment: str) -> None:
        """Allow errors containing ``fragment`` (a test that provokes a 400 on purpose)."""
        self.expected.append(fragment)

    def on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error" and not any(f in message.text for f in self.expected):
            self.errors.append(f"console: {message.text}")

    def on_page_error(self, error: Exception) -> None:
        self.errors.append(f"page error: {error}")


@pytest.fixture
def console() -> ConsoleLog:
    return ConsoleLog()


@contextmanager
def open_canvas(browser: Browser, live: LiveServer, console: ConsoleLog, request,
                path: str) -> Iterator[Page]:
    """A fresh 1280x720 page at ``path``, ready; a screenshot is kept after the test."""
    context = browser.new_context(viewport={"width": 1280, "height": 720},
                                  accept_downloads=True)
    page = context.new_page()
    page.on("console", console.on_console)
    page.on("pageerror", console.on_page_error)
    page.goto(live.url + path)
    page.wait_for_function("window.kinema && window.kinema.graph && "
                           "window.kinema.graph._nodes.length > 0", timeout=30_000)
    yield page
    ARTIFACTS.mkdir(exist_ok=True)
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", request.node.name)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))
    context.close()
    assert console.errors == [], "the page logged errors"


@pytest.fixture
def page(browser: Browser, live: LiveServer, console: ConsoleLog, request) -> Iterator[Page]:
    """The canvas on the small image example (``workflows/image_basics.json``), which the
    tests edit and run: it runs in well under a second on a CPU."""
    with open_canvas(browser, live, console, request, "/?workflow=image_basics.json") as page:
        yield page


@pytest.fixture
def first_screen(browser: Browser, live: LiveServer, console: ConsoleLog,
                 request) -> Iterator[Page]:
    """The canvas as ``python server.py`` first shows it: the default example, opened by
    ``DEFAULT_WORKFLOW`` in web/scripts/app.js (``workflows/video_basics.json``)."""
    with open_canvas(browser, live, console, request, "/") as page:
        yield page


def screenshot_path(name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS / name
