"""The persistent queue and history: ordering, restarts, crash recovery, pruning, threads."""

from __future__ import annotations

import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from app.store import PromptStore, QueueItem

ROOT = Path(__file__).resolve().parents[2]
SUCCESS = {"status_str": "success", "completed": True, "messages": []}


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "queue.sqlite"


@pytest.fixture
def store(db_path: Path):
    with PromptStore(db_path) as opened:
        yield opened


def submit(store: PromptStore, prompt_id: str, *, front: bool = False) -> QueueItem:
    item = QueueItem(store.next_number(front), prompt_id,
                     {"1": {"class_type": "EmptyImage", "inputs": {"width": 8}}},
                     {"client_id": "c1", "extra_pnginfo": {"workflow": {"nodes": []}}}, ["1"])
    store.enqueue(item)
    return item


def ids(items: list[QueueItem]) -> list[str]:
    return [item.prompt_id for item in items]


def test_front_submissions_run_before_back_ones_newest_front_first(store):
    submit(store, "a")
    submit(store, "b")
    submit(store, "f1", front=True)
    submit(store, "c")
    submit(store, "f2", front=True)
    assert ids(store.pending()) == ["f2", "f1", "a", "b", "c"]
    assert [item.number for item in store.pending()] == [-2, -1, 0, 1, 2]
    assert ids([store.claim_next() for _ in range(5)]) == ["f2", "f1", "a", "b", "c"]
    assert store.claim_next() is None


def test_queue_entry_has_comfyui_shape_and_survives_json(store):
    item = submit(store, "a")
    (stored,) = store.pending()
    assert stored == item
    assert stored.as_comfy() == [0, "a", item.prompt, item.extra_data, ["1"]]


def test_numbers_are_never_reused_after_reopening(db_path):
    with PromptStore(db_path) as store:
        numbers = [store.next_number(), store.next_number(), store.next_number(front=True)]
        submit(store, "a")  # number 2
        store.claim_next()
        store.finish("a", outputs={}, status=SUCCESS)
    with PromptStore(db_path) as store:
        assert store.next_number() == 3
        assert store.next_number(front=True) == -2
        assert numbers == [0, 1, -1]


def test_enqueue_with_an_explicit_number_moves_the_counters_past_it(store):
    store.enqueue(QueueItem(41, "x", {}, {}, []))
    store.enqueue(QueueItem(-7, "y", {}, {}, []))
    assert store.next_number() == 42
    assert store.next_number(front=True) == -8


def test_duplicate_prompt_id_is_refused(store):
    submit(store, "a")
    with pytest.raises(ValueError, match="already queued"):
        submit(store, "a")
    store.claim_next()
    with pytest.raises(ValueError):
        submit(store, "a")
    assert ids(store.running()) == ["a"] and store.pending() == []


def test_claim_marks_running_and_counts_attempts(store):
    submit(store, "a")
    submit(store, "b")
    claimed = store.claim_next()
    assert claimed.prompt_id == "a" and claimed.attempts == 1
    assert ids(store.running()) == ["a"]
    assert ids(store.pending()) == ["b"]
    assert store.running()[0].attempts == 1


def test_queue_persists_across_close_and_reopen(db_path):
    with PromptStore(db_path) as store:
        for prompt_id in "abc":
            submit(store, prompt_id)
        store.claim_next()
    with PromptStore(db_path) as store:
        assert ids(store.pending()) == ["b", "c"]
        assert ids(store.running()) == ["a"]
        assert store.pending()[0].extra_data["extra_pnginfo"] == {"workflow": {"nodes": []}}


def test_a_crashed_store_leaves_committed_state_for_the_next_process(db_path, tmp_path):
    crashed = PromptStore(db_path)  # never closed: the WAL is not checkpointed
    submit(crashed, "a")
    submit(crashed, "b")
    crashed.claim_next()
    copy = tmp_path / "copy"
    copy.mkdir()
    for path in db_path.parent.iterdir():  # what the disk holds at the moment of the "crash"
        shutil.copy(path, copy / path.name)
    assert (copy / "queue.sqlite-wal").exists()
    with PromptStore(copy / "queue.sqlite") as store:
        assert ids(store.running()) == ["a"]
        assert ids(store.pending()) == ["b"]
    with PromptStore(db_path) as second:  # also fine while the first is still open
        assert ids(second.running()) == ["a"]
    crashed.close()


