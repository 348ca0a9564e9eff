"""Generation: Kinema graphs against the diffusers pipelines on identical work (issues 5, 13).

Tiny random models from the tests' builders (``tests/generation/``), saved in their real
diffusers formats in a temporary models folder: SD 1.x (UNet 1.1 M parameters), AnimateDiff
(that SD + a 0.57 M motion adapter), ModelScope (UNet3D) and Stable Video Diffusion; and the
diffusion transformers (issue 13): Wan 2.1 T2V (``tiny_wan.build_wan_pipeline``), Wan 2.2
TI2V-5B-like (``ti2v=True``: 48-channel VAE, a timestep per token through
``expand_timesteps``), LTX-Video (``tiny_ltx``), CogVideoX 1.0 T2V (``tiny_cogvideox``) and
HunyuanVideo T2V (``tiny_hunyuan``; skipped, with the reason printed, while that builder is
missing or does not import). Prints, measured side by side in one run:

1. time: the Kinema graph (loader -> text encode -> KeyframeGenerator / TemporalDenoiser ->
   a capture node; ``validate_prompt`` + ``Executor.execute`` are timed together) against the
   reference pipeline call (``StableDiffusionPipeline(...)(prompt, negative_prompt, generator,
   num_inference_steps, guidance_scale, height, width, output_type="np")``, and
   ``AnimateDiffPipeline`` / ``TextToVideoSDPipeline`` / ``StableVideoDiffusionPipeline`` /
   ``WanPipeline`` / ``LTXPipeline`` / ``CogVideoXPipeline`` / ``HunyuanVideoPipeline`` with
   ``num_frames`` and ``output_type="pt"``). The DiTs are called as their tests call them:
   KinemaModelLoader on the diffusers folder -> KinemaTextEncode -> TemporalDenoiser with
   ``scheduler="default"`` and ``shift`` 0 (the model's own sampler and shift), against the
   pipeline with its defaults for everything else (its scheduler, LTX's frame rate and decode
   timestep 0); HunyuanVideo's cfg is its embedded guidance (``guidance_scale``; true CFG
   off, the negative prompt unused on both sides). Both sides do text encoding + denoising +
   decoding. Models are loaded once
   on both sides and only generation is timed: the Kinema executor keeps the loaders' outputs
   in its cache, and every repeat changes the seed and the prompt text (the same on both
   sides), so every node after the loaders runs each time. The sides alternate A/B, B/A over
   the repeats after one warm-up each; medians and their ratio (target <= 1.03), the median
   of the per-pair ratios, and the process's CPU time (equal to the wall time on a quiet
   machine, where the noise is the CPU's speed; when it is lower, the process was preempted
   by other work). The cyclic garbage collector is kept out of every timed call on both sides
   (collected just before, as timeit does). The time spent inside the models' own calls
   (``ModelClock``: UNet or transformer forward; 2-D and 3-D VAE encode/decode; the CLIP,
   T5, UMT5 and Llama text encoders; CLIP vision) and outside them (each side's glue) are
   printed; the glue difference gives the ratio free of the run-to-run noise. The first
   repeat's outputs are compared (max abs difference) to show the work is the same.
2. peak memory: each side in its own fresh subprocess (this script with ``--child``) loads
   the model, resets the kernel's peak-RSS counter (``/proc/self/clear_refs``), runs the same
   generation and reads VmHWM from ``/proc/self/status``: the whole process's peak (target
   Kinema <= 1.05x), RSS after imports + model load, the generation's peak above it, and the
   bytes of model weights every live torch module holds after the run (distinct storages:
   exact, noise-free). The children run with glibc's mmap threshold fixed at its initial
   128 KiB (``MALLOC_MMAP_THRESHOLD_``; ``--malloc-dynamic`` leaves it to glibc): by
   default glibc raises it, up to 32 MiB, each time a mapped block is freed, and then serves
   the tiny models' 1-30 MiB activations from its heap, which it keeps; where that starts
   depends on each process's history, and the same generation's peak varied from 66 to
   137 MiB between runs on either side (Wan 2.2 TI2V). Fixed, every buffer of 128 KiB or
   more is mapped and returned when freed, as real models' buffers (well over 32 MiB) are.
3. re-run after changing only a node after the denoiser, cache on: ImageScaleBy's scale
   (ImageScaleBy -> ImageInvert on the decoded frames re-run) and LatentDecode's chunk_size
   (a VAE decode re-run: for the DiTs the whole 3-D decode, a large share of these tiny runs),
   as a % of the full run of the same graph with the models loaded (target <= 2%); and a
   re-run with nothing changed. The same graphs for every family.

CPU, fp32. One torch thread by default: on this shared 2-core machine two intra-op threads
collapse (10x slower, erratic) whenever the other core is busy; ``--threads`` changes it.

Run: ``.venv/bin/python bench/generation.py [--repeats 8] [--quick] [--threads 1]
[--malloc-dynamic] [--families sd,animatediff,modelscope,svd,wan,wan22_ti2v,ltx,cogvideox,
hunyuan]`` (all families about 7-8 minutes on a quiet machine: the UNets about 4, the DiTs
about 3.5; --quick about 5; HF_HUB_OFFLINE is set here).
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before diffusers/transformers read them
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")

import argparse
import functools
import gc
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
PROMPT, NEGATIVE = "a red circle on a blue field", "blurry"
SEED = 100
KEYFRAME = "keyframe.png"
MOTION = "tiny-v1-5"  # tests/generation/workspace.py's diffusers-folder adapter
MiB = 1024 * 1024
HUNYUAN_BUILDER = ROOT / "tests" / "generation" / "tiny_hunyuan.py"


@dataclass(frozen=True)
class Case:
    """One family: the model folder and the generation settings, the same on both sides."""

    name: str
    label: str
    model: str  # a folder in models/diffusers/
    size: int
    steps: int
    cfg: float
    frames: int = 1
    motion: str | None = None
    text: bool = True  # text-conditioned (SVD is conditioned on the keyframe)
    dit: bool = False  # a diffusion transformer (its own builder, pipeline and text encoder)

    def describe(self) -> str:
        clip = f"{self.frames} frames " if self.name != "sd" else ""
        guidance = "embedded guidance" if self.name == "hunyuan" else "cfg"
        return f"{self.size}x{self.size} {clip}{self.steps} steps {guidance} {self.cfg}"


# Sizes chosen so one generation takes about 0.5-2 s on one core of this machine (the DiTs
# 0.4-1 s: the tests' tiny models, with the clip and the step count raised until the models'
# work is most of the run, as it is at real sizes; each family's default sampler and shift).
CASES = {
    "sd": Case("sd", "SD keyframe", "tiny-sd", size=64, steps=8, cfg=7.5),
    "animatediff": Case("animatediff", "AnimateDiff", "tiny-sd", size=32, steps=6, cfg=7.5,
                        frames=8, motion=MOTION),
    "modelscope": Case("modelscope", "ModelScope", "tiny-modelscope", size=32, steps=8,
                       cfg=7.5, frames=16),
    "svd": Case("svd", "SVD", "tiny-svd", size=48, steps=8, cfg=3.0, frames=4, text=False),
    "wan": Case("wan", "Wan 2.1 T2V", "tiny-wan", size=64, steps=25, cfg=5.0, frames=9,
                dit=True),
    "wan22_ti2v": Case("wan22_ti2v", "Wan 2.2 TI2V", "tiny-wan22-ti2v", size=128, steps=20,
                       cfg=5.0, frames=9, dit=True),
    "ltx": Case("ltx", "LTX-Video", "tiny-ltx", size=192, steps=30, cfg=3.0, frames=25,
                dit=True),
    "cogvideox": Case("cogvideox", "CogVideoX", "tiny-cogvideox", size=64, steps=15, cfg=5.0,
                      frames=17, dit=True),
    # Skipped, with the reason printed, while tests/generation/tiny_hunyuan.py is missing or
    # does not import (hunyuan_available()).
    "hunyuan": Case("hunyuan", "HunyuanVideo", "tiny-hunyuan", size=64, steps=10, cfg=5.0,
                    frames=17, dit=True),
}


def text_for(repeat: int) -> tuple[int, str]:
    """Seed and prompt of one repeat: new each time, so nothing after the loaders is cached."""
    return SEED + repeat, f"{PROMPT} {repeat}"


@contextmanager
def no_gc() -> Iterator[None]:
    """Collect first, then keep the cyclic collector out of the timed region (as timeit does):
    with every model in this process a full collection takes about 0.2 s, and where one lands
    is chance."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


