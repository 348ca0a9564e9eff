"""LTX-Video through Kinema's graph gives LTXPipeline's frames (LTXImageToVideoPipeline's with a
keyframe), from a diffusers folder and from ComfyUI's files (the all-in-one checkpoint in fp32,
fp16 and fp8 scaled, or the VAE alone; the T5 file with its tokenizer inside), with the
transformer's and the VAE's architectures read from the weights."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest
import torch
from accelerate import init_empty_weights
from diffusers import (
    AutoencoderKLLTXVideo,
    FlowMatchEulerDiscreteScheduler,
    LTXImageToVideoPipeline,
    LTXPipeline,
    LTXVideoTransformer3DModel,
    UniPCMultistepScheduler,
)
from diffusers.loaders.single_file_utils import (
    convert_ltx_transformer_checkpoint_to_diffusers,
    convert_ltx_vae_checkpoint_to_diffusers,
)
from safetensors.torch import load_file, save_file

from nodes.diffusion.families import folder_family
from nodes.diffusion.families.base import VideoSettings
from nodes.diffusion.families.ltx import transformer_config, vae_config
from nodes.diffusion.loading import load_model
from nodes.diffusion.video import decode_video, generate
from nodes.text import encode_text
from tests.generation import dit_graphs, tiny_ltx, tiny_wan
from tests.generation.dit_graphs import TOLERANCE, assert_same, folder_loader, run_error, run_ok

STEM, I2V = "tiny-ltx", "tiny-ltx-i2v"
STEPS, CFG, SEED = 3, 3.0, 7
VIDEO = dit_graphs.Clip(frames=tiny_ltx.FRAMES, size=tiny_ltx.SIZE, steps=STEPS, cfg=CFG,
                        seed=SEED)
graph = VIDEO.graph
# diffusion model file → VAE file for each variant (the all-in-one file is both).
SINGLE_FILES = {"fp32": (f"{STEM}.safetensors", f"{STEM}.safetensors"),
                "fp16": (f"{STEM}_fp16.safetensors", f"{STEM}_fp16.safetensors"),
                "fp8_scaled": (f"{STEM}_fp8_scaled.safetensors", f"{STEM}_fp8_scaled.safetensors"),
                "vae_alone": (f"{STEM}.safetensors", f"{STEM}_vae.safetensors")}


@pytest.fixture(scope="module")
def ltx(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A models folder with a tiny LTX-Video as a diffusers folder and as ComfyUI's files."""
    with dit_graphs.models_folders(tmp_path_factory, "tiny-ltx") as folders:
        pipe = tiny_ltx.build_ltx_pipeline(folders.base / "work")
        pipe.save_pretrained(folders.models / "diffusers" / STEM)
        LTXImageToVideoPipeline(**pipe.components).save_pretrained(
            folders.models / "diffusers" / I2V)
        tiny_ltx.write_single_files(pipe, tiny_wan.spiece_model(), folders.models, STEM)
        dit_graphs.write_keyframe(folders, tiny_ltx.SIZE, tiny_ltx.SIZE)
        yield {"folders": folders, "pipe": pipe}


def file_loader(diffusion_model: str, vae: str) -> dict[str, Any]:
    """DiTModelLoader of ``diffusion_model`` and ``vae`` with the T5 file."""
    return dit_graphs.file_loader(diffusion_model, f"{STEM}_t5xxl.safetensors", vae)


