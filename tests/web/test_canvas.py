"""The canvas in real Chromium, used the way a person uses it."""

from __future__ import annotations

import base64
import json
import urllib.request
from pathlib import Path

from playwright.sync_api import Page

from tests.app.live_server import ROOT

# The `page` fixture opens the image example (the tests edit and run it); the canvas opens
# the video example first (`first_screen`).
EXAMPLE = json.loads((ROOT / "workflows" / "image_basics.json").read_text())
VIDEO_EXAMPLE = json.loads((ROOT / "workflows" / "video_basics.json").read_text())

SLOW = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1,
                                                 "color": 0x3366CC}},
    "2": {"class_type": "SlowPassthrough", "inputs": {"image": ["1", 0], "seconds": 1.5}},
    "3": {"class_type": "PreviewImage", "inputs": {"images": ["2", 0]}},
}


def screen_point(page: Page, node_id: int, *, slot: int | None = None, output: bool = False,
                 widget: str | None = None, dx: float = 0) -> tuple[float, float]:
    """Where on the page a node's title, slot or widget is drawn right now."""
    x, y = page.evaluate("""([id, slot, output, widget, dx]) => {
        const app = window.kinema, node = app.graph.getNodeById(id);
        let pos;
        if (slot !== null) pos = node.getConnectionPos(!output, slot);
        else if (widget !== null) {
            const w = node.widgets.find((w) => w.name === widget);
            pos = [node.pos[0] + node.size[0] - 10 + dx, node.pos[1] + w.last_y + 10];
        } else pos = [node.pos[0] + 40, node.pos[1] - 15];
        const [cx, cy] = app.canvas.ds.convertOffsetToCanvas(pos);
        const rect = app.canvas.canvas.getBoundingClientRect();
        return [rect.left + cx, rect.top + cy];
    }""", [node_id, slot, output, widget, dx])
    return x, y


def add_by_search(page: Page, x: float, y: float, query: str, node_type: str) -> int:
    """Double-click the canvas, type a search, press Enter: the new node's id."""
    before = page.evaluate("window.kinema.graph._nodes.map((n) => n.id)")
    page.mouse.dblclick(x, y)
    search = page.locator(".litesearchbox input")
    search.wait_for()
    search.type(query, delay=20)
    page.locator(".litesearchbox .helper .lite-search-item").first.wait_for()
    search.press("Enter")
    page.wait_for_function(f"window.kinema.graph._nodes.length === {len(before) + 1}")
    added = page.evaluate("""(before) => window.kinema.graph._nodes
        .find((n) => !before.includes(n.id))""", before)
    assert added["type"] == node_type
    return added["id"]


def drag(page: Page, start: tuple[float, float], end: tuple[float, float]) -> None:
    page.mouse.move(*start)
    page.mouse.down()
    page.mouse.move((start[0] + end[0]) / 2, (start[1] + end[1]) / 2, steps=5)
    page.mouse.move(*end, steps=5)
    page.mouse.up()


def node_state(page: Page, node_id: int) -> dict:
    return page.evaluate("""(id) => {
        const n = window.kinema.graph.getNodeById(id);
        return {state: n.kinemaState ?? null, progress: n.kinemaProgress ?? 0,
                errors: n.kinemaErrors ?? [], previews: n.kinemaPreviewUrls ?? [],
                widgets: Object.fromEntries((n.widgets || []).map((w) => [w.name, w.value]))};
    }""", node_id)


def load(page: Page, workflow: dict) -> None:
    assert page.evaluate("(wf) => window.kinema.loadWorkflow(wf)", workflow)


def test_the_first_screen_opens_the_video_example_without_console_errors(first_screen):
    # What `python server.py` shows first: the weights-free video example.
    titles = first_screen.evaluate("window.kinema.graph._nodes.map((n) => n.title)")
    assert sorted(titles) == sorted(n["title"] for n in VIDEO_EXAMPLE["nodes"])
    for button in ("#queue-button", "#interrupt-button", "#load-button", "#save-button",
                   "#examples-button", "#help-button"):
        assert first_screen.locator(button).is_visible(), button


