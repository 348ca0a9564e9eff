"""A tiny random HunyuanVideo in the real formats, built offline: a diffusers
``HunyuanVideoPipeline`` folder (a tiny ``LlamaModel`` with a word-level Llama-3-style tokenizer
built here, a tiny CLIP text model with the byte-level CLIP tokenizer of ``tiny_tokenizer``) and
ComfyUI's single files made from the same weights: the transformer in Tencent's key layout
(plain fp32, prefixed fp16, prefixed fp8 "scaled"), the VAE, the Llama under ``model.`` (fp32
and fp8 scaled) and CLIP-L; the tokenizer folders go in ``models/text_encoders/``.

The transformer's original layout is written by inverting diffusers' conversion, and the
inversion is checked by converting back (through Kinema's converter, which calls diffusers').
Every size the loader reads from shapes is small; what it cannot read (128-wide heads, the
shipped configs) is as published.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from diffusers import (
    AutoencoderKLHunyuanVideo,
    FlowMatchEulerDiscreteScheduler,
    HunyuanVideoPipeline,
    HunyuanVideoTransformer3DModel,
)
from diffusers.pipelines.hunyuan_video.pipeline_hunyuan_video import DEFAULT_PROMPT_TEMPLATE
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import (
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTokenizer,
    LlamaConfig,
    LlamaModel,
    PreTrainedTokenizerFast,
)

from nodes.diffusion.families.hunyuan import convert_transformer
from nodes.diffusion.model_files import CONFIGS, read_json
from tests.generation import tiny_wan
from tests.generation.tiny_tokenizer import vocab_size, write_clip_tokenizer

STEM = "tiny-hunyuan"
FRAMES, SIZE = 9, 32  # 3 latent frames of 4x4 (2x2 patches)
LLAMA_WIDTH, CLIP_WIDTH = 128, 64  # one 128-wide Llama head, one 64-wide CLIP head
WIDTH = 128  # one 128-wide transformer head
BOS, EOS, PAD, UNK = "<|begin_of_text|>", "<|end_of_text|>", "<pad>", "<unk>"
TEMPLATE_TOKENS = ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>")
WORDS = re.compile(r"\w+|[^\w\s]+")
CONFIG = CONFIGS / "hunyuan_video"


def fixed(component: str) -> dict:
    """What the loader takes from the shipped config for a component (shapes cannot tell)."""
    return {k: v for k, v in read_json(CONFIG / component / "config.json").items()
            if not k.startswith("_")}


def llama_tokenizer(folder: Path) -> PreTrainedTokenizerFast:
    """A word-level tokenizer over the template's and the tests' words, with Llama 3's special
    tokens (a begin-of-text token first, as Llama 3's post-processor adds), saved to ``folder``."""
    specials = [BOS, EOS, PAD, UNK, *TEMPLATE_TOKENS]
    text = DEFAULT_PROMPT_TEMPLATE["template"]
    for token in TEMPLATE_TOKENS:
        text = text.replace(token, " ")
    text += " " + " ".join(tiny_wan.SENTENCES) + " a cat walks on the beach blurry"
    vocab = {token: i for i, token in enumerate(specials)}
    for word in WORDS.findall(text):
        vocab.setdefault(word, len(vocab))
    core = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.add_special_tokens(specials)
    core.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, vocab[BOS])])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, bos_token=BOS, eos_token=EOS,
                                        pad_token=PAD, unk_token=UNK, padding_side="right")
    tokenizer.save_pretrained(str(folder))
    return tokenizer


def clip_tokenizer(folder: Path) -> CLIPTokenizer:
    """The tiny byte-level CLIP tokenizer, read with CLIP-L's 77 tokens as the loader reads it."""
    write_clip_tokenizer(folder)
    return CLIPTokenizer.from_pretrained(str(folder), model_max_length=77)


