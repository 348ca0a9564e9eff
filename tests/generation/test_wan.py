"""Wan 2.1 / 2.2 through Kinema's graph give WanPipeline's frames, from a diffusers folder and
from ComfyUI's single files (fp32 original layout, fp16 with ComfyUI's prefix, fp8 scaled),
with the architecture read from the weights and the tokenizer from inside the UMT5 file."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler, WanPipeline
from safetensors.torch import load_file, save_file

from engine.graph import PromptError, validate_prompt
from nodes.diffusion.families.wan import transformer_config, vae_config
from tests.generation import dit_graphs, tiny_wan
from tests.generation.dit_graphs import assert_same, folder_loader, run_error, run_ok, with_keyframe
from tests.generation.workspace import registry

WAN21, WAN22, I2V, TI2V = "tiny-wan", "tiny-wan22", "tiny-wan-i2v", "tiny-wan22-ti2v"
SINGLE_FILES = {"fp32": f"{WAN21}.safetensors", "fp16": f"{WAN21}_comfy_fp16.safetensors",
                "fp8_scaled": f"{WAN21}_fp8_scaled.safetensors"}
VIDEO = dit_graphs.Clip(frames=tiny_wan.FRAMES, size=tiny_wan.SIZE)
graph, reference = VIDEO.graph, VIDEO.reference


@pytest.fixture(scope="module")
def wan(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A models folder with tiny Wan 2.1 and Wan 2.2 (two experts), as folders and files."""
    with dit_graphs.models_folders(tmp_path_factory, "tiny-wan") as folders:
        base = folders.base
        spiece = tiny_wan.spiece_model()
        pipes = {WAN21: tiny_wan.build_wan_pipeline(base / "work"),
                 WAN22: tiny_wan.build_wan_pipeline(base / "work22", two_experts=True, seed=1),
                 I2V: tiny_wan.build_wan_pipeline(base / "work-i2v", image_to_video=True,
                                                  seed=2),
                 TI2V: tiny_wan.build_wan_pipeline(base / "work-ti2v", ti2v=True, seed=3)}
        for stem, pipe in pipes.items():
            pipe.save_pretrained(folders.models / "diffusers" / stem)
            tiny_wan.write_single_files(pipe, spiece, folders.models, stem)
        dit_graphs.write_keyframe(folders, tiny_wan.SIZE, tiny_wan.SIZE)
        yield {"folders": folders, "pipes": pipes}


def file_loader(stem: str, diffusion_model: str, second: str = "none",
                clip_vision: str = "none") -> dict[str, Any]:
    """DiTModelLoader of ``diffusion_model`` (and ``second``, Wan 2.2's low-noise expert)
    with ``stem``'s UMT5 and VAE files."""
    return dit_graphs.file_loader(diffusion_model, f"{stem}_umt5.safetensors",
                                  f"{stem}_vae.safetensors", diffusion_model_2=second,
                                  clip_vision=clip_vision)


def with_weights(pipe: WanPipeline, transformer: dict[str, torch.Tensor]) -> WanPipeline:
    """The same pipeline with the transformer's weights replaced by what a file means."""
    from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers

    weights = convert_wan_transformer_to_diffusers(
        {k.removeprefix("model.diffusion_model."): v.float() for k, v in transformer.items()})
    model = type(pipe.transformer)(**pipe.transformer.config)
    model.load_state_dict(weights)
    return dit_graphs.with_components(pipe, transformer=model.eval(),
                                      boundary_ratio=pipe.config.boundary_ratio)


def test_a_wan_diffusers_folder_gives_the_pipelines_clip(wan):
    run = run_ok(graph(folder_loader(WAN21)))
    assert_same(run, *reference(wan["pipes"][WAN21]))
    dit_graphs.assert_progress_per_step(run)


@pytest.mark.parametrize("variant", list(SINGLE_FILES))
def test_comfyui_single_files_give_the_pipelines_clip(wan, variant):
    """Transformer, UMT5 (with its tokenizer inside) and VAE files, no config anywhere."""
    models = wan["folders"].models
    name = SINGLE_FILES[variant]
    stored = load_file(models / "diffusion_models" / name)
    if variant == "fp8_scaled":
        stored = tiny_wan.dequantized(stored)
    want = reference(with_weights(wan["pipes"][WAN21], stored))
    assert_same(run_ok(graph(file_loader(WAN21, name))), *want)