def test_a_workflow_named_in_the_address_opens_instead_of_the_default(browser, live):
    fresh = browser.new_context(viewport={"width": 1280, "height": 720}).new_page()
    fresh.goto(live.url + "/?workflow=image_basics.json")
    fresh.wait_for_function("window.kinema && window.kinema.workflowLoaded")
    titles = fresh.evaluate("window.kinema.graph._nodes.map((n) => n.title)")
    assert {"Size", "Blue frames", "Orange frames"} <= set(titles)
    assert sorted(titles) == sorted(n["title"] for n in EXAMPLE["nodes"])
    fresh.context.close()


def test_add_by_search_wire_set_widgets_and_run(page):
    page.evaluate("window.kinema.graph.clear(); window.kinema.canvas.ds.offset = [0, 0]; "
                  "window.kinema.canvas.ds.scale = 1; window.kinema.canvas.setDirty(true, true)")
    source = add_by_search(page, 200, 250, "empty image", "EmptyImage")
    sink = add_by_search(page, 750, 250, "preview image", "PreviewImage")
    page.wait_for_timeout(200)  # let the canvas draw, so widget positions are known
    drag(page, screen_point(page, source, slot=0, output=True), screen_point(page, sink, slot=0))
    linked = page.evaluate(f"window.kinema.graph.getNodeById({sink}).inputs[0].link !== null")
    assert linked, "the drag did not make a link"

    widths = [node_state(page, source)["widgets"]["width"]]
    page.mouse.click(*screen_point(page, source, widget="width", dx=-2))  # the right arrow
    widths.append(node_state(page, source)["widgets"]["width"])
    assert widths[1] > widths[0]
    page.evaluate(f"""() => {{
        const w = window.kinema.graph.getNodeById({source}).widgets;
        w.find((x) => x.name === "batch_size").value = 2;
    }}""")
    prompt = page.evaluate("window.kinema.graphToPrompt().output")
    assert prompt[str(source)]["inputs"]["width"] == widths[1]

    page.keyboard.press("Control+Enter")
    page.wait_for_function(f"(window.kinema.graph.getNodeById({sink}).kinemaPreviewUrls "
                           "|| []).length === 2", timeout=30_000)


def test_queue_shows_progress_live_preview_and_outputs(page):
    load(page, page.evaluate("(p) => fetch('/workflow/canvas', {method: 'POST', "
                             "body: JSON.stringify(p)}).then((r) => r.json())", SLOW))
    page.evaluate("""() => {
        window.seen = {progress: 0, running: false, live: false};
        window.kinema.api.addEventListener("progress", () => { window.seen.progress++; });
        const slow = window.kinema.nodeForApiId("2");
        const watch = setInterval(() => {
            const busy = slow.kinemaState === "running" && slow.kinemaProgress > 0;
            if (busy) window.seen.running = true;
            if ((slow.kinemaPreviewUrls || []).some((u) => u.startsWith("blob:")))
                window.seen.live = true;
        }, 20);
        window.stopWatch = () => clearInterval(watch);
    }""")
    page.click("#queue-button")
    page.wait_for_function("(window.kinema.nodeForApiId('3').kinemaPreviewUrls || [])"
                           ".length === 1", timeout=30_000)
    seen = page.evaluate("window.stopWatch(); window.seen")
    assert seen["progress"] >= 10 and seen["running"] and seen["live"]
    url = page.evaluate("window.kinema.nodeForApiId('3').kinemaPreviewUrls[0]")
    assert "/view?" in url

    # Queued again unchanged: every node is reported cached.
    page.click("#queue-button")
    page.wait_for_function("['1', '2', '3'].every((id) => "
                           "window.kinema.nodeForApiId(id).kinemaState === 'cached')",
                           timeout=30_000)


def test_a_broken_graph_shows_its_error_on_the_right_node(page, console):
    console.expect("status of 400")
    invert = next(n["id"] for n in EXAMPLE["nodes"] if n["type"] == "ImageInvert")
    page.evaluate(f"window.kinema.graph.getNodeById({invert}).disconnectInput(0)")
    page.click("#queue-button")
    page.wait_for_function(f"(window.kinema.graph.getNodeById({invert}).kinemaErrors || [])"
                           ".length > 0", timeout=15_000)
    errors = node_state(page, invert)["errors"]
    assert errors[0]["type"] == "required_input_missing"
    assert errors[0]["input_name"] == "image"
    others = page.evaluate(f"""window.kinema.graph._nodes.filter((n) => n.id !== {invert}
        && (n.kinemaErrors || []).length).map((n) => n.id)""")
    assert others == []
    assert "failed validation" in page.locator("#toast").inner_text().lower()


