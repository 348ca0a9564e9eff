"""HunyuanVideo T2V through Kinema's graph gives HunyuanVideoPipeline's latents and frames, from
a diffusers folder and from ComfyUI's single files (the transformer in Tencent's layout: fp32,
fp16 with ComfyUI's prefix, fp8 scaled; the Llama plain and fp8 scaled; CLIP-L; the VAE), with
the architecture read from the weights and the tokenizers from their folders."""

from __future__ import annotations

import inspect
import shutil
from typing import Any

import numpy as np
import pytest
import torch
from diffusers import (
    AutoencoderKLHunyuanVideo,
    FlowMatchEulerDiscreteScheduler,
    HunyuanVideoPipeline,
    HunyuanVideoTransformer3DModel,
    UniPCMultistepScheduler,
)
from safetensors.torch import load_file
from transformers import CLIPTextConfig, LlamaConfig, LlamaModel

from nodes.diffusion.families.hunyuan import (
    clip_config,
    convert_transformer,
    llama_config,
    transformer_config,
    vae_config,
)
from tests.generation import dit_graphs, tiny_hunyuan, tiny_wan
from tests.generation.dit_graphs import TOLERANCE, assert_same, folder_loader, run_error, run_ok
from tests.generation.tiny_hunyuan import FRAMES, SIZE, STEM

LLAMA, LLAMA_FP8 = f"{STEM}_llava_llama3.safetensors", f"{STEM}_llava_llama3_fp8_scaled.safetensors"
CLIP = f"{STEM}_clip_l.safetensors"
# Transformer file, Llama file.
SINGLE_FILES = {"fp32": (f"{STEM}.safetensors", LLAMA),
                "fp16": (f"{STEM}_comfy_fp16.safetensors", LLAMA),
                "fp8_scaled": (f"{STEM}_fp8_scaled.safetensors", LLAMA_FP8)}
# A text-to-video model: the keyframe the tests offer it is a black image.
VIDEO = dit_graphs.Clip(frames=FRAMES, size=SIZE, keyframe={
    "class_type": "EmptyImage", "inputs": {
        "width": SIZE, "height": SIZE, "batch_size": 1, "color": 0}})
# reference: (latents [B,C,F,H,W], frames [F,H,W,C]) of the pipeline called as a user calls it
# (cfg is its embedded guidance_scale; the negative prompt goes unused, as there).
graph, reference = VIDEO.graph, VIDEO.reference