# -- models ----------------------------------------------------------------------------------


def hunyuan_available() -> str | None:
    """None when the tests' tiny HunyuanVideo builder imports cleanly, else why not."""
    if not HUNYUAN_BUILDER.exists():
        return f"{HUNYUAN_BUILDER.relative_to(ROOT)} does not exist"
    try:
        from tests.generation import tiny_hunyuan  # noqa: F401
    except Exception as error:  # any failure to import means: skip the case
        return f"tests.generation.tiny_hunyuan does not import: {error!r}"
    return None


def build_dit(case: Case, models: Path, work: Path) -> None:
    """One DiT family's tiny diffusers folder, saved from the tests' builder (its real
    format: model_index.json, the transformer, the 3-D VAE, the T5 / UMT5 / Llama + CLIP
    encoders and their tokenizers, the scheduler)."""
    if case.name in ("wan", "wan22_ti2v"):
        from tests.generation import tiny_wan

        pipe: Any = tiny_wan.build_wan_pipeline(work, ti2v=case.name == "wan22_ti2v",
                                                seed=3 if case.name == "wan22_ti2v" else 0)
    elif case.name == "ltx":
        from tests.generation import tiny_ltx

        pipe = tiny_ltx.build_ltx_pipeline(work)
    elif case.name == "cogvideox":
        from tests.generation import tiny_cogvideox

        pipe = tiny_cogvideox.build_pipeline(tiny_cogvideox.T2V, work)
    else:
        from tests.generation import tiny_hunyuan

        pipe = tiny_hunyuan.build_pipeline(work)
    pipe.save_pretrained(models / "diffusers" / case.model)


