"""ComfyUI's ``PromptServer.instance.prompt_queue`` for plugins, over Kinema's own queue.

Plugins read the running prompt from it (``currently_running``) and queue follow-up prompts
(``put``: VideoHelperSuite's batch manager re-queues its workflow). A prompt put here is
validated like a POST /prompt and goes into the same SQLite queue, so it survives a restart.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from app.queue import PromptQueue
from app.store import PromptStore, QueueItem
from engine.graph import prepare_prompt
from engine.registry import NodeRegistry


class ComfyPromptQueue:
    """The parts of ComfyUI's ``execution.PromptQueue`` that plugins use."""

    def __init__(self, store: PromptStore, queue: PromptQueue,
                 registry: Callable[[], NodeRegistry]):
        self.store = store
        self.queue = queue
        self.registry = registry  # a getter: the queue exists before the plugins have loaded

    @property
    def currently_running(self) -> dict[int, tuple]:
        """Running prompts as ComfyUI's ``(number, prompt_id, prompt, extra_data, outputs)``."""
        return {i: tuple(item.as_comfy()) for i, item in enumerate(self.store.running())}

    def put(self, item: Sequence[Any]) -> None:
        """Queue ``(number, prompt_id, prompt, extra_data, outputs, ...)``; raises PromptError
        when the prompt does not validate."""
        number, prompt_id, prompt, extra_data = item[:4]
        plan = prepare_prompt(prompt, self.registry(), item[4] if len(item) > 4 else None)
        self.queue.submit(QueueItem(int(number), str(prompt_id), plan.prompt,
                                    dict(extra_data or {}), plan.outputs))

    def get_current_queue(self) -> tuple[list, list]:
        """(running, pending) entries, as ComfyUI's queue lists them."""
        return ([item.as_comfy() for item in self.store.running()],
                [item.as_comfy() for item in self.store.pending()])

    def get_tasks_remaining(self) -> int:
        """Prompts running or waiting."""
        return self.queue.remaining()

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(f"prompt_queue.{name} is not supported by Kinema (it has "
                             "currently_running, put, get_current_queue, get_tasks_remaining)")


class HeadlessPromptQueue:
    """``prompt_queue`` under ``server.py run``: one workflow runs, nothing can be queued."""

    @property
    def currently_running(self) -> dict[int, tuple]:
        """Empty: the headless run is not a queued prompt."""
        return {}

    def put(self, item: Sequence[Any]) -> None:
        """Refused: there is no queue to put a prompt in."""
        raise RuntimeError("a plugin tried to queue a prompt, but server.py run runs one "
                           "workflow and has no queue; use the server")

    def get_current_queue(self) -> tuple[list, list]:
        """Nothing running or waiting."""
        return [], []

    def get_tasks_remaining(self) -> int:
        """Nothing running or waiting."""
        return 0