def test_a_failing_node_is_marked_with_the_exception(page):
    size = next(n["id"] for n in EXAMPLE["nodes"] if n["title"] == "Size")
    page.evaluate(f"""() => {{
        const w = window.kinema.graph.getNodeById({size}).widgets;
        w.find((x) => x.name === "value").value = -5;
    }}""")
    page.click("#queue-button")
    page.wait_for_function("window.kinema.graph._nodes.some((n) => n.kinemaState === 'error')",
                           timeout=30_000)
    failed = page.evaluate("""window.kinema.graph._nodes
        .filter((n) => n.kinemaState === 'error').map((n) => n.type)""")
    assert set(failed) == {"EmptyImage"}


def test_saved_workflow_dragged_in_runs(page, browser, live):
    with page.expect_download() as download_info:
        page.once("dialog", lambda dialog: dialog.accept("mine"))
        page.click("#save-button")
    saved = download_info.value
    assert saved.suggested_filename == "mine.json"
    workflow = json.loads(Path(saved.path()).read_text())

    other = browser.new_context(viewport={"width": 1280, "height": 720}).new_page()
    other.goto(live.url + "/")
    # Once the default example has opened: a drop before that would be replaced by it.
    other.wait_for_function("window.kinema && window.kinema.isSetUp")
    other.evaluate("window.kinema.graph.clear()")
    drop_file(other, "mine.json", json.dumps(workflow).encode(), "application/json")
    other.wait_for_function(f"window.kinema.graph._nodes.length === {len(workflow['nodes'])}")
    other.click("#queue-button")
    save = next(n["id"] for n in workflow["nodes"] if n["type"] == "SaveImage")
    other.wait_for_function(f"(window.kinema.graph.getNodeById({save}).kinemaPreviewUrls "
                            "|| []).length === 4", timeout=30_000)

    # An output PNG carries its workflow: dropping it reopens the graph.
    url = other.evaluate(f"window.kinema.graph.getNodeById({save}).kinemaPreviewUrls[0]")
    png = urllib.request.urlopen(live.url + url[url.index("/view"):], timeout=10).read()
    other.evaluate("window.kinema.graph.clear()")
    drop_file(other, "output.png", png, "image/png")
    other.wait_for_function(f"window.kinema.graph._nodes.length === {len(workflow['nodes'])}")
    other.context.close()


def drop_file(page: Page, name: str, data: bytes, mime: str) -> None:
    """Drop a file on the canvas as a person dragging it from their desktop would."""
    page.evaluate("""([name, b64, mime]) => {
        const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
        const transfer = new DataTransfer();
        transfer.items.add(new File([bytes], name, {type: mime}));
        const target = document.getElementById("graph-canvas");
        for (const type of ["dragenter", "dragover", "drop"]) {
            target.dispatchEvent(new DragEvent(type, {dataTransfer: transfer, bubbles: true,
                                                      cancelable: true}));
        }
    }""", [name, base64.b64encode(data).decode(), mime])


def test_examples_menu_help_overlay_and_undo(page):
    page.click("#examples-button")
    items = page.locator("#examples-menu .example-item")
    items.first.wait_for()  # the list comes from GET /workflows
    names = items.evaluate_all("(els) => els.map((e) => e.dataset.name)")
    assert {"image_basics.json", "video_basics.json"} <= set(names)

    page.keyboard.press("Escape")
    page.locator("#graph-canvas").click(position={"x": 5, "y": 700})
    page.keyboard.press("?")
    overlay = page.locator("#help-overlay")
    overlay.wait_for(state="visible")
    assert "Ctrl+Enter" in overlay.inner_text()
    page.keyboard.press("Escape")
    overlay.wait_for(state="hidden")

    count = page.evaluate("window.kinema.graph._nodes.length")
    page.evaluate("""() => {
        const app = window.kinema, node = app.graph._nodes[app.graph._nodes.length - 1];
        app.graph.remove(node);
        app.graphChanged("nodeRemoved");
    }""")
    assert page.evaluate("window.kinema.graph._nodes.length") == count - 1
    page.wait_for_timeout(400)  # undo coalesces bursts of edits
    page.keyboard.press("Control+z")
    page.wait_for_function(f"window.kinema.graph._nodes.length === {count}")


