"""The aiohttp server: ComfyUI's HTTP and WebSocket API over Kinema's engine.

``PromptServer.instance`` exists before plugins load, because ComfyUI plugins add routes to
``PromptServer.instance.routes`` and call ``send_sync`` at import time. In a process that
does not serve (``server.py run``) it is a ``HeadlessServer``: routes are never served and
messages have no client, so plugins load and run there too.
"""

from __future__ import annotations

import asyncio
import io
import logging
import struct
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from aiohttp import WSMsgType, web
from PIL import Image

from app.comfy_queue import ComfyPromptQueue, HeadlessPromptQueue
from app.files import add_file_routes
from app.queue import PromptQueue
from app.routes import add_api_routes
from app.runtime import Runtime
from app.security import SecurityPolicy, client_max_size, security_middlewares
from app.store import PromptStore
from app.worker import InProcessWorker
from engine.folders import PROJECT_ROOT
from engine.registry import NodeRegistry

log = logging.getLogger(__name__)

# Binary websocket frames: 4-byte event type, 4-byte image type, then the image (ComfyUI's).
PREVIEW_IMAGE = 1
IMAGE_TYPES = {"JPEG": 1, "PNG": 2}


@dataclass
class ServerConfig:
    """Where the server listens, what it protects, and where its files and state live."""

    host: str = "127.0.0.1"
    port: int = 8188
    auth_token: str | None = None
    base_dir: Path = PROJECT_ROOT
    output_dir: Path | None = None
    custom_nodes: list[Path] | None = None
    extra_model_paths: list[Path] | None = None
    cache_bytes: int | None = None
    max_history: int = 10_000
    web_root: Path = PROJECT_ROOT / "web"
    workflows_dir: Path = PROJECT_ROOT / "workflows"
    policy: SecurityPolicy = field(init=False)

    def __post_init__(self) -> None:
        self.policy = SecurityPolicy(host=self.host, port=self.port, auth_token=self.auth_token)

    @property
    def database(self) -> Path:
        return self.base_dir / "user" / "kinema.sqlite"


class PluginFacing:
    """What ComfyUI plugins use on ``PromptServer.instance``, the same whether Kinema serves
    or runs one workflow headless."""

    def __init__(self, app: web.Application, prompt_queue: Any) -> None:
        self.app = app
        self.prompt_queue = prompt_queue
        self.routes = web.RouteTableDef()
        # Kinema serves packs' WEB_DIRECTORY itself: packs need not copy files into its folders.
        self.supports = ["custom_nodes_from_web"]
        # ComfyUI's hook: each handler sees (and may rewrite) every POST /prompt body.
        self.on_prompt_handlers: list[Callable[[dict], dict]] = []
        self.client_id: str | None = None
        self.last_node_id: str | None = None
        self.last_prompt_id: str | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.number = 0  # ComfyUI's counter; plugins that queue prompts read and bump it

    def add_on_prompt_handler(self, handler: Callable[[dict], dict]) -> None:
        """Have ``handler`` see (and possibly rewrite) every prompt body queued from now on."""
        self.on_prompt_handlers.append(handler)

    def trigger_on_prompt(self, body: dict) -> dict:
        """The POST /prompt body after every plugin's on-prompt handler (a failing one is
        logged and skipped, as in ComfyUI)."""
        for handler in self.on_prompt_handlers:
            try:
                rewritten = handler(body)
            except Exception:
                log.exception("an on-prompt handler of a plugin failed")
                continue
            if isinstance(rewritten, dict):
                body = rewritten
            else:
                log.warning("on-prompt handler %r returned no prompt body; ignored", handler)
        return body

    def send_sync(self, event: str, data: Any, sid: str | None = None) -> None:
        """No client listens: the message is dropped."""

    async def send(self, event: str, data: Any, sid: str | None = None) -> None:
        """No client listens: the message is dropped."""


class HeadlessServer(PluginFacing):
    """``PromptServer.instance`` while nothing serves (``server.py run``): routes plugins add
    are never served, messages they send have no client, nothing can be queued."""

    def __init__(self) -> None:
        super().__init__(web.Application(), HeadlessPromptQueue())