def build_models(base: Path, families: list[str]) -> None:
    """The tests' tiny models in their real formats under ``base/models``, and the keyframe."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    from tests.generation import tiny_video
    from tests.generation.workspace import build_workspace

    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    workspace = build_workspace(base)  # tiny-sd folder and checkpoints, motion adapters
    if {"modelscope", "svd"} & set(families):
        tiny_video.build_all(workspace.models)  # tiny-modelscope, tiny-svd
    for name in families:
        if CASES[name].dit:
            build_dit(CASES[name], workspace.models, base / "work" / name)
    size = CASES["svd"].size
    y, x = np.meshgrid(np.linspace(0, 1, size), np.linspace(0, 1, size), indexing="ij")
    ramp = np.stack([x, y, 1 - x * y], axis=-1)
    Image.fromarray((ramp * 255).round().astype(np.uint8)).save(base / "input" / KEYFRAME)


def quiet() -> None:
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()


# -- the Kinema side -------------------------------------------------------------------------


def captured() -> dict[str, Any]:
    """What the tests' capture node received, by node id (imported late: it loads diffusers)."""
    from tests.generation.workspace import CaptureOutputs

    return CaptureOutputs.seen


@dataclass
class Kinema:
    """The real engine over the temporary folders: registry, executor and its cache."""

    registry: Any
    executor: Any
    timings: list[float] = field(default_factory=list)

    @classmethod
    def start(cls, base: Path) -> Kinema:
        from engine.cache import OutputCache
        from engine.executor import Executor
        from engine.folders import Folders, use_folders
        from tests.generation.workspace import registry as capture_registry

        use_folders(Folders.under(base))
        registry = capture_registry()
        return cls(registry, Executor(registry, OutputCache(1 << 34)))

    def run(self, prompt: dict) -> tuple[float, float, float, Any]:
        """Validate and execute one prompt: (seconds in all, CPU seconds, seconds validating,
        result)."""
        from engine.graph import validate_prompt

        captured().clear()
        with no_gc():
            start, cpu = time.perf_counter(), time.process_time()
            plan = validate_prompt(prompt, self.registry)
            validated = time.perf_counter()
            result = self.executor.execute(plan)
            end, cpu = time.perf_counter(), time.process_time() - cpu
        if result.status != "success":
            raise RuntimeError(f"the Kinema graph failed: {result.error}")
        return end - start, cpu, validated - start, result


def kinema_graph(case: Case, seed: int, text: str, *, post: dict | None = None) -> dict:
    """Loader(s) -> text encode -> generator -> capture (node 9 holds the frames).

    ``post`` adds ImageScaleBy -> ImageInvert on the frames (nodes 20-22) and LatentDecode on
    the latent (nodes 23-24), with ``scale`` and ``chunk`` as given.
    """
    graph: dict[str, Any] = {
        "1": {"class_type": "KinemaModelLoader", "inputs": {"model": case.model}}}
    if case.text:
        graph["2"] = {"class_type": "KinemaTextEncode", "inputs": {
            "model": ["1", 0], "prompt": text, "negative_prompt": NEGATIVE}}
    if case.name == "sd":
        graph["3"] = {"class_type": "KeyframeGenerator", "inputs": {
            "model": ["1", 0], "conditioning": ["2", 0], "seed": seed, "steps": case.steps,
            "cfg": case.cfg, "width": case.size, "height": case.size, "scheduler": "default"}}
        frames, latent = ["3", 0], ["3", 1]
    else:
        inputs: dict[str, Any] = {
            "model": ["1", 0], "frames": case.frames, "steps": case.steps, "cfg": case.cfg,
            "min_cfg": 1.0, "seed": seed, "scheduler": "default", "width": case.size,
            "height": case.size, "fps": 7, "motion_bucket_id": 127, "noise_aug_strength": 0.02,
            "context_length": 0, "context_overlap": 1, "context_blend": "cosine",
            "decode": True, "decode_chunk_size": 0}  # 0: all frames at once, as the pipelines
        if case.text:
            inputs["conditioning"] = ["2", 0]
        if case.motion:
            graph["4"] = {"class_type": "MotionAdapterLoader",
                          "inputs": {"motion_adapter": case.motion}}
            inputs["motion"] = ["4", 0]
        if not case.text:
            graph["5"] = {"class_type": "LoadImage", "inputs": {"image": KEYFRAME}}
            inputs["keyframe"] = ["5", 0]
        graph["3"] = {"class_type": "TemporalDenoiser", "inputs": inputs}
        frames, latent = ["3", 1], ["3", 0]
    graph["9"] = {"class_type": "CaptureOutputs", "inputs": {"value": frames}}
    if post is not None:
        graph["20"] = {"class_type": "ImageScaleBy", "inputs": {
            "image": frames, "upscale_method": "bilinear", "scale_by": post["scale"]}}
        graph["21"] = {"class_type": "ImageInvert", "inputs": {"image": ["20", 0]}}
        graph["22"] = {"class_type": "CaptureOutputs", "inputs": {"value": ["21", 0]}}
        graph["23"] = {"class_type": "LatentDecode", "inputs": {
            "model": ["1", 0], "latent": latent, "chunk_size": post["chunk"], "tile": False,
            "tile_size": 512, "tile_overlap": 64}}
        graph["24"] = {"class_type": "CaptureOutputs", "inputs": {"value": ["23", 0]}}
    return graph