def reference(pipe: Any, **overrides: Any) -> tuple[torch.Tensor, np.ndarray]:
    """(latents [B,C,F,H,W], frames [F,H,W,C]) of the pipeline called as a user calls it; the
    latents are the last step's, as its step callback sees them (one run gives both)."""
    size, frames = tiny_ltx.SIZE, tiny_ltx.FRAMES
    steps: list[torch.Tensor] = []

    def keep(_pipe: Any, _step: int, _t: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        steps.append(kwargs["latents"].clone())
        return {}

    args = VIDEO.pipeline_args(callback_on_step_end=keep, **overrides)
    video = pipe(output_type="np", **args).frames[0]
    grid = size // pipe.vae_spatial_compression_ratio
    latent_frames = (frames - 1) // pipe.vae_temporal_compression_ratio + 1
    return pipe._unpack_latents(steps[-1], latent_frames, grid, grid), video


def with_weights(pipe: LTXPipeline, stored: dict[str, torch.Tensor]) -> LTXPipeline:
    """The same pipeline with the transformer and VAE weights a checkpoint file means."""
    state = {k: v.float() for k, v in stored.items()}
    vae_state = {k: v for k, v in state.items() if k.startswith(tiny_ltx.VAE_PREFIX)}
    transformer = LTXVideoTransformer3DModel(**pipe.transformer.config)
    transformer.load_state_dict(convert_ltx_transformer_checkpoint_to_diffusers(
        {k.removeprefix(tiny_ltx.COMFY_PREFIX): v for k, v in state.items()
         if k not in vae_state}))
    vae = AutoencoderKLLTXVideo(**pipe.vae.config)
    vae.load_state_dict(convert_ltx_vae_checkpoint_to_diffusers(vae_state))
    return dit_graphs.with_components(pipe, LTXPipeline, transformer=transformer.eval(),
                                      vae=vae.eval())


def test_an_ltx_diffusers_folder_gives_the_pipelines_clip(ltx):
    # The latent decoded on its own (LatentDecode) is the pipeline's clip too.
    run = run_ok(dit_graphs.with_latent_decode(graph(folder_loader(STEM))))
    latents, frames = reference(ltx["pipe"])
    assert_same(run, latents, frames)
    assert np.abs(run.captured["8"].numpy() - frames).max() <= TOLERANCE
    assert dit_graphs.assert_progress_per_step(run) == STEPS


@pytest.mark.parametrize("variant", list(SINGLE_FILES))
def test_comfyui_files_give_the_pipelines_clip(ltx, variant):
    """The all-in-one checkpoint as diffusion model and VAE (or the VAE alone), the T5 file
    with its tokenizer inside; no config anywhere."""
    diffusion_model, vae = SINGLE_FILES[variant]
    stored = load_file(ltx["folders"].models / "diffusion_models" / diffusion_model)
    if variant == "fp8_scaled":
        stored = tiny_wan.dequantized(stored)
    want = reference(with_weights(ltx["pipe"], stored))
    assert_same(run_ok(graph(file_loader(diffusion_model, vae))), *want)


def test_a_keyframe_gives_the_image_to_video_pipelines_clip(ltx):
    """From an LTXImageToVideoPipeline folder (an LTXPipeline folder takes a keyframe alike)."""
    pipe = dit_graphs.with_components(ltx["pipe"], LTXImageToVideoPipeline)
    want = reference(pipe, image=dit_graphs.stored_keyframe(ltx["folders"]))
    assert_same(run_ok(graph(folder_loader(I2V), keyframe=True)), *want)
    # LTX-Video 0.9.7's diffusers folders name LTXConditionPipeline: the same five components.
    condition = ltx["folders"].models / "diffusers" / "condition"
    condition.mkdir()
    (condition / "model_index.json").write_text('{"_class_name": "LTXConditionPipeline"}')
    assert folder_family(condition)[1] == "ltx"


@pytest.mark.parametrize("sampler,shift", [("euler", 3.0), ("unipc", 0.0)])
def test_flow_samplers_are_the_diffusers_schedulers(ltx, sampler, shift):
    pipe = ltx["pipe"]
    config = pipe.scheduler.config
    if sampler == "euler":  # a fixed shift replaces the model's size-dependent one
        scheduler = FlowMatchEulerDiscreteScheduler.from_config(
            config, use_dynamic_shifting=False, shift=shift)
    else:
        scheduler = UniPCMultistepScheduler.from_config(
            config, prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=1.0)
    reference_pipe = dit_graphs.with_components(pipe, LTXPipeline, scheduler=scheduler)
    assert_same(run_ok(graph(folder_loader(STEM), scheduler=sampler, shift=shift)),
                *reference(reference_pipe))
    error = run_error(graph(folder_loader(STEM), scheduler="dpmpp_2m"))
    assert "DPM-Solver" in error["exception_message"] and error["node_id"] == "3"


def test_the_decode_noise_comes_from_where_the_denoising_left_the_generator(ltx):
    """With a decode timestep and noise scale (0.9.1+'s recommended 0.05 / 0.025), the decode
    is still the pipeline's: the noise is drawn after the denoising loop's draws."""
    model = load_model(ltx["folders"].models / "diffusers" / STEM, STEM)
    settings = VideoSettings(frames=tiny_ltx.FRAMES, steps=STEPS, cfg=CFG, seed=SEED,
                             width=tiny_ltx.SIZE, height=tiny_ltx.SIZE)
    video = generate(model, settings, encode_text(model, VIDEO.prompt, VIDEO.negative))
    noisy = dataclasses.replace(video, decode_timestep=0.05, decode_noise_scale=0.025)
    frames = decode_video(noisy).numpy()
    _, want = reference(ltx["pipe"], decode_timestep=0.05, decode_noise_scale=0.025)
    assert np.abs(frames - want).max() <= TOLERANCE
    assert np.abs(decode_video(video).numpy() - frames).max() > 1e-3  # the noise did apply
    assert np.abs(decode_video(noisy).numpy() - frames).max() == 0  # and decodes again alike


def test_the_architecture_is_read_from_the_shapes(ltx):
    pipe = ltx["pipe"]

    def same(config: dict[str, Any], stored: Any) -> None:
        for key, value in config.items():
            got = stored[key]
            assert (tuple(got) if isinstance(got, list | tuple) else got) == value, key

    shapes = {k: tuple(v.shape) for k, v in
              tiny_ltx.original_transformer_state(pipe.transformer).items()}
    same(transformer_config(shapes), pipe.transformer.config)
    # The tiny VAEs of each release's layout, and the real ones (built on the meta device),
    # read back from the original layout as diffusers converts it.
    for version, tiny in tiny_ltx.TINY_VAE_CONFIGS.items():
        for config in (tiny, tiny_ltx.REAL_VAE_CONFIGS[version]):
            with init_empty_weights():
                vae = AutoencoderKLLTXVideo(**config)
            converted = convert_ltx_vae_checkpoint_to_diffusers(
                tiny_ltx.original_vae_state(vae, version))
            read = vae_config({k: tuple(v.shape) for k, v in converted.items()})
            same(read, vae.config)
            assert set(config) <= set(read), version
    # LTX-Video 2B (0.9.x) and 13B (0.9.7) at real size.
    for size in ({}, dict(attention_head_dim=128, cross_attention_dim=4096, num_layers=48)):
        with init_empty_weights():
            model = LTXVideoTransformer3DModel(**size)
        shapes = {k: tuple(v.shape) for k, v in
                  tiny_ltx.original_transformer_state(model).items()}
        same(transformer_config(shapes), model.config)


def test_foreign_truncated_and_misplaced_files_are_clear_errors(ltx):
    models = ltx["folders"].models
    source = models / "diffusion_models" / f"{STEM}.safetensors"
    dit_graphs.write_truncated(source)
    state = load_file(source)
    save_file({k: v for k, v in state.items() if "proj_out" not in k},
              models / "diffusion_models" / "partial.safetensors")
    save_file({**state, "model.diffusion_model.av_ca_a2v_gate_adaln_single.linear.weight":
               torch.zeros(2, 2)}, models / "diffusion_models" / "ltx2.safetensors")
    for name, vae, message in (
            ("cut.safetensors", f"{STEM}.safetensors", "truncated or corrupt"),
            ("partial.safetensors", f"{STEM}.safetensors", "the file is incomplete"),
            ("ltx2.safetensors", f"{STEM}.safetensors", "LTX-2"),
            (f"{STEM}.safetensors", f"{STEM}_t5xxl.safetensors", "holds no LTX-Video VAE")):
        if vae.endswith("_t5xxl.safetensors"):
            (models / "vae" / vae).write_bytes(
                (models / "text_encoders" / vae).read_bytes())
        error = run_error(graph(file_loader(name, vae)))
        assert error["node_id"] == "1"
        assert message in error["exception_message"], error["exception_message"]
    # The all-in-one checkpoint in the checkpoint loader says where it belongs.
    dit_graphs.assert_checkpoint_loader_refuses(source)
    # A conditioning without attention masks (another family's) is refused by the denoiser.
    model = load_model(models / "diffusers" / STEM, STEM)
    conditioning = dataclasses.replace(encode_text(model, VIDEO.prompt, VIDEO.negative),
                                       extras={})
    with pytest.raises(ValueError, match="attention masks"):
        generate(model, VideoSettings(frames=tiny_ltx.FRAMES, steps=1,
                                      width=tiny_ltx.SIZE, height=tiny_ltx.SIZE), conditioning)



def test_latent_decode_tiles_when_asked_and_after_running_out_of_memory(ltx, monkeypatch):
    dit_graphs.assert_decode_tiles(monkeypatch, type(ltx["pipe"].vae),
                                   lambda **kw: graph(folder_loader(STEM), **kw),
                                   tiny_ltx.FRAMES)
