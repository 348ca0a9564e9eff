"""Property tests: whatever a user sends, the engine answers with a structured error or runs."""

from __future__ import annotations

import copy
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nodes
from engine.cache import OutputCache
from engine.executor import Executor
from engine.graph import PromptError, prepare_prompt
from engine.registry import build_registry
from engine.workflow import api_to_canvas
from tests.engine.toy_nodes import chain_prompt, toy_registry

BUILTINS = build_registry(nodes, entry_points=False)
TOYS = toy_registry()

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                 max_size=4),
    max_leaves=20)

IMAGE_PROMPT = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1,
                                                 "color": 0}},
    "2": {"class_type": "ImageBlur", "inputs": {"image": ["1", 0], "blur_radius": 1,
                                                "sigma": 1.0}},
    "3": {"class_type": "ImageInvert", "inputs": {"image": ["2", 0]}},
    "4": {"class_type": "PreviewImage", "inputs": {"images": ["3", 0]}},
}


def assert_structured(data, registry):
    try:
        prepare_prompt(data, registry)
    except PromptError as exc:
        payload = exc.payload
        json.dumps(payload)  # a client can always receive it
        assert {"type", "message", "details", "extra_info"} <= payload["error"].keys()
        assert isinstance(payload["node_errors"], dict)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_random_json_values_give_structured_errors(data):
    assert_structured(data, BUILTINS)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60) | st.binary(max_size=60))
def test_random_text_gives_structured_errors(data):
    assert_structured(data, BUILTINS)


def mutate(document, draw):
    """Replace, delete or add one thing somewhere inside a JSON document."""
    document = copy.deepcopy(document)
    containers = [document]
    path_holder = document
    for _ in range(draw(st.integers(0, 4))):
        keys = list(path_holder) if isinstance(path_holder, dict) else list(
            range(len(path_holder))) if isinstance(path_holder, list) else []
        if not keys:
            break
        key = draw(st.sampled_from(keys))
        if not isinstance(path_holder[key], (dict, list)):
            break
        path_holder = path_holder[key]
        containers.append(path_holder)
    target = containers[-1]
    keys = list(target) if isinstance(target, dict) else list(range(len(target)))
    action = draw(st.sampled_from(["replace", "delete", "add"]))
    if action == "add" or not keys:
        if isinstance(target, dict):
            target[draw(st.text(max_size=6))] = draw(json_values)
        else:
            target.append(draw(json_values))
    elif action == "delete":
        del target[draw(st.sampled_from(keys))]
    else:
        target[draw(st.sampled_from(keys))] = draw(json_values)
    return document


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_api_and_canvas_workflows_give_structured_errors(data):
    source = data.draw(st.sampled_from(["api", "canvas"]))
    document = IMAGE_PROMPT if source == "api" else api_to_canvas(IMAGE_PROMPT, BUILTINS)
    for _ in range(data.draw(st.integers(1, 3))):
        document = mutate(document, data.draw)
    assert_structured(document, BUILTINS)


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_mutated_prompts_that_validate_run_without_raising(data):
    executor = Executor(TOYS, OutputCache(1 << 24))
    document = mutate(chain_prompt(5), data.draw)
    try:
        plan = prepare_prompt(document, TOYS)
    except PromptError:
        return
    result = executor.execute(plan)
    assert result.status in ("success", "error")
    if result.status == "error":
        json.dumps(result.error, default=str)
        assert result.error["node_id"] in plan.prompt