def load_graph(case: Case) -> dict:
    """Only the loaders (and LoadImage), captured: what the generation graph finds cached."""
    graph = {"1": {"class_type": "KinemaModelLoader", "inputs": {"model": case.model}},
             "11": {"class_type": "CaptureOutputs", "inputs": {"value": ["1", 0]}}}
    if case.motion:
        graph["4"] = {"class_type": "MotionAdapterLoader",
                      "inputs": {"motion_adapter": case.motion}}
        graph["14"] = {"class_type": "CaptureOutputs", "inputs": {"value": ["4", 0]}}
    if not case.text:
        graph["5"] = {"class_type": "LoadImage", "inputs": {"image": KEYFRAME}}
        graph["15"] = {"class_type": "CaptureOutputs", "inputs": {"value": ["5", 0]}}
    return graph


# -- the diffusers side ----------------------------------------------------------------------


def load_reference(case: Case, base: Path) -> tuple[Any, Any]:
    """The reference pipeline loaded from the same folder as a diffusers user loads it, and
    the keyframe (SVD) as a PIL image."""
    from diffusers import (
        AnimateDiffPipeline,
        MotionAdapter,
        StableDiffusionPipeline,
        StableVideoDiffusionPipeline,
        TextToVideoSDPipeline,
    )

    folder = base / "models" / "diffusers" / case.model
    image = None
    if case.name == "sd":
        pipe: Any = StableDiffusionPipeline.from_pretrained(
            folder, local_files_only=True, safety_checker=None, requires_safety_checker=False)
    elif case.name == "animatediff":
        adapter = MotionAdapter.from_pretrained(base / "models" / "motion" / str(case.motion),
                                                local_files_only=True)
        pipe = AnimateDiffPipeline.from_pretrained(folder, motion_adapter=adapter,
                                                   local_files_only=True)
    elif case.name == "modelscope":
        pipe = TextToVideoSDPipeline.from_pretrained(folder, local_files_only=True)
    elif case.dit:
        pipe = dit_pipeline_class(case).from_pretrained(folder, local_files_only=True)
    else:
        pipe = StableVideoDiffusionPipeline.from_pretrained(folder, local_files_only=True)
        image = Image.open(base / "input" / KEYFRAME).convert("RGB")
    pipe.set_progress_bar_config(disable=True)
    return pipe, image


def dit_pipeline_class(case: Case) -> Any:
    """The diffusers pipeline a DiT folder names (Wan 2.2 TI2V is ``WanPipeline`` with
    ``expand_timesteps`` in its model_index.json)."""
    import diffusers

    return getattr(diffusers, {"wan": "WanPipeline", "wan22_ti2v": "WanPipeline",
                               "ltx": "LTXPipeline", "cogvideox": "CogVideoXPipeline",
                               "hunyuan": "HunyuanVideoPipeline"}[case.name])


def run_reference(case: Case, pipe: Any, image: Any, seed: int, text: str) -> torch.Tensor:
    """One pipeline call; the frames as Kinema's IMAGE layout ``[F,H,W,3]``. The DiTs are
    called as the tests call them (defaults for everything else: the model's scheduler and
    shift, LTX's frame rate and decode timestep); HunyuanVideo's ``guidance_scale`` is its
    embedded guidance, and its negative prompt goes unused (true CFG off), as in Kinema."""
    generator = torch.Generator().manual_seed(seed)
    common = dict(height=case.size, width=case.size, num_inference_steps=case.steps,
                  generator=generator)
    if case.name == "sd":
        out = pipe(text, negative_prompt=NEGATIVE, guidance_scale=case.cfg, output_type="np",
                   **common).images
        return torch.from_numpy(out)
    if case.text:
        frames = pipe(text, negative_prompt=NEGATIVE, num_frames=case.frames,
                      guidance_scale=case.cfg, output_type="pt", **common).frames
    else:
        frames = pipe(image=image, num_frames=case.frames, min_guidance_scale=1.0,
                      max_guidance_scale=case.cfg, fps=7, motion_bucket_id=127,
                      noise_aug_strength=0.02, output_type="pt", **common).frames
    return frames[0].permute(0, 2, 3, 1)