class PromptServer(PluginFacing):
    """One server process: the queue, the worker, the websocket clients and the routes."""

    instance: ClassVar[PluginFacing]

    def __init__(self, config: ServerConfig):
        PromptServer.instance = self
        self.config = config
        config.database.parent.mkdir(parents=True, exist_ok=True)
        self.store = PromptStore(config.database, max_history=config.max_history)
        self.requeued, self.failed = self.store.recover()
        self.queue = PromptQueue(self.store)
        # The application and prompt_queue exist before plugins load: some use them at import.
        super().__init__(web.Application(middlewares=security_middlewares(config.policy),
                                         client_max_size=client_max_size(config.policy)),
                         ComfyPromptQueue(self.store, self.queue, lambda: self.registry))
        self.queue.on_change(self._broadcast_status)
        self.sockets: dict[str, web.WebSocketResponse] = {}
        self.messages: asyncio.Queue[tuple[str, Any, str | None]] | None = None
        self.runtime = Runtime.create(base_dir=config.base_dir, output_dir=config.output_dir,
                                      custom_nodes=config.custom_nodes,
                                      cache_bytes=config.cache_bytes,
                                      extra_model_paths=config.extra_model_paths)
        self.worker = InProcessWorker(self.runtime, self.queue, self._on_worker_event)
        self._add_routes(self.app)

    def _add_routes(self, app: web.Application) -> None:
        for prefix in ("", "/api"):
            add_api_routes(app.router, self, prefix)
            add_file_routes(app.router, prefix)
        self._add_static(app.router)
        app.router.add_get("/ws", self.websocket)
        app.router.add_get("/api/ws", self.websocket)
        app.router.add_routes(self.routes)  # plugins' routes
        app.on_startup.append(self._on_startup)
        app.on_shutdown.append(self._on_shutdown)

    def _add_static(self, router: web.UrlDispatcher) -> None:
        """The canvas: its own scripts and styles, and litegraph.js as npm installed it."""
        web_root = self.config.web_root
        for url, folder in (("/scripts", web_root / "scripts"), ("/css", web_root / "css"),
                            ("/lib/litegraph", web_root / "node_modules" / "litegraph.js")):
            if folder.is_dir():
                router.add_static(url, folder, append_version=False)
            else:
                log.warning("%s is missing: run the README's set-up to build the canvas", folder)

    async def _on_startup(self, _app: web.Application) -> None:
        self.loop = asyncio.get_running_loop()
        self.messages = asyncio.Queue()
        self._publisher = asyncio.create_task(self._publish())
        self.worker.start()

    async def _on_shutdown(self, _app: web.Application) -> None:
        await asyncio.to_thread(self.worker.stop)
        self._publisher.cancel()
        for ws in list(self.sockets.values()):
            await ws.close()
        self.store.close()

    # -- websocket ---------------------------------------------------------------------------

    async def websocket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=30)
        await ws.prepare(request)
        sid = request.query.get("clientId") or request.query.get("client_id") or uuid.uuid4().hex
        previous = self.sockets.pop(sid, None)
        if previous is not None:
            await previous.close()
        self.sockets[sid] = ws
        try:
            await ws.send_json({"type": "status", "data": {**self._status(), "sid": sid}})
            if self.client_id == sid and self.last_node_id is not None:
                await ws.send_json({"type": "executing", "data": {
                    "node": self.last_node_id, "prompt_id": self.last_prompt_id}})
            async for msg in ws:
                if msg.type == WSMsgType.ERROR:
                    log.warning("websocket %s closed with %s", sid, ws.exception())
        finally:
            if self.sockets.get(sid) is ws:
                del self.sockets[sid]
        return ws

    def _status(self) -> dict[str, Any]:
        return {"status": {"exec_info": {"queue_remaining": self.queue.remaining()}}}

    @property
    def registry(self) -> NodeRegistry:
        """The node types this server runs (built-ins and loaded plugins)."""
        return self.runtime.registry

    def _broadcast_status(self) -> None:
        self.send_sync("status", self._status())

    def send_sync(self, event: str, data: Any, sid: str | None = None) -> None:
        """Send a message to one client (or all) from any thread, in order."""
        if self.loop is None or self.messages is None:
            return
        self.loop.call_soon_threadsafe(self.messages.put_nowait, (event, data, sid))

    async def send(self, event: str, data: Any, sid: str | None = None) -> None:
        """Send now, from the event loop: JSON ``{type, data}`` or a binary frame."""
        if sid is None:
            targets = list(self.sockets.values())
        else:
            targets = [self.sockets[sid]] if sid in self.sockets else []
        for ws in targets:
            try:
                if isinstance(data, (bytes, bytearray)):
                    await ws.send_bytes(bytes(data))
                else:
                    await ws.send_json({"type": event, "data": data})
            except (ConnectionError, RuntimeError):
                log.debug("dropping a message to a closed websocket")

    async def _publish(self) -> None:
        assert self.messages is not None
        while True:
            event, data, sid = await self.messages.get()
            await self.send(event, data, sid)

    def _on_worker_event(self, event: str, data: dict[str, Any], sid: str | None) -> None:
        """Executor events (worker thread) → websocket messages to the submitting client."""
        if event == "preview":
            frame = encode_preview(data["image"])
            if frame is not None:
                self.send_sync("preview", frame, sid)
            return
        if event == "executing":
            self.client_id, self.last_node_id = sid, data["node"]
            self.last_prompt_id = data.get("prompt_id")
        self.send_sync(event, data, sid)

    # -- running -----------------------------------------------------------------------------

    def run(self) -> None:
        """Serve until interrupted (Ctrl+C)."""
        # No access log: request lines would carry ?token= values into the logs.
        web.run_app(self.app, host=self.config.host, port=self.config.port,
                    print=lambda *_: None, handle_signals=True, access_log=None)


def encode_preview(image: Any) -> bytes | None:
    """A binary preview frame from a PIL image, an [H,W,C] tensor or ComfyUI's tuple form."""
    fmt = "JPEG"
    if isinstance(image, tuple) and len(image) >= 2:  # ("JPEG", PIL.Image, max_size)
        fmt, image = str(image[0]).upper(), image[1]
    if isinstance(image, torch.Tensor):
        array = (image.detach().float().clamp(0, 1).cpu().numpy() * 255).round()
        image = Image.fromarray(array.astype(np.uint8)[..., :3])
    if not isinstance(image, Image.Image):
        return None
    fmt = fmt if fmt in IMAGE_TYPES else "JPEG"
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format=fmt, quality=90)
    return struct.pack(">II", PREVIEW_IMAGE, IMAGE_TYPES[fmt]) + buffer.getvalue()


PromptServer.instance = HeadlessServer()
