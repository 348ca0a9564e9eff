"""Running the diffusion transformers well: placement chosen from free memory, tiled VAE
decode (chosen, and after running out of memory), fp8 weight storage, attention backend, step
caching, and an out-of-memory error that leaves the executor serving the next prompt."""

from __future__ import annotations

import copy
import functools
from typing import Any

import pytest
import torch

from engine.cache import OutputCache
from engine.executor import Executor
from nodes.diffusion.acceleration import Acceleration, accelerated, installed_backends
from nodes.diffusion.placement import GPU, GROUP_OFFLOAD, MODEL_OFFLOAD, choose_placement
from nodes.diffusion.video_vae import decode_video_latents, should_tile
from tests.generation.dit_graphs import (
    folder_loader,
    run_error,
    run_ok,
    with_latent_decode,
    with_model_node,
)
from tests.generation.test_wan import WAN21, file_loader, graph, wan
from tests.generation.workspace import registry, run_graph

__all__ = ["wan"]  # the module-scoped models fixture, shared with test_wan
GIB = 1 << 30
# A tiled decode blends overlapping tiles; each tile sees less context than the whole frame.
# The stated bound, pixels in -1..1, 32-pixel tiles overlapping by 16 on 64-pixel frames of a
# VAE whose residual branches are small beside their skip paths (as a trained VAE's are; a
# randomly initialised one's are not, and its mid-block attention spans the whole frame):
TILED_MEAN_TOLERANCE, TILED_MAX_TOLERANCE = 0.02, 0.15


@pytest.mark.parametrize("free,mode", [(40 * GIB, GPU), (36 * GIB, MODEL_OFFLOAD),
                                       (12 * GIB, GROUP_OFFLOAD)])
def test_the_placement_follows_the_free_memory(free, mode):
    """Wan 2.1 14B at bf16: transformer 28.6 GiB, UMT5-XXL 10.6 GiB, VAE 0.2 GiB."""
    sizes = {"transformer": int(28.6 * GIB), "text_encoder": int(10.6 * GIB),
             "vae": int(0.2 * GIB)}
    small = {"transformer": int(2.6 * GIB), "text_encoder": int(10.6 * GIB),
             "vae": int(0.2 * GIB)}
    placement = choose_placement(sizes if mode != GPU else small, free)
    assert placement.mode == mode, placement.reason
    assert "GiB" in placement.reason


def test_large_frames_or_little_memory_decode_in_tiles():
    assert not should_tile(480, 832, None)
    assert should_tile(720, 1280, None)
    assert not should_tile(480, 832, 40 * GIB)
    assert should_tile(480, 832, 2 * GIB)


def test_a_tiled_decode_is_the_whole_decode_within_the_stated_tolerance(wan):
    vae = copy.deepcopy(wan["pipes"][WAN21].vae)
    with torch.no_grad():
        for name, weight in vae.named_parameters():
            if ("resnets" in name and "conv2" in name) or "attentions.0.proj" in name:
                weight.mul_(0.05)
        # Smooth latents, as a clip's are.
        latents = torch.nn.functional.interpolate(
            torch.randn(1, 32, 2, 2, generator=torch.Generator().manual_seed(0)), size=(8, 8),
            mode="bilinear").view(1, 16, 2, 8, 8)
        whole = decode_video_latents(vae, latents, tile=False)
        tiled = decode_video_latents(vae, latents, tile=True, tile_size=32, tile_overlap=16)
    assert whole.shape == tiled.shape == (1, 3, 5, 64, 64)
    difference = (whole - tiled).abs()
    assert 0 < difference.mean().item() <= TILED_MEAN_TOLERANCE  # tiles did run
    assert difference.max().item() <= TILED_MAX_TOLERANCE
    assert not vae.use_tiling  # the shared VAE is left as it was


