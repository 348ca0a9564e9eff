"""CogVideoX 1.0 / 1.5 through Kinema's graph give the diffusers pipelines' latents and frames:
text-to-video and image-to-video from diffusers folders, and from single files (the
transformer in diffusers' layout, fp32 / fp16 with ComfyUI's prefix / fp8 scaled, a ComfyUI T5
file with its tokenizer inside, the VAE) with the architecture read from the weights."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from diffusers import (
    CogVideoXDPMScheduler,
    CogVideoXPipeline,
    DDIMScheduler,
    EulerDiscreteScheduler,
)
from safetensors.torch import load_file, save_file

from nodes.diffusion.families.cogvideox import (
    check_frames,
    clip_frames,
    make_sampler,
    transformer_config,
    vae_config,
)
from tests.generation import dit_graphs, tiny_cogvideox, tiny_wan
from tests.generation.dit_graphs import TOLERANCE, assert_same, folder_loader, run_error, run_ok
from tests.generation.tiny_cogvideox import FRAMES, I2V, I2V_15, SIZE, T2V

SINGLE_FILES = {"fp32": f"{T2V}.safetensors", "fp16": f"{T2V}_comfy_fp16.safetensors",
                "fp8_scaled": f"{T2V}_fp8_scaled.safetensors"}
VIDEO = dit_graphs.Clip(frames=FRAMES, size=SIZE)
graph = VIDEO.graph


@pytest.fixture(scope="module")
def cog(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A models folder with the three tiny CogVideoX models, as folders and single files, and
    a keyframe image in the input folder."""
    with dit_graphs.models_folders(tmp_path_factory, "tiny-cogvideox") as folders:
        spiece = tiny_wan.spiece_model()
        pipes = {kind: tiny_cogvideox.build_pipeline(kind, folders.base / kind, seed=seed)
                 for seed, kind in enumerate((T2V, I2V, I2V_15))}
        for stem, pipe in pipes.items():
            pipe.save_pretrained(folders.models / "diffusers" / stem)
            tiny_cogvideox.write_single_files(pipe, spiece, folders.models, stem)
        dit_graphs.write_keyframe(folders, SIZE + 8, SIZE)
        # What a user would hand the pipeline: the PNG as an IMAGE, back to 8-bit PIL.
        yield {"folders": folders, "pipes": pipes, "image": dit_graphs.stored_keyframe(folders)}


def file_loader(stem: str, diffusion_model: str) -> dict[str, Any]:
    """DiTModelLoader of ``diffusion_model`` with ``stem``'s T5 and VAE files."""
    return dit_graphs.file_loader(diffusion_model, f"{stem}_t5xxl.safetensors",
                                  f"{stem}_vae.safetensors", diffusion_model_2="none")


def reference(pipe: CogVideoXPipeline, **overrides: Any) -> tuple[torch.Tensor, np.ndarray]:
    """(latents as Kinema's LATENT [B,C,F,H,W], frames [F,H,W,C]) of the pipeline called as a
    user calls it; CogVideoX 1.5's padding latent frame (the pipeline drops it before it
    decodes) is not part of the clip."""
    latents, frames = VIDEO.reference(pipe, **overrides)
    latent_frames = (VIDEO.pipeline_args(**overrides)["num_frames"] - 1) // 4 + 1
    padding = latents.shape[1] - latent_frames
    return latents[:, padding:].permute(0, 2, 1, 3, 4), frames


def with_weights(pipe: CogVideoXPipeline, stored: dict[str, torch.Tensor]) -> CogVideoXPipeline:
    """The same pipeline with the transformer's weights replaced by what a file means."""
    weights = {k.removeprefix("model.diffusion_model."): v.float() for k, v in stored.items()}
    model = type(pipe.transformer)(**pipe.transformer.config)
    model.load_state_dict(weights)
    return dit_graphs.with_components(pipe, transformer=model.eval())


def test_a_text_to_video_folder_gives_the_pipelines_clip(cog):
    run = run_ok(dit_graphs.with_latent_decode(graph(folder_loader(T2V))))
    latents, frames = reference(cog["pipes"][T2V])
    assert_same(run, latents, frames)
    dit_graphs.assert_progress_per_step(run)
    # The LATENT decodes to the same frames with LatentDecode (the whole clip at once).
    assert np.abs(run.captured["8"].numpy() - frames).max() <= TOLERANCE


@pytest.mark.parametrize("kind", [I2V, I2V_15])
def test_an_image_to_video_folder_gives_the_pipelines_clip(cog, kind):
    """The keyframe goes to the pipeline as the PIL image a user passes (1.0 with its learned
    position table; 1.5 with its padded latent frame)."""
    want = reference(cog["pipes"][kind], image=cog["image"])
    assert_same(run_ok(graph(folder_loader(kind), keyframe=True)), *want)


