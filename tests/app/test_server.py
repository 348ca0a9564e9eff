"""The server through real HTTP and a real websocket, as ComfyUI API scripts drive it."""

from __future__ import annotations

import asyncio
import json
import signal
import struct
import time
import uuid
from pathlib import Path

import aiohttp
import pytest

from tests.app.live_server import LiveServer


def slow_prompt(seconds: float = 0.3, prefix: str = "e2e", size: int = 32) -> dict:
    return {
        "1": {"class_type": "EmptyImage", "inputs": {"width": size, "height": size,
                                                     "batch_size": 2, "color": 0x204060}},
        "2": {"class_type": "SlowPassthrough", "inputs": {"image": ["1", 0],
                                                          "seconds": seconds}},
        "3": {"class_type": "ImageInvert", "inputs": {"image": ["2", 0]}},
        "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0],
                                                    "filename_prefix": prefix}},
        "5": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
    }


async def wait_done(ws: aiohttp.ClientWebSocketResponse, prompt_id: str,
                    timeout: float = 60) -> tuple[list[dict], list[bytes]]:
    """Collect messages until ``executing`` with node null for this prompt."""
    events, frames = [], []
    deadline = time.monotonic() + timeout
    while True:
        msg = await ws.receive(timeout=max(0.1, deadline - time.monotonic()))
        if msg.type == aiohttp.WSMsgType.BINARY:
            frames.append(msg.data)
            continue
        assert msg.type == aiohttp.WSMsgType.TEXT, msg
        event = json.loads(msg.data)
        events.append(event)
        data = event["data"]
        if (event["type"] == "executing" and data.get("node") is None
                and data.get("prompt_id") == prompt_id):
            return events, frames


@pytest.fixture
def server(tmp_path):
    with LiveServer(tmp_path) as live:
        yield live


async def test_api_script_flow_end_to_end(server):
    client_id = uuid.uuid4().hex
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(f"{server.url}/ws?clientId={client_id}") as ws:
            hello = json.loads((await ws.receive(timeout=10)).data)
            assert hello["type"] == "status" and hello["data"]["sid"] == client_id
            response = await http.post(f"{server.url}/prompt",
                                       json={"prompt": slow_prompt(), "client_id": client_id})
            assert response.status == 200
            body = await response.json()
            assert body["node_errors"] == {} and isinstance(body["number"], int)
            events, frames = await wait_done(ws, body["prompt_id"])
        kinds = [e["type"] for e in events]
        for kind in ("execution_start", "execution_cached", "executing", "progress",
                     "executed", "execution_success"):
            assert kind in kinds, kinds
        assert kinds.index("execution_start") < kinds.index("execution_success")
        assert frames and struct.unpack(">II", frames[0][:8]) == (1, 1)
        assert frames[0][8:10] == b"\xff\xd8"  # a JPEG preview

        history = await (await http.get(f"{server.url}/history/{body['prompt_id']}")).json()
        entry = history[body["prompt_id"]]
        assert entry["status"]["status_str"] == "success" and entry["status"]["completed"]
        assert entry["prompt"][1] == body["prompt_id"]
        images = entry["outputs"]["4"]["images"] + entry["outputs"]["5"]["images"]
        assert len(images) == 4
        for image in images:
            view = await http.get(f"{server.url}/view", params=image)
            assert view.status == 200
            on_disk = server.base_dir / image["type"] / image["subfolder"] / image["filename"]
            assert await view.read() == on_disk.read_bytes()
        # The same routes answer under /api too.
        assert (await http.get(f"{server.url}/api/history/{body['prompt_id']}")).status == 200


async def test_rerun_is_cached_and_reported(server):
    client_id = uuid.uuid4().hex
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(f"{server.url}/ws?clientId={client_id}") as ws:
            for _ in range(2):
                body = await (await http.post(f"{server.url}/prompt", json={
                    "prompt": slow_prompt(0.05), "client_id": client_id})).json()
                events, _ = await wait_done(ws, body["prompt_id"])
    cached = [e["data"]["nodes"] for e in events if e["type"] == "execution_cached"]
    assert sorted(cached[0]) == ["1", "2", "3", "4", "5"]