def build_pipeline(work: Path, seed: int = 0) -> HunyuanVideoPipeline:
    """The tiny HunyuanVideo T2V (guidance-distilled: a guidance embedder)."""
    torch.manual_seed(seed)
    tokenizer = llama_tokenizer(work / "llama-tokenizer")
    tokenizer_2 = clip_tokenizer(work / "clip-tokenizer")
    # hidden_states[-3] is what the pipeline reads: 3 layers leave one after it.
    llama = LlamaModel(LlamaConfig(
        **fixed("text_encoder"), vocab_size=len(tokenizer), hidden_size=LLAMA_WIDTH,
        intermediate_size=256, num_hidden_layers=3, num_attention_heads=1,
        num_key_value_heads=1, head_dim=128, attention_bias=False))
    clip = CLIPTextModel(CLIPTextConfig(
        **fixed("text_encoder_2"), vocab_size=vocab_size(work / "clip-tokenizer"),
        hidden_size=CLIP_WIDTH, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=1, max_position_embeddings=77,
        bos_token_id=tokenizer_2.bos_token_id, eos_token_id=tokenizer_2.eos_token_id,
        pad_token_id=tokenizer_2.pad_token_id))
    transformer = HunyuanVideoTransformer3DModel(
        **fixed("transformer"), in_channels=16, out_channels=16, num_attention_heads=1,
        attention_head_dim=128, num_layers=2, num_single_layers=2, num_refiner_layers=1,
        mlp_ratio=4.0, patch_size=2, patch_size_t=1, guidance_embeds=True,
        text_embed_dim=LLAMA_WIDTH, pooled_projection_dim=CLIP_WIDTH)
    # The real VAE's shape in miniature: 4 levels (8x down, 4x in time), 32 groups per norm.
    vae = AutoencoderKLHunyuanVideo(**fixed("vae"), block_out_channels=(32, 32, 32, 32),
                                    layers_per_block=1, latent_channels=16)
    scheduler = FlowMatchEulerDiscreteScheduler.from_pretrained(str(CONFIG),
                                                                subfolder="scheduler")
    pipe = HunyuanVideoPipeline(text_encoder=llama.eval(), tokenizer=tokenizer,
                                transformer=transformer.eval(), vae=vae.eval(),
                                scheduler=scheduler, text_encoder_2=clip.eval(),
                                tokenizer_2=tokenizer_2)
    pipe.set_progress_bar_config(disable=True)
    return pipe


# diffusers → Tencent names: top-level modules (whole prefixes), then per kind of block.
TOP_NAMES = (
    ("context_embedder.time_text_embed.timestep_embedder.linear_1", "txt_in.t_embedder.mlp.0"),
    ("context_embedder.time_text_embed.timestep_embedder.linear_2", "txt_in.t_embedder.mlp.2"),
    ("context_embedder.time_text_embed.text_embedder.linear_1", "txt_in.c_embedder.linear_1"),
    ("context_embedder.time_text_embed.text_embedder.linear_2", "txt_in.c_embedder.linear_2"),
    ("context_embedder.proj_in", "txt_in.input_embedder"),
    ("context_embedder.token_refiner.refiner_blocks", "txt_in.individual_token_refiner.blocks"),
    ("time_text_embed.timestep_embedder.linear_1", "time_in.mlp.0"),
    ("time_text_embed.timestep_embedder.linear_2", "time_in.mlp.2"),
    ("time_text_embed.guidance_embedder.linear_1", "guidance_in.mlp.0"),
    ("time_text_embed.guidance_embedder.linear_2", "guidance_in.mlp.2"),
    ("time_text_embed.text_embedder.linear_1", "vector_in.in_layer"),
    ("time_text_embed.text_embedder.linear_2", "vector_in.out_layer"),
    ("x_embedder", "img_in"),
    ("single_transformer_blocks", "single_blocks"),
    ("transformer_blocks", "double_blocks"),
    ("proj_out", "final_layer.linear"),
)
BLOCK_NAMES = {
    "txt_in.individual_token_refiner.blocks": {
        "attn.to_out.0": "self_attn_proj", "ff.net.0.proj": "mlp.fc1", "ff.net.2": "mlp.fc2",
        "norm_out.linear": "adaLN_modulation.1"},
    "double_blocks": {
        "norm1.linear": "img_mod.linear", "norm1_context.linear": "txt_mod.linear",
        "attn.norm_q": "img_attn_q_norm", "attn.norm_k": "img_attn_k_norm",
        "attn.norm_added_q": "txt_attn_q_norm", "attn.norm_added_k": "txt_attn_k_norm",
        "attn.to_out.0": "img_attn_proj", "attn.to_add_out": "txt_attn_proj",
        "ff.net.0.proj": "img_mlp.fc1", "ff.net.2": "img_mlp.fc2",
        "ff_context.net.0.proj": "txt_mlp.fc1", "ff_context.net.2": "txt_mlp.fc2"},
    "single_blocks": {
        "proj_out": "linear2", "attn.norm_q": "q_norm", "attn.norm_k": "k_norm",
        "norm.linear": "modulation.linear"},
}
BLOCK = re.compile(r"^(txt_in\.individual_token_refiner\.blocks|double_blocks|single_blocks)"
                   r"\.(\d+)\.(.+)\.(weight|bias)$")