def test_running_out_of_memory_in_the_decode_retries_it_in_tiles(wan, monkeypatch):
    vae = wan["pipes"][WAN21].vae
    decode = type(vae).decode
    calls = []

    def decode_or_oom(self: Any, z: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        calls.append(self.use_tiling)
        if not self.use_tiling:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 9.00 GiB")
        return decode(self, z, *args, **kwargs)

    monkeypatch.setattr(type(vae), "decode", decode_or_oom)
    latents = torch.randn(1, 16, 2, 4, 4)
    with torch.no_grad():
        frames = decode_video_latents(vae, latents)
    assert calls == [False, True] and frames.shape == (1, 3, 5, 32, 32)


def test_latent_decode_of_wan_latents_gives_the_pipelines_frames(wan):
    run = run_ok(with_latent_decode(graph(folder_loader(WAN21), decode=True)))
    assert (run.captured["8"] - run.captured["5"]).abs().max().item() <= 1e-5


def options(prompt: dict[str, Any], **chosen: Any) -> dict[str, Any]:
    """``prompt`` with its model through DiT Options (node "9"), ``chosen`` over the defaults."""
    settings = {"attention": "sdpa", "compile": False, "step_cache": "off",
                "cache_threshold": 0.05, **chosen}
    return with_model_node(prompt, "DiTOptions", **settings)


def test_sdpa_and_a_cache_that_never_skips_change_nothing(wan):
    plain = run_ok(graph(folder_loader(WAN21))).captured["4"]["samples"]
    for chosen in ({"attention": "sdpa"}, {"step_cache": "first_block_cache",
                                           "cache_threshold": 0.0}):
        got = run_ok(options(graph(folder_loader(WAN21)), **chosen)).captured["4"]["samples"]
        assert (got - plain).abs().max().item() <= 1e-6, chosen


def test_first_block_cache_skips_the_rest_of_the_network_on_quiet_steps(wan, monkeypatch):
    """With a threshold every change passes under, the blocks after the first run on the
    first step only; the clip is still a clip, and the model is uncached afterwards."""
    from diffusers.models.transformers.transformer_wan import WanTransformerBlock

    forward = WanTransformerBlock.forward
    calls: list[int] = []

    @functools.wraps(forward)  # the cache's hook reads the block's signature
    def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(WanTransformerBlock, "forward", counted)
    plain = run_ok(graph(folder_loader(WAN21), steps=4))
    full = len(calls)
    calls.clear()
    cached = run_ok(options(graph(folder_loader(WAN21), steps=4),
                            step_cache="first_block_cache", cache_threshold=1.0))
    assert full == 4 * 2 * 2  # steps x (cond, uncond) x blocks
    assert len(calls) < full
    assert torch.isfinite(cached.captured["4"]["samples"]).all()
    assert (cached.captured["4"]["samples"] - plain.captured["4"]["samples"]).abs().max() > 0
    calls.clear()
    run_ok(graph(folder_loader(WAN21), steps=4))  # the cache is off again
    assert len(calls) == full


def test_an_attention_backend_that_is_not_installed_is_a_clear_error(wan):
    assert "sdpa" in installed_backends()
    missing = next((b for b in ("flash", "sage", "xformers") if b not in installed_backends()),
                   None)
    if missing is None:
        pytest.skip("every attention backend is installed here")
    error = run_error(options(graph(folder_loader(WAN21)), attention=missing))
    assert error["node_id"] == "3"
    assert "not installed" in error["exception_message"]


def test_compile_compiles_the_repeated_blocks_once(wan, monkeypatch):
    transformer = wan["pipes"][WAN21].transformer
    compiled = []
    monkeypatch.setattr(type(transformer), "compile_repeated_blocks",
                        lambda self, **kw: compiled.append(kw))
    for _ in range(2):
        with accelerated([transformer], Acceleration(compile=True)):
            pass
    assert compiled == [{"fullgraph": True}]
    monkeypatch.delattr(transformer, "_kinema_compiled")


def test_fp8_weight_storage_halves_the_memory_and_stays_close(wan):
    name = f"{WAN21}.safetensors"
    plain = run_ok(graph(file_loader(WAN21, name))).captured["4"]["samples"]
    loader = file_loader(WAN21, name)
    loader["inputs"]["weight_dtype"] = "fp8_e4m3fn"
    prompt = graph(loader)
    prompt["6"] = {"class_type": "CaptureOutputs", "inputs": {"value": ["1", 0]}}
    run = run_ok(prompt)
    stored = {p.dtype for n, p in run.captured["6"].pipe.transformer.named_parameters()
              if n.endswith("ffn.net.0.proj.weight")}
    assert stored == {torch.float8_e4m3fn}
    got = run.captured["4"]["samples"]
    assert 0 < (got - plain).abs().max().item() <= 0.25 * plain.abs().max().item()


def test_running_out_of_memory_while_denoising_is_reported_and_the_next_prompt_runs(
        wan, monkeypatch):
    executor = Executor(registry(), OutputCache(1 << 30))
    transformer_cls = type(wan["pipes"][WAN21].transformer)
    forward = transformer_cls.forward
    failures = [1]

    def forward_or_oom(self: Any, *args: Any, **kwargs: Any) -> Any:
        if failures:
            failures.pop()
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 30.00 GiB")
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(transformer_cls, "forward", forward_or_oom)
    failed = run_graph(graph(folder_loader(WAN21)), executor)
    assert failed.result.status == "error"
    assert failed.result.error["node_id"] == "3"
    assert failed.result.error["node_type"] == "TemporalDenoiser"
    assert "Out of memory" in failed.result.error["exception_message"]
    assert len(executor.cache) == 0  # what the prompt held is freed
    again = run_graph(graph(folder_loader(WAN21)), executor)
    assert again.result.status == "success"
    assert tuple(again.captured["4"]["samples"].shape) == (1, 16, 2, 4, 4)


def test_an_attention_backend_applies_to_its_run_only(wan, monkeypatch):
    """diffusers' backend is process-wide: a run's choice is restored after it, even when the
    run fails, so later runs (of any model) get SDPA again."""
    from diffusers.models.attention_dispatch import _AttentionBackendRegistry

    from nodes.diffusion import acceleration

    # PyTorch's math kernel, a diffusers backend that runs on the CPU, stands in for flash.
    monkeypatch.setitem(acceleration.ATTENTION_BACKENDS, "math", ("_native_math", None))
    transformer = wan["pipes"][WAN21].transformer
    before = _AttentionBackendRegistry._active_backend
    seen = []
    with pytest.raises(RuntimeError, match="the run failed"):
        with accelerated([transformer], Acceleration(attention="math")):
            seen.append(_AttentionBackendRegistry._active_backend.value)
            raise RuntimeError("the run failed")
    assert seen == ["_native_math"]
    assert _AttentionBackendRegistry._active_backend == before


def test_a_failed_setup_undoes_what_it_had_done(wan, monkeypatch):
    first = wan["pipes"][WAN21].transformer
    second = copy.deepcopy(first)
    monkeypatch.setattr(second, "enable_cache", lambda config: (_ for _ in ()).throw(
        RuntimeError("no cache here")))
    with pytest.raises(RuntimeError, match="no cache here"):
        with accelerated([first, second], Acceleration(step_cache="first_block_cache")):
            pass
    assert not first.is_cache_enabled


def test_masked_models_refuse_maskless_attention(wan, monkeypatch):
    from nodes.diffusion import acceleration

    monkeypatch.setattr(acceleration.importlib.util, "find_spec", lambda name: object())
    with pytest.raises(ValueError, match="takes no attention mask"):
        with accelerated([], Acceleration(attention="sage"), masked_attention=True):
            pass


def test_first_block_cache_with_context_windows_caches_each_window_apart(wan):
    args = dict(frames=17, context_length=9, context_overlap=4)
    plain = run_ok(graph(folder_loader(WAN21), **args)).captured["4"]["samples"]
    cached = run_ok(options(graph(folder_loader(WAN21), **args),
                            step_cache="first_block_cache", cache_threshold=0.0))
    assert (cached.captured["4"]["samples"] - plain).abs().max().item() <= 1e-6


def test_a_lora_on_fp8_weights_is_refused_clearly(wan):
    loader = file_loader(WAN21, f"{WAN21}.safetensors")
    loader["inputs"]["weight_dtype"] = "fp8_e4m3fn"
    prompt = with_model_node(graph(loader), "DiTLoraLoader", lora="any.safetensors",
                             strength=1.0, expert="both")
    lora_folder = wan["folders"].models / "loras"
    lora_folder.mkdir(parents=True, exist_ok=True)
    (lora_folder / "any.safetensors").write_bytes(b"")
    error = run_error(prompt)
    assert error["node_id"] == "9" and "fp8" in error["exception_message"]


def test_options_and_loras_do_not_count_the_model_twice(wan):
    prompt = options(graph(folder_loader(WAN21)))
    prompt["6"] = {"class_type": "CaptureOutputs", "inputs": {"value": ["1", 0]}}
    prompt["7"] = {"class_type": "CaptureOutputs", "inputs": {"value": ["9", 0]}}
    run = run_ok(prompt)
    loaded, derived = run.captured["6"], run.captured["7"]
    assert derived.pipe is loaded.pipe
    assert loaded.nbytes > 0 and derived.nbytes == 0


def test_tiles_smaller_than_the_overlap_still_decode(wan):
    vae = wan["pipes"][WAN21].vae
    with torch.no_grad():
        frames = decode_video_latents(vae, torch.randn(1, 16, 2, 4, 4), tile=True,
                                      tile_size=16, tile_overlap=16)
    assert frames.shape == (1, 3, 5, 32, 32)


def test_the_dits_run_in_bf16_on_gpus_that_have_it(monkeypatch):
    from nodes.diffusion.device import inference_dtype

    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    monkeypatch.delenv("KINEMA_DTYPE", raising=False)
    for supported, dit, want in ((True, True, torch.bfloat16), (False, True, torch.float16),
                                 (True, False, torch.float16)):
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda s=supported: s)
        assert inference_dtype(cuda, prefer_bf16=dit) == want
    assert inference_dtype(cpu, prefer_bf16=True) == torch.float32


def test_latent_encode_with_a_3d_vae_says_to_use_the_keyframe(wan):
    prompt = graph(folder_loader(WAN21))
    prompt["6"] = {"class_type": "EmptyImage", "inputs": {
        "width": 32, "height": 32, "batch_size": 1, "color": 0}}
    prompt["7"] = {"class_type": "LatentEncode", "inputs": {
        "model": ["1", 0], "image": ["6", 0], "chunk_size": 8}}
    prompt["8"] = {"class_type": "CaptureOutputs", "inputs": {"value": ["7", 0]}}
    error = run_error(prompt)
    assert error["node_id"] == "7" and "keyframe" in error["exception_message"]