def timed(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """(seconds, CPU seconds of this process, what ``fn`` returned)."""
    with no_gc():
        start, cpu = time.perf_counter(), time.process_time()
        value = fn()
        return time.perf_counter() - start, time.process_time() - cpu, value


# -- 1. time, interleaved ---------------------------------------------------------------------


class ModelClock:
    """Seconds spent inside the models' own calls (UNet or diffusion transformer, VAE
    encode/decode, 2-D and 3-D; text encoders: CLIP, T5, UMT5, Llama; CLIP vision), so what
    each side adds around the same model work (its glue) can be compared directly: a
    difference of a few ms is lost in the run-to-run noise of whole runs."""

    seconds = 0.0
    _depth = 0

    @classmethod
    def install(cls) -> None:
        """Wrap the model classes' entry points (both sides call the same classes: Kinema runs
        the DiTs through the diffusers pipelines' loops and ``vae.decode``)."""
        from diffusers import (
            AutoencoderKL,
            AutoencoderKLCogVideoX,
            AutoencoderKLHunyuanVideo,
            AutoencoderKLLTXVideo,
            AutoencoderKLTemporalDecoder,
            AutoencoderKLWan,
            CogVideoXTransformer3DModel,
            HunyuanVideoTransformer3DModel,
            LTXVideoTransformer3DModel,
            UNet2DConditionModel,
            UNet3DConditionModel,
            UNetMotionModel,
            UNetSpatioTemporalConditionModel,
            WanTransformer3DModel,
        )
        from transformers import (
            CLIPTextModel,
            CLIPVisionModel,
            CLIPVisionModelWithProjection,
            LlamaModel,
            T5EncoderModel,
            UMT5EncoderModel,
        )

        forward = ("forward",)
        vae = ("encode", "decode")
        entry_points = {UNet2DConditionModel: forward, UNet3DConditionModel: forward,
                        UNetMotionModel: forward, UNetSpatioTemporalConditionModel: forward,
                        WanTransformer3DModel: forward, LTXVideoTransformer3DModel: forward,
                        CogVideoXTransformer3DModel: forward,
                        HunyuanVideoTransformer3DModel: forward,
                        CLIPTextModel: forward, T5EncoderModel: forward,
                        UMT5EncoderModel: forward, LlamaModel: forward,
                        CLIPVisionModel: forward, CLIPVisionModelWithProjection: forward,
                        AutoencoderKL: vae, AutoencoderKLTemporalDecoder: vae,
                        AutoencoderKLWan: vae, AutoencoderKLLTXVideo: vae,
                        AutoencoderKLCogVideoX: vae, AutoencoderKLHunyuanVideo: vae}
        for owner, names in entry_points.items():
            for name in names:
                setattr(owner, name, cls._timed(getattr(owner, name)))

    @classmethod
    def _timed(cls, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)  # keeps the signature (Kinema inspects vae.decode's)
        def call(*args: Any, **kwargs: Any) -> Any:
            cls._depth += 1
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                cls._depth -= 1
                if cls._depth == 0:  # only the outermost model call counts
                    cls.seconds += time.perf_counter() - start
        return call


@dataclass
class Timing:
    """Seconds per generation, repeat by repeat (wall clock and this process's CPU time)."""

    kinema: list[float] = field(default_factory=list)
    diffusers: list[float] = field(default_factory=list)
    kinema_cpu: list[float] = field(default_factory=list)
    diffusers_cpu: list[float] = field(default_factory=list)
    validation: list[float] = field(default_factory=list)
    kinema_glue: list[float] = field(default_factory=list)  # outside the models' own calls
    diffusers_glue: list[float] = field(default_factory=list)
    warmup: tuple[float, float] = (0.0, 0.0)
    parity: float = float("nan")


def measure_time(case: Case, kinema: Kinema, base: Path, repeats: int) -> Timing:
    pipe, image = load_reference(case, base)
    kinema.run(load_graph(case))  # the Kinema side's models, loaded once into the cache
    out = Timing()
    for repeat in range(-1, repeats):  # -1: one warm-up on each side, not counted
        seed, text = text_for(repeat)

        def ours(seed: int = seed, text: str = text) -> tuple[float, float, float, float, Any]:
            ModelClock.seconds = 0.0
            seconds, cpu, validating, _ = kinema.run(kinema_graph(case, seed, text))
            glue = seconds - ModelClock.seconds
            return seconds, cpu, validating, glue, captured()["9"]

        def theirs(seed: int = seed, text: str = text) -> tuple[float, float, float, Any]:
            ModelClock.seconds = 0.0
            seconds, cpu, frames = timed(lambda: run_reference(case, pipe, image, seed, text))
            return seconds, cpu, seconds - ModelClock.seconds, frames

        if repeat % 2:  # A/B, then B/A: a drift in the machine's speed hits both sides
            k_seconds, k_cpu, k_validating, k_glue, k_frames = ours()
            d_seconds, d_cpu, d_glue, d_frames = theirs()
        else:
            d_seconds, d_cpu, d_glue, d_frames = theirs()
            k_seconds, k_cpu, k_validating, k_glue, k_frames = ours()
        if repeat < 0:
            out.warmup = (k_seconds, d_seconds)
            continue
        if repeat == 0:
            if k_frames.shape != d_frames.shape:
                raise AssertionError(f"{case.label}: Kinema gave {tuple(k_frames.shape)}, "
                                     f"diffusers {tuple(d_frames.shape)}")
            out.parity = float((k_frames.float() - d_frames.float()).abs().max())
        out.kinema.append(k_seconds)
        out.diffusers.append(d_seconds)
        out.kinema_cpu.append(k_cpu)
        out.diffusers_cpu.append(d_cpu)
        out.validation.append(k_validating)
        out.kinema_glue.append(k_glue)
        out.diffusers_glue.append(d_glue)
    return out


# -- 3. re-runs after a post-denoise change ----------------------------------------------------


@dataclass
class Reruns:
    full: list[float] = field(default_factory=list)
    image: list[float] = field(default_factory=list)
    decode: list[float] = field(default_factory=list)
    cached: list[float] = field(default_factory=list)
    executed: dict[str, list[str]] = field(default_factory=dict)


def measure_reruns(case: Case, kinema: Kinema, repeats: int) -> Reruns:
    out = Reruns()
    for repeat in range(repeats):
        seed, text = text_for(1000 + repeat)  # new: the first run of each repeat runs it all
        full, _, _, result = kinema.run(kinema_graph(case, seed, text,
                                                  post={"scale": 1.0, "chunk": 8}))
        image, _, _, image_result = kinema.run(kinema_graph(case, seed, text,
                                                         post={"scale": 0.5, "chunk": 8}))
        decode, _, _, decode_result = kinema.run(kinema_graph(case, seed, text,
                                                           post={"scale": 0.5, "chunk": 4}))
        cached, _, _, cached_result = kinema.run(kinema_graph(case, seed, text,
                                                           post={"scale": 0.5, "chunk": 4}))
        out.executed = {"full": result.executed, "image": image_result.executed,
                        "decode": decode_result.executed, "cached": cached_result.executed}
        if image_result.executed != ["20", "21", "22"] or \
                decode_result.executed != ["23", "24"] or cached_result.executed:
            raise AssertionError(f"{case.label}: unexpected re-runs {out.executed}")
        out.full.append(full)
        out.image.append(image)
        out.decode.append(decode)
        out.cached.append(cached)
    return out


# -- 2. peak memory, one fresh process per side -------------------------------------------------


def proc_status() -> dict[str, int]:
    """VmRSS and VmHWM of this process, in bytes."""
    found = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = int(value.split()[0]) * 1024
    return found


def reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux: write 5 to clear_refs)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def weights_held() -> int:
    """Bytes of the distinct tensor storages held by every live torch module in the process."""
    seen: set[int] = set()
    total = 0
    for obj in gc.get_objects():
        if isinstance(obj, torch.nn.Module):
            for tensor in (*obj.parameters(recurse=False), *obj.buffers(recurse=False)):
                storage = tensor.untyped_storage()
                if storage.data_ptr() not in seen:
                    seen.add(storage.data_ptr())
                    total += storage.nbytes()
    return total


