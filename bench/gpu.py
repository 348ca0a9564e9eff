"""GPU bench: Kinema's diffusion-transformer video path on real-size architectures, one prepared
run on a lent GPU (H100 80 GB or H200) that prints one Markdown table for bench/RESULTS.md.

Models: the published architectures, built with random weights (nothing is downloaded), in bf16
directly on the GPU (constructed on the meta device, then each parameter drawn on the GPU:
normal with std min(0.02, fan_in^-1/2), norm scales 1; the modules diffusers keeps in fp32 stay
fp32, as ``fill_model`` loads them):

- Wan 2.1 T2V 1.3B (``WanTransformer3DModel``: 12 heads x 128, ffn 8960, 30 layers, text 4096,
  16 channels; Wan 2.1 VAE), 832x480;
- Wan 2.2 TI2V-5B (24 heads x 128, ffn 14336, 30 layers, 48 channels, a timestep per token;
  the 48-channel residual VAE: base_dim 160, decoder_base_dim 256, patch 2, 16x spatial), at
  832x480 too (its native size is 1280x704) so the Wan rows compare;
- LTX-Video 2B 0.9.x (``LTXVideoTransformer3DModel``: 28 layers, 32 heads x 64, cross-attention
  2048, captions 4096, 128 channels; the 0.9.5 VAE), 704x480.

No text encoder: a real-size UMT5-XXL / T5-XXL costs ~11 GB and minutes to initialise, and
encoding is not what is measured. Precomputed random prompt embeddings of the real shapes go in
instead (Wan 512 x 4096; LTX 128 x 4096 with its attention mask). 33 frames, bf16, 4 steps,
classifier-free guidance on (two transformer passes per step).

Sections, in order of importance; each checks the clock first and prints "skipped: time" when
the 8-minute budget would be exceeded (a timer also stops a section that overruns):

1. Kinema vs diffusers, all three models: Kinema's graph through the engine
   (``validate_prompt`` + ``Executor``: source nodes holding the built model and embeddings ->
   TemporalDenoiser, decode off) against the diffusers pipeline called on the same modules
   (``prompt_embeds``, ``output_type="latent"``): steady s/step, first step, peak VRAM, ratio,
   and the latents' max difference (the same work). Alternated K, D, D, K after a warm-up each.
2. Transformer throughput (from section 1, no extra run): analytic matmul FLOPs per step (see
   ``step_flops``), achieved TFLOP/s, and the fraction of the GPU's bf16 dense peak.
3. Offload (Wan 1.3B): Kinema's ``placement.place`` with ``choose_placement`` forced to each
   mode: all on the GPU, model CPU offload, group offloading (leaf level, CUDA stream).
4. Attention (Wan 1.3B): SDPA against every other backend ``installed_backends()`` lists,
   through the DiT Options node; plus diffusers' pinned SDPA kernels (cuDNN, flash,
   efficient), which are not a DiT Options choice.
5. Compile (Wan 1.3B): regional ``compile_repeated_blocks`` through DiT Options: the first
   step (compiling) and the steady s/step, against uncompiled.
6. FirstBlockCache (Wan 1.3B, 10 steps: a 4-step run leaves a cache little to reuse):
   thresholds 0.05 and 0.1 against uncached: s/step, speed-up, full passes computed, and the
   PSNR of the decoded frames (Kinema's decode, real size) and of the latents against the
   uncached clip.
7. VAE decode (Wan 2.1 VAE, 832x480x33): whole frames against tiled (``video_vae``).

s/step is the median over steps 2..N of the time between step ends (the pipeline's
``callback_on_step_end`` for diffusers, the engine's progress events for Kinema, each after a
``torch.cuda.synchronize``); the first step is from the call to the first step end. Peak VRAM
is ``torch.cuda.max_memory_allocated`` over the run, weights included: one model is resident
at a time.

Run: ``python bench/gpu.py`` on a machine with a CUDA GPU, a CUDA build of torch and this
project's requirements (the lent GPU machines' image has torch, accelerate and transformers
but not diffusers: carry the ``diffusers==0.42.1`` wheel, pure Python). Expected 3 to 5 minutes
(compiling dominates), at most 8: ``--budget`` seconds, counted from after torch's import.
Without a GPU it says it needs one and exits 0. ``--dry-run`` runs every section on the CPU
with tiny configurations of the same classes (about half a minute on two cores; compile uses
the ``aot_eager`` backend there), to check the script. ``--sections`` picks sections (kinema,
offload, attention, compile, cache, decode). The table goes to stdout, progress and
tracebacks to stderr.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before diffusers/transformers read them
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")

import argparse
import functools
import gc
import math
import signal
import statistics
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from tests.generation.tiny_ltx import REAL_VAE_CONFIGS
from tests.generation.workspace import CaptureOutputs

BUDGET_S = 480.0  # the whole run
# Kept back from the sections: importing torch before the clock starts, printing, exiting.
RESERVE_S = 30.0
STEPS = 4
WARMUP_STEPS = 2  # LTX's flow-match Euler (shift_terminal) cannot take 1 step
FRAMES = 33
CACHE_STEPS = 10
CACHE_THRESHOLDS = (0.05, 0.1)
SEED = 42
WEIGHT_STD = 0.02
GIB = 1 << 30
SECTIONS = ("kinema", "offload", "attention", "compile", "cache", "decode")
# bf16 dense tensor-core peaks (TFLOP/s, NVIDIA's data sheets without sparsity), first match on
# torch.cuda.get_device_name(); an unknown GPU prints n/a.
BF16_PEAKS = (("H200", 989.0), ("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H100", 989.0))
# diffusers' own SDPA backends pinned to one kernel (not DiT Options choices), CUDA only.
PINNED_SDPA = ("_native_cudnn", "_native_flash", "_native_efficient")
WAN13, WAN5B, LTX2B = "wan21_1.3b", "wan22_ti2v_5b", "ltx_2b"
# LTX-Video 0.9.5's VAE, as diffusers' conversion script configures it (the tests' copy).
LTX_VAE_095 = REAL_VAE_CONFIGS["0.9.5"]


class OutOfTime(BaseException):
    """The budget ran out mid-section (a BaseException: the executor reports Exceptions)."""


# --- what is measured ----------------------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    """One model at the size it is benchmarked."""

    key: str
    title: str
    family: str  # nodes.diffusion.bundle.WAN or LTX
    transformer: dict[str, Any]
    vae: dict[str, Any]
    width: int
    height: int
    frames: int
    text_tokens: int
    cfg: float
    expand_timesteps: bool = False

    @property
    def text_width(self) -> int:
        return self.transformer.get("text_dim") or self.transformer["caption_channels"]

    @property
    def dim(self) -> int:
        return self.transformer["num_attention_heads"] * self.transformer["attention_head_dim"]

    @property
    def ffn(self) -> int:
        return self.transformer.get("ffn_dim") or 4 * self.dim  # LTX: FeedForward's mult 4

    def grid(self) -> tuple[int, int, int]:
        """(frames, height, width) in transformer tokens: VAE compression, then patches."""
        if self.family == "ltx":
            time_ratio = self.vae.get("temporal_compression_ratio", 8)
            space = self.vae.get("spatial_compression_ratio", 32)
            patch = (self.transformer.get("patch_size_t", 1),) + (
                self.transformer.get("patch_size", 1),) * 2
        else:
            time_ratio = self.vae.get("scale_factor_temporal", 4)
            space = self.vae.get("scale_factor_spatial", 8)
            patch = tuple(self.transformer.get("patch_size", (1, 2, 2)))
        latent = ((self.frames - 1) // time_ratio + 1, self.height // space, self.width // space)
        return latent[0] // patch[0], latent[1] // patch[1], latent[2] // patch[2]

    @property
    def tokens(self) -> int:
        return math.prod(self.grid())


def step_flops(spec: Spec) -> float:
    """Matmul FLOPs of the transformer in one denoising step (a multiply-add is 2 FLOPs).

    With N video tokens, T text tokens, model width d, feed-forward width f, per layer:

    - self-attention: q, k, v, o projections 4 * 2*N*d^2; scores Q K^T 2*N^2*d; A V 2*N^2*d
    - cross-attention: q, o projections 2 * 2*N*d^2; k, v of the text 2 * 2*T*d^2 (the text
      is projected to width d first, in both families); Q K^T 2*N*T*d; A V 2*N*T*d
    - feed-forward: up and down projections 2 * 2*N*d*f

    i.e. 12*N*d^2 + 4*N^2*d + 4*T*d^2 + 4*N*T*d + 4*N*d*f per layer, times the layers, times 2
    for classifier-free guidance (a conditional and an unconditional pass). Left out, as small:
    the patch embedding, the text/time embedders, modulation, norms, rotary embedding and the
    output head. Wan attends to all 512 (padded) text tokens; LTX's masked ones are computed
    too (the mask is an additive bias), so T is the full length in both.
    """
    n, t, d, f = spec.tokens, spec.text_tokens, spec.dim, spec.ffn
    per_layer = 12 * n * d * d + 4 * n * n * d + 4 * t * d * d + 4 * n * t * d + 4 * n * d * f
    guidance = 2 if spec.cfg > 1 else 1
    return float(per_layer * spec.transformer["num_layers"] * guidance)


def real_specs() -> dict[str, Spec]:
    from nodes.diffusion.bundle import LTX, WAN

    wan = dict(patch_size=(1, 2, 2), attention_head_dim=128, text_dim=4096, freq_dim=256,
               cross_attn_norm=True, qk_norm="rms_norm_across_heads", eps=1e-6, num_layers=30)
    return {
        WAN13: Spec(WAN13, "Wan 2.1 T2V 1.3B", WAN,
                    dict(wan, num_attention_heads=12, ffn_dim=8960, in_channels=16,
                         out_channels=16),
                    dict(base_dim=96, z_dim=16), 832, 480, FRAMES, 512, 5.0),
        WAN5B: Spec(WAN5B, "Wan 2.2 TI2V 5B", WAN,
                    dict(wan, num_attention_heads=24, ffn_dim=14336, in_channels=48,
                         out_channels=48),
                    wan22_vae(base_dim=160, decoder_base_dim=256), 832, 480, FRAMES, 512, 5.0,
                    expand_timesteps=True),
        LTX2B: Spec(LTX2B, "LTX-Video 2B 0.9.x", LTX,
                    dict(in_channels=128, out_channels=128, patch_size=1, patch_size_t=1,
                         num_attention_heads=32, attention_head_dim=64,
                         cross_attention_dim=2048, num_layers=28,
                         activation_fn="gelu-approximate", qk_norm="rms_norm_across_heads",
                         norm_elementwise_affine=False, norm_eps=1e-6, caption_channels=4096,
                         attention_bias=True, attention_out_bias=True),
                    dict(LTX_VAE_095, latent_channels=128), 704, 480, FRAMES, 128, 3.0),
    }


def tiny_specs() -> dict[str, Spec]:
    """The same classes and code paths at a few thousand parameters (--dry-run)."""
    from nodes.diffusion.bundle import LTX, WAN

    wan = dict(patch_size=(1, 2, 2), attention_head_dim=24, text_dim=32, freq_dim=32,
               cross_attn_norm=True, qk_norm="rms_norm_across_heads", eps=1e-6, num_layers=3,
               num_attention_heads=2, ffn_dim=64)
    tiny_ltx_vae = dict(LTX_VAE_095, latent_channels=8, block_out_channels=(8, 16, 32, 256, 2048),
                        decoder_block_out_channels=(8, 16, 32), layers_per_block=(1, 1, 1, 0, 0),
                        decoder_layers_per_block=(1, 1, 1, 1))
    return {
        WAN13: Spec(WAN13, "Wan 2.1 T2V (tiny)", WAN, dict(wan, in_channels=16, out_channels=16),
                    dict(base_dim=8, z_dim=16), 48, 32, 5, 16, 5.0),
        WAN5B: Spec(WAN5B, "Wan 2.2 TI2V (tiny)", WAN, dict(wan, in_channels=48, out_channels=48),
                    wan22_vae(base_dim=8, decoder_base_dim=8), 64, 32, 5, 16, 5.0,
                    expand_timesteps=True),
        LTX2B: Spec(LTX2B, "LTX-Video (tiny)", LTX,
                    dict(in_channels=8, out_channels=8, patch_size=1, patch_size_t=1,
                         num_attention_heads=32, attention_head_dim=2, cross_attention_dim=64,
                         num_layers=2, caption_channels=32),
                    tiny_ltx_vae, 96, 64, 9, 8, 3.0),
    }


def wan22_vae(**sizes: int) -> dict[str, Any]:
    """Wan 2.2's 48-channel residual VAE: Kinema's shipped latent statistics and layout."""
    from nodes.diffusion.bundle import WAN
    from nodes.diffusion.model_files import read_json, shipped_config

    config = read_json(shipped_config(WAN) / "vae22" / "config.json")
    config.pop("_class_name")
    return dict(config, z_dim=48, in_channels=12, out_channels=12, patch_size=2,
                scale_factor_spatial=16, **sizes)


# --- the machine and the clock -------------------------------------------------------------


class Clock:
    """The run's budget; a timer raises OutOfTime when only the reserve is left."""

    def __init__(self, budget: float):
        self.start = time.perf_counter()
        self.budget = budget

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def left(self) -> float:
        return self.budget - RESERVE_S - self.elapsed()

    def fits(self, estimate: float) -> bool:
        return estimate <= self.left()

    def arm(self) -> None:
        def stop(_signum: int, _frame: Any) -> None:
            raise OutOfTime

        signal.signal(signal.SIGALRM, stop)
        signal.setitimer(signal.ITIMER_REAL, max(self.left(), 1.0))

    @staticmethod
    def disarm() -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)


