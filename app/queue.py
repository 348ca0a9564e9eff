"""The prompt queue workers take from: a persistent store plus a wake-up for idle workers.

Every change is announced to listeners (the server broadcasts ``status`` to its clients).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

from app.store import PromptStore, QueueItem


class PromptQueue:
    """Submit, claim, finish and cancel prompts; safe from the event loop and worker threads."""

    def __init__(self, store: PromptStore):
        self.store = store
        self._wake = threading.Condition()
        self._listeners: list[Callable[[], None]] = []

    def on_change(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)

    def _changed(self) -> None:
        with self._wake:
            self._wake.notify_all()
        for listener in self._listeners:
            listener()

    def submit(self, item: QueueItem) -> None:
        self.store.enqueue(item)
        self._changed()

    def claim(self, timeout: float | None = None) -> QueueItem | None:
        """The next prompt to run, waiting up to ``timeout`` seconds for one to arrive."""
        with self._wake:
            item = self.store.claim_next()
            if item is None:
                self._wake.wait(timeout)
                item = self.store.claim_next()
        if item is not None:
            self._changed()
        return item

    def finish(self, prompt_id: str, *, outputs: dict, status: dict, meta: dict) -> None:
        self.store.finish(prompt_id, outputs=outputs, status=status, meta=meta)
        self._changed()

    def delete(self, prompt_ids: Iterable[str]) -> list[str]:
        removed = self.store.delete_pending(prompt_ids)
        if removed:
            self._changed()
        return removed

    def clear(self) -> int:
        count = self.store.clear_pending()
        self._changed()
        return count

    def remaining(self) -> int:
        """Prompts pending or running: ComfyUI's ``queue_remaining``."""
        return self.store.queue_count()

    def wake_all(self) -> None:
        """Let idle workers re-check (used when shutting down)."""
        with self._wake:
            self._wake.notify_all()