@pytest.mark.parametrize("variant", list(SINGLE_FILES))
def test_single_files_give_the_pipelines_clip(cog, variant):
    """Transformer, T5 (tokenizer inside) and VAE files, no config anywhere."""
    name = SINGLE_FILES[variant]
    stored = load_file(cog["folders"].models / "diffusion_models" / name)
    if variant == "fp8_scaled":
        stored = tiny_wan.dequantized(stored)
    want = reference(with_weights(cog["pipes"][T2V], stored))
    assert_same(run_ok(graph(file_loader(T2V, name))), *want)


def test_cogvideox15_image_to_video_single_files_give_the_pipelines_clip(cog):
    want = reference(cog["pipes"][I2V_15], image=cog["image"])
    run = run_ok(graph(file_loader(I2V_15, f"{I2V_15}.safetensors"), keyframe=True))
    assert_same(run, *want)


@pytest.mark.parametrize("sampler", ["dpmpp_2m", "euler"])
def test_samplers_run_on_the_models_noise_schedule(cog, sampler):
    """dpmpp_2m is CogVideoX's own DPM; diffusers' generic ones get the model's (SNR-shifted,
    zero-terminal) schedule as betas."""
    pipe = cog["pipes"][T2V]
    base = pipe.scheduler
    if sampler == "dpmpp_2m":
        scheduler = CogVideoXDPMScheduler.from_config(base.config)
    else:
        scheduler = EulerDiscreteScheduler.from_config(make_sampler("euler", base).config)
    reference_pipe = dit_graphs.with_components(pipe, CogVideoXPipeline, scheduler=scheduler)
    assert_same(run_ok(graph(folder_loader(T2V), scheduler=sampler)),
                *reference(reference_pipe))


@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_generic_samplers_get_the_shifted_schedule(cog, shift):
    base = type(cog["pipes"][T2V].scheduler).from_config(
        cog["pipes"][T2V].scheduler.config, snr_shift_scale=shift)
    for name in ("euler", "unipc", "euler_ancestral"):
        made = make_sampler(name, base)
        assert made.config.prediction_type == "v_prediction"
        got, want = made.alphas_cumprod[:-1].double(), base.alphas_cumprod[:-1].double()
        assert (got - want).abs().max().item() < 1e-5, name
    plain = DDIMScheduler.from_config(base.config)  # what a generic DDIM alone would use
    differs = (plain.alphas_cumprod[500].double() - base.alphas_cumprod[500]).abs().item()
    assert (differs > 1e-2) == (shift != 1.0)


def published(width: int, layers: int, proj: tuple[int, ...], **extra: tuple[int, ...],
              ) -> dict[str, Any]:
    """``transformer_config`` of a published CogVideoX transformer's shapes (the ones it reads)."""
    shapes = {"patch_embed.proj.weight": proj, "patch_embed.proj.bias": (width,),
              "patch_embed.text_proj.weight": (width, 4096),
              "time_embedding.linear_1.weight": (512, width),
              "transformer_blocks.0.attn1.norm_q.weight": (64,),
              "transformer_blocks.0.attn1.to_q.bias": (width,),
              f"transformer_blocks.{layers - 1}.norm1.linear.weight": (6 * width, 512),
              "proj_out.weight": (64 if len(proj) == 4 else 128, width), **extra}
    return transformer_config(shapes)


def test_the_architecture_is_read_from_the_shapes(cog):
    for kind in (T2V, I2V_15):
        model = cog["pipes"][kind].transformer
        shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        for key, value in transformer_config(shapes).items():
            assert model.config[key] == value, (kind, key)
    vae = cog["pipes"][T2V].vae
    config = vae_config({k: tuple(v.shape) for k, v in vae.state_dict().items()})
    for key in ("block_out_channels", "layers_per_block", "latent_channels", "in_channels",
                "out_channels", "norm_num_groups", "temporal_compression_ratio"):
        assert list(np.atleast_1d(vae.config[key])) == list(np.atleast_1d(config[key])), key
    # The published models' shapes give their published configurations.
    two_b = published(1920, 30, (1920, 16, 2, 2))
    assert (two_b["num_attention_heads"], two_b["num_layers"]) == (30, 30)
    assert not two_b["use_rotary_positional_embeddings"]
    five_b = published(3072, 42, (3072, 16, 2, 2))
    assert (five_b["num_attention_heads"], five_b["num_layers"]) == (48, 42)
    assert five_b["use_rotary_positional_embeddings"]
    assert (five_b["sample_height"], five_b["sample_width"], five_b["sample_frames"]) == (
        60, 90, 49)
    i2v = published(3072, 42, (3072, 32, 2, 2),
                    **{"patch_embed.pos_embedding": (1, 226 + 30 * 45 * 13, 3072)})
    assert i2v["in_channels"] == 32 and i2v["use_learned_positional_embeddings"]
    v15 = published(3072, 42, (3072, 256), **{"ofs_embedding.linear_1.weight": (512, 512)})
    assert (v15["patch_size_t"], v15["in_channels"], v15["out_channels"]) == (2, 32, 16)
    assert (v15["ofs_embed_dim"], v15["sample_frames"], v15["sample_height"]) == (512, 81, 300)