def test_wan22_two_experts_switch_at_the_boundary_as_the_pipeline_does(wan):
    pipe = wan["pipes"][WAN22]
    want = reference(pipe)
    assert_same(run_ok(graph(folder_loader(WAN22))), *want)
    files = file_loader(WAN22, f"{WAN22}.safetensors", f"{WAN22}_low_noise.safetensors")
    assert_same(run_ok(graph(files)), *want)
    # Without the low-noise expert the clip differs: the second model did run.
    alone = run_ok(graph(file_loader(WAN22, f"{WAN22}.safetensors")))
    assert (alone.captured["4"]["samples"] - want[0]).abs().max() > 1e-3


@pytest.mark.parametrize("sampler,shift", [("euler", 5.0), ("unipc", 8.0)])
def test_flow_samplers_with_shift_are_the_diffusers_schedulers(wan, sampler, shift):
    pipe = wan["pipes"][WAN21]
    base = pipe.scheduler
    if sampler == "euler":
        scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=shift)
    else:
        scheduler = type(base).from_config(base.config, flow_shift=shift)
    run = run_ok(graph(folder_loader(WAN21), scheduler=sampler, shift=shift))
    assert_same(run, *reference(dit_graphs.with_components(pipe, scheduler=scheduler)))


def test_a_sampler_that_is_not_flow_matching_is_refused(wan):
    error = run_error(graph(folder_loader(WAN21), scheduler="ddim"))
    assert "not a flow-matching sampler" in error["exception_message"]
    assert error["node_id"] == "3"


def test_the_architecture_is_read_from_the_shapes(wan):
    pipe = wan["pipes"][WAN21]
    shapes = {k: tuple(v.shape) for k, v in
              tiny_wan.original_transformer_state(pipe.transformer).items()}
    config = transformer_config(shapes)
    for key, value in config.items():
        stored = pipe.transformer.config[key]
        assert (tuple(stored) if isinstance(stored, list | tuple) else stored) == value, key
    vae_shapes = {k: tuple(v.shape) for k, v in tiny_wan.original_vae_state(pipe.vae).items()}
    assert vae_config(vae_shapes) == {"base_dim": 8, "z_dim": 16}
    # The real Wan 2.1 1.3B's shapes give its published architecture.
    real = {"patch_embedding.weight": (1536, 16, 1, 2, 2), "head.head.weight": (64, 1536),
            "text_embedding.0.weight": (1536, 4096), "time_embedding.0.weight": (1536, 256),
            "blocks.0.ffn.0.weight": (8960, 1536), "blocks.29.ffn.0.weight": (8960, 1536),
            "blocks.0.norm3.weight": (1536,), "blocks.0.self_attn.norm_q.weight": (1536,)}
    assert transformer_config(real) == {
        "patch_size": (1, 2, 2), "num_attention_heads": 12, "attention_head_dim": 128,
        "in_channels": 16, "out_channels": 16, "text_dim": 4096, "freq_dim": 256,
        "ffn_dim": 8960, "num_layers": 30, "cross_attn_norm": True,
        "qk_norm": "rms_norm_across_heads"}


def test_a_truncated_or_foreign_file_is_a_clear_error_naming_the_node(wan):
    models = wan["folders"].models
    source = models / "diffusion_models" / f"{WAN21}.safetensors"
    dit_graphs.write_broken_files(source)
    for name, message in (("cut.safetensors", "truncated or corrupt"),
                          ("foreign.safetensors", "no weights of a known family")):
        error = run_error(graph(file_loader(WAN21, name)))
        assert error["node_id"] == "1"
        assert message in error["exception_message"]
    # A transformer alone in the checkpoint loader says where it belongs.
    dit_graphs.assert_checkpoint_loader_refuses(source)


def test_a_text_encoder_without_tokenizer_names_the_folder_to_fill(wan, tmp_path):
    models = wan["folders"].models
    state = load_file(models / "text_encoders" / f"{WAN21}_umt5.safetensors")
    del state["spiece_model"]
    save_file(state, models / "text_encoders" / "bare_umt5.safetensors")
    loader = file_loader(WAN21, f"{WAN21}.safetensors")
    loader["inputs"]["text_encoder"] = "bare_umt5.safetensors"
    error = run_error(graph(loader))
    assert "models/text_encoders/umt5-tokenizer/" in error["exception_message"]


def test_a_missing_component_file_is_refused_at_validation(wan):
    loader = file_loader(WAN21, f"{WAN21}.safetensors")
    loader["inputs"]["vae"] = "nope.safetensors"
    with pytest.raises(PromptError) as caught:
        validate_prompt(graph(loader), registry())
    assert "1" in caught.value.node_errors
    assert "models/vae/" in str(caught.value.node_errors["1"])