def test_recover_requeues_once_then_fails_with_the_reason(db_path):
    with PromptStore(db_path) as store:
        submit(store, "a")
        submit(store, "b")
        assert store.claim_next().prompt_id == "a"
    # crash while "a" runs: it goes back to the queue at its original number, first in line
    with PromptStore(db_path) as store:
        assert store.recover() == (["a"], [])
        assert ids(store.pending()) == ["a", "b"]
        assert store.pending()[0].number == 0
        again = store.claim_next()
        assert again.prompt_id == "a" and again.attempts == 2
    # second crash on the same prompt: it is failed, not retried forever
    with PromptStore(db_path) as store:
        assert store.recover() == ([], ["a"])
        assert ids(store.pending()) == ["b"] and store.running() == []
        entry = store.history_item("a")
    assert entry["prompt"][1] == "a"
    assert entry["outputs"] == {}
    status = entry["status"]
    assert status["status_str"] == "error" and status["completed"] is False
    (event, data), = status["messages"]
    assert event == "execution_error"
    assert data["prompt_id"] == "a"
    assert data["exception_message"] == (
        "the server stopped while this prompt was running (tried 2 times)")


def test_recover_honours_max_attempts_and_leaves_pending_alone(db_path):
    with PromptStore(db_path, max_attempts=1) as store:
        submit(store, "a")
        submit(store, "b")
        store.claim_next()
        assert store.recover() == ([], ["a"])
        assert "tried once" in str(store.history_item("a"))
        assert ids(store.pending()) == ["b"]
        assert store.recover() == ([], [])


def test_finish_moves_the_prompt_to_history_in_comfyui_shape(store):
    item = submit(store, "a")
    store.claim_next()
    outputs = {"9": {"images": [{"filename": "x.png", "subfolder": "", "type": "output"}]}}
    status = {"status_str": "success", "completed": True,
              "messages": [["execution_start", {"prompt_id": "a", "timestamp": 1}]]}
    store.finish("a", outputs=outputs, status=status, meta={"9": {"node_id": "9"}})
    assert store.running() == [] and store.pending() == []
    assert store.history() == {"a": {"prompt": item.as_comfy(), "outputs": outputs,
                                     "status": status, "meta": {"9": {"node_id": "9"}}}}
    assert store.history_count() == 1
    with pytest.raises(KeyError):
        store.finish("a", outputs={}, status=SUCCESS)
    with pytest.raises(KeyError):
        store.finish("never-queued", outputs={}, status=SUCCESS)


def test_history_is_oldest_first_and_pages_from_the_newest(store):
    for prompt_id in "abcdef":
        submit(store, prompt_id)
    for prompt_id in "bacfed":  # completion order, not queue order, decides
        store.claim_next()
        store.finish(prompt_id, outputs={}, status=SUCCESS)
    assert list(store.history()) == list("bacfed")
    assert list(store.history(max_items=2)) == ["e", "d"]
    assert list(store.history(max_items=2, offset=2)) == ["c", "f"]
    assert list(store.history(offset=4)) == ["b", "a"]
    assert store.history(max_items=0) == {}
    assert store.history(max_items=10, offset=10) == {}


def test_pruning_keeps_the_newest_entries(db_path):
    with PromptStore(db_path, max_history=3) as store:
        for n in range(7):
            submit(store, f"p{n}")
            store.claim_next()
            store.finish(f"p{n}", outputs={"n": n}, status=SUCCESS)
            assert store.history_count() == min(n + 1, 3)
        assert list(store.history()) == ["p4", "p5", "p6"]
    with PromptStore(db_path, max_history=2) as store:  # a smaller limit applies on open
        assert list(store.history()) == ["p5", "p6"]
        assert store.history_count() == 2