def child(side: str, case: Case, base: Path) -> dict[str, Any]:
    """In a fresh process: imports, model load, one generation; memory at each point."""
    quiet()
    seed, text = text_for(0)
    if side == "kinema":
        kinema = Kinema.start(base)
        imported = proc_status()
        kinema.run(load_graph(case))
        loaded = proc_status()
        reset = reset_peak()
        kinema.run(kinema_graph(case, seed, text))
        frames = captured()["9"]
    else:
        import diffusers  # noqa: F401  (what the reference side imports, before the load)

        imported = proc_status()
        pipe, image = load_reference(case, base)
        loaded = proc_status()
        reset = reset_peak()
        frames = run_reference(case, pipe, image, seed, text)
    end = proc_status()
    return {"side": side, "family": case.name, "frames": list(frames.shape),
            "weights": weights_held(),
            "rss_imported": imported["VmRSS"], "hwm_imported": imported["VmHWM"],
            "rss_loaded": loaded["VmRSS"], "hwm_loaded": loaded["VmHWM"],
            "peak_reset": reset, "hwm_end": end["VmHWM"], "rss_end": end["VmRSS"],
            "mmap_threshold": os.environ.get("MALLOC_MMAP_THRESHOLD_", "dynamic")}


MMAP_THRESHOLD = 128 * 1024  # glibc's initial value; set, it stays (no dynamic raise)