def test_history_panel_reopens_a_past_run(page):
    page.click("#queue-button")
    page.wait_for_function("window.kinema.graph._nodes.some((n) => n.type === 'SaveImage' "
                           "&& (n.kinemaPreviewUrls || []).length === 4)", timeout=30_000)
    page.evaluate("window.kinema.graph.clear()")
    page.click("#queue-panel-button")
    item = page.locator("#queue-panel .history-item").first
    item.wait_for()
    item.locator(".open-workflow").click()
    page.wait_for_function(f"window.kinema.graph._nodes.length === {len(EXAMPLE['nodes'])}")


def test_autosave_reopens_the_graph_after_a_reload(page):
    page.evaluate("""() => {
        const app = window.kinema;
        app.graph.remove(app.graph._nodes[0]);
        app.graphChanged("nodeRemoved");
    }""")
    page.wait_for_timeout(800)  # autosave is debounced
    page.reload()
    page.wait_for_function("window.kinema && window.kinema.workflowLoaded")
    assert page.evaluate("window.kinema.graph._nodes.length") == len(EXAMPLE["nodes"]) - 1


def test_plugin_web_extensions_load_and_get_their_hooks(page):
    page.wait_for_function("window.webPackSetUp === true")
    before = page.evaluate("window.webPackNodes || 0")
    page.evaluate("window.kinema.graph.add(LiteGraph.createNode('ImageInvert'))")
    assert page.evaluate("window.webPackNodes") == before + 1


def test_plugin_problems_badge_lists_each_refused_node_by_pack(page, live):
    # The live server loads tests/fixtures/server_nodes: two of its nodes are refused.
    report = live.get("/kinema/plugins")
    assert len(report["problems"]) == 2
    badge = page.locator("#plugin-problems-button")
    badge.wait_for()
    assert badge.inner_text() == "⚠ 2 plugin problems"
    dialog = page.locator("#plugin-problems")
    assert dialog.is_hidden()

    badge.click()
    dialog.wait_for(state="visible")
    packs = dialog.locator(".problem-pack")
    assert packs.locator("h3").all_inner_texts() == ["compat_pack", "loose_pack"]
    loose = packs.filter(has_text="loose_pack").locator(".problem")
    assert loose.count() == 1
    assert loose.locator(".problem-what").inner_text() == "LooseBroken"
    assert loose.locator(".problem-why").inner_text() == \
        "FUNCTION names 'does_not_exist', which is not a method"
    compat = packs.filter(has_text="compat_pack").locator(".problem")
    assert compat.locator(".problem-what").inner_text() == "SdxlVaeEncode"
    assert "VAEEncode, which Kinema does not provide" in compat.locator(".problem-why").inner_text()

    page.keyboard.press("Escape")
    dialog.wait_for(state="hidden")
    badge.click()
    dialog.locator(".dismiss-problems").click()
    dialog.wait_for(state="hidden")
    assert badge.count() == 0
    # Hidden in this tab until the problems change, reloads included.
    page.reload()
    page.wait_for_function("window.kinema && window.kinema.pluginReport")
    assert page.locator("#plugin-problems-button").count() == 0


def test_no_plugin_problems_shows_no_notice(browser, live, console):
    context = browser.new_context(viewport={"width": 1280, "height": 720})
    seen = []

    def no_problems(route):
        seen.append(route.request.headers.get("authorization"))
        route.fulfill(json={"packs": {"slow": {"loaded": True, "error": None,
                                               "nodes": ["SlowPassthrough"],
                                               "refused_nodes": {}, "conflicts": []}},
                            "problems": []})

    context.route("**/kinema/plugins", no_problems)
    page = context.new_page()
    page.on("console", console.on_console)
    page.on("pageerror", console.on_page_error)
    page.goto(live.url + "/?workflow=image_basics.json&token=secret")
    page.wait_for_function("window.kinema && window.kinema.isSetUp && window.kinema.pluginReport")
    # Fetched through the API helper, so it carries the token like every API call.
    assert seen == ["Bearer secret"]
    assert page.locator("#plugin-problems-button").count() == 0
    assert page.locator("#plugin-problems").count() == 0
    context.close()
    assert console.errors == []