def test_delete_and_clear_history(store):
    for prompt_id in "abc":
        submit(store, prompt_id)
        store.claim_next()
        store.finish(prompt_id, outputs={}, status=SUCCESS)
    store.delete_history(["b", "nope"])
    assert list(store.history()) == ["a", "c"]
    assert store.history_item("b") is None
    assert store.history_item("c")["status"] == SUCCESS
    assert store.history_count() == 2
    store.clear_history()
    assert store.history() == {} and store.history_count() == 0


def test_delete_and_clear_pending_leave_running_prompts(store):
    for prompt_id in "abcd":
        submit(store, prompt_id)
    store.claim_next()  # "a" is running
    assert store.delete_pending(["a", "c", "zz", "c"]) == ["c"]
    assert ids(store.running()) == ["a"]
    assert ids(store.pending()) == ["b", "d"]
    assert store.clear_pending() == 2
    assert store.pending() == [] and ids(store.running()) == ["a"]


def test_a_finished_prompt_id_can_run_again_and_becomes_the_newest_entry(store):
    for prompt_id in ["a", "b", "a"]:
        submit(store, prompt_id)
        store.claim_next()
        store.finish(prompt_id, outputs={}, status=SUCCESS)
    assert list(store.history()) == ["b", "a"]
    assert store.history_count() == 2


def test_closed_store_refuses_calls(db_path):
    store = PromptStore(db_path)
    store.close()
    store.close()
    with pytest.raises(RuntimeError, match="closed"):
        store.pending()


def test_two_threads_enqueue_and_claim_without_losing_anything(store):
    total = 500
    claimed: list[str] = []
    done = threading.Event()
    errors: list[BaseException] = []

    def producer() -> None:
        try:
            for n in range(total):
                submit(store, f"p{n}", front=n % 7 == 0)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            done.set()

    def consumer() -> None:
        try:
            while True:
                item = store.claim_next()
                if item is not None:
                    claimed.append(item.prompt_id)
                    store.finish(item.prompt_id, outputs={}, status=SUCCESS)
                elif done.is_set() and not store.pending():
                    return
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=producer), threading.Thread(target=consumer)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors
    assert sorted(claimed) == sorted(f"p{n}" for n in range(total))
    assert store.history_count() == total == len(store.history())
    assert store.pending() == [] and store.running() == []


_CRASH_WORKER = """
import sys
from app.store import PromptStore, QueueItem
store = PromptStore(sys.argv[1], max_history=50)
n = 0
while True:
    store.enqueue(QueueItem(store.next_number(n % 3 == 0), f"p{n}", {"x": "y" * 500}, {}, ["1"]))
    item = store.claim_next()
    if n % 2:
        store.finish(item.prompt_id, outputs={"o": n}, status={"status_str": "success"})
    n += 1
    if n == 200:
        print("ready", flush=True)
"""


def test_kill_9_at_any_moment_leaves_a_consistent_database(db_path):
    db_path.parent.mkdir(parents=True)
    proc = subprocess.Popen([sys.executable, "-c", _CRASH_WORKER, str(db_path)], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    with sqlite3.connect(db_path) as raw:
        assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        queued = raw.execute("SELECT prompt_id FROM queue").fetchall()
        finished = raw.execute("SELECT prompt_id FROM history").fetchall()
        counted = raw.execute("SELECT value FROM counters WHERE name = 'history'").fetchone()[0]
    assert counted == len(finished)  # the size counter moved in the same transactions
    raw.close()
    with PromptStore(db_path, max_history=50) as store:
        queue_ids = set(ids(store.pending()) + ids(store.running()))
        assert {row[0] for row in queued} == queue_ids
        assert store.history_count() == len(finished) == len(store.history()) <= 50
        assert not queue_ids & set(store.history())
        numbers = [item.number for item in store.pending() + store.running()]
        assert len(numbers) == len(set(numbers))
        store.recover()
        fresh = store.next_number()
        assert fresh > max((n for n in numbers if n >= 0), default=-1)
