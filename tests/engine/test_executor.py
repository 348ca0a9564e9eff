"""Running prompts: order, events, cache reuse, interrupt, node failures, list semantics."""

from __future__ import annotations

import threading

import pytest

from engine.cache import OutputCache
from engine.executor import Executor
from engine.graph import validate_prompt
from tests.engine import toy_nodes
from tests.engine.toy_nodes import Steps, chain_prompt, toy_registry


class Recorder:
    def __init__(self):
        self.events: list[tuple[str, dict]] = []

    def __call__(self, type_, data):
        self.events.append((type_, data))

    def types(self):
        return [t for t, _ in self.events]

    def of(self, type_):
        return [d for t, d in self.events if t == type_]


@pytest.fixture
def registry():
    return toy_registry()


@pytest.fixture
def run(registry):
    recorder = Recorder()
    executor = Executor(registry, OutputCache(1 << 30), recorder)
    toy_nodes.CALLS.clear()

    def _run(prompt, **kw):
        recorder.events.clear()
        toy_nodes.CALLS.clear()
        return executor.execute(validate_prompt(prompt, registry), **kw)

    _run.executor = executor
    _run.events = recorder
    return _run


def test_chain_runs_and_reports_ui(run):
    result = run(chain_prompt(5, value=10))
    assert result.status == "success"
    assert result.outputs == {"5": {"values": [13]}}
    types = run.events.types()
    assert types[0] == "execution_start"
    assert types[1] == "execution_cached"
    assert [d["node"] for d in run.events.of("executing")] == ["1", "2", "3", "4", "5", None]
    assert types[-2:] == ["execution_success", "executing"]
    assert all(d["prompt_id"] == result.prompt_id for _, d in run.events.events)


def test_identical_rerun_executes_nothing(run):
    run(chain_prompt(6))
    result = run(chain_prompt(6))
    assert result.executed == []
    assert result.cached == [str(i) for i in range(1, 7)]
    assert toy_nodes.CALLS == []
    assert run.events.of("execution_cached")[0]["nodes"] == result.cached
    # The output node's UI output is still delivered from the cache.
    assert result.outputs == {"6": {"values": [5]}}


def test_changing_a_downstream_widget_reruns_only_it_and_descendants(run):
    prompt = chain_prompt(6)
    run(prompt)
    prompt["4"]["inputs"]["b"] = 10
    result = run(prompt)
    assert result.executed == ["4", "5", "6"]
    assert result.cached == ["1", "2", "3"]
    assert result.outputs["6"] == {"values": [14]}


def test_upstream_of_a_cached_node_is_not_run(run):
    prompt = chain_prompt(4)
    run(prompt)
    prompt["9"] = {"class_type": "Show", "inputs": {"value": ["2", 0]}}
    result = run(prompt)
    assert result.executed == ["9"]


def test_cache_disabled_reruns_everything(registry):
    executor = Executor(registry, OutputCache(0))
    plan = validate_prompt(chain_prompt(4), registry)
    executor.execute(plan)
    assert executor.execute(plan).executed == ["1", "2", "3", "4"]


def test_is_changed_nan_always_reruns(run):
    prompt = {"1": {"class_type": "Volatile", "inputs": {"value": 1}},
              "2": {"class_type": "Show", "inputs": {"value": ["1", 0]}}}
    run(prompt)
    result = run(prompt)
    assert "1" in result.executed


def test_node_exception_ends_prompt_with_structured_error_and_engine_recovers(run):
    prompt = {"1": {"class_type": "Number", "inputs": {"value": 4}},
              "2": {"class_type": "Boom", "inputs": {"value": ["1", 0], "kind": "value"}},
              "3": {"class_type": "Show", "inputs": {"value": ["2", 0]}}}
    result = run(prompt)
    assert result.status == "error"
    err = result.error
    assert err["node_id"] == "2" and err["node_type"] == "Boom"
    assert err["exception_type"] == "builtins.ValueError"
    assert err["exception_message"] == "boom on 4"
    assert any("boom on" in line for line in err["traceback"])
    assert err["current_inputs"] == {"value": [4], "kind": "value"}
    assert err["executed"] == ["1"]
    assert run.events.of("execution_error")[0]["node_id"] == "2"
    assert run.events.types()[-1] == "executing"
    assert run(chain_prompt(3)).status == "success"


