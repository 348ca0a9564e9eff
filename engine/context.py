"""The narrow context a running node reaches the engine through: progress and interrupt.

The executor installs one ``NodeContext`` around each node call; nodes (and the ComfyUI
compatibility modules) find it with ``current_context()``. It is process-global rather than
thread-local on purpose: plugins often report progress from worker threads of their own.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any


class InterruptProcessingException(Exception):
    """Raised inside a node when the user interrupted the prompt."""


class InterruptFlag:
    """A thread-safe flag another thread sets to stop the running prompt."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()

    def clear(self) -> None:
        self._event.clear()

    def is_set(self) -> bool:
        return self._event.is_set()

    def raise_if_set(self) -> None:
        if self._event.is_set():
            raise InterruptProcessingException()


ProgressCallback = Callable[[int, int, Any], None]


@dataclass
class NodeContext:
    """What one node call may use: its identity, a progress reporter, the interrupt flag."""

    prompt_id: str
    node_id: str
    class_type: str
    report: ProgressCallback
    interrupt: InterruptFlag

    def progress(self, value: int, total: int, preview: Any = None) -> None:
        """Report ``value`` of ``total`` steps done (with an optional preview image).

        Every tick is also an interrupt point, so long nodes stop between steps.
        """
        self.interrupt.raise_if_set()
        self.report(int(value), int(total), preview)

    def check_interrupted(self) -> None:
        self.interrupt.raise_if_set()


_lock = threading.Lock()
_current: NodeContext | None = None


def current_context() -> NodeContext | None:
    """The context of the node that is running now, or None outside a node call."""
    return _current


@contextmanager
def node_context(ctx: NodeContext):
    """Install ``ctx`` as the current context for the duration of one node call."""
    global _current
    with _lock:
        previous, _current = _current, ctx
    try:
        yield ctx
    finally:
        with _lock:
            _current = previous