async def test_other_clients_get_status_but_not_execution_messages(server):
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(f"{server.url}/ws?clientId=a") as ws_a, \
                http.ws_connect(f"{server.url}/ws?clientId=b") as ws_b:
            body = await (await http.post(f"{server.url}/prompt", json={
                "prompt": slow_prompt(0.05, prefix="ab"), "client_id": "a"})).json()
            await wait_done(ws_a, body["prompt_id"])
            await asyncio.sleep(0.3)
            seen_by_b = []
            while True:
                try:
                    msg = await ws_b.receive(timeout=0.2)
                except TimeoutError:
                    break
                seen_by_b.append(json.loads(msg.data)["type"])
    assert "status" in seen_by_b
    assert not {"executing", "executed", "progress", "execution_start"} & set(seen_by_b)


async def test_interrupt_and_queue_operations(server):
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(f"{server.url}/ws?clientId=c") as ws:
            ids = []
            for i in range(3):
                body = await (await http.post(f"{server.url}/prompt", json={
                    "prompt": slow_prompt(20, prefix=f"q{i}", size=8 + i),
                    "client_id": "c"})).json()
                ids.append(body["prompt_id"])
            queue = await (await http.get(f"{server.url}/queue")).json()
            assert [q[1] for q in queue["queue_running"] + queue["queue_pending"]] == ids
            urgent = await (await http.post(f"{server.url}/prompt", json={
                "prompt": slow_prompt(20, prefix="urgent", size=7), "front": True})).json()
            pending = (await (await http.get(f"{server.url}/queue")).json())["queue_pending"]
            assert [q[1] for q in pending] == [urgent["prompt_id"], ids[1], ids[2]]
            await http.post(f"{server.url}/queue", json={"delete": [ids[2]]})
            pending = (await (await http.get(f"{server.url}/queue")).json())["queue_pending"]
            assert ids[2] not in [q[1] for q in pending]
            await http.post(f"{server.url}/queue", json={"clear": True})
            while True:  # wait for the first prompt's progress, then interrupt it
                msg = await ws.receive(timeout=30)
                is_text = msg.type == aiohttp.WSMsgType.TEXT
                if is_text and json.loads(msg.data)["type"] == "progress":
                    break
            assert (await http.post(f"{server.url}/interrupt", json={})).status == 200
            events, _ = await wait_done(ws, ids[0])
        assert "execution_interrupted" in [e["type"] for e in events]
        history = await (await http.get(f"{server.url}/history")).json()
        assert history[ids[0]]["status"]["status_str"] == "interrupted"
        assert ids[1] not in history and ids[2] not in history
        queue = await (await http.get(f"{server.url}/queue")).json()
        assert queue == {"queue_running": [], "queue_pending": []}