@dataclass
class Runtime:
    device: torch.device
    dtype: torch.dtype
    dry: bool
    clock: Clock
    specs: dict[str, Spec]
    registry: Any = None
    step_s: dict[str, float] = field(default_factory=dict)  # measured steady s/step by model

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def reset_peak(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)

    def peak(self) -> int | None:
        return torch.cuda.max_memory_allocated(self.device) if self.cuda else None

    def allocated(self) -> int | None:
        return torch.cuda.memory_allocated(self.device) if self.cuda else None

    def release(self) -> None:
        gc.collect()
        if self.cuda:
            torch.cuda.synchronize(self.device)
            torch.cuda.empty_cache()

    # Rough costs, for skipping a section that would not finish in time.
    @property
    def build_s(self) -> float:
        return 2.0 if self.dry else 12.0

    @property
    def decode_s(self) -> float:
        return 0.5 if self.dry else 10.0

    def guess_step_s(self, key: str) -> float:
        """The measured steady s/step, else one from the FLOPs at 30% of the GPU's peak."""
        if key in self.step_s:
            return self.step_s[key]
        if self.dry:
            return 0.05
        peak = bf16_peak(torch.cuda.get_device_name(self.device)) or 400.0
        return step_flops(self.specs[key]) / (0.3 * peak * 1e12)