def measure_memory(case: Case, base: Path, threads: int, *, malloc_dynamic: bool = False,
                   ) -> dict[str, dict[str, Any]]:
    found = {}
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    if malloc_dynamic:
        env.pop("MALLOC_MMAP_THRESHOLD_", None)
    else:
        env["MALLOC_MMAP_THRESHOLD_"] = str(MMAP_THRESHOLD)
    for side in ("kinema", "diffusers"):
        command = [sys.executable, str(Path(__file__).resolve()), "--child", side,
                   "--family", case.name, "--base", str(base), "--threads", str(threads)]
        done = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
        if done.returncode != 0:
            raise RuntimeError(f"{side} child for {case.name} failed:\n{done.stderr[-3000:]}")
        found[side] = json.loads(done.stdout.strip().splitlines()[-1])
    return found


def peaks(mem: dict[str, Any]) -> tuple[int, int]:
    """(whole-process peak, generation peak above the RSS after load)."""
    process = max(mem["hwm_loaded"], mem["hwm_end"])
    # Without the reset, VmHWM may still hold the load's peak: then this is an upper bound.
    return process, mem["hwm_end"] - mem["rss_loaded"]


# -- report -----------------------------------------------------------------------------------


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms"


def mib(nbytes: float) -> str:
    return f"{nbytes / MiB:.1f} MiB"


def verdict(value: float, target: float) -> str:
    return "ok" if value <= target else "MISSED"


def rows_for(case: Case, timing: Timing | None, memory: dict | None, reruns: Reruns | None,
             ) -> list[tuple[str, ...]]:
    """Table rows: family, figure, Kinema, diffusers, ratio, target, verdict."""
    rows: list[tuple[str, ...]] = []
    label = case.label
    if timing is not None:
        k, d = statistics.median(timing.kinema), statistics.median(timing.diffusers)
        kc, dc = statistics.median(timing.kinema_cpu), statistics.median(timing.diffusers_cpu)
        kg, dg = statistics.median(timing.kinema_glue), statistics.median(timing.diffusers_glue)
        pair = statistics.median(a / b for a, b in zip(timing.kinema, timing.diffusers,
                                                       strict=True))
        km = statistics.median(a - b for a, b in zip(timing.kinema, timing.kinema_glue,
                                                     strict=True))
        dm = statistics.median(a - b for a, b in zip(timing.diffusers, timing.diffusers_glue,
                                                     strict=True))
        n = len(timing.kinema)
        rows += [
            (label, f"generation time, median of {n}", f"{k:.3f} s", f"{d:.3f} s",
             f"{k / d:.3f}", "<= 1.03", verdict(k / d, 1.03)),
            (label, "  median of the per-pair ratios", "", "", f"{pair:.3f}", "", ""),
            (label, "  CPU time of the process, median", f"{kc:.3f} s", f"{dc:.3f} s",
             f"{kc / dc:.3f}", "", ""),
            (label, "  time inside the model calls, median", f"{km:.3f} s", f"{dm:.3f} s",
             f"{km / dm:.3f}", "", ""),
            (label, "  time outside the model calls (glue), median", ms(kg), ms(dg),
             f"{kg / dg:.2f}", "", ""),
            (label, "  ratio implied by the glue difference alone", "", "",
             f"{(d + kg - dg) / d:.3f}", "<= 1.03", verdict((d + kg - dg) / d, 1.03)),
            (label, "  spread (min - max)", f"{min(timing.kinema):.3f}-{max(timing.kinema):.3f}"
             f" s", f"{min(timing.diffusers):.3f}-{max(timing.diffusers):.3f} s", "", "", ""),
            (label, "  of which validate_prompt", ms(statistics.median(timing.validation)), "",
             "", "", ""),
            (label, "  warm-up run (not counted)", f"{timing.warmup[0]:.3f} s",
             f"{timing.warmup[1]:.3f} s", "", "", ""),
            (label, "  output max |Kinema - diffusers|", f"{timing.parity:.2e}", "", "",
             "<= 1e-4", verdict(timing.parity, 1e-4)),
        ]
    if memory is not None:
        k_proc, k_gen = peaks(memory["kinema"])
        d_proc, d_gen = peaks(memory["diffusers"])
        rows += [
            (label, "peak RSS of the process (VmHWM)", mib(k_proc), mib(d_proc),
             f"{k_proc / d_proc:.3f}", "<= 1.05", verdict(k_proc / d_proc, 1.05)),
            (label, "  RSS after imports", mib(memory["kinema"]["rss_imported"]),
             mib(memory["diffusers"]["rss_imported"]), "", "", ""),
            (label, "  RSS after imports + model load", mib(memory["kinema"]["rss_loaded"]),
             mib(memory["diffusers"]["rss_loaded"]), "", "", ""),
            (label, "  generation peak above that", mib(k_gen), mib(d_gen),
             f"{k_gen / d_gen:.3f}" if d_gen > 0 else "", "", ""),
            (label, "  model weights held after the run", mib(memory["kinema"]["weights"]),
             mib(memory["diffusers"]["weights"]),
             f"{memory['kinema']['weights'] / memory['diffusers']['weights']:.3f}", "", ""),
        ]
    if reruns is not None:
        full = statistics.median(reruns.full)
        image = statistics.median(reruns.image)
        decode = statistics.median(reruns.decode)
        cached = statistics.median(reruns.cached)
        n = len(reruns.full)
        rows += [
            (label, f"full run with post nodes (models loaded), median of {n}",
             f"{full:.3f} s", "", "", "", ""),
            (label, "re-run after ImageScaleBy scale 1.0 -> 0.5 (3 nodes)",
             f"{ms(image)} = {image / full:.2%}", "", "", "<= 2%", verdict(image / full, 0.02)),
            (label, "re-run after LatentDecode chunk 8 -> 4 (2 nodes)",
             f"{ms(decode)} = {decode / full:.2%}", "", "", "(a VAE decode)", ""),
            (label, "re-run, nothing changed", f"{ms(cached)} = {cached / full:.2%}", "", "",
             "", ""),
        ]
    return rows


