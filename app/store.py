"""The server's persistent queue and history, on SQLite in WAL mode.

Knows nothing of HTTP or of the engine: it stores JSON-able dicts. One connection, opened with
``check_same_thread=False`` and guarded by a lock, serves every thread (the event loop and the
worker). Each change is one ``BEGIN IMMEDIATE`` ... ``COMMIT`` transaction, so a ``kill -9`` at
any moment leaves the database as it was before or after that change, never in between.

Tables: ``queue`` (pending and running prompts), ``history`` (finished prompts, ordered by the
autoincrement ``seq``, i.e. completion order) and ``counters`` (next queue numbers and the history
size, the latter kept by triggers so pruning never has to count rows).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    "INSERT OR IGNORE INTO counters VALUES ('back', 0), ('front', -1), ('history', 0)",
    """CREATE TABLE IF NOT EXISTS queue (
        id INTEGER PRIMARY KEY,
        prompt_id TEXT NOT NULL UNIQUE,
        number INTEGER NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('pending', 'running')),
        attempts INTEGER NOT NULL DEFAULT 0,
        prompt TEXT NOT NULL,
        extra_data TEXT NOT NULL,
        outputs TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS queue_order ON queue (state, number, id)",
    """CREATE TABLE IF NOT EXISTS history (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        prompt_id TEXT NOT NULL UNIQUE,
        entry TEXT NOT NULL)""",
    """CREATE TRIGGER IF NOT EXISTS history_added AFTER INSERT ON history
        BEGIN UPDATE counters SET value = value + 1 WHERE name = 'history'; END""",
    """CREATE TRIGGER IF NOT EXISTS history_removed AFTER DELETE ON history
        BEGIN UPDATE counters SET value = value - 1 WHERE name = 'history'; END""",
)

_ITEM_COLUMNS = "number, prompt_id, prompt, extra_data, outputs, attempts"


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


@dataclass
class QueueItem:
    """One queued prompt, as ComfyUI keeps it."""

    number: int  # ComfyUI queue number: lower runs first; "front" submissions are negative
    prompt_id: str
    prompt: dict  # API-format prompt
    extra_data: dict  # {"client_id": ..., "extra_pnginfo": {...}, ...}
    outputs: list[str]  # ids of the output nodes to execute
    attempts: int = 0  # how many times a worker has started it

    def as_comfy(self) -> list:
        """ComfyUI's queue entry: ``[number, prompt_id, prompt, extra_data, outputs]``."""
        return [self.number, self.prompt_id, self.prompt, self.extra_data, self.outputs]


def _item(row: tuple) -> QueueItem:
    number, prompt_id, prompt, extra_data, outputs, attempts = row
    return QueueItem(number, prompt_id, json.loads(prompt), json.loads(extra_data),
                     json.loads(outputs), attempts)


