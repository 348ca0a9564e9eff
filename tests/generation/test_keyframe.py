"""The keyframe graph (loader → text encode → keyframe) gives the diffusers pipeline's image.

Reference: ``StableDiffusionPipeline`` / ``StableDiffusionImg2ImgPipeline`` loaded on its own from
the same diffusers folder and called as a user would, with the same prompt, seed and settings.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import (
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    StableDiffusionImg2ImgPipeline,
    StableDiffusionPipeline,
    UniPCMultistepScheduler,
)
from PIL import Image

from engine.cache import OutputCache
from engine.executor import Executor
from nodes.diffusion.bundle import ModelBundle
from nodes.text import encode_text
from tests.generation.workspace import (
    CKPT,
    FOLDER,
    SAFETENSORS,
    keyframe_prompt,
    max_abs_diff,
    registry,
    run_graph,
)

TOLERANCE = 1e-4
# What a user of diffusers writes for each of Kinema's scheduler names.
REFERENCE_SCHEDULERS = {
    "default": lambda config: None,
    "ddim": DDIMScheduler.from_config,
    "euler": EulerDiscreteScheduler.from_config,
    "euler_ancestral": EulerAncestralDiscreteScheduler.from_config,
    "dpmpp_2m": lambda config: DPMSolverMultistepScheduler.from_config(
        config, algorithm_type="dpmsolver++", solver_order=2),
    "unipc": UniPCMultistepScheduler.from_config,
}


def reference(workspace, cls=StableDiffusionPipeline, scheduler="default"):
    pipe = cls.from_pretrained(str(workspace.models / "diffusers" / FOLDER),
                               local_files_only=True, safety_checker=None,
                               requires_safety_checker=False)
    chosen = REFERENCE_SCHEDULERS[scheduler](pipe.scheduler.config)
    if chosen is not None:
        pipe.scheduler = chosen
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.mark.parametrize("scheduler", list(REFERENCE_SCHEDULERS))
def test_txt2img_graph_gives_the_pipeline_image(workspace, scheduler):
    run = run_graph(keyframe_prompt(FOLDER, scheduler=scheduler, seed=11, steps=3))
    assert run.result.status == "success", run.result.error
    image = run.captured["5"]
    expected = reference(workspace, scheduler=scheduler)(
        "a red circle", negative_prompt="blurry", height=32, width=32, num_inference_steps=3,
        guidance_scale=7.5, generator=torch.Generator().manual_seed(11), output_type="np").images
    assert image.shape == (1, 32, 32, 3) and image.dtype == torch.float32
    assert float(image.std()) > 0.01  # a picture, not a flat field that would match anything
    diff = max_abs_diff(image, torch.from_numpy(expected))
    print(f"txt2img {scheduler}: max abs diff {diff:.3g}")
    assert diff <= TOLERANCE


@pytest.mark.parametrize("scheduler", ["ddim", "euler_ancestral", "dpmpp_2m"])
def test_img2img_graph_gives_the_pipeline_image(workspace, scheduler):
    rng = np.random.default_rng(5)
    pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(workspace.folders.input / "init.png")
    run = run_graph(keyframe_prompt(FOLDER, scheduler=scheduler, seed=2, steps=4,
                                    init_image=True, strength=0.6))
    assert run.result.status == "success", run.result.error
    init = run.captured["7"]
    expected = reference(workspace, StableDiffusionImg2ImgPipeline, scheduler)(
        "a red circle", image=init.movedim(-1, 1), strength=0.6, negative_prompt="blurry",
        num_inference_steps=4, guidance_scale=7.5,
        generator=torch.Generator().manual_seed(2), output_type="np").images
    diff = max_abs_diff(run.captured["5"], torch.from_numpy(expected))
    print(f"img2img {scheduler}: max abs diff {diff:.3g}")
    assert diff <= TOLERANCE


@pytest.mark.parametrize("checkpoint", [SAFETENSORS, CKPT])
def test_single_file_checkpoint_gives_the_same_image_as_the_folder(workspace, checkpoint):
    from_folder = run_graph(keyframe_prompt(FOLDER, scheduler="euler", seed=4))
    from_file = run_graph(keyframe_prompt(checkpoint, scheduler="euler", seed=4))
    assert from_file.result.status == "success", from_file.result.error
    assert torch.equal(from_folder.captured["5"], from_file.captured["5"])


def test_text_encode_gives_the_pipeline_embeddings_bit_for_bit(workspace):
    pipe = reference(workspace)
    model = ModelBundle("sd1", pipe, FOLDER, torch.device("cpu"), torch.float32)
    conditioning = encode_text(model, "a red circle", "")
    expected, negative = pipe.encode_prompt("a red circle", "cpu", 1, True, None)
    assert torch.equal(conditioning.prompt_embeds, expected)
    assert torch.equal(conditioning.negative_prompt_embeds, negative)


def test_the_latent_output_decodes_to_the_image(workspace):
    graph = keyframe_prompt(FOLDER, steps=2)
    graph["8"] = {"class_type": "LatentDecode", "inputs": {
        "model": ["1", 0], "latent": ["3", 1], "chunk_size": 1, "tile": False,
        "tile_size": 512, "tile_overlap": 64}}
    graph["9"] = {"class_type": "CaptureOutputs", "inputs": {"value": ["8", 0]}}
    run = run_graph(graph)
    assert run.result.status == "success", run.result.error
    assert run.captured["6"]["samples"].shape == (1, 4, 16, 16)  # the tiny VAE halves each side
    assert torch.equal(run.captured["9"], run.captured["5"])


def test_every_step_reports_progress_with_a_preview(workspace):
    run = run_graph(keyframe_prompt(FOLDER, steps=4, scheduler="ddim"))
    assert run.progress("3") == [(1, 4), (2, 4), (3, 4), (4, 4)]
    previews = [e for t, e in run.events if t == "preview" and e["node"] == "3"]
    assert len(previews) == 4 and previews[0]["image"][0] == "JPEG"


def test_img2img_progress_counts_the_steps_strength_keeps(workspace):
    Image.new("RGB", (32, 32), (200, 40, 40)).save(workspace.folders.input / "init.png")
    run = run_graph(keyframe_prompt(FOLDER, steps=10, init_image=True, strength=0.3))
    assert run.progress("3") == [(1, 3), (2, 3), (3, 3)]


def test_an_interrupt_stops_between_steps(workspace):
    unet_calls = []
    hook = torch.nn.modules.module.register_module_forward_hook(
        lambda module, _args, _out: unet_calls.append(1)
        if type(module).__name__ == "UNet2DConditionModel" else None)

    def interrupt_after_first_step(executor, type_, data):
        if type_ == "progress" and data["node"] == "3" and data["value"] == 1:
            executor.interrupt()

    executor = Executor(registry(), OutputCache(1 << 30))
    try:
        run = run_graph(keyframe_prompt(FOLDER, steps=6), executor, interrupt_after_first_step)
    finally:
        hook.remove()
    assert run.result.status == "interrupted"
    assert run.progress("3") == [(1, 6)]
    assert len(unet_calls) == 2  # the step that reported, and the one it stopped after
    assert "5" not in run.captured
    # The next run starts afresh and reuses the loaded model and the encoded prompt.
    again = run_graph(keyframe_prompt(FOLDER, steps=6), executor)
    assert again.result.status == "success"
    assert set(again.result.cached) >= {"1", "2"}


def test_changing_only_the_decoder_reruns_only_the_decoder(workspace):
    executor = Executor(registry(), OutputCache(1 << 30))
    graph = keyframe_prompt(FOLDER, steps=2)
    graph["8"] = {"class_type": "LatentDecode", "inputs": {
        "model": ["1", 0], "latent": ["3", 1], "chunk_size": 1, "tile": False,
        "tile_size": 512, "tile_overlap": 64}}
    graph["9"] = {"class_type": "CaptureOutputs", "inputs": {"value": ["8", 0]}}
    run_graph(graph, executor)
    graph["8"]["inputs"]["chunk_size"] = 2
    again = run_graph(graph, executor)
    assert again.result.status == "success"
    assert set(again.result.executed) == {"8", "9"}