def test_out_of_memory_frees_the_cache_and_reports(run):
    run(chain_prompt(3))
    assert len(run.executor.cache) > 0
    prompt = {"1": {"class_type": "Boom", "inputs": {"value": 1, "kind": "memory"}},
              "2": {"class_type": "Show", "inputs": {"value": ["1", 0]}}}
    result = run(prompt)
    assert result.status == "error"
    assert "Out of memory" in result.error["exception_message"]
    assert len(run.executor.cache) == 0
    assert run(chain_prompt(3)).status == "success"


def test_progress_events_come_from_the_node(run):
    prompt = {"1": {"class_type": "Steps", "inputs": {"steps": 4, "wait": False}},
              "2": {"class_type": "Show", "inputs": {"value": ["1", 0]}}}
    run(prompt)
    progress = run.events.of("progress")
    assert [(p["value"], p["max"], p["node"]) for p in progress] == [
        (1, 4, "1"), (2, 4, "1"), (3, 4, "1"), (4, 4, "1")]


def test_interrupt_from_another_thread_stops_at_next_tick(run, registry):
    Steps.started.clear()
    Steps.release.clear()
    prompt = {"1": {"class_type": "Steps", "inputs": {"steps": 100, "wait": True}},
              "2": {"class_type": "Show", "inputs": {"value": ["1", 0]}}}
    results = []
    worker = threading.Thread(target=lambda: results.append(run(prompt)))
    worker.start()
    assert Steps.started.wait(5)
    run.executor.interrupt()
    Steps.release.set()
    worker.join(10)
    assert results[0].status == "interrupted"
    interrupted = run.events.of("execution_interrupted")[0]
    assert interrupted["node_id"] == "1"
    assert len(run.events.of("progress")) < 100
    assert run(chain_prompt(3)).status == "success"


def test_list_outputs_map_over_normal_nodes_and_gather_into_list_inputs(run):
    prompt = {"1": {"class_type": "Split", "inputs": {"count": 4}},
              "2": {"class_type": "Add", "inputs": {"a": ["1", 0], "b": 10}},
              "3": {"class_type": "Total", "inputs": {"values": ["2", 0]}},
              "4": {"class_type": "Show", "inputs": {"value": ["3", 0]}},
              "5": {"class_type": "Show", "inputs": {"value": ["2", 0]}}}
    result = run(prompt)
    assert result.outputs["4"] == {"values": [0 + 1 + 2 + 3 + 40]}
    assert result.outputs["5"] == {"values": [10, 11, 12, 13]}


def test_wrong_return_arity_is_a_clear_error(run, registry):
    class Liar:
        RETURN_TYPES = ("INT", "INT")
        FUNCTION = "run"

        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {}}

        def run(self):
            return (1,)

    registry.register("Liar", Liar)
    result = run({"1": {"class_type": "Liar", "inputs": {}},
                  "2": {"class_type": "Show", "inputs": {"value": ["1", 1]}}})
    assert result.status == "error"
    assert "returned 1 values but declares 2" in result.error["exception_message"]


def test_outputs_are_read_as_comfyui_reads_them(run, registry):
    class Chatty:
        """Returns more values than it declares, as some published packs do."""

        RETURN_TYPES = ("INT",)
        FUNCTION = "run"

        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {}}

        def run(self):
            return (7, "extra")

    class SaysDone:
        RETURN_TYPES = ()
        FUNCTION = "run"
        OUTPUT_NODE = True

        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"value": ("INT", {"forceInput": True})}}

        def run(self, value):
            return f"saved {value}"  # no outputs declared: ComfyUI ignores what it returns

    registry.register("Chatty", Chatty)
    registry.register("SaysDone", SaysDone)
    result = run({"1": {"class_type": "Chatty", "inputs": {}},
                  "2": {"class_type": "Show", "inputs": {"value": ["1", 0]}},
                  "3": {"class_type": "SaysDone", "inputs": {"value": ["1", 0]}}})
    assert result.status == "success", result.error
    assert result.outputs["2"] == {"values": [7]}
    assert "3" in result.executed