def original_transformer_state(model: HunyuanVideoTransformer3DModel,
                               ) -> dict[str, torch.Tensor]:
    """The transformer in Tencent's layout (what ComfyUI's hunyuan_video_t2v_720p file holds):
    fused q/k/v (and the single blocks' MLP input), [shift, scale] final modulation."""
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    config = model.config
    out: dict[str, torch.Tensor] = {}

    def fuse(target: str, *sources: str) -> None:
        for kind in ("weight", "bias"):
            out[f"{target}.{kind}"] = torch.cat([state.pop(f"{s}.{kind}") for s in sources])

    for n in range(config.num_layers):
        block = f"transformer_blocks.{n}.attn"
        fuse(f"double_blocks.{n}.img_attn_qkv", *(f"{block}.to_{x}" for x in "qkv"))
        fuse(f"double_blocks.{n}.txt_attn_qkv", *(f"{block}.add_{x}_proj" for x in "qkv"))
    for n in range(config.num_single_layers):
        block = f"single_transformer_blocks.{n}"
        fuse(f"single_blocks.{n}.linear1", *(f"{block}.attn.to_{x}" for x in "qkv"),
             f"{block}.proj_mlp")
    for n in range(config.num_refiner_layers):
        block = f"context_embedder.token_refiner.refiner_blocks.{n}.attn"
        fuse(f"txt_in.individual_token_refiner.blocks.{n}.self_attn_qkv",
             *(f"{block}.to_{x}" for x in "qkv"))
    for kind in ("weight", "bias"):
        scale, shift = state.pop(f"norm_out.linear.{kind}").chunk(2)
        out[f"final_layer.adaLN_modulation.1.{kind}"] = torch.cat([shift, scale])
    for key, value in state.items():
        new = key
        for old, name in TOP_NAMES:
            if new.startswith(old):
                new = name + new[len(old):]
                break
        if m := BLOCK.match(new):
            kind, index, module, suffix = m.groups()
            module = BLOCK_NAMES[kind].get(module, module)
            new = f"{kind}.{index}.{module}.{suffix}"
        out[new] = value
    back = convert_transformer(dict(out), config.num_attention_heads * config.attention_head_dim)
    want = model.state_dict()
    assert set(back) == set(want), sorted(set(back) ^ set(want))[:6]
    assert all(torch.equal(back[k], want[k]) for k in want)
    return out


def comfy_llama_state(llama: LlamaModel) -> dict[str, torch.Tensor]:
    """ComfyUI's llava_llama3 file: transformers' layout under ``model.``."""
    return {f"model.{k}": v.detach().clone() for k, v in llama.state_dict().items()}


def comfy_clip_state(clip: CLIPTextModel) -> dict[str, torch.Tensor]:
    """ComfyUI's clip_l file: the text tower, with the projection and the position ids older
    files carry (neither is used for the pooled embedding)."""
    # transformers 4's names, which ComfyUI's files keep (transformers 5 drops text_model.).
    state = {f"text_model.{k.removeprefix('text_model.')}": v.detach().clone()
             for k, v in clip.state_dict().items()}
    width = clip.config.hidden_size
    state["text_projection.weight"] = torch.randn(width, width)
    state["text_model.embeddings.position_ids"] = torch.arange(
        clip.config.max_position_embeddings)[None]
    return state


def write_single_files(pipe: HunyuanVideoPipeline, models: Path) -> None:
    """The single files beside each other as ComfyUI keeps them, and the tokenizer folders."""
    tiny_wan.write_transformer_files(original_transformer_state(pipe.transformer),
                                     models / "diffusion_models", STEM)
    encoders = models / "text_encoders"
    llama = comfy_llama_state(pipe.text_encoder)
    tiny_wan.save_weights(llama, encoders / f"{STEM}_llava_llama3.safetensors")
    tiny_wan.save_weights(tiny_wan.fp8_scaled(llama),
                          encoders / f"{STEM}_llava_llama3_fp8_scaled.safetensors")
    tiny_wan.save_weights(comfy_clip_state(pipe.text_encoder_2),
                          encoders / f"{STEM}_clip_l.safetensors")
    pipe.tokenizer.save_pretrained(str(encoders / "llama-tokenizer"))
    write_clip_tokenizer(encoders / "clip-tokenizer")
    tiny_wan.save_weights(tiny_wan.detached_state(pipe.vae),
                          models / "vae" / f"{STEM}_vae.safetensors")
