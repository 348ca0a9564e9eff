"""What the diffusion-transformer tests (Wan, LTX-Video, CogVideoX, HunyuanVideo) share: the
graph they run, the diffusers pipeline called with the same settings, and the checks between
the two.

The graph is loader (node "1") → KinemaTextEncode ("2") → TemporalDenoiser ("3"), with
CaptureOutputs of the LATENT ("4") and of the frames ("5"); a keyframe image is node "6", a
LatentDecode of the LATENT is "7", captured as "8". A family's tests describe their clip once
as a ``Clip`` (length, size, steps, cfg, seed, prompts, keyframe node) and take ``graph`` and
``reference`` from it, so Kinema's graph and the reference pipeline always get the same
settings.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from engine.executor import Executor
from engine.folders import Folders, active_folders, use_folders
from nodes.diffusion.anchor import keyframe_image
from nodes.diffusion.loading import load_model
from nodes.diffusion.model_files import ModelLoadError
from nodes.imaging import tensor_to_pil
from tests.generation.workspace import GraphRun, run_graph

TOLERANCE = 1e-4
PROMPT, NEGATIVE = "a cat walks on the beach", "blurry"
KEYFRAME = "keyframe.png"  # in the input folder, written by ``write_keyframe``
LOAD_KEYFRAME: dict[str, Any] = {"class_type": "LoadImage", "inputs": {"image": KEYFRAME}}
# TemporalDenoiser's inputs that every DiT test leaves alone (the UNet-only ones included).
DENOISER_DEFAULTS: dict[str, Any] = {
    "min_cfg": 1.0, "scheduler": "default", "fps": 7, "motion_bucket_id": 127,
    "noise_aug_strength": 0.02, "context_length": 0, "context_overlap": 4,
    "context_blend": "cosine", "decode": True, "decode_chunk_size": 0}


@dataclass(frozen=True)
class Clip:
    """One family's test clip: what both Kinema's graph and the reference pipeline are given.

    ``keyframe`` is the node ``graph(..., keyframe=True)`` adds as node "6" (the input
    folder's ``keyframe.png`` unless a family needs another image)."""

    frames: int
    size: int
    steps: int = 3
    cfg: float = 5.0
    seed: int = 7
    prompt: str = PROMPT
    negative: str = NEGATIVE
    keyframe: dict[str, Any] = field(default_factory=lambda: LOAD_KEYFRAME, compare=False)

    def denoiser(self, model: list | None = None, **settings: Any) -> dict[str, Any]:
        """The TemporalDenoiser node for this clip (model from node "1" unless given, the
        conditioning from node "2"); ``settings`` replace or add inputs."""
        inputs = {"model": model or ["1", 0], "conditioning": ["2", 0], "frames": self.frames,
                  "steps": self.steps, "cfg": self.cfg, "seed": self.seed,
                  "width": self.size, "height": self.size, **DENOISER_DEFAULTS}
        inputs.update(settings)
        return {"class_type": "TemporalDenoiser", "inputs": inputs}

    def graph(self, loader: dict[str, Any], keyframe: bool = False,
              **settings: Any) -> dict[str, Any]:
        """``loader`` → text encode → TemporalDenoiser (``settings`` as in ``denoiser``),
        capturing the LATENT (node "4") and the frames (node "5"); with ``keyframe``, this
        clip's keyframe node as node "6" wired to the denoiser."""
        prompt = {
            "1": loader,
            "2": {"class_type": "KinemaTextEncode", "inputs": {
                "model": ["1", 0], "prompt": self.prompt, "negative_prompt": self.negative}},
            "3": self.denoiser(**settings),
            "4": {"class_type": "CaptureOutputs", "inputs": {"value": ["3", 0]}},
            "5": {"class_type": "CaptureOutputs", "inputs": {"value": ["3", 1]}},
        }
        return with_keyframe(prompt, self.keyframe) if keyframe else prompt

    def pipeline_args(self, **overrides: Any) -> dict[str, Any]:
        """The diffusers pipeline's arguments for this clip, as a user passes them, with a
        generator fresh from the seed; ``overrides`` replace or add arguments."""
        args = dict(prompt=self.prompt, negative_prompt=self.negative, height=self.size,
                    width=self.size, num_frames=self.frames, num_inference_steps=self.steps,
                    guidance_scale=self.cfg, generator=torch.Generator().manual_seed(self.seed))
        args.update(overrides)
        return args

    def reference(self, pipe: Any, **overrides: Any) -> tuple[torch.Tensor, np.ndarray]:
        """(latents, frames [F,H,W,C]) of ``pipe`` called as a user calls it: once for the
        latents (``output_type="latent"``), once for the frames, each from the seed."""
        latents = pipe(output_type="latent", **self.pipeline_args(**overrides)).frames
        frames = pipe(output_type="np", **self.pipeline_args(**overrides)).frames[0]
        return latents, frames


def with_keyframe(prompt: dict[str, Any],
                  node: dict[str, Any] = LOAD_KEYFRAME) -> dict[str, Any]:
    """``prompt`` with ``node`` (the input folder's keyframe.png by default) as node "6", the
    denoiser's keyframe."""
    prompt["6"] = copy.deepcopy(node)
    prompt["3"]["inputs"]["keyframe"] = ["6", 0]
    return prompt


def with_latent_decode(prompt: dict[str, Any]) -> dict[str, Any]:
    """``prompt`` with the denoiser's LATENT decoded on its own (LatentDecode, node "7", the
    whole clip at once, untiled), its frames captured as node "8"."""
    prompt["7"] = {"class_type": "LatentDecode", "inputs": {
        "model": ["1", 0], "latent": ["3", 0], "chunk_size": 8, "tile": False,
        "tile_size": 512, "tile_overlap": 64}}
    prompt["8"] = {"class_type": "CaptureOutputs", "inputs": {"value": ["7", 0]}}
    return prompt


def with_model_node(prompt: dict[str, Any], class_type: str, **inputs: Any) -> dict[str, Any]:
    """``prompt`` with a node of ``class_type`` (``inputs`` beside the loaded model) as node
    "9", whose model the text encoder and the denoiser take instead of the loader's."""
    prompt["9"] = {"class_type": class_type, "inputs": {"model": ["1", 0], **inputs}}
    prompt["2"]["inputs"]["model"] = ["9", 0]
    prompt["3"]["inputs"]["model"] = ["9", 0]
    return prompt


def folder_loader(name: str) -> dict[str, Any]:
    """KinemaModelLoader of the diffusers folder ``models/diffusers/<name>``."""
    return {"class_type": "KinemaModelLoader", "inputs": {"model": name}}


def file_loader(diffusion_model: str, text_encoder: str, vae: str,
                **inputs: str) -> dict[str, Any]:
    """DiTModelLoader of single files; ``inputs`` are its other inputs (diffusion_model_2,
    text_encoder_2, clip_vision ...)."""
    return {"class_type": "DiTModelLoader", "inputs": {
        "diffusion_model": diffusion_model, "text_encoder": text_encoder, "vae": vae, **inputs}}


def run_ok(prompt: dict[str, Any], executor: Executor | None = None) -> GraphRun:
    """Run ``prompt`` (on ``executor``, to keep its cache between runs), which must succeed
    (else its error message fails the test)."""
    run = run_graph(prompt, executor)
    assert run.result.status == "success", run.result.error["exception_message"]
    return run


def run_error(prompt: dict[str, Any]) -> dict[str, Any]:
    """Run ``prompt``, which must fail; its error (node_id, exception_message ...)."""
    run = run_graph(prompt)
    assert run.result.status == "error"
    return run.result.error


def assert_same(run: GraphRun, latents: torch.Tensor, frames: np.ndarray,
                tolerance: float = TOLERANCE) -> None:
    """The run's LATENT (node "4") and frames (node "5") are ``latents`` and ``frames``
    ([F,H,W,C]): the same shapes, and within ``tolerance`` everywhere."""
    got_latents = run.captured["4"]["samples"]
    got_frames = run.captured["5"]
    assert got_latents.shape == latents.shape
    assert (got_latents - latents).abs().max().item() <= tolerance
    assert tuple(got_frames.shape) == frames.shape  # [F,H,W,C]
    assert np.abs(got_frames.numpy() - frames).max() <= tolerance


def assert_progress_per_step(run: GraphRun, node: str = "3") -> int:
    """``node`` reported its progress once per step, 1 to the total, in order; the total."""
    total = run.progress(node)[-1][1]
    assert run.progress(node) == [(i, total) for i in range(1, total + 1)]  # per step
    return total


def with_components(pipe: Any, cls: type | None = None, **replaced: Any) -> Any:
    """A pipeline of ``cls`` (``pipe``'s own class by default) over ``pipe``'s components,
    with ``replaced`` ones (or other constructor arguments), its progress bar off."""
    made = (cls or type(pipe))(**{**pipe.components, **replaced})
    made.set_progress_bar_config(disable=True)
    return made


@contextmanager
def models_folders(tmp_path_factory: pytest.TempPathFactory, name: str) -> Iterator[Folders]:
    """New, empty Kinema folders under a temporary folder ``name``, active until the block
    ends (then the folders active before are again)."""
    folders = Folders.under(tmp_path_factory.mktemp(name))
    folders.ensure()
    previous = active_folders()
    use_folders(folders)
    try:
        yield folders
    finally:
        use_folders(previous)


def write_keyframe(folders: Folders, height: int, width: int) -> None:
    """A random ``height`` x ``width`` keyframe.png (seed 0) in the input folder."""
    keyframe = torch.rand(1, height, width, 3, generator=torch.Generator().manual_seed(0))
    tensor_to_pil(keyframe[0]).save(folders.input / KEYFRAME)


def stored_keyframe(folders: Folders) -> Image.Image:
    """The input folder's keyframe.png as the graph loads it (an IMAGE), handed to a pipeline
    as a user would: back to 8-bit PIL."""
    pixels = np.asarray(Image.open(folders.input / KEYFRAME), dtype=np.float32)
    return keyframe_image(torch.from_numpy(pixels / 255)[None])


def write_foreign(path: Path) -> None:
    """A safetensors file at ``path`` whose weights are of no known family."""
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"weight": torch.zeros(2)}, path)