class PromptStore:
    """Queue and history that survive a restart (or a crash) of the server.

    Safe to call from several threads. Open one per process; a second store on the same file
    (another process, or a test simulating a crash) sees committed changes.
    """

    def __init__(self, path: Path, *, max_history: int = 10_000, max_attempts: int = 2) -> None:
        if max_history < 0 or max_attempts < 1:
            raise ValueError("max_history must be >= 0 and max_attempts >= 1")
        self.path = Path(path)
        self.max_history = max_history
        self.max_attempts = max_attempts
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, timeout=10.0, isolation_level=None,
                             check_same_thread=False)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            # WAL alone makes every commit atomic against a killed process: the commit is the
            # append of a commit frame to the -wal file, which the OS keeps once write() returns;
            # an interrupted transaction is simply ignored on the next open. synchronous=FULL
            # adds an fsync of the WAL per commit so that an acknowledged submission or result
            # also survives a power cut or OS crash. Commits here are a few per prompt, so the
            # fsync is cheap next to the prompt it records.
            db.execute("PRAGMA synchronous=FULL")
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise RuntimeError(f"{self.path} was written by a newer Kinema (schema {version})")
            db.execute("BEGIN IMMEDIATE")
            try:
                for statement in _SCHEMA:
                    db.execute(statement)
                db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                # Re-derive the history size once per open, then triggers keep it exact.
                db.execute("UPDATE counters SET value = (SELECT COUNT(*) FROM history)"
                           " WHERE name = 'history'")
                self._prune(db)
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        except BaseException:
            db.close()
            raise
        self._db: sqlite3.Connection | None = db

    # -- plumbing ----------------------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError(f"PromptStore {self.path} is closed")
        return self._db

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One transaction under the lock: all of it is committed, or none of it."""
        with self._lock:
            db = self._conn()
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            yield self._conn()

    def _prune(self, db: sqlite3.Connection) -> None:
        """Drop the oldest history entries beyond max_history (walks only those, by index)."""
        count = db.execute("SELECT value FROM counters WHERE name = 'history'").fetchone()[0]
        excess = count - self.max_history
        if excess > 0:
            db.execute("DELETE FROM history WHERE seq IN"
                       " (SELECT seq FROM history ORDER BY seq LIMIT ?)", (excess,))

    def _add_history(self, db: sqlite3.Connection, prompt_id: str, entry: dict) -> None:
        # A prompt_id seen before (a client reusing its id) replaces the old entry as newest.
        db.execute("DELETE FROM history WHERE prompt_id = ?", (prompt_id,))
        db.execute("INSERT INTO history (prompt_id, entry) VALUES (?, ?)",
                   (prompt_id, _dumps(entry)))
        self._prune(db)

    # -- queue -------------------------------------------------------------------------------

    def next_number(self, front: bool = False) -> int:
        """A fresh queue number: back numbers count up from 0, front ones down from -1.

        Front items therefore run before every back item (and the latest front submission
        first, as in ComfyUI). Counters are persisted, so numbers never repeat across restarts.
        """
        name, step = ("front", -1) if front else ("back", 1)
        with self._write() as db:
            (number,) = db.execute("SELECT value FROM counters WHERE name = ?",
                                   (name,)).fetchone()
            db.execute("UPDATE counters SET value = ? WHERE name = ?", (number + step, name))
        return number

    def enqueue(self, item: QueueItem) -> None:
        """Add a pending prompt. A prompt_id already queued or running raises ValueError.

        The counters move past ``item.number``, so next_number() never hands it out again.
        """
        row = (item.prompt_id, item.number, item.attempts, _dumps(item.prompt),
               _dumps(item.extra_data), _dumps(item.outputs))
        with self._write() as db:
            try:
                db.execute("INSERT INTO queue (prompt_id, number, state, attempts, prompt,"
                           " extra_data, outputs) VALUES (?, ?, 'pending', ?, ?, ?, ?)", row)
            except sqlite3.IntegrityError:
                raise ValueError(f"prompt {item.prompt_id!r} is already queued") from None
            if item.number >= 0:
                db.execute("UPDATE counters SET value = MAX(value, ?) WHERE name = 'back'",
                           (item.number + 1,))
            else:
                db.execute("UPDATE counters SET value = MIN(value, ?) WHERE name = 'front'",
                           (item.number - 1,))

    def claim_next(self) -> QueueItem | None:
        """Mark the pending prompt with the lowest number running (attempts + 1); return it."""
        with self._write() as db:
            row = db.execute(f"SELECT {_ITEM_COLUMNS} FROM queue WHERE state = 'pending'"
                             " ORDER BY number, id LIMIT 1").fetchone()
            if row is None:
                return None
            item = _item(row)
            item.attempts += 1
            db.execute("UPDATE queue SET state = 'running', attempts = ? WHERE prompt_id = ?",
                       (item.attempts, item.prompt_id))
        return item

    def _items(self, state: str) -> list[QueueItem]:
        with self._read() as db:
            rows = db.execute(f"SELECT {_ITEM_COLUMNS} FROM queue WHERE state = ?"
                              " ORDER BY number, id", (state,)).fetchall()
        return [_item(row) for row in rows]

    def pending(self) -> list[QueueItem]:
        """Pending prompts in the order they will run."""
        return self._items("pending")

    def running(self) -> list[QueueItem]:
        """Prompts a worker has claimed and not yet finished."""
        return self._items("running")

    def queue_count(self) -> int:
        """Prompts pending or running, without reading them."""
        with self._read() as db:
            return db.execute("SELECT COUNT(*) FROM queue").fetchone()[0]

    def delete_pending(self, prompt_ids: Iterable[str]) -> list[str]:
        """Remove these prompts if still pending; return the ids actually removed.

        Running prompts are left alone (interrupting them is the worker's business).
        """
        removed: list[str] = []
        with self._write() as db:
            for prompt_id in dict.fromkeys(prompt_ids):
                cursor = db.execute("DELETE FROM queue WHERE prompt_id = ? AND state = 'pending'",
                                    (prompt_id,))
                if cursor.rowcount:
                    removed.append(prompt_id)
        return removed

    def clear_pending(self) -> int:
        """Remove every pending prompt; return how many."""
        with self._write() as db:
            return db.execute("DELETE FROM queue WHERE state = 'pending'").rowcount

    def finish(self, prompt_id: str, *, outputs: dict, status: dict,
               meta: dict | None = None) -> None:
        """Move a queued prompt to history in one transaction, then prune the history.

        The entry has ComfyUI's shape: ``{"prompt": item.as_comfy(), "outputs", "status",
        "meta"}``, with ``status = {"status_str", "completed", "messages": [[event, data]]}``.
        Raises KeyError if the prompt is not in the queue.
        """
        with self._write() as db:
            row = db.execute(f"SELECT {_ITEM_COLUMNS} FROM queue WHERE prompt_id = ?",
                             (prompt_id,)).fetchone()
            if row is None:
                raise KeyError(prompt_id)
            item = _item(row)
            db.execute("DELETE FROM queue WHERE prompt_id = ?", (prompt_id,))
            self._add_history(db, prompt_id, {"prompt": item.as_comfy(), "outputs": outputs,
                                              "status": status, "meta": meta or {}})

    def recover(self) -> tuple[list[str], list[str]]:
        """Deal with prompts a crash left running; call once at start-up, before any worker.

        A prompt started fewer than max_attempts times goes back to pending at its original
        number; the others go to history as failed (they may be what crashed the server).
        Returns ``(requeued_ids, failed_ids)``. Pending prompts stay as they are.
        """
        requeued: list[str] = []
        failed: list[str] = []
        with self._write() as db:
            rows = db.execute(f"SELECT {_ITEM_COLUMNS} FROM queue WHERE state = 'running'"
                              " ORDER BY number, id").fetchall()
            for item in map(_item, rows):
                if item.attempts < self.max_attempts:
                    db.execute("UPDATE queue SET state = 'pending' WHERE prompt_id = ?",
                               (item.prompt_id,))
                    requeued.append(item.prompt_id)
                    continue
                db.execute("DELETE FROM queue WHERE prompt_id = ?", (item.prompt_id,))
                times = "once" if item.attempts == 1 else f"{item.attempts} times"
                error = {
                    "prompt_id": item.prompt_id, "node_id": None, "node_type": None,
                    "executed": [], "exception_type": "ServerRestart",
                    "exception_message": "the server stopped while this prompt was running"
                                         f" (tried {times})",
                    "traceback": [], "current_inputs": {}, "current_outputs": {},
                    "timestamp": int(time.time() * 1000),
                }
                status = {"status_str": "error", "completed": False,
                          "messages": [["execution_error", error]]}
                self._add_history(db, item.prompt_id, {"prompt": item.as_comfy(), "outputs": {},
                                                       "status": status, "meta": {}})
                failed.append(item.prompt_id)
        return requeued, failed

    # -- history -----------------------------------------------------------------------------

    def history(self, max_items: int | None = None, offset: int = 0) -> dict[str, dict]:
        """Finished prompts by id, oldest first (ComfyUI's order).

        ``offset`` skips that many of the newest entries, then ``max_items`` takes the next
        newest ones: ``history(64)`` is the latest 64, ``history(64, 64)`` the 64 before them.
        Only the rows returned are read, by the ordering index.
        """
        return json.loads(self.history_json(max_items, offset))

    def history_json(self, max_items: int | None = None, offset: int = 0) -> str:
        """``history()`` as JSON text, joined from the stored entries without decoding them.

        A server answers a full history (10,000 entries) this way in tens of milliseconds
        instead of the seconds that decoding and re-encoding every entry takes.
        """
        if (max_items is not None and max_items < 0) or offset < 0:
            raise ValueError("max_items and offset must not be negative")
        limit = -1 if max_items is None else max_items
        with self._read() as db:
            rows = db.execute("SELECT prompt_id, entry FROM history ORDER BY seq DESC"
                              " LIMIT ? OFFSET ?", (limit, offset)).fetchall()
        return "{" + ",".join(f"{json.dumps(pid)}:{entry}" for pid, entry in reversed(rows)) + "}"

    def history_item(self, prompt_id: str) -> dict | None:
        """One history entry, or None."""
        with self._read() as db:
            row = db.execute("SELECT entry FROM history WHERE prompt_id = ?",
                             (prompt_id,)).fetchone()
        return None if row is None else json.loads(row[0])

    def delete_history(self, prompt_ids: Iterable[str]) -> None:
        """Forget these history entries (unknown ids are ignored)."""
        with self._write() as db:
            db.executemany("DELETE FROM history WHERE prompt_id = ?",
                           ((prompt_id,) for prompt_id in prompt_ids))

    def clear_history(self) -> None:
        """Forget every history entry."""
        with self._write() as db:
            db.execute("DELETE FROM history")

    def history_count(self) -> int:
        """How many entries the history holds (a counter, not a scan)."""
        with self._read() as db:
            return db.execute("SELECT value FROM counters WHERE name = 'history'").fetchone()[0]

    def close(self) -> None:
        """Close the database (checkpointing the WAL); later calls raise RuntimeError."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def __enter__(self) -> PromptStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