def print_table(rows: list[tuple[str, ...]]) -> None:
    header = ("family", "figure", "Kinema", "diffusers", "ratio", "target", "")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join(f"{{:{'<' if i < 2 else '>'}{w}}}" for i, w in enumerate(widths))
    print(line.format(*header).rstrip())
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print(line.format(*row).rstrip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=8,
                        help="timed A/B pairs per family (after one warm-up each)")
    parser.add_argument("--quick", action="store_true",
                        help="3 A/B pairs and 2 re-run rounds per family")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--malloc-dynamic", action="store_true",
                        help="memory children with glibc's dynamic mmap threshold (default: "
                             f"fixed at {MMAP_THRESHOLD // 1024} KiB)")
    parser.add_argument("--families", default=",".join(CASES),
                        help=f"comma-separated, of {', '.join(CASES)}")
    parser.add_argument("--child", choices=("kinema", "diffusers"), help=argparse.SUPPRESS)
    parser.add_argument("--family", help=argparse.SUPPRESS)
    parser.add_argument("--base", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.child:
        print(json.dumps(child(args.child, CASES[args.family], Path(args.base))))
        return
    families = [f.strip() for f in args.families.split(",") if f.strip()]
    unknown = [f for f in families if f not in CASES]
    if unknown:
        parser.error(f"unknown families {unknown}; choose from {', '.join(CASES)}")
    skipped = hunyuan_available() if "hunyuan" in families else None
    if skipped is not None:
        print(f"HunyuanVideo skipped: {skipped}")
        families.remove("hunyuan")
    repeats = 3 if args.quick else args.repeats
    rerun_rounds = 2 if args.quick else 3
    quiet()
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="kinema-bench-") as scratch:
        base = Path(scratch)
        build_models(base, families)
        ModelClock.install()
        kinema = Kinema.start(base)
        print(f"generation bench: CPU ({os.cpu_count()} cores), torch "
              f"{torch.__version__}, {args.threads} torch thread(s), fp32; "
              f"{repeats} interleaved A/B pairs per family after a warm-up; models loaded "
              "once on both sides, only generation timed; memory children with "
              + ("glibc's dynamic mmap threshold" if args.malloc_dynamic else
                 f"MALLOC_MMAP_THRESHOLD_={MMAP_THRESHOLD}"))
        for name in families:
            case = CASES[name]
            print(f"  {case.label}: {case.model}, {case.describe()}", flush=True)
        rows: list[tuple[str, ...]] = []
        raw: dict[str, Any] = {}
        for name in families:
            case = CASES[name]
            timing = measure_time(case, kinema, base, repeats)
            reruns = measure_reruns(case, kinema, rerun_rounds)
            memory = measure_memory(case, base, args.threads,
                                    malloc_dynamic=args.malloc_dynamic)
            raw[name] = {"kinema_s": [round(t, 4) for t in timing.kinema],
                         "diffusers_s": [round(t, 4) for t in timing.diffusers],
                         "kinema_cpu_s": [round(t, 4) for t in timing.kinema_cpu],
                         "diffusers_cpu_s": [round(t, 4) for t in timing.diffusers_cpu],
                         "kinema_glue_ms": [round(t * 1e3, 2) for t in timing.kinema_glue],
                         "diffusers_glue_ms": [round(t * 1e3, 2) for t in timing.diffusers_glue],
                         "memory": memory, "reruns_executed": reruns.executed}
            rows += rows_for(case, timing, memory, reruns)
            print(f"  ... {case.label} done ({time.perf_counter() - began:.0f} s)", flush=True)
    print()
    print_table(rows)
    print()
    print("raw:", json.dumps(raw))
    print(f"whole run: {time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main()