def test_the_windowed_loop_is_the_pipelines_loop_when_one_window_covers_the_clip(wan):
    """denoise_wan follows WanPipeline.__call__ step for step; only the model call differs."""
    from nodes.diffusion.windows import ContextWindows, denoise_wan

    pipe = wan["pipes"][WAN22]  # two experts: the switch is in the loop too
    embeds, negative = pipe.encode_prompt(VIDEO.prompt, VIDEO.negative, True, 1,
                                          max_sequence_length=512)
    args = dict(prompt_embeds=embeds, negative_prompt_embeds=negative, height=tiny_wan.SIZE,
                width=tiny_wan.SIZE, num_frames=9, num_inference_steps=3, guidance_scale=5.0)
    want = pipe(generator=torch.Generator().manual_seed(3), output_type="latent", **args).frames
    got = denoise_wan(pipe, ContextWindows(3, 3, 0), generator=torch.Generator().manual_seed(3),
                      callback_on_step_end=lambda *a: {}, **args)
    assert (got - want).abs().max().item() <= dit_graphs.TOLERANCE


def test_a_clip_longer_than_the_window_is_denoised_in_windows(wan):
    run = run_ok(graph(folder_loader(WAN21), frames=17, context_length=9, context_overlap=4))
    latents, frames = run.captured["4"]["samples"], run.captured["5"]
    assert latents.shape[2] == 5 and frames.shape[0] == 17  # 1 + 4 x 4 frames
    dit_graphs.assert_progress_per_step(run)
    plain = run_ok(graph(folder_loader(WAN21), frames=17))
    assert (plain.captured["4"]["samples"] - latents).abs().max() > 1e-3  # windows did apply


def test_wan21_image_to_video_gives_the_pipelines_clip(wan):
    """The keyframe goes to WanImageToVideoPipeline as the PIL image a user passes, from the
    folder and from single files with ComfyUI's CLIP vision file."""
    pipe = wan["pipes"][I2V]
    image = dit_graphs.stored_keyframe(wan["folders"])
    want = reference(pipe, image=image)
    assert_same(run_ok(with_keyframe(graph(folder_loader(I2V)))), *want)
    files = file_loader(I2V, f"{I2V}.safetensors", clip_vision=f"{I2V}_clip_vision.safetensors")
    assert_same(run_ok(with_keyframe(graph(files))), *want)
    # Without its keyframe, or without CLIP vision, the model cannot run: said plainly.
    for prompt, message in ((graph(folder_loader(I2V)), "connect a keyframe"),
                            (with_keyframe(graph(file_loader(I2V, f"{I2V}.safetensors"))),
                             "needs CLIP vision")):
        assert message in run_error(prompt)["exception_message"]


def test_a_keyframe_on_a_text_to_video_model_is_refused(wan):
    error = run_error(with_keyframe(graph(folder_loader(WAN21))))
    assert "disconnect the keyframe" in error["exception_message"]


def test_wan22_ti2v_makes_video_from_text_and_from_a_keyframe(wan):
    """TI2V-5B's layout: 48-channel residual VAE (wan2.2_vae.safetensors), a timestep per
    token; text → video through WanPipeline, keyframe → video through
    WanImageToVideoPipeline, from the folder and from ComfyUI's single files."""
    from diffusers import WanImageToVideoPipeline

    pipe = wan["pipes"][TI2V]
    files = file_loader(TI2V, f"{TI2V}.safetensors")
    want = reference(pipe)
    assert_same(run_ok(graph(folder_loader(TI2V))), *want)
    assert_same(run_ok(graph(files)), *want)
    image_pipe = dit_graphs.with_components(pipe, WanImageToVideoPipeline,
                                            boundary_ratio=None, expand_timesteps=True)
    want = reference(image_pipe, image=dit_graphs.stored_keyframe(wan["folders"]))
    assert_same(run_ok(with_keyframe(graph(folder_loader(TI2V)))), *want)
    assert_same(run_ok(with_keyframe(graph(file_loader(TI2V, f"{TI2V}.safetensors")))), *want)


def test_a_conditioning_from_another_dit_family_is_refused(wan):
    """UMT5, T5 and Llama embeddings are all 4096 wide: only the family tells them apart."""
    from nodes.diffusion.bundle import Conditioning, ModelBundle
    from nodes.diffusion.families.base import text_conditioning

    model = ModelBundle("wan", wan["pipes"][WAN21], "tiny-wan", torch.device("cpu"),
                        torch.float32)
    foreign = Conditioning("ltx", "tiny-ltx", "a", "", torch.zeros(1, 4, 32), None)
    with pytest.raises(ValueError, match="encoded by a ltx model"):
        text_conditioning(model, foreign, 32, own_encoder=True)
    assert text_conditioning(model, foreign, 32) is foreign  # UNet families share CLIP