def bf16_peak(name: str) -> float | None:
    return next((peak for key, peak in BF16_PEAKS if key.lower() in name.lower()), None)


def log(message: str, clock: Clock | None = None) -> None:
    stamp = f"[{clock.elapsed():6.1f}s] " if clock else ""
    print(f"{stamp}{message}", file=sys.stderr, flush=True)


# --- building the models -------------------------------------------------------------------


def empty(cls: type, config: dict[str, Any]) -> Any:
    """The model on the meta device: no memory, no init kernels."""
    from accelerate import init_empty_weights

    with init_empty_weights():  # parameters only; buffers (rotary tables) are computed
        return cls(**config)


@torch.no_grad()
def materialise(model: Any, rt: Runtime, generator: torch.Generator) -> Any:
    """Every meta parameter drawn on ``rt.device`` in ``rt.dtype`` (fp32 where diffusers keeps
    it so): weights normal with std min(0.02, fan_in^-1/2), norm scales 1, biases normal 0.02."""
    keep = tuple(getattr(model, "_keep_in_fp32_modules", None) or ())
    for module_name, module in model.named_modules():
        for name, param in list(module._parameters.items()):
            if param is None:
                continue
            path = [*module_name.split("."), name] if module_name else [name]
            fp32 = any(part in keep for part in path)
            value = torch.empty(param.shape, device=rt.device,
                                dtype=torch.float32 if fp32 else rt.dtype)
            if name == "gamma" or (param.ndim == 1 and name == "weight") or param.ndim == 0:
                value.fill_(1.0)  # RMS/LayerNorm scales (the Wan VAE's are called gamma)
            else:
                fan_in = max(param.numel() // max(param.shape[0], 1), 1) if param.ndim > 1 else 1
                value.normal_(0.0, min(WEIGHT_STD, fan_in ** -0.5), generator=generator)
            module._parameters[name] = torch.nn.Parameter(value, requires_grad=False)
    return model.to(rt.device).eval()  # the buffers, built on the CPU


def build_vae(spec: Spec, rt: Runtime, generator: torch.Generator) -> Any:
    from diffusers import AutoencoderKLLTXVideo, AutoencoderKLWan

    cls = AutoencoderKLLTXVideo if spec.family == "ltx" else AutoencoderKLWan
    return materialise(empty(cls, spec.vae), rt, generator)


def build_bundle(spec: Spec, rt: Runtime) -> Any:
    """A ModelBundle as the loaders make it (the pipeline around the components), no text
    encoder; the weights on ``rt.device`` (``place`` may move them afterwards)."""
    from diffusers import (
        LTXPipeline,
        LTXVideoTransformer3DModel,
        WanPipeline,
        WanTransformer3DModel,
    )

    from nodes.diffusion.bundle import ModelBundle
    from nodes.diffusion.families.base import quiet, scheduler_from
    from nodes.diffusion.model_files import shipped_config

    generator = torch.Generator(rt.device).manual_seed(SEED)
    scheduler = scheduler_from(shipped_config(spec.family))
    if spec.family == "ltx":
        transformer = materialise(empty(LTXVideoTransformer3DModel, spec.transformer), rt,
                                  generator)
        pipe = LTXPipeline(scheduler=scheduler, vae=build_vae(spec, rt, generator),
                           text_encoder=None, tokenizer=None, transformer=transformer)
    else:
        transformer = materialise(empty(WanTransformer3DModel, spec.transformer), rt, generator)
        pipe = WanPipeline(tokenizer=None, text_encoder=None, vae=build_vae(spec, rt, generator),
                           scheduler=scheduler, transformer=transformer, transformer_2=None,
                           boundary_ratio=None, expand_timesteps=spec.expand_timesteps)
    return ModelBundle(spec.family, quiet(pipe), spec.title, rt.device, rt.dtype,
                       {"format": "random weights (bench/gpu.py)"})


def make_conditioning(spec: Spec, rt: Runtime) -> Any:
    """Random prompt embeddings of the real shapes, as KinemaTextEncode would pass them."""
    from nodes.diffusion.bundle import Conditioning
    from nodes.diffusion.families.ltx import NEGATIVE_MASK, PROMPT_MASK

    generator = torch.Generator(rt.device).manual_seed(SEED + 1)

    def embeds() -> torch.Tensor:
        return torch.randn(1, spec.text_tokens, spec.text_width, generator=generator,
                           device=rt.device).to(rt.dtype)

    extras = {}
    if spec.family == "ltx":  # a prompt of a quarter of the tokens, the rest padding
        mask = torch.zeros(1, spec.text_tokens, dtype=torch.bool, device=rt.device)
        mask[:, : max(1, spec.text_tokens // 4)] = True
        extras = {PROMPT_MASK: mask, NEGATIVE_MASK: mask.clone()}
    return Conditioning(spec.family, spec.title, "(random embeddings)", "", embeds(), embeds(),
                        extras)


@contextmanager
def resident(spec: Spec, rt: Runtime) -> Iterator[tuple[Any, Any]]:
    """(bundle, conditioning) for one section, freed after it."""
    log(f"building {spec.title}", rt.clock)
    bundle = build_bundle(spec, rt)
    conditioning = make_conditioning(spec, rt)
    try:
        yield bundle, conditioning
    finally:
        BenchSource.objects.clear()
        CaptureOutputs.seen = {}
        bundle.pipe = None
        del bundle, conditioning
        rt.release()
        if rt.cuda:
            log(f"freed {spec.title}: {gib(rt.allocated())} GiB still allocated", rt.clock)


# --- running: Kinema's graph and the diffusers pipeline ------------------------------------


class BenchSource:
    """Source nodes handing the built model and embeddings to the graph, as a loader would."""

    DESCRIPTION = "bench/gpu.py: an object built in memory."
    CATEGORY = "testing"
    FUNCTION = "get"
    objects: dict[str, Any] = {}

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {"key": ("STRING", {"default": "", "tooltip": "Which object."})}}

    def get(self, key: str) -> tuple[Any]:
        return (self.objects[key],)


class BenchModel(BenchSource):
    RETURN_TYPES = ("KINEMA_MODEL",)


class BenchConditioning(BenchSource):
    RETURN_TYPES = ("KINEMA_CONDITIONING",)


def make_registry() -> Any:
    import nodes
    from engine.registry import build_registry

    found = build_registry(nodes, entry_points=False)
    for name, cls in (("BenchModel", BenchModel), ("BenchConditioning", BenchConditioning),
                      ("CaptureOutputs", CaptureOutputs)):
        found.register(name, cls)
    return found


@dataclass
class Run:
    steps: list[float]  # seconds of each step (the first from the call)
    total: float  # the whole call (Kinema: validation + execution, decode when on)
    peak: int | None
    latents: torch.Tensor  # [B,C,F,H,W], CPU fp32
    frames: torch.Tensor | None = None  # [F,H,W,C] in 0..1 (Kinema with decode)

    @property
    def first(self) -> float:
        return self.steps[0]

    @property
    def denoise(self) -> float:
        return sum(self.steps)


def steady(runs: list[Run]) -> float:
    """Median of steps 2..N over the runs (the first step, when it is all there is)."""
    later = [s for run in runs for s in run.steps[1:]]
    return statistics.median(later) if later else statistics.median(r.first for r in runs)


def peak_of(runs: list[Run]) -> int | None:
    peaks = [r.peak for r in runs if r.peak is not None]
    return max(peaks) if peaks else None


def kinema_run(rt: Runtime, bundle: Any, conditioning: Any, spec: Spec, steps: int, *,
               options: dict[str, Any] | None = None, decode: bool = False) -> Run:
    """The graph a user builds (model -> [DiT Options] -> TemporalDenoiser), run by the
    engine; step ends from the progress events the denoiser sends."""
    from engine.cache import OutputCache
    from engine.executor import Executor
    from engine.graph import validate_prompt

    BenchSource.objects.update(model=bundle, conditioning=conditioning)
    model = ["1", 0]
    prompt: dict[str, Any] = {
        "1": {"class_type": "BenchModel", "inputs": {"key": "model"}},
        "2": {"class_type": "BenchConditioning", "inputs": {"key": "conditioning"}},
        "3": {"class_type": "TemporalDenoiser", "inputs": {
            "model": model, "conditioning": ["2", 0], "frames": spec.frames, "steps": steps,
            "cfg": spec.cfg, "min_cfg": 1.0, "seed": SEED, "scheduler": "default",
            "width": spec.width, "height": spec.height, "fps": 7, "motion_bucket_id": 127,
            "noise_aug_strength": 0.02, "context_length": 0, "context_overlap": 4,
            "context_blend": "cosine", "decode": decode, "decode_chunk_size": 0}},
        "4": {"class_type": "CaptureOutputs", "inputs": {"value": ["3", 0]}},
        "5": {"class_type": "CaptureOutputs", "inputs": {"value": ["3", 1]}},
    }
    if options is not None:
        settings = {"attention": "sdpa", "compile": False, "step_cache": "off",
                    "cache_threshold": 0.05, **options}
        prompt["9"] = {"class_type": "DiTOptions", "inputs": {"model": model, **settings}}
        prompt["3"]["inputs"]["model"] = ["9", 0]
    executor = Executor(rt.registry, OutputCache(0))
    marks: list[float] = []

    def on_event(kind: str, data: dict[str, Any]) -> None:
        if kind == "progress" and data.get("node") == "3":
            rt.sync()
            marks.append(time.perf_counter())

    executor.on_event = on_event
    CaptureOutputs.seen = {}
    rt.reset_peak()
    start = time.perf_counter()
    result = executor.execute(validate_prompt(prompt, rt.registry))
    rt.sync()
    end = time.perf_counter()
    if result.status != "success":
        error = result.error or {}
        log("".join(error.get("traceback") or [])[-3000:])
        raise RuntimeError(f"the Kinema graph failed: {error.get('exception_message')}")
    frames = CaptureOutputs.seen.get("5")
    return Run(deltas(start, marks), end - start, rt.peak(), CaptureOutputs.seen["4"]["samples"],
               frames if decode else None)


def deltas(start: float, marks: list[float]) -> list[float]:
    if not marks:
        raise RuntimeError("no step ended (no progress events / callbacks)")
    return [b - a for a, b in zip([start, *marks[:-1]], marks, strict=True)]


def diffusers_run(rt: Runtime, bundle: Any, conditioning: Any, spec: Spec, steps: int) -> Run:
    """The diffusers pipeline called on the same modules, as its documentation calls it with
    precomputed embeddings (a fresh pipeline and scheduler, as Kinema makes per run)."""
    from diffusers import LTXPipeline, WanPipeline

    from nodes.diffusion.families.ltx import FRAME_RATE, NEGATIVE_MASK, PROMPT_MASK

    base = bundle.pipe
    parts = {**base.components,
             "scheduler": type(base.scheduler).from_config(base.scheduler.config)}
    args: dict[str, Any] = dict(prompt_embeds=conditioning.prompt_embeds,
                                negative_prompt_embeds=conditioning.negative_prompt_embeds)
    if spec.family == "ltx":
        pipe = LTXPipeline(**parts)
        args.update(prompt_attention_mask=conditioning.extras[PROMPT_MASK],
                    negative_prompt_attention_mask=conditioning.extras[NEGATIVE_MASK],
                    frame_rate=FRAME_RATE)
    else:
        pipe = WanPipeline(**parts, boundary_ratio=base.config.boundary_ratio,
                           expand_timesteps=base.config.expand_timesteps)
    pipe.set_progress_bar_config(disable=True)
    marks: list[float] = []

    def on_step(_pipe: Any, _i: int, _t: Any, _kwargs: dict[str, Any]) -> dict[str, Any]:
        rt.sync()
        marks.append(time.perf_counter())
        return {}

    rt.reset_peak()
    start = time.perf_counter()
    out = pipe(height=spec.height, width=spec.width, num_frames=spec.frames,
               num_inference_steps=steps, guidance_scale=spec.cfg,
               generator=torch.Generator("cpu").manual_seed(SEED), output_type="latent",
               callback_on_step_end=on_step, **args).frames
    rt.sync()
    end = time.perf_counter()
    if spec.family == "ltx":  # packed tokens -> [B,C,F,H,W], as Kinema keeps them
        frames = (spec.frames - 1) // pipe.vae_temporal_compression_ratio + 1
        ratio = pipe.vae_spatial_compression_ratio
        out = pipe._unpack_latents(out, frames, spec.height // ratio, spec.width // ratio,
                                   pipe.transformer_spatial_patch_size,
                                   pipe.transformer_temporal_patch_size)
    return Run(deltas(start, marks), end - start, rt.peak(), out.float().cpu())


# --- the table -----------------------------------------------------------------------------


@dataclass
class Row:
    section: str
    what: str
    s_step: str = "—"
    first: str = "—"
    peak: str = "—"
    versus: str = "—"
    notes: str = ""


def secs(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.3f}" if value >= 0.01 else f"{value:.2g}"


def gib(value: int | None) -> str:
    return "n/a" if value is None else f"{value / GIB:.2f}"


def ratio(value: float, baseline: float) -> str:
    return f"{value / baseline:.2f}x" if baseline > 0 else "—"


def psnr(test: torch.Tensor, reference: torch.Tensor, peak: float) -> str:
    mse = torch.mean((test.float() - reference.float()) ** 2).item()
    if mse == 0:
        return "inf (identical)"
    return f"{10 * math.log10(peak * peak / mse):.1f} dB"


class Table:
    def __init__(self) -> None:
        self.rows: list[Row] = []

    def add(self, row: Row) -> None:
        self.rows.append(row)
        log(" | ".join((row.section, row.what, row.s_step, row.first, row.peak, row.versus,
                        row.notes)))

    def markdown(self) -> str:
        head = ("| section | what | s/step | first step (s) | peak VRAM (GiB) | vs baseline "
                "| notes |")
        lines = [head, "| --- | --- | --- | --- | --- | --- | --- |"]
        for r in self.rows:
            cells = (r.section, r.what, r.s_step, r.first, r.peak, r.versus, r.notes)
            lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
        return "\n".join(lines)


# --- the sections --------------------------------------------------------------------------


def attempt(table: Table, name: str, what: str, measure: Callable[[], None]) -> None:
    """Run one measurement; an error becomes its row (the traceback goes to stderr) and the
    sections go on. Running out of time is not caught here."""
    try:
        measure()
    except Exception as exc:
        traceback.print_exc(file=sys.stderr)
        table.add(Row(name, what, notes=f"error: {short(exc)}"))


def section_kinema(rt: Runtime, table: Table) -> None:
    """Kinema's graph vs the diffusers pipeline, each model; then the throughput rows."""
    throughput: list[Row] = []
    for key, spec in rt.specs.items():
        name = f"Kinema vs diffusers: {spec.title}, {spec.width}x{spec.height}x{spec.frames}"
        estimate = (rt.build_s + (2 * WARMUP_STEPS + 4 * STEPS) * rt.guess_step_s(key) * 1.5
                    + 4)
        if not rt.clock.fits(estimate):
            table.add(Row(name, "—", notes=f"skipped: time (needs ~{estimate:.0f} s)"))
            continue
        attempt(table, name, "—", functools.partial(kinema_vs_diffusers, rt, table, throughput,
                                                    name, key, spec))
    for row in throughput:
        table.add(row)


def kinema_vs_diffusers(rt: Runtime, table: Table, throughput: list[Row], name: str, key: str,
                        spec: Spec) -> None:
    with resident(spec, rt) as (bundle, conditioning):
        weights = bundle.nbytes
        kinema_run(rt, bundle, conditioning, spec, WARMUP_STEPS)  # kernels, allocator
        diffusers_run(rt, bundle, conditioning, spec, WARMUP_STEPS)
        kinema, reference = [], []
        for side in ("k", "d", "d", "k"):
            if side == "k":
                kinema.append(kinema_run(rt, bundle, conditioning, spec, STEPS))
            else:
                reference.append(diffusers_run(rt, bundle, conditioning, spec, STEPS))
    k, d = steady(kinema), steady(reference)
    rt.step_s[key] = k
    same = (kinema[0].latents - reference[0].latents).abs().max().item()
    grid = tuple(kinema[0].latents.shape[2:])
    table.add(Row(name, "Kinema (engine: TemporalDenoiser)", secs(k),
                  secs(min(r.first for r in kinema)), gib(peak_of(kinema)),
                  ratio(k, d) + " time", f"latents max abs diff vs diffusers {same:.2g}; "
                                         f"latent grid {grid}"))
    table.add(Row(name, "diffusers pipeline", secs(d), secs(min(r.first for r in reference)),
                  gib(peak_of(reference)), "1.00x", f"weights {weights / GIB:.2f} GiB"))
    throughput.append(throughput_row(rt, spec, k))


def throughput_row(rt: Runtime, spec: Spec, seconds: float) -> Row:
    flops = step_flops(spec)
    achieved = flops / seconds / 1e12
    peak = bf16_peak(torch.cuda.get_device_name(rt.device)) if rt.cuda else None
    share = f"{100 * achieved / peak:.0f}% of {peak:.0f}" if peak else "n/a"
    return Row("transformer throughput (Kinema steady step)", spec.title, secs(seconds),
               notes=f"{spec.tokens} tokens x {spec.transformer['num_layers']} layers, "
                     f"{flops / 1e12:.3g} TFLOP/step (step_flops) -> {achieved:.3g} TFLOP/s, "
                     f"{share} bf16 dense peak")


def section_offload(rt: Runtime, table: Table) -> None:
    from nodes.diffusion.placement import GPU, GROUP_OFFLOAD, MODEL_OFFLOAD

    spec = rt.specs[WAN13]
    name = f"offload: {spec.title} (placement forced, Kinema graph)"
    step = rt.guess_step_s(WAN13)
    baseline: list[float] = []
    for mode, slowdown in ((GPU, 1.0), (MODEL_OFFLOAD, 1.5), (GROUP_OFFLOAD, 4.0)):
        estimate = rt.build_s + 2 * STEPS * step * slowdown + (2 if rt.dry else 15)
        if not rt.clock.fits(estimate):
            table.add(Row(name, mode, notes=f"skipped: time (needs ~{estimate:.0f} s)"))
            continue
        attempt(table, name, mode, functools.partial(offload_mode, rt, table, name, spec, mode,
                                                     baseline))


def offload_mode(rt: Runtime, table: Table, name: str, spec: Spec, mode: str,
                 baseline: list[float]) -> None:
    """Two runs with the pipeline placed as ``mode`` (the first one onloads)."""
    with resident(spec, rt) as (bundle, conditioning):
        placement = forced_place(bundle.pipe, rt.device, mode)
        rt.release()
        on_gpu = rt.allocated()
        runs = [kinema_run(rt, bundle, conditioning, spec, STEPS) for _ in range(2)]
    value = steady(runs)
    if not baseline:  # all on the GPU, or the first mode measured
        baseline.append(value)
    table.add(Row(name, f"{mode} (applied: {placement.mode})", secs(value), secs(runs[0].first),
                  gib(peak_of(runs)), ratio(value, baseline[0]) + " time",
                  f"on the GPU before the run: {gib(on_gpu)} GiB; first step of run 2: "
                  f"{secs(runs[1].first)} s"))


def forced_place(pipe: Any, device: torch.device, mode: str) -> Any:
    """Kinema's ``place`` with its choice forced to ``mode`` (on the CPU it moves nothing)."""
    from nodes.diffusion import placement

    choose = placement.choose_placement

    def forced(sizes: dict[str, int], free: int, *args: Any) -> Any:
        return placement.Placement(mode, f"forced ({choose(sizes, free, *args).reason})")

    placement.choose_placement = forced
    try:
        return placement.place(pipe, device)
    finally:
        placement.choose_placement = choose


def section_attention(rt: Runtime, table: Table) -> None:
    from nodes.diffusion.acceleration import installed_backends

    spec = rt.specs[WAN13]
    name = f"attention: {spec.title}"
    backends = installed_backends()
    pinned = PINNED_SDPA if rt.cuda else ()
    step = rt.guess_step_s(WAN13)
    if not rt.clock.fits(rt.build_s + (1 + len(backends) + len(pinned)) * STEPS * step * 1.5):
        table.add(Row(name, ", ".join(backends), notes="skipped: time"))
        return
    with resident(spec, rt) as (bundle, conditioning):
        kinema_run(rt, bundle, conditioning, spec, WARMUP_STEPS)  # warm-up
        baseline = None
        for backend in backends:
            if not rt.clock.fits(STEPS * step * 2):
                table.add(Row(name, backend, notes="skipped: time"))
                continue
            try:
                run = kinema_run(rt, bundle, conditioning, spec, STEPS,
                                 options={"attention": backend})
            except RuntimeError as exc:
                table.add(Row(name, f"{backend} (DiT Options)", notes=f"error: {short(exc)}"))
                continue
            value = steady([run])
            baseline = baseline or value
            table.add(Row(name, f"{backend} (DiT Options)", secs(value), secs(run.first),
                          gib(run.peak), ratio(baseline, value) + " speed-up",
                          "baseline" if backend == "sdpa" else ""))
        missing = sorted({"flash", "sage", "xformers"} - set(backends))
        if missing:
            table.add(Row(name, ", ".join(missing), notes="not installed here: not measured"))
        from diffusers.models.attention_dispatch import attention_backend

        for backend in pinned:
            if not rt.clock.fits(STEPS * step * 2):
                table.add(Row(name, backend, notes="skipped: time"))
                continue
            try:
                # diffusers' process-wide backend, restored after the run.
                with attention_backend(backend):
                    run = diffusers_run(rt, bundle, conditioning, spec, STEPS)
            except Exception as exc:
                table.add(Row(name, f"{backend} (diffusers only)", notes=f"error: {short(exc)}"))
                continue
            value = steady([run])
            table.add(Row(name, f"{backend} (diffusers only)", secs(value), secs(run.first),
                          gib(run.peak), ratio(baseline, value) + " speed-up" if baseline
                          else "—", "diffusers' SDPA pinned to one kernel; not a DiT Options "
                                    "choice"))


def section_compile(rt: Runtime, table: Table) -> None:
    spec = rt.specs[WAN13]
    name = f"compile: {spec.title} (compile_repeated_blocks via DiT Options)"
    compile_s = 60.0 if rt.dry else 150.0
    estimate = rt.build_s + 4 * STEPS * rt.guess_step_s(WAN13) * 1.5 + compile_s
    if not rt.clock.fits(estimate):
        table.add(Row(name, "—", notes=f"skipped: time (needs ~{estimate:.0f} s)"))
        return
    with resident(spec, rt) as (bundle, conditioning), dry_compile_backend(rt):
        kinema_run(rt, bundle, conditioning, spec, WARMUP_STEPS)  # warm-up
        off = kinema_run(rt, bundle, conditioning, spec, STEPS, options={})
        table.add(Row(name, "off", secs(steady([off])), secs(off.first), gib(off.peak),
                      "1.00x", "baseline"))
        first = kinema_run(rt, bundle, conditioning, spec, STEPS, options={"compile": True})
        table.add(Row(name, "on, first run", secs(steady([first])), secs(first.first),
                      gib(first.peak), ratio(steady([off]), steady([first])) + " speed-up",
                      f"first step includes compiling: +{first.first - off.first:.1f} s"))
        again = kinema_run(rt, bundle, conditioning, spec, STEPS, options={"compile": True})
        table.add(Row(name, "on, second run", secs(steady([again])), secs(again.first),
                      gib(again.peak), ratio(steady([off]), steady([again])) + " speed-up",
                      "compiled blocks reused" + (" (dry run: aot_eager backend)"
                                                   if rt.dry else "")))


@contextmanager
def dry_compile_backend(rt: Runtime) -> Iterator[None]:
    """On the CPU dry run, compile with aot_eager: Dynamo traces each block with fullgraph
    (what can fail on a GPU too) without minutes of C++ code generation on two cores."""
    if not rt.dry:
        yield
        return
    from diffusers import ModelMixin

    original = ModelMixin.compile_repeated_blocks

    def compile_repeated_blocks(self: Any, *args: Any, **kwargs: Any) -> Any:
        return original(self, *args, **{"backend": "aot_eager", **kwargs})

    ModelMixin.compile_repeated_blocks = compile_repeated_blocks
    try:
        yield
    finally:
        ModelMixin.compile_repeated_blocks = original


def section_cache(rt: Runtime, table: Table) -> None:
    spec = rt.specs[WAN13]
    name = f"FirstBlockCache: {spec.title}, {CACHE_STEPS} steps"
    runs = 1 + len(CACHE_THRESHOLDS)
    estimate = rt.build_s + runs * (CACHE_STEPS * rt.guess_step_s(WAN13) * 1.3 + rt.decode_s)
    if not rt.clock.fits(estimate):
        table.add(Row(name, "—", notes=f"skipped: time (needs ~{estimate:.0f} s)"))
        return
    with resident(spec, rt) as (bundle, conditioning):
        kinema_run(rt, bundle, conditioning, spec, WARMUP_STEPS)  # warm-up
        with counting_tail(bundle.pipe.transformer) as passes:
            off = kinema_run(rt, bundle, conditioning, spec, CACHE_STEPS, decode=True)
            full = passes.pop()
            table.add(Row(name, "off", secs(off.denoise / CACHE_STEPS), secs(off.first),
                          gib(off.peak), "1.00x", f"full passes {full}/{full}; decode "
                          f"{off.total - off.denoise:.1f} s (Kinema's, whole clip)"))
            for threshold in CACHE_THRESHOLDS:
                if not rt.clock.fits(CACHE_STEPS * rt.guess_step_s(WAN13) * 1.3 + rt.decode_s):
                    table.add(Row(name, f"threshold {threshold}", notes="skipped: time"))
                    continue

                def cached(threshold: float = threshold) -> None:
                    passes.pop()
                    run = kinema_run(rt, bundle, conditioning, spec, CACHE_STEPS, decode=True,
                                     options={"step_cache": "first_block_cache",
                                              "cache_threshold": threshold})
                    computed = passes.pop()
                    frames = psnr(run.frames, off.frames, 1.0)
                    span = (off.latents.max() - off.latents.min()).item()
                    table.add(Row(name, f"threshold {threshold}",
                                  secs(run.denoise / CACHE_STEPS), secs(run.first),
                                  gib(run.peak), ratio(off.denoise, run.denoise) + " speed-up",
                                  f"full passes {computed}/{full}; PSNR vs uncached: frames "
                                  f"{frames}, latents {psnr(run.latents, off.latents, span)}"))

                attempt(table, name, f"threshold {threshold}", cached)


class PassCounter:
    def __init__(self) -> None:
        self.count = 0

    def pop(self) -> int:
        count, self.count = self.count, 0
        return count


@contextmanager
def counting_tail(transformer: Any) -> Iterator[PassCounter]:
    """Counts the last block's computed forwards: FirstBlockCache skips the blocks after the
    first on the passes it serves from its cache (its hooks wrap the class's forward when the
    run enables the cache, so the count sees only the computed ones)."""
    last = transformer.blocks[-1]
    cls = type(last)
    forward = cls.forward
    counter = PassCounter()

    @functools.wraps(forward)  # the cache's hook reads the block's signature
    def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        if self is last:
            counter.count += 1
        return forward(self, *args, **kwargs)

    cls.forward = counted
    try:
        yield counter
    finally:
        cls.forward = forward


def section_decode(rt: Runtime, table: Table) -> None:
    from nodes.diffusion.families.wan import _decode

    spec = rt.specs[WAN13]
    name = f"VAE decode: Wan 2.1 VAE, {spec.width}x{spec.height}x{spec.frames}"
    if not rt.clock.fits(rt.build_s + 3 * rt.decode_s):
        table.add(Row(name, "—", notes="skipped: time"))
        return
    vae = build_vae(spec, rt, torch.Generator(rt.device).manual_seed(SEED))
    # Wan's decode reads the VAE and the device it runs on from a pipeline.
    pipe = SimpleNamespace(vae=vae, _execution_device=rt.device)
    space = vae.config.scale_factor_spatial
    shape = (1, vae.config.z_dim, (spec.frames - 1) // vae.config.scale_factor_temporal + 1,
             spec.height // space, spec.width // space)
    latents = torch.randn(shape, generator=torch.Generator(rt.device).manual_seed(SEED),
                          device=rt.device).to(rt.dtype)
    try:
        with torch.no_grad():
            _decode(pipe, latents[:, :, :1], False)  # warm-up: one latent frame
            baseline = None
            for label, tile in (("whole frames", False), ("tiled (VAE defaults)", True)):
                if not rt.clock.fits(rt.decode_s * 1.5):
                    table.add(Row(name, label, notes="skipped: time"))
                    continue
                rt.reset_peak()
                start = time.perf_counter()
                _decode(pipe, latents, tile)
                rt.sync()
                seconds = time.perf_counter() - start
                baseline = baseline or seconds
                table.add(Row(name, label, peak=gib(rt.peak()),
                              versus=ratio(seconds, baseline) + " time",
                              notes=f"{seconds:.2f} s per clip (not per step)"))
    finally:
        del vae, latents
        rt.release()


SECTION_RUNNERS: dict[str, Callable[[Runtime, Table], None]] = {
    "kinema": section_kinema, "offload": section_offload, "attention": section_attention,
    "compile": section_compile, "cache": section_cache, "decode": section_decode}


def short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:160]}"


def run_sections(rt: Runtime, table: Table, chosen: list[str]) -> None:
    for section in chosen:
        finished = False
        try:
            if rt.clock.left() <= 0:
                table.add(Row(section, "—", notes="skipped: time"))
                continue
            log(f"section {section}", rt.clock)
            try:
                SECTION_RUNNERS[section](rt, table)
            except Exception as exc:  # one section's failure must not lose the others
                traceback.print_exc(file=sys.stderr)
                table.add(Row(section, "—", notes=f"error: {short(exc)}"))
            finished = True
            rt.release()
        except OutOfTime:
            if not finished:
                table.add(Row(section, "—", notes="skipped: time (stopped at the budget)"))


def describe(rt: Runtime, budget: float) -> str:
    import diffusers

    if rt.cuda:
        props = torch.cuda.get_device_properties(rt.device)
        device = (f"{props.name}, {props.total_memory / GIB:.0f} GiB, CUDA {torch.version.cuda}"
                  f", bf16")
    else:
        device = f"CPU dry run (tiny configurations, {str(rt.dtype).removeprefix('torch.')})"
    return (f"GPU bench (`python bench/gpu.py`{' --dry-run' if rt.dry else ''}), "
            f"{date.today().isoformat()}: {device}; torch {torch.__version__}, diffusers "
            f"{diffusers.__version__}; {rt.specs[WAN13].frames} frames, {STEPS} steps, cfg on; "
            f"{rt.clock.elapsed():.0f} s of the {budget:.0f} s budget.")


NOTES = (
    "Random weights of the published architectures (normal, std min(0.02, fan_in^-1/2); norm "
    "scales 1), built in bf16 on the GPU; random prompt embeddings of the real shapes (Wan "
    "512x4096, LTX 128x4096 + mask) instead of a text encoder (UMT5-XXL / T5-XXL, ~11 GB, not "
    "loaded). Speed does not depend on the weights' values; FirstBlockCache's hits and PSNR do "
    "(random weights are not a trained model's), so those rows show the mechanism, not the "
    "quality of a real clip.",
    "s/step: median of steps 2..N (step ends after a CUDA synchronize: the pipeline's "
    "callback_on_step_end for diffusers, the engine's progress events for Kinema); first step: "
    "from the call to the first step end. Peak VRAM: torch.cuda.max_memory_allocated over the "
    "run, weights included, one model resident at a time. Kinema vs diffusers: after a 2-step "
    "warm-up of each, runs alternated K, D, D, K; ratio = Kinema / diffusers.",
    "Throughput: step_flops() in bench/gpu.py, per layer 12Nd^2 + 4N^2d + 4Td^2 + 4NTd + 4Ndf "
    "(N video tokens, T text tokens, d width, f feed-forward width), x layers, x2 for guidance; "
    "divided by Kinema's steady s/step (which also holds the scheduler and the guidance "
    "arithmetic, so it is slightly under the transformer's own rate).",
    "FirstBlockCache: s/step is the denoising time / steps (cached steps are uneven); full "
    "passes = forwards of the last block computed, out of steps x 2 (cond, uncond); PSNR of "
    "the decoded frames (0..1, Kinema's decode of the whole clip) and of the latents (peak = "
    "the uncached latents' range) against the uncached run.",
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true",
                        help="run every section on the CPU with tiny models (checks the script)")
    parser.add_argument("--budget", type=float, default=BUDGET_S,
                        help=f"seconds for the whole run (default {BUDGET_S:.0f})")
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help=f"comma-separated, in this order: {','.join(SECTIONS)}")
    args = parser.parse_args(argv)
    clock = Clock(args.budget)
    chosen = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = sorted(set(chosen) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown sections {unknown}; choose from {', '.join(SECTIONS)}")
    if not args.dry_run and not torch.cuda.is_available():
        print("bench/gpu.py needs a GPU (CUDA), and torch sees none here: run it on the lent "
              "GPU machine with a CUDA build of torch, or `--dry-run` to check the script on "
              "the CPU with tiny models.")
        return 0
    device = torch.device("cpu" if args.dry_run else "cuda")
    clock.arm()
    table = Table()
    rt: Runtime | None = None
    try:
        specs = tiny_specs() if args.dry_run else real_specs()
        rt = Runtime(device, torch.bfloat16, args.dry_run, clock, specs, make_registry())
        log(f"ready on {device}; sections: {', '.join(chosen)}", clock)
        run_sections(rt, table, [s for s in SECTIONS if s in chosen])
    except OutOfTime:
        table.add(Row("setup", "—", notes="skipped: time (stopped at the budget)"))
    finally:
        Clock.disarm()
    header = describe(rt, args.budget) if rt else f"GPU bench on {device}: nothing measured"
    print(f"\n{header}\n\n{table.markdown()}\n")
    for note in NOTES:
        print(f"- {note}")
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # Compile workers and CUDA teardown can hang an exit; the table is printed already.
    os._exit(code)
