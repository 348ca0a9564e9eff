"""ComfyUI's API routes: prompts, queue, history, node info, models, extensions, system.

Request and response shapes are ComfyUI's, so its clients and scripts work unchanged. Bad
input gets a 400 with the structured error, never a 500.
"""

from __future__ import annotations

import asyncio
import json
import platform
import sys
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import torch
from aiohttp import web

from app.object_info import node_info, object_info
from app.store import QueueItem
from engine.cache import available_memory, total_memory
from engine.folders import UnsafePathError, resolve_inside
from engine.graph import PromptError, error_entry, prepare_prompt
from engine.workflow import WorkflowError, api_to_canvas, parse_workflow

if TYPE_CHECKING:
    from app.server import PromptServer

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
VERSION = "0.1.0"


def bad_request(type_: str, message: str, details: str = "", **extra: Any) -> web.Response:
    return web.json_response({"error": error_entry(type_, message, details, **extra),
                              "node_errors": {}}, status=400)


async def read_json(request: web.Request) -> Any:
    """The JSON body, or raise a 400 that says what is wrong with it."""
    try:
        return await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise web.HTTPBadRequest(text=json.dumps({"error": error_entry(
            "malformed_json", "The request body is not valid JSON", str(exc)),
            "node_errors": {}}), content_type="application/json") from None


async def read_object(request: web.Request) -> dict[str, Any]:
    body = await read_json(request)
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text=json.dumps({"error": error_entry(
            "invalid_request", "The request body must be a JSON object", type(body).__name__),
            "node_errors": {}}), content_type="application/json")
    return body


def _clear_or_delete(body: dict[str, Any], clear: Callable[[], object],
                     delete: Callable[[list[str]], object]) -> web.Response:
    """ComfyUI's ``{"clear": true}`` / ``{"delete": [ids]}`` bodies for queue and history."""
    if body.get("clear"):
        clear()
    if isinstance(body.get("delete"), list):
        delete([str(v) for v in body["delete"]])
    return web.Response(status=200)


