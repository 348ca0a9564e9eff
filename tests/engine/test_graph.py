"""Validation reports every problem at once, in ComfyUI's shape, and plans only what runs."""

from __future__ import annotations

import pytest

from engine.graph import PromptError, prepare_prompt, validate_prompt
from tests.engine.toy_nodes import chain_prompt, toy_registry


@pytest.fixture
def registry():
    return toy_registry()


def errors_of(prompt, registry) -> PromptError:
    with pytest.raises(PromptError) as info:
        validate_prompt(prompt, registry)
    payload = info.value.payload
    assert set(payload) == {"error", "node_errors"}
    assert set(payload["error"]) == {"type", "message", "details", "extra_info"}
    for entry in payload["node_errors"].values():
        assert set(entry) == {"errors", "dependent_outputs", "class_type"}
    return info.value


def node_error_types(err: PromptError, nid: str) -> list[str]:
    return [e["type"] for e in err.node_errors[nid]["errors"]]


def test_valid_chain_plans_topological_order(registry):
    plan = validate_prompt(chain_prompt(12), registry)
    assert plan.order == [str(i) for i in range(1, 13)]
    assert plan.outputs == ["12"]


def test_only_nodes_feeding_an_output_are_planned(registry):
    prompt = chain_prompt(3)
    prompt["99"] = {"class_type": "Number", "inputs": {"value": 1000}}  # invalid, but unused
    plan = validate_prompt(prompt, registry)
    assert "99" not in plan.order


def test_every_unknown_class_type_is_listed(registry):
    prompt = chain_prompt(3)
    prompt["4"] = {"class_type": "FancyUpscaler", "inputs": {}}
    prompt["5"] = {"class_type": "MagicVAE", "inputs": {}}
    err = errors_of(prompt, registry)
    assert err.error["type"] == "missing_node_type"
    assert err.error["extra_info"]["missing_types"] == ["FancyUpscaler", "MagicVAE"]
    assert set(err.node_errors) == {"4", "5"}


def test_missing_required_input_names_node_and_input(registry):
    prompt = chain_prompt(3)
    del prompt["2"]["inputs"]["b"]
    err = errors_of(prompt, registry)
    assert err.error["type"] == "prompt_outputs_failed_validation"
    assert node_error_types(err, "2") == ["required_input_missing"]
    assert err.node_errors["2"]["errors"][0]["extra_info"]["input_name"] == "b"
    assert err.node_errors["2"]["dependent_outputs"] == ["3"]
    assert err.node_errors["2"]["class_type"] == "Add"


def test_link_to_missing_node_or_slot(registry):
    prompt = chain_prompt(4)
    prompt["3"]["inputs"]["b"] = ["77", 0]
    prompt["2"]["inputs"]["a"] = ["1", 5]
    err = errors_of(prompt, registry)
    assert node_error_types(err, "2") == ["bad_linked_input"]
    assert node_error_types(err, "3") == ["bad_linked_input"]
    assert "slot 5" in err.node_errors["2"]["errors"][0]["details"]


def test_type_mismatch_but_wildcards_and_unions_pass(registry):
    prompt = {"1": {"class_type": "Number", "inputs": {"value": 3}},
              "2": {"class_type": "Scale", "inputs": {"tensor": ["1", 0], "factor": 2.0}},
              "3": {"class_type": "Show", "inputs": {"value": ["2", 0]}}}
    err = errors_of(prompt, registry)
    assert node_error_types(err, "2") == ["return_type_mismatch"]
    assert err.node_errors["2"]["errors"][0]["extra_info"]["received_type"] == "INT"
    # "*" accepts anything: Show takes an INT directly.
    validate_prompt({"1": prompt["1"], "3": {"class_type": "Show", "inputs": {"value": ["1", 0]}}},
                    registry)


def test_comma_union_types_are_compatible():
    from engine.graph import types_compatible
    assert types_compatible("IMAGE", "IMAGE,MASK")
    assert types_compatible("MASK,LATENT", "IMAGE,MASK")
    assert not types_compatible("LATENT", "IMAGE,MASK")
    assert types_compatible("*", "LATENT")


def test_values_outside_bounds_and_not_in_combo(registry):
    prompt = {"1": {"class_type": "Number", "inputs": {"value": 101}},
              "2": {"class_type": "Number", "inputs": {"value": -101}},
              "3": {"class_type": "Mode", "inputs": {"mode": "turbo", "strength": 0.5}},
              "4": {"class_type": "Mode", "inputs": {"mode": "fast", "strength": "lots"}},
              "5": {"class_type": "Add", "inputs": {"a": ["1", 0], "b": ["2", 0]}},
              "6": {"class_type": "Show", "inputs": {"value": ["5", 0]}},
              "7": {"class_type": "Show", "inputs": {"value": ["3", 0]}},
              "8": {"class_type": "Show", "inputs": {"value": ["4", 0]}}}
    err = errors_of(prompt, registry)
    assert node_error_types(err, "1") == ["value_bigger_than_max"]
    assert node_error_types(err, "2") == ["value_smaller_than_min"]
    assert node_error_types(err, "3") == ["value_not_in_list"]
    assert node_error_types(err, "4") == ["invalid_input_type"]
    assert err.node_errors["1"]["dependent_outputs"] == ["6"]


def test_numeric_strings_are_coerced_like_comfyui(registry):
    prompt = chain_prompt(3)
    prompt["2"]["inputs"]["b"] = "7"
    plan = validate_prompt(prompt, registry)
    assert plan.prompt["2"]["inputs"]["b"] == 7


def test_cycle_is_reported_on_its_nodes(registry):
    prompt = {"1": {"class_type": "Add", "inputs": {"a": ["2", 0], "b": 1}},
              "2": {"class_type": "Add", "inputs": {"a": ["1", 0], "b": 1}},
              "3": {"class_type": "Show", "inputs": {"value": ["2", 0]}}}
    err = errors_of(prompt, registry)
    assert err.error["type"] == "dependency_cycle"
    assert set(err.node_errors) == {"1", "2"}


def test_no_output_node(registry):
    err = errors_of({"1": {"class_type": "Number", "inputs": {"value": 1}}}, registry)
    assert err.error["type"] == "prompt_no_outputs"
    assert errors_of({}, registry).error["type"] == "prompt_no_outputs"


def test_custom_validation_failure(registry):
    prompt = {"1": {"class_type": "Even", "inputs": {"value": 3}},
              "2": {"class_type": "Show", "inputs": {"value": ["1", 0]}}}
    err = errors_of(prompt, registry)
    assert node_error_types(err, "1") == ["custom_validation_failed"]
    assert "3 is odd" in err.node_errors["1"]["errors"][0]["details"]


def test_all_problems_reported_at_once(registry):
    prompt = chain_prompt(5)
    del prompt["2"]["inputs"]["b"]
    prompt["3"]["inputs"]["b"] = "x"
    prompt["4"]["inputs"]["b"] = ["40", 0]
    err = errors_of(prompt, registry)
    assert set(err.node_errors) == {"2", "3", "4"}


@pytest.mark.parametrize("data, kind", [
    ("{not json", "invalid_prompt"),
    ("[1, 2, 3]", "invalid_prompt"),
    ({"1": "SaveImage"}, "invalid_prompt"),
    ({"1": {"inputs": {}}}, "invalid_prompt"),
])
def test_malformed_input_is_a_structured_error(registry, data, kind):
    with pytest.raises(PromptError) as info:
        prepare_prompt(data, registry)
    assert info.value.error["type"] in {kind, "malformed_json"}
    assert info.value.error["message"]