@pytest.fixture(scope="module")
def hunyuan(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A models folder with the tiny HunyuanVideo as a diffusers folder and as single files."""
    with dit_graphs.models_folders(tmp_path_factory, "tiny-hunyuan") as folders:
        pipe = tiny_hunyuan.build_pipeline(folders.base / "work")
        pipe.save_pretrained(folders.models / "diffusers" / STEM)
        tiny_hunyuan.write_single_files(pipe, folders.models)
        yield {"folders": folders, "pipe": pipe}


def file_loader(diffusion_model: str = f"{STEM}.safetensors", text_encoder: str = LLAMA,
                text_encoder_2: str = CLIP, vae: str = f"{STEM}_vae.safetensors",
                ) -> dict[str, Any]:
    """DiTModelLoader of the single files, the tiny model's by default."""
    return dit_graphs.file_loader(diffusion_model, text_encoder, vae,
                                  diffusion_model_2="none", text_encoder_2=text_encoder_2)


def with_weights(pipe: HunyuanVideoPipeline, transformer: dict[str, torch.Tensor],
                 llama: dict[str, torch.Tensor]) -> HunyuanVideoPipeline:
    """The same pipeline with the transformer's and the Llama's weights replaced by what the
    files mean."""
    original = {k.removeprefix("model.diffusion_model."): v.float() for k, v in transformer.items()}
    model = type(pipe.transformer)(**pipe.transformer.config)
    model.load_state_dict(convert_transformer(original, 128))
    encoder = LlamaModel(pipe.text_encoder.config)
    encoder.load_state_dict({k.removeprefix("model."): v.float() for k, v in llama.items()})
    return dit_graphs.with_components(pipe, transformer=model.eval(), text_encoder=encoder.eval())


def test_a_diffusers_folder_gives_the_pipelines_clip(hunyuan):
    run = run_ok(dit_graphs.with_latent_decode(graph(folder_loader(STEM))))
    latents, frames = reference(hunyuan["pipe"])
    assert_same(run, latents, frames)
    dit_graphs.assert_progress_per_step(run)
    # The LATENT decodes to the same frames with LatentDecode (the whole clip at once).
    assert np.abs(run.captured["8"].numpy() - frames).max() <= TOLERANCE


@pytest.mark.parametrize("variant", list(SINGLE_FILES))
def test_comfyui_single_files_give_the_pipelines_clip(hunyuan, variant):
    """Transformer, Llama, CLIP-L and VAE files, no config beside them; the tokenizers from
    models/text_encoders/llama-tokenizer/ and clip-tokenizer/."""
    models = hunyuan["folders"].models
    transformer, llama = SINGLE_FILES[variant]
    stored = load_file(models / "diffusion_models" / transformer)
    encoder = load_file(models / "text_encoders" / llama)
    if variant == "fp8_scaled":
        stored, encoder = tiny_wan.dequantized(stored), tiny_wan.dequantized(encoder)
    want = reference(with_weights(hunyuan["pipe"], stored, encoder))
    assert_same(run_ok(graph(file_loader(transformer, llama))), *want)


@pytest.mark.parametrize("sampler,shift", [("euler", 5.0), ("unipc", 8.0)])
def test_flow_samplers_with_shift_are_the_diffusers_schedulers(hunyuan, sampler, shift):
    pipe = hunyuan["pipe"]
    if sampler == "euler":
        scheduler = FlowMatchEulerDiscreteScheduler.from_config(pipe.scheduler.config,
                                                                shift=shift)
    else:
        scheduler = UniPCMultistepScheduler.from_config(
            pipe.scheduler.config, prediction_type="flow_prediction", use_flow_sigmas=True,
            flow_shift=shift)
    reference_pipe = dit_graphs.with_components(pipe, HunyuanVideoPipeline, scheduler=scheduler)
    run = run_ok(graph(folder_loader(STEM), scheduler=sampler, shift=shift))
    assert_same(run, *reference(reference_pipe))


def test_samplers_the_pipeline_cannot_drive_are_refused(hunyuan):
    error = run_error(graph(folder_loader(STEM), scheduler="dpmpp_2m"))
    assert "dpmpp_2m cannot take" in error["exception_message"]
    assert "default, euler, unipc" in error["exception_message"]
    error = run_error(graph(folder_loader(STEM), scheduler="ddim"))
    assert "not a flow-matching sampler" in error["exception_message"]
    assert error["node_id"] == "3"


def test_clips_the_model_cannot_make_are_refused_clearly(hunyuan):
    for settings, message in (({"frames": 10}, "choose 9 or 13 frames"),
                              ({"width": 40}, "multiples of 16 pixels")):
        error = run_error(graph(folder_loader(STEM), **settings))
        assert message in error["exception_message"], settings
        assert error["node_id"] == "3"
    error = run_error(graph(folder_loader(STEM), keyframe=True))
    assert "HunyuanVideo text-to-video: disconnect the keyframe" in error["exception_message"]


def test_the_architecture_is_read_from_the_shapes(hunyuan):
    pipe = hunyuan["pipe"]

    def same(config: dict[str, Any], stored: dict[str, Any]) -> None:
        for key, value in config.items():
            want = stored[key]
            want = list(want) if isinstance(want, list | tuple) else want
            assert (list(value) if isinstance(value, list | tuple) else value) == want, key

    original = tiny_hunyuan.original_transformer_state(pipe.transformer)
    same(transformer_config({k: tuple(v.shape) for k, v in original.items()}),
         dict(pipe.transformer.config))
    same(vae_config({k: tuple(v.shape) for k, v in pipe.vae.state_dict().items()}),
         dict(pipe.vae.config))
    def settings(config: Any) -> dict[str, Any]:  # what builds the model, not how it ran
        return {k: v for k, v in config.to_diff_dict().items()
                if k not in ("architectures", "dtype")}

    llama = llama_config({k: tuple(v.shape) for k, v in pipe.text_encoder.state_dict().items()})
    assert settings(LlamaConfig(**llama)) == settings(pipe.text_encoder.config)
    clip = clip_config({k.removeprefix("text_model."): tuple(v.shape)
                        for k, v in pipe.text_encoder_2.state_dict().items()})
    ids = {k: getattr(pipe.tokenizer_2, k) for k in ("bos_token_id", "eos_token_id",
                                                     "pad_token_id")}
    assert settings(CLIPTextConfig(**clip, **ids)) == settings(pipe.text_encoder_2.config)


def test_the_published_shapes_give_the_published_configurations():
    """HunyuanVideo 13B (diffusers' defaults are its published config), its VAE (the same),
    llava-llama-3-8b and CLIP-L."""
    width = 3072
    transformer = transformer_config({
        "img_in.proj.weight": (width, 16, 1, 2, 2), "final_layer.linear.weight": (64, width),
        "double_blocks.19.img_mod.linear.weight": (6 * width, width),
        "double_blocks.0.img_mlp.fc1.weight": (4 * width, width),
        "single_blocks.39.linear1.weight": (7 * width, width),
        "txt_in.individual_token_refiner.blocks.1.norm1.weight": (width,),
        "guidance_in.mlp.0.weight": (width, 256), "txt_in.input_embedder.weight": (width, 4096),
        "vector_in.in_layer.weight": (width, 768)})
    defaults = {name: p.default for name, p in
                inspect.signature(HunyuanVideoTransformer3DModel.__init__).parameters.items()
                if name != "self"}
    assert {k: list(v) if isinstance(v, list | tuple) else v for k, v in transformer.items()} == {
        k: list(v) if isinstance(v, list | tuple) else v for k, v in defaults.items()}
    assert (transformer["num_attention_heads"], transformer["num_layers"],
            transformer["num_single_layers"]) == (24, 20, 40)
    channels = (128, 256, 512, 512)
    vae_shapes = {"encoder.conv_in.conv.weight": (128, 3, 3, 3, 3),
                  "decoder.conv_out.conv.weight": (3, 128, 3, 3, 3),
                  "decoder.conv_in.conv.weight": (512, 16, 3, 3, 3),
                  "encoder.down_blocks.0.resnets.1.conv1.conv.weight": (128, 128, 3, 3, 3),
                  "encoder.mid_block.attentions.0.to_q.weight": (512, 512)}
    for i, c in enumerate(channels):
        vae_shapes[f"encoder.down_blocks.{i}.resnets.0.conv2.conv.weight"] = (c, c, 3, 3, 3)
    vae = vae_config(vae_shapes)
    vae_defaults = {name: p.default for name, p in
                    inspect.signature(AutoencoderKLHunyuanVideo.__init__).parameters.items()
                    if name != "self"}
    assert {k: list(v) if isinstance(v, list | tuple) else v for k, v in vae.items()} == {
        k: list(v) if isinstance(v, list | tuple) else v for k, v in vae_defaults.items()}
    llama = llama_config({"embed_tokens.weight": (128320, 4096),
                          "layers.31.input_layernorm.weight": (4096,),
                          "layers.0.self_attn.q_proj.weight": (4096, 4096),
                          "layers.0.self_attn.k_proj.weight": (1024, 4096),
                          "layers.0.mlp.gate_proj.weight": (14336, 4096)})
    assert {k: llama[k] for k in ("vocab_size", "num_hidden_layers", "num_attention_heads",
                                  "num_key_value_heads", "intermediate_size", "rope_theta",
                                  "rms_norm_eps")} == {
        "vocab_size": 128320, "num_hidden_layers": 32, "num_attention_heads": 32,
        "num_key_value_heads": 8, "intermediate_size": 14336, "rope_theta": 500000.0,
        "rms_norm_eps": 1e-5}
    clip = clip_config({"embeddings.token_embedding.weight": (49408, 768),
                        "embeddings.position_embedding.weight": (77, 768),
                        "encoder.layers.11.mlp.fc1.weight": (3072, 768),
                        "encoder.layers.0.mlp.fc1.weight": (3072, 768)})
    assert (clip["num_hidden_layers"], clip["num_attention_heads"], clip["hidden_act"]) == (
        12, 12, "quick_gelu")


def test_wrong_or_missing_files_are_clear_errors(hunyuan):
    models = hunyuan["folders"].models
    source = models / "diffusion_models" / f"{STEM}.safetensors"
    dit_graphs.write_broken_files(source, without="final_layer.linear.weight")
    for name, message in (("cut.safetensors", "truncated or corrupt"),
                          ("foreign.safetensors", "no weights of a known family"),
                          ("partial.safetensors", "the file is incomplete")):
        error = run_error(graph(file_loader(name)))
        assert error["node_id"] == "1"
        assert message in error["exception_message"], name
    dit_graphs.write_foreign(models / "vae" / "foreign_vae.safetensors")
    for loader, message in (
            (file_loader(vae="foreign_vae.safetensors"), "not a HunyuanVideo VAE"),
            (file_loader(text_encoder=CLIP), "is CLIP-L: it goes in text_encoder_2"),
            (file_loader(text_encoder_2=LLAMA), "is not a CLIP text encoder"),
            (file_loader(text_encoder_2="none"), "needs CLIP-L")):
        assert message in run_error(graph(loader))["exception_message"]
    # An input HunyuanVideo has no use for is refused by name.
    dit_graphs.write_foreign(models / "clip_vision" / "vision.safetensors")
    loader = file_loader()
    loader["inputs"]["clip_vision"] = "vision.safetensors"
    assert "has no clip_vision: set clip_vision to none" in run_error(
        graph(loader))["exception_message"]
    dit_graphs.assert_checkpoint_loader_refuses(source)


def test_a_missing_llama_tokenizer_names_its_folder(hunyuan):
    folder = hunyuan["folders"].models / "text_encoders" / "llama-tokenizer"
    moved = folder.with_name("llama-tokenizer-away")
    shutil.move(folder, moved)
    try:
        message = run_error(graph(file_loader()))["exception_message"]
    finally:
        shutil.move(moved, folder)
    assert "models/text_encoders/llama-tokenizer/" in message
    assert "carries no tokenizer" in message


def test_the_windowed_loop_is_the_pipelines_loop_when_one_window_covers_the_clip(hunyuan):
    """denoise_hunyuan follows HunyuanVideoPipeline.__call__ step for step; only the model
    call differs."""
    from nodes.diffusion.windows import ContextWindows, denoise_hunyuan

    pipe = hunyuan["pipe"]
    embeds, pooled, mask = pipe.encode_prompt(prompt=VIDEO.prompt, device=torch.device("cpu"),
                                              max_sequence_length=256)
    args = dict(prompt_embeds=embeds, pooled_prompt_embeds=pooled, prompt_attention_mask=mask,
                height=SIZE, width=SIZE, num_frames=FRAMES, num_inference_steps=3,
                guidance_scale=5.0)
    want = pipe(generator=torch.Generator().manual_seed(3), output_type="latent", **args).frames
    got = denoise_hunyuan(pipe, ContextWindows(3, 3, 0), generator=torch.Generator().manual_seed(3),
                          callback_on_step_end=lambda *a: {}, **args)
    assert (got - want).abs().max().item() <= TOLERANCE


def test_a_clip_longer_than_the_window_is_denoised_in_windows(hunyuan):
    dit_graphs.assert_windows_apply(lambda **kw: graph(folder_loader(STEM), **kw))