def write_truncated(source: Path, name: str = "cut.safetensors") -> None:
    """The first half of ``source``, beside it as ``name``."""
    (source.parent / name).write_bytes(source.read_bytes()[: source.stat().st_size // 2])


def write_broken_files(source: Path, without: str | None = None) -> None:
    """Beside the weights file ``source``: cut.safetensors (its first half) and
    foreign.safetensors (``write_foreign``); with ``without``, partial.safetensors too
    (``source`` less that one tensor)."""
    write_truncated(source)
    write_foreign(source.parent / "foreign.safetensors")
    if without is not None:
        partial = load_file(source)
        del partial[without]
        save_file(partial, source.parent / "partial.safetensors")


def assert_checkpoint_loader_refuses(source: Path) -> None:
    """A DiT file given to the checkpoint loader says where it belongs."""
    with pytest.raises(ModelLoadError, match="Load DiT Video Model"):
        load_model(source, source.name)


def assert_decode_tiles(monkeypatch: Any, vae_cls: type,
                        make_graph: Callable[..., dict[str, Any]], frames: int) -> None:
    """A family's 3-D VAE decodes in its own tiles for LatentDecode's tile setting, and a
    whole-frame decode that runs out of memory is retried in tiles."""
    decode = vae_cls.decode
    tiling: list[bool] = []

    def recorded(self: Any, z: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        tiling.append(self.use_tiling)
        return decode(self, z, *args, **kwargs)

    monkeypatch.setattr(vae_cls, "decode", recorded)
    prompt = with_latent_decode(make_graph())
    prompt["7"]["inputs"].update(tile=True, tile_size=32, tile_overlap=16)
    run = run_ok(prompt)
    assert tiling[-1] is True and run.captured["8"].shape == run.captured["5"].shape

    def out_of_memory(self: Any, z: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        tiling.append(self.use_tiling)
        if not self.use_tiling:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 8.00 GiB")
        return decode(self, z, *args, **kwargs)

    monkeypatch.setattr(vae_cls, "decode", out_of_memory)
    tiling.clear()
    again = run_ok(make_graph(seed=8))
    assert tiling == [False, True] and again.captured["5"].shape[0] == frames


def assert_windows_apply(make_graph: Callable[..., dict[str, Any]]) -> None:
    """17 frames in windows of 9 (overlap 4) give a 17-frame clip (5 latent frames), report
    progress per step, and differ from the clip made in one window."""
    run = run_ok(make_graph(frames=17, context_length=9, context_overlap=4))
    assert run.captured["4"]["samples"].shape[2] == 5 and run.captured["5"].shape[0] == 17
    assert_progress_per_step(run)
    plain = run_ok(make_graph(frames=17))
    assert (plain.captured["4"]["samples"] - run.captured["4"]["samples"]).abs().max() > 1e-3
