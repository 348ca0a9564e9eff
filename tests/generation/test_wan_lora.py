"""LoRAs on Wan: the graph with a LoRA gives WanPipeline's clip with the same LoRA loaded by
diffusers at the same strength; graphs without it see the plain model; Wan 2.2's experts take a
LoRA each."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from diffusers import WanPipeline
from safetensors.torch import save_file

from engine.cache import OutputCache
from engine.executor import Executor
from tests.generation import tiny_wan
from tests.generation.dit_graphs import (
    TOLERANCE,
    folder_loader,
    run_error,
    run_ok,
    with_model_node,
)
from tests.generation.test_wan import WAN21, WAN22, graph, reference, wan
from tests.generation.workspace import registry

__all__ = ["wan"]  # the module-scoped models fixture, shared with test_wan


@pytest.fixture(scope="module")
def loras(wan) -> dict[str, dict[str, torch.Tensor]]:
    found = {"tiny-wan-lora.safetensors": tiny_wan.wan_lora(wan["pipes"][WAN21].transformer),
             "tiny-wan22-low.safetensors": tiny_wan.wan_lora(wan["pipes"][WAN22].transformer_2,
                                                             seed=1)}
    folder = wan["folders"].models / "loras"
    folder.mkdir(parents=True, exist_ok=True)
    for name, state in found.items():
        save_file(state, folder / name)
    return found


def with_lora(prompt: dict[str, Any], lora: str, strength: float,
              expert: str = "both") -> dict[str, Any]:
    """``prompt`` with its model through DiTLoraLoader (node "9")."""
    return with_model_node(prompt, "DiTLoraLoader", lora=lora, strength=strength,
                           expert=expert)


def reference_with_lora(wan: dict[str, Any], stem: str, state: dict[str, torch.Tensor],
                        strength: float, into_low: bool = False) -> WanPipeline:
    pipe = WanPipeline.from_pretrained(wan["folders"].models / "diffusers" / stem,
                                       local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    pipe.load_lora_weights(dict(state), adapter_name="lora", load_into_transformer_2=into_low)
    (pipe.transformer_2 if into_low else pipe.transformer).set_adapters(["lora"], [strength])
    return pipe


def samples(run: Any) -> torch.Tensor:
    return run.captured["4"]["samples"]


def test_a_lora_gives_the_pipelines_clip_with_that_lora(wan, loras):
    name = "tiny-wan-lora.safetensors"
    want = reference(reference_with_lora(wan, WAN21, loras[name], 0.7))
    run = run_ok(with_lora(graph(folder_loader(WAN21)), name, 0.7))
    assert (samples(run) - want[0]).abs().max().item() <= TOLERANCE
    plain = samples(run_ok(graph(folder_loader(WAN21))))
    assert (plain - want[0]).abs().max().item() > 1e-3  # the LoRA changed the clip
    # The loaded model is plain again for graphs without the LoRA, and strength 0 is plain.
    assert (plain - reference(wan["pipes"][WAN21])[0]).abs().max().item() <= TOLERANCE
    zero = samples(run_ok(with_lora(graph(folder_loader(WAN21)), name, 0.0)))
    assert (zero - plain).abs().max().item() <= TOLERANCE


def test_a_wan22_lora_goes_to_the_expert_chosen(wan, loras):
    name = "tiny-wan22-low.safetensors"
    want = reference(reference_with_lora(wan, WAN22, loras[name], 1.0, into_low=True))
    run = run_ok(with_lora(graph(folder_loader(WAN22)), name, 1.0, expert="low_noise"))
    assert (samples(run) - want[0]).abs().max().item() <= TOLERANCE


def test_a_file_that_is_not_a_lora_is_a_clear_error(wan, loras):
    save_file({"weight": torch.zeros(2)}, wan["folders"].models / "loras" / "junk.safetensors")
    error = run_error(with_lora(graph(folder_loader(WAN21)), "junk.safetensors", 1.0))
    assert error["node_id"] == "9"
    assert "not a LoRA" in error["exception_message"]


def test_a_changed_lora_file_replaces_its_old_adapter(wan, loras):
    """Editing a LoRA file gives a new adapter; the old one does not stay on the model."""
    name = "tiny-wan-lora.safetensors"
    prompt = graph(folder_loader(WAN21))
    prompt["6"] = {"class_type": "CaptureOutputs", "inputs": {"value": ["1", 0]}}
    executor = Executor(registry(), OutputCache(1 << 30))  # one cache: one loaded model
    transformer = run_ok(with_lora(prompt, name, 1.0), executor).captured["6"].pipe.transformer
    before = set(transformer.peft_config)
    path = wan["folders"].models / "loras" / name
    save_file(tiny_wan.wan_lora(wan["pipes"][WAN21].transformer, seed=5), path)
    second = run_ok(with_lora(prompt, name, 1.0), executor)
    assert "6" not in second.captured  # the loader's model came from the cache
    after = set(transformer.peft_config)
    assert len(before) == len(after) == 1 and before != after
    save_file(loras[name], path)  # as the other tests expect it
