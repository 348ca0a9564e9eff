"""LoRAs on the single-transformer DiT families (LTX-Video here): the graph gives the
pipeline's clip with the same LoRA loaded by diffusers, and the plain clip without it."""

from __future__ import annotations

from typing import Any

import torch
from diffusers import LTXPipeline
from safetensors.torch import save_file

from tests.generation.dit_graphs import TOLERANCE, folder_loader, run_ok, with_model_node
from tests.generation.test_ltx import STEM, graph, ltx, reference

__all__ = ["ltx"]  # the module-scoped models fixture, shared with test_ltx
LORA = "tiny-ltx-lora.safetensors"


def ltx_lora(transformer: torch.nn.Module, rank: int = 4) -> dict[str, torch.Tensor]:
    """A random LoRA in diffusers' format on every attention projection."""
    generator = torch.Generator().manual_seed(0)
    state = {}
    for name, module in transformer.named_modules():
        if isinstance(module, torch.nn.Linear) and ".attn" in name and name.rsplit(".", 1)[-1] in (
                "to_q", "to_k", "to_v"):
            state[f"transformer.{name}.lora_A.weight"] = torch.randn(
                rank, module.in_features, generator=generator)
            state[f"transformer.{name}.lora_B.weight"] = 0.1 * torch.randn(
                module.out_features, rank, generator=generator)
    return state


def with_lora(prompt: dict[str, Any], strength: float) -> dict[str, Any]:
    """``prompt`` with its model through DiTLoraLoader (node "9") loading ``LORA``."""
    return with_model_node(prompt, "DiTLoraLoader", lora=LORA, strength=strength,
                           expert="both")


def test_an_ltx_lora_gives_the_pipelines_clip_with_that_lora(ltx):
    state = ltx_lora(ltx["pipe"].transformer)
    (ltx["folders"].models / "loras").mkdir(parents=True, exist_ok=True)
    save_file(state, ltx["folders"].models / "loras" / LORA)
    pipe = LTXPipeline.from_pretrained(ltx["folders"].models / "diffusers" / STEM,
                                       local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    pipe.load_lora_weights(dict(state), adapter_name="lora")
    pipe.transformer.set_adapters(["lora"], [0.8])
    want = reference(pipe)[0]
    got = run_ok(with_lora(graph(folder_loader(STEM)), 0.8)).captured["4"]["samples"]
    assert (got - want).abs().max().item() <= TOLERANCE
    plain = run_ok(graph(folder_loader(STEM))).captured["4"]["samples"]
    assert (plain - want).abs().max().item() > 1e-3
    assert (plain - reference(ltx["pipe"])[0]).abs().max().item() <= TOLERANCE