def test_frame_counts_the_pipeline_would_change_are_refused_with_the_nearest(cog):
    # The VAE decodes latent frames in pairs: 13 latent frames are 49 frames, 12 are 48.
    assert [clip_frames(f, 4) for f in (1, 8, 9, 16, 17, 45, 48, 49)] == [
        1, 8, 9, 16, 17, 48, 48, 49]
    with pytest.raises(ValueError, match="Choose 41 or 48 frames"):
        check_frames(45, 4)
    error = run_error(graph(folder_loader(T2V), frames=13))
    assert "Choose 9 or 16 frames" in error["exception_message"]
    assert error["node_id"] == "3"
    too_long = run_error(graph(folder_loader(I2V), frames=57, keyframe=True))
    assert "make at most 9 frames" in too_long["exception_message"]


def test_keyframes_are_required_by_image_models_and_refused_by_text_models(cog):
    for prompt, message in ((graph(folder_loader(T2V), keyframe=True), "disconnect the keyframe"),
                            (graph(folder_loader(I2V)), "connect a keyframe")):
        assert message in run_error(prompt)["exception_message"]


def test_a_foreign_truncated_or_unreadable_file_is_a_clear_error(cog):
    models = cog["folders"].models
    source = models / "diffusion_models" / f"{T2V}.safetensors"
    dit_graphs.write_broken_files(source, without="proj_out.weight")
    save_file({"model.diffusion_model.mixins.patch_embed.proj.weight": torch.zeros(2)},
              models / "diffusion_models" / "sat.safetensors")
    for name, message in (("cut.safetensors", "truncated or corrupt"),
                          ("foreign.safetensors", "no weights of a known family"),
                          ("partial.safetensors", "the file is incomplete"),
                          ("sat.safetensors", "original (SAT) CogVideoX checkpoint"),
                          (f"{I2V}.safetensors", "cannot tell its configuration")):
        error = run_error(graph(file_loader(T2V, name)))
        assert error["node_id"] == "1"
        assert message in error["exception_message"], name
    # A VAE of another family, and the transformer in the checkpoint loader, say what to do.
    loader = file_loader(T2V, f"{T2V}.safetensors")
    dit_graphs.write_foreign(models / "vae" / "foreign_vae.safetensors")
    loader["inputs"]["vae"] = "foreign_vae.safetensors"
    assert "not a CogVideoX VAE" in run_error(graph(loader))["exception_message"]
    dit_graphs.assert_checkpoint_loader_refuses(source)


def test_latent_decode_tiles_when_asked_and_after_running_out_of_memory(cog, monkeypatch):
    dit_graphs.assert_decode_tiles(monkeypatch, type(cog["pipes"][T2V].vae),
                                   lambda **kw: graph(folder_loader(T2V), **kw), FRAMES)


def test_the_windowed_loop_is_the_pipelines_loop_when_one_window_covers_the_clip(cog):
    """denoise_cogvideox follows CogVideoXPipeline.__call__ step for step; only the model call
    differs."""
    from nodes.diffusion.windows import ContextWindows, denoise_cogvideox

    pipe = cog["pipes"][T2V]
    embeds, negative = pipe.encode_prompt(VIDEO.prompt, VIDEO.negative, True, 1,
                                          max_sequence_length=226)
    args = dict(prompt_embeds=embeds, negative_prompt_embeds=negative, height=SIZE, width=SIZE,
                num_frames=FRAMES, num_inference_steps=3, guidance_scale=5.0)
    want = pipe(generator=torch.Generator().manual_seed(3), output_type="latent", **args).frames
    latent_frames = (FRAMES - 1) // pipe.vae_scale_factor_temporal + 1
    got = denoise_cogvideox(pipe, ContextWindows(latent_frames, latent_frames, 0),
                            generator=torch.Generator().manual_seed(3),
                            callback_on_step_end=lambda *a: {}, **args)
    assert (got - want).abs().max().item() <= TOLERANCE


def test_a_clip_longer_than_the_window_is_denoised_in_windows(cog):
    dit_graphs.assert_windows_apply(lambda **kw: graph(folder_loader(T2V), **kw))
