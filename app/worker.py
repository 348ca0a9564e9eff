"""The in-process worker: takes prompts from the queue and runs them on the engine.

The server talks to workers through three things only: the queue (submit, cancel), an
interrupt call, and the event sink (events back). A pool of remote workers would keep that
shape, so scaling out adds machines, not code.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from app.queue import PromptQueue
from app.runtime import Runtime
from app.store import QueueItem
from engine.graph import PromptError, validate_prompt

log = logging.getLogger(__name__)

# Events kept in a history entry's status messages (ComfyUI keeps the same ones).
HISTORY_EVENTS = frozenset({"execution_start", "execution_cached", "execution_success",
                            "execution_error", "execution_interrupted"})

EventCallback = Callable[[str, dict[str, Any], str | None], None]


class InProcessWorker:
    """One thread running queued prompts in priority order on this process's engine."""

    def __init__(self, runtime: Runtime, queue: PromptQueue, on_event: EventCallback):
        self.runtime = runtime
        self.queue = queue
        self.on_event = on_event
        self.current: QueueItem | None = None
        self._stop = threading.Event()
        self._free = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="kinema-worker", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self.runtime.executor.interrupt()
        self.queue.wake_all()
        self._thread.join(timeout)

    def interrupt(self, prompt_id: str | None = None) -> bool:
        """Interrupt the running prompt (only if it is ``prompt_id``, when one is given)."""
        current = self.current
        if current is None or (prompt_id is not None and current.prompt_id != prompt_id):
            return False
        self.runtime.executor.interrupt()
        return True

    def request_free(self) -> None:
        """Empty the output cache before the next prompt (never under a running one)."""
        self._free.set()
        self.queue.wake_all()

    def _loop(self) -> None:
        while not self._stop.is_set():
            if self._free.is_set():
                self._free.clear()
                self.runtime.executor.cache.clear()
            item = self.queue.claim(timeout=0.5)
            if item is None:
                continue
            self.current = item
            try:
                self._run(item)
            except Exception:  # the worker must outlive any prompt
                log.exception("prompt %s failed outside the executor", item.prompt_id)
            finally:
                self.current = None

    def _run(self, item: QueueItem) -> None:
        client_id = item.extra_data.get("client_id")
        messages: list[list[Any]] = []
        done = {"node": None, "display_node": None, "prompt_id": item.prompt_id}

        def emit(type_: str, data: dict[str, Any]) -> None:
            if type_ == "executing" and data["node"] is None:
                return  # sent once the history entry is written, so clients can read it
            if type_ in HISTORY_EVENTS:
                messages.append([type_, data])
            self.on_event(type_, data, client_id)

        try:
            # Validated again: the prompt may come from before a restart, with other plugins.
            plan = validate_prompt(item.prompt, self.runtime.registry, item.outputs or None)
        except PromptError as exc:
            error = {"prompt_id": item.prompt_id, "node_id": None, "node_type": None,
                     "executed": [], "exception_message": exc.error["message"],
                     "exception_type": "PromptError", "traceback": [],
                     "current_inputs": {}, "current_outputs": [], **exc.payload}
            emit("execution_error", error)
            self.queue.finish(item.prompt_id, outputs={}, meta={},
                              status=_status("error", messages))
            self.on_event("executing", done, client_id)
            return
        executor = self.runtime.executor
        executor.on_event = emit
        result = executor.execute(plan, item.prompt_id, item.extra_data)
        if result.status == "interrupted" and self._stop.is_set():
            # Stopped by a shutdown, not by the user: left running, so the next start re-queues it.
            log.info("prompt %s will run again after the restart", item.prompt_id)
            return
        meta = {nid: {"node_id": nid, "display_node": nid, "parent_node": None,
                      "real_node_id": nid} for nid in result.outputs}
        self.queue.finish(item.prompt_id, outputs=result.outputs, meta=meta,
                          status=_status(result.status, messages))
        self.on_event("executing", done, client_id)


def _status(status: str, messages: list[list[Any]]) -> dict[str, Any]:
    return {"status_str": status, "completed": status == "success", "messages": messages}