def test_crash_with_three_queued_prompts_loses_nothing(tmp_path):
    live = LiveServer(tmp_path).start()
    ids = []
    try:
        import urllib.request

        for i in range(3):
            request = urllib.request.Request(
                f"{live.url}/prompt", method="POST", headers={"Content-Type": "application/json"},
                data=json.dumps({"prompt": slow_prompt(1.5, prefix=f"crash{i}",
                                                       size=16 + i)}).encode())
            with urllib.request.urlopen(request, timeout=10) as response:
                ids.append(json.loads(response.read())["prompt_id"])
        deadline = time.monotonic() + 30
        while not live.get("/queue")["queue_running"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert live.get("/queue")["queue_running"], "the first prompt never started"
    finally:
        live.kill(signal.SIGKILL)

    with LiveServer(tmp_path, port=live.port) as again:
        deadline = time.monotonic() + 60
        history = {}
        while time.monotonic() < deadline:
            history = again.get("/history")
            if all(i in history for i in ids):
                break
            time.sleep(0.2)
        for i, prompt_id in enumerate(ids):
            entry = history[prompt_id]
            assert entry["status"]["status_str"] == "success", entry["status"]
            saved = entry["outputs"]["4"]["images"]
            assert len(saved) == 2
            for image in saved:
                path = Path(tmp_path / "output" / image["subfolder"] / image["filename"])
                assert path.is_file() and image["filename"].startswith(f"crash{i}")


async def test_plugin_routes_and_messages_through_prompt_server(server):
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(f"{server.url}/ws?clientId=p") as ws:
            await ws.receive_json(timeout=10)  # status
            response = await http.get(f"{server.url}/routes_pack/hello", params={"who": "k"})
            assert await response.json() == {"hello": "k"}
            message = await ws.receive_json(timeout=10)
        queued = await http.post(f"{server.url}/prompt", json={"prompt": slow_prompt(0)})
        assert queued.status == 200
        seen = await (await http.get(f"{server.url}/routes_pack/seen")).json()
    assert message == {"type": "routes_pack.hello", "data": {"who": "k"}}
    assert seen == [["1", "2", "3", "4", "5"]]  # the plugin's on-prompt handler saw it


async def test_object_info_describes_nodes_like_comfyui(server):
    async with aiohttp.ClientSession() as http:
        info = await (await http.get(f"{server.url}/object_info")).json()
        one = await (await http.get(f"{server.url}/object_info/ImageScale")).json()
    scale = info["ImageScale"]
    assert one == {"ImageScale": scale}
    assert scale["input_order"]["required"] == ["image", "upscale_method", "width", "height",
                                                "crop"]
    assert scale["input"]["required"]["upscale_method"][0][0] == "nearest-exact"
    assert scale["output"] == ["IMAGE"] and scale["output_is_list"] == [False]
    assert scale["python_module"] == "nodes" and scale["category"] == "image/upscaling"
    assert info["SaveImage"]["output_node"] is True
    assert info["SlowPassthrough"]["python_module"] == "custom_nodes.slow"


async def test_loosely_declared_plugins_load_and_refusals_are_listed(server):
    async with aiohttp.ClientSession() as http:
        darken = (await (await http.get(f"{server.url}/object_info/LooseDarken")).json())
        plugins = await (await http.get(f"{server.url}/kinema/plugins")).json()
    assert darken["LooseDarken"]["output_name"] == ["IMAGE", "INT"]
    assert darken["LooseDarken"]["display_name"] == "Darken (loose pack)"
    loose = plugins["packs"]["loose_pack"]
    assert loose["loaded"] and "LooseDarken" in loose["nodes"]
    assert "does_not_exist" in loose["refused_nodes"]["LooseBroken"]
    line = next(p for p in plugins["problems"] if "LooseBroken" in p)
    assert line in server.log_text()  # and said at start-up


async def test_a_video_pack_style_plugin_queues_its_workflow_again(server):
    # compat_pack uses what VideoHelperSuite uses at import: server.web, the aiohttp app,
    # prompt_queue, latent_preview, node_helpers, comfy.k_diffusion.utils, nodes.VAEEncode.
    prompt = {"1": {"class_type": "CountRuns", "inputs": {"runs": 1, "total": 2}}}
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(f"{server.url}/ws?clientId=batch") as ws:
            await ws.receive_json(timeout=10)  # status
            queued = await http.post(f"{server.url}/prompt",
                                     json={"prompt": prompt, "client_id": "batch"})
            assert queued.status == 200, await queued.text()
            first = (await queued.json())["prompt_id"]
            await wait_done(ws, first)
            while True:  # the run the plugin queued, under an id it chose
                event = await ws.receive_json(timeout=60)
                if (event["type"] == "executing" and event["data"].get("node") is None
                        and event["data"]["prompt_id"] != first):
                    break
        history = await (await http.get(f"{server.url}/history")).json()
        extensions = await (await http.get(f"{server.url}/compat_pack/extensions")).json()
        plugins = await (await http.get(f"{server.url}/kinema/plugins")).json()
    runs = sorted(entry["outputs"]["1"]["runs"][0] for entry in history.values())
    assert runs == [1, 2]
    assert ".png" in extensions["images"] and extensions["server_serves_web_directory"]
    refused = plugins["packs"]["compat_pack"]["refused_nodes"]
    assert list(refused) == ["SdxlVaeEncode"] and "VAEEncode" in refused["SdxlVaeEncode"]


async def test_bad_prompts_get_400_with_the_structured_error(server):
    async with aiohttp.ClientSession() as http:
        cases = [
            (b"{nope", "malformed_json"),
            (b"[]", "invalid_request"),
            (b"{}", "no_prompt"),
            (json.dumps({"prompt": {"1": {"class_type": "Nope", "inputs": {}}}}).encode(),
             "missing_node_type"),
            (json.dumps({"prompt": {"1": {"class_type": "PreviewImage", "inputs": {}}}}).encode(),
             "prompt_outputs_failed_validation"),
        ]
        for body, kind in cases:
            response = await http.post(f"{server.url}/prompt", data=body,
                                       headers={"Content-Type": "application/json"})
            assert response.status == 400, body
            payload = await response.json()
            assert payload["error"]["type"] == kind
            assert "node_errors" in payload
        big = b'{"prompt": "' + b"x" * (17 * 1024 * 1024) + b'"}'
        response = await http.post(f"{server.url}/prompt", data=big)
        assert response.status == 413
        assert (await response.json())["error"]["type"] == "payload_too_large"


def test_a_prompt_cut_off_by_shutdown_runs_after_the_restart(tmp_path):
    import urllib.request

    live = LiveServer(tmp_path).start()
    request = urllib.request.Request(
        f"{live.url}/prompt", method="POST", headers={"Content-Type": "application/json"},
        data=json.dumps({"prompt": slow_prompt(3, prefix="graceful")}).encode())
    with urllib.request.urlopen(request, timeout=10) as response:
        prompt_id = json.loads(response.read())["prompt_id"]
    deadline = time.monotonic() + 30
    while not live.get("/queue")["queue_running"] and time.monotonic() < deadline:
        time.sleep(0.05)
    live.kill(signal.SIGTERM)
    assert live.proc.returncode == 0
    with LiveServer(tmp_path, port=live.port) as again:
        deadline = time.monotonic() + 60
        while prompt_id not in (history := again.get("/history")) and \
                time.monotonic() < deadline:
            time.sleep(0.2)
    assert history[prompt_id]["status"]["status_str"] == "success"


async def test_history_paging_follows_comfyui(server):
    ids = []
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(f"{server.url}/ws?clientId=h") as ws:
            for color in (1, 2, 3):
                prompt = {"1": {"class_type": "EmptyImage", "inputs": {
                              "width": 4, "height": 4, "batch_size": 1, "color": color}},
                          "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}}
                body = await (await http.post(f"{server.url}/prompt", json={
                    "prompt": prompt, "client_id": "h"})).json()
                await wait_done(ws, body["prompt_id"])
                ids.append(body["prompt_id"])

        async def page(query: str) -> list[str]:
            return list(await (await http.get(f"{server.url}/history?{query}")).json())

        assert await page("") == ids
        assert await page("max_items=2") == ids[1:]
        assert await page("max_items=1&offset=0") == ids[:1]
        assert await page("offset=1") == ids[1:]
        assert await page("max_items=5&offset=3") == []
        assert (await http.get(f"{server.url}/history?max_items=x")).status == 400
        await http.post(f"{server.url}/history", json={"delete": [ids[0]]})
        assert await page("") == ids[1:]
        await http.post(f"{server.url}/history", json={"clear": True})
        assert await page("") == []