def add_api_routes(router: web.UrlDispatcher, server: PromptServer, prefix: str = "") -> None:
    """Register every API route under ``prefix`` ("" and "/api")."""
    store, queue, runtime = server.store, server.queue, server.runtime

    async def post_prompt(request: web.Request) -> web.Response:
        body = server.trigger_on_prompt(await read_object(request))
        if "prompt" not in body:
            return bad_request("no_prompt", "No prompt provided", "the body needs a prompt")
        try:
            plan = prepare_prompt(body["prompt"], runtime.registry)
        except PromptError as exc:
            return web.json_response(exc.payload, status=400)
        prompt_id = str(body.get("prompt_id") or uuid.uuid4())
        extra_data = body.get("extra_data") if isinstance(body.get("extra_data"), dict) else {}
        if body.get("client_id") is not None:
            extra_data = {**extra_data, "client_id": str(body["client_id"])}
        number = body.get("number")
        if not isinstance(number, (int, float)) or isinstance(number, bool):
            number = store.next_number(front=bool(body.get("front")))
        item = QueueItem(int(number), prompt_id, plan.prompt, extra_data, plan.outputs)
        try:
            queue.submit(item)
        except ValueError as exc:
            return bad_request("duplicate_prompt_id", "This prompt_id is already queued",
                               str(exc), prompt_id=prompt_id)
        return web.json_response({"prompt_id": prompt_id, "number": item.number,
                                  "node_errors": {}})

    async def get_prompt(_request: web.Request) -> web.Response:
        return web.json_response({"exec_info": {"queue_remaining": queue.remaining()}})

    async def get_queue(_request: web.Request) -> web.Response:
        return web.json_response({
            "queue_running": [item.as_comfy() for item in store.running()],
            "queue_pending": [item.as_comfy() for item in store.pending()]})

    async def post_queue(request: web.Request) -> web.Response:
        return _clear_or_delete(await read_object(request), queue.clear, queue.delete)

    async def post_interrupt(request: web.Request) -> web.Response:
        body = await read_json(request) if request.can_read_body else {}
        prompt_id = body.get("prompt_id") if isinstance(body, dict) else None
        server.worker.interrupt(str(prompt_id) if prompt_id else None)
        return web.Response(status=200)

    async def get_history(request: web.Request) -> web.Response:
        try:
            max_items = int(request.query["max_items"]) if "max_items" in request.query else None
            offset = int(request.query["offset"]) if "offset" in request.query else None
        except ValueError:
            return bad_request("invalid_request", "max_items and offset must be integers")
        if (max_items is not None and max_items < 0) or (offset is not None and offset < 0):
            return bad_request("invalid_request", "max_items and offset must not be negative")
        skip_newest = 0
        if offset is not None:
            # ComfyUI counts offset from the oldest entry; the store counts back from the newest.
            count = store.history_count()
            max_items = count - offset if max_items is None else min(max_items, count - offset)
            if max_items <= 0:
                return web.json_response({})
            skip_newest = count - offset - max_items
        # Off the event loop: a full history is megabytes of JSON.
        text = await asyncio.to_thread(store.history_json, max_items, skip_newest)
        return web.Response(text=text, content_type="application/json")

    async def get_history_item(request: web.Request) -> web.Response:
        prompt_id = request.match_info["prompt_id"]
        entry = store.history_item(prompt_id)
        return web.json_response({prompt_id: entry} if entry is not None else {})

    async def post_history(request: web.Request) -> web.Response:
        return _clear_or_delete(await read_object(request), store.clear_history,
                                store.delete_history)

    async def get_object_info(_request: web.Request) -> web.Response:
        return web.json_response(object_info(runtime.registry))

    async def get_object_info_node(request: web.Request) -> web.Response:
        node_type = runtime.registry.get(request.match_info["node_class"])
        if node_type is None:
            return web.json_response({})
        return web.json_response({node_type.name: node_info(node_type)})

    async def get_system_stats(_request: web.Request) -> web.Response:
        return web.json_response(system_stats())

    async def get_model_kinds(_request: web.Request) -> web.Response:
        return web.json_response(sorted(runtime.folders.model_kinds))

    async def get_models(request: web.Request) -> web.Response:
        kind = request.match_info["folder"]
        if kind not in runtime.folders.model_kinds:
            return web.json_response({"error": error_entry(
                "unknown_folder", f"No model folder named {kind!r}",
                ", ".join(sorted(runtime.folders.model_kinds)))}, status=404)
        return web.json_response(runtime.folders.model_files(kind))

    async def get_extensions(_request: web.Request) -> web.Response:
        files = []
        for pack, folder in sorted(runtime.registry.web_directories().items()):
            files += [f"/extensions/{pack}/{p.relative_to(folder).as_posix()}"
                      for p in sorted(folder.rglob("*.js"))]
        return web.json_response(files)

    async def get_extension_file(request: web.Request) -> web.StreamResponse:
        folder = runtime.registry.web_directories().get(request.match_info["pack"])
        if folder is None:
            raise web.HTTPNotFound()
        try:
            path = resolve_inside(folder, request.match_info["path"])
        except UnsafePathError:
            raise web.HTTPForbidden() from None
        if not path.is_file():
            raise web.HTTPNotFound()
        return web.FileResponse(path, headers={"X-Content-Type-Options": "nosniff"})

    async def get_plugins(_request: web.Request) -> web.Response:
        registry = runtime.registry
        return web.json_response({"packs": registry.plugin_report(),
                                  "problems": registry.failure_lines()})

    async def post_free(request: web.Request) -> web.Response:
        body = await read_json(request) if request.can_read_body else {}
        if isinstance(body, dict) and (body.get("free_memory") or body.get("unload_models")):
            server.worker.request_free()
        return web.Response(status=200)

    async def get_workflows(_request: web.Request) -> web.Response:
        folder = server.config.workflows_dir
        names = sorted(p.name for p in folder.glob("*.json")) if folder.is_dir() else []
        return web.json_response(names)

    async def get_workflow(request: web.Request) -> web.StreamResponse:
        try:
            path = resolve_inside(server.config.workflows_dir, request.match_info["name"])
        except UnsafePathError:
            raise web.HTTPForbidden() from None
        if path.suffix != ".json" or not path.is_file():
            raise web.HTTPNotFound()
        return web.FileResponse(path, headers={"Content-Type": "application/json"})

    async def post_workflow_canvas(request: web.Request) -> web.Response:
        """An API-format prompt laid out as a canvas workflow, so any workflow opens."""
        try:
            prompt = parse_workflow(await read_json(request), runtime.registry)
            return web.json_response(api_to_canvas(prompt, runtime.registry))
        except WorkflowError as exc:
            return web.json_response({"error": exc.error, "node_errors": {}}, status=400)

    async def get_index(_request: web.Request) -> web.StreamResponse:
        index = server.config.web_root / "index.html"
        if not index.is_file():
            raise web.HTTPNotFound(text="the canvas is not built: run the README's set-up")
        return web.FileResponse(index, headers={"Cache-Control": "no-cache"})

    table: list[tuple[str, str, Handler]] = [
        ("GET", "/prompt", get_prompt), ("POST", "/prompt", post_prompt),
        ("GET", "/queue", get_queue), ("POST", "/queue", post_queue),
        ("POST", "/interrupt", post_interrupt),
        ("GET", "/history", get_history), ("POST", "/history", post_history),
        ("GET", "/history/{prompt_id}", get_history_item),
        ("GET", "/object_info", get_object_info),
        ("GET", "/object_info/{node_class}", get_object_info_node),
        ("GET", "/system_stats", get_system_stats),
        ("GET", "/models", get_model_kinds), ("GET", "/models/{folder}", get_models),
        ("GET", "/extensions", get_extensions),
        ("GET", "/extensions/{pack}/{path:.+}", get_extension_file),
        ("POST", "/free", post_free),
        ("GET", "/kinema/plugins", get_plugins),
        ("GET", "/workflows", get_workflows), ("GET", "/workflows/{name}", get_workflow),
        ("POST", "/workflow/canvas", post_workflow_canvas),
    ]
    if not prefix:
        table.append(("GET", "/", get_index))
    for method, path, handler in table:
        router.add_route(method, prefix + path, handler)


def system_stats() -> dict[str, Any]:
    """ComfyUI's /system_stats: the machine, Python, torch and each device."""
    memory = total_memory()
    devices = [{"name": "cpu", "type": "cpu", "index": None, "vram_total": memory,
                "vram_free": available_memory(), "torch_vram_total": 0, "torch_vram_free": 0}]
    if torch.cuda.is_available():
        devices = []
        for index in range(torch.cuda.device_count()):
            free, total = torch.cuda.mem_get_info(index)
            devices.append({"name": torch.cuda.get_device_name(index), "type": "cuda",
                            "index": index, "vram_total": total, "vram_free": free,
                            "torch_vram_total": torch.cuda.memory_reserved(index),
                            "torch_vram_free": torch.cuda.memory_reserved(index)
                            - torch.cuda.memory_allocated(index)})
    return {"system": {"os": platform.system().lower(), "ram_total": memory,
                       "ram_free": available_memory(), "comfyui_version": VERSION,
                       "kinema_version": VERSION, "python_version": sys.version,
                       "pytorch_version": torch.__version__, "embedded_python": False,
                       "argv": sys.argv},
            "devices": devices}

