"""Tiny random Wan models in the real formats, built offline: a diffusers ``WanPipeline`` folder
(UMT5 encoder and a SentencePiece tokenizer trained here on a few sentences), and ComfyUI's
single files made from the same weights (original key layout, with and without the
``model.diffusion_model.`` prefix, fp16 and fp8 "scaled"; the UMT5 file carrying its tokenizer
as the ``spiece_model`` tensor).

The original layouts are written by inverting diffusers' own conversions, and each inversion is
checked by converting back, so the files are what diffusers (and ComfyUI) read.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import sentencepiece
import torch
from diffusers import (
    AutoencoderKLWan,
    UniPCMultistepScheduler,
    WanImageToVideoPipeline,
    WanPipeline,
    WanTransformer3DModel,
)
from diffusers.loaders.single_file_utils import (
    convert_wan_transformer_to_diffusers,
    convert_wan_vae_to_diffusers,
)
from safetensors.torch import save_file
from transformers import (
    CLIPVisionConfig,
    CLIPVisionModel,
    T5Tokenizer,
    UMT5Config,
    UMT5EncoderModel,
)
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

from nodes.diffusion.model_files import CONFIGS

SENTENCES = ("a cat walks on the beach at sunset", "the dog runs in the park",
             "waves crash on the shore", "a red car drives down the road",
             "blurry low quality still image", "a bird flies over the sea")
TEXT_WIDTH = 32
CLIP_WIDTH = 64
FRAMES, SIZE = 5, 32  # 2 latent frames of 4x4: the smallest clip the VAE makes


def spiece_model() -> bytes:
    """A SentencePiece unigram model trained on a few sentences (T5's special ids)."""
    out = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(SENTENCES * 10), model_writer=out, vocab_size=48,
        model_type="unigram", pad_id=0, eos_id=1, unk_id=2, bos_id=-1, hard_vocab_limit=False,
        minloglevel=2, num_threads=1)
    return out.getvalue()


def tokenizer(spiece: bytes, folder: Path) -> T5Tokenizer:
    """The T5 tokenizer of the SentencePiece model ``spiece``, saved to ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "spiece.model").write_bytes(spiece)
    return T5Tokenizer.from_pretrained(str(folder), extra_ids=0)


def t5_encoder(vocab_size: int, model: type = UMT5EncoderModel,
               config: type = UMT5Config) -> torch.nn.Module:
    """A tiny T5-family text encoder, ``TEXT_WIDTH`` wide, in eval mode: UMT5 (Wan's) by
    default, or T5 (LTX-Video's and CogVideoX's) with ``T5EncoderModel`` and ``T5Config``."""
    return model(config(
        vocab_size=vocab_size, d_model=TEXT_WIDTH, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
        relative_attention_num_buckets=8, relative_attention_max_distance=128,
        feed_forward_proj="gated-gelu", is_encoder_decoder=False,
        tie_word_embeddings=False)).eval()


def build_wan_pipeline(work: Path, *, two_experts: bool = False, seed: int = 0,
                       image_to_video: bool = False, ti2v: bool = False) -> WanPipeline:
    """Tiny Wan 2.1 T2V; Wan 2.2 A14B-like with ``two_experts``; Wan 2.1 I2V (36 input
    channels, CLIP vision features through extra k/v) with ``image_to_video``; Wan 2.2
    TI2V-5B-like (48-channel residual VAE, a timestep per token) with ``ti2v``."""
    torch.manual_seed(seed)
    tok = tokenizer(spiece_model(), work / "spiece")
    encoder = t5_encoder(len(tok))

    image = dict(in_channels=36, image_dim=CLIP_WIDTH, added_kv_proj_dim=128) if (
        image_to_video) else dict(in_channels=16)
    channels = 48 if ti2v else 16
    if ti2v:
        image = dict(in_channels=48)

    def transformer() -> WanTransformer3DModel:
        # One 128-wide head: every Wan model's head width, which the loader assumes.
        return WanTransformer3DModel(num_attention_heads=1, attention_head_dim=128,
                                     out_channels=channels, text_dim=TEXT_WIDTH, freq_dim=32,
                                     ffn_dim=64, num_layers=2, **image)

    high = transformer()
    low = transformer() if two_experts else None
    if ti2v:
        statistics = json.loads((CONFIGS / "wan" / "vae22" / "config.json").read_text())
        statistics.pop("_class_name")
        vae = AutoencoderKLWan(base_dim=8, decoder_base_dim=8, z_dim=48, in_channels=12,
                               out_channels=12, patch_size=2, scale_factor_spatial=16,
                               **statistics)
    else:
        vae = AutoencoderKLWan(base_dim=8)
    scheduler = UniPCMultistepScheduler.from_pretrained(str(CONFIGS / "wan"),
                                                        subfolder="scheduler")
    parts = dict(tokenizer=tok, text_encoder=encoder, vae=vae.eval(), scheduler=scheduler,
                 transformer=high.eval(), transformer_2=low.eval() if low is not None else None,
                 boundary_ratio=0.875 if two_experts else None, expand_timesteps=ti2v)
    if image_to_video:
        vision = CLIPVisionModel(CLIPVisionConfig(
            hidden_size=CLIP_WIDTH, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=1, image_size=28, patch_size=14, hidden_act="quick_gelu",
            projection_dim=CLIP_WIDTH))
        processor = CLIPImageProcessorPil(size={"shortest_edge": 28},
                                          crop_size={"height": 28, "width": 28})
        pipe = WanImageToVideoPipeline(**parts, image_encoder=vision.eval(),
                                       image_processor=processor)
    else:
        pipe = WanPipeline(**parts)
    pipe.set_progress_bar_config(disable=True)
    return pipe


# diffusers → original (Wan) transformer names; applied in order.
TRANSFORMER_NAMES = (
    ("condition_embedder.image_embedder.norm1", "img_emb.proj.0"),
    ("condition_embedder.image_embedder.ff.net.0.proj", "img_emb.proj.1"),
    ("condition_embedder.image_embedder.ff.net.2", "img_emb.proj.3"),
    ("condition_embedder.image_embedder.norm2", "img_emb.proj.4"),
    (".add_k_proj.", ".k_img."), (".add_v_proj.", ".v_img."),
    (".norm_added_k.", ".norm_k_img."),
    ("condition_embedder.time_embedder.linear_1", "time_embedding.0"),
    ("condition_embedder.time_embedder.linear_2", "time_embedding.2"),
    ("condition_embedder.text_embedder.linear_1", "text_embedding.0"),
    ("condition_embedder.text_embedder.linear_2", "text_embedding.2"),
    ("condition_embedder.time_proj", "time_projection.1"),
    ("attn1", "self_attn"), ("attn2", "cross_attn"), (".to_out.0.", ".o."), (".to_q.", ".q."),
    (".to_k.", ".k."), (".to_v.", ".v."), ("ffn.net.0.proj", "ffn.0"), ("ffn.net.2", "ffn.2"),
    ("proj_out", "head.head"), ("norm2", "norm__swap"), ("norm3", "norm2"),
    ("norm__swap", "norm3"),
)


def original_transformer_state(model: WanTransformer3DModel) -> dict[str, torch.Tensor]:
    state = {}
    for key, value in model.state_dict().items():
        new = key
        for old, name in TRANSFORMER_NAMES:
            new = new.replace(old, name)
        if new == "scale_shift_table":
            new = "head.modulation"
        new = new.replace(".scale_shift_table", ".modulation")
        state[new] = value.detach().clone()
    _check_inverse(state, model.state_dict(), convert_wan_transformer_to_diffusers)
    return state


def original_vae_state(vae: AutoencoderKLWan) -> dict[str, torch.Tensor]:
    resnet = {"norm1.gamma": "residual.0.gamma", "conv1": "residual.2",
              "norm2.gamma": "residual.3.gamma", "conv2": "residual.6",
              "conv_shortcut": "shortcut"}

    def rename(key: str) -> str:
        fixed = {"quant_conv": "conv1", "post_quant_conv": "conv2"}
        head, _, rest = key.partition(".")
        if head in fixed:
            return f"{fixed[head]}.{rest}"
        for old, new in (("conv_in.", "conv1."), ("norm_out.gamma", "head.0.gamma"),
                         ("conv_out.", "head.2."), ("mid_block.attentions.0.", "middle.1.")):
            if rest.startswith(old):
                return f"{head}.{new}{rest[len(old):]}"
        if m := re.match(r"mid_block\.resnets\.(\d)\.(.+)\.(weight|bias|gamma)$", rest):
            part = f"{m.group(2)}.{m.group(3)}" if m.group(3) == "gamma" else m.group(2)
            tail = "" if m.group(3) == "gamma" else f".{m.group(3)}"
            return f"{head}.middle.{2 * int(m.group(1))}.{resnet[part]}{tail}"
        if m := re.match(r"down_blocks\.(\d+)\.(.+)$", rest):
            return f"{head}.downsamples.{m.group(1)}.{_resnet_part(m.group(2), resnet)}"
        if m := re.match(r"up_blocks\.(\d)\.resnets\.(\d)\.(.+)$", rest):
            index = 4 * int(m.group(1)) + int(m.group(2))
            return f"{head}.upsamples.{index}.{_resnet_part(m.group(3), resnet)}"
        if m := re.match(r"up_blocks\.(\d)\.upsamplers\.0\.(.+)$", rest):
            return f"{head}.upsamples.{4 * int(m.group(1)) + 3}.{m.group(2)}"
        return key

    def rename22(key: str) -> str:
        """Wan 2.2's nested blocks: resamplers after 2 encoder / 3 decoder resnets."""
        if m := re.match(r"(encoder|decoder)\.(down|up)_blocks\.(\d)\.resnets\.(\d)\.(.+)$",
                         key):
            side, way, block, index, rest = m.groups()
            return f"{side}.{way}samples.{block}.{way}samples.{index}.{_resnet_part(rest, resnet)}"
        if m := re.match(r"(encoder|decoder)\.(down|up)_blocks\.(\d)\.(?:down|up)sampler\.(.+)$",
                         key):
            side, way, block, rest = m.groups()
            return f"{side}.{way}samples.{block}.{way}samples.{2 if way == 'down' else 3}.{rest}"
        return rename(key)

    residual = vae.config.is_residual
    state = {(rename22 if residual else rename)(k): v.detach().clone()
             for k, v in vae.state_dict().items()}
    if residual:
        from nodes.diffusion.families.wan import wan22_vae_block_name

        _check_inverse(state, vae.state_dict(), lambda s: convert_wan_vae_to_diffusers(
            {wan22_vae_block_name(k): v for k, v in s.items()}))
    else:
        _check_inverse(state, vae.state_dict(), convert_wan_vae_to_diffusers)
    return state


def _resnet_part(rest: str, names: dict[str, str]) -> str:
    for old, new in names.items():
        if rest.startswith(old + ".") or rest == old:
            return new + rest[len(old):]
    return rest


def _check_inverse(original: dict, diffusers_state: dict, convert) -> None:
    back = convert(dict(original))
    assert set(back) == set(diffusers_state), sorted(set(back) ^ set(diffusers_state))[:6]


def detached_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A copy of ``module``'s weights, apart from the module (what a file saved from it holds)."""
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def save_weights(state: dict[str, torch.Tensor], path: Path) -> None:
    """``state`` as the safetensors file ``path``, its folder made if need be."""
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, path)


def write_transformer_files(state: dict[str, torch.Tensor], folder: Path, stem: str) -> None:
    """A transformer as ComfyUI's repackaged files in ``folder``: <stem>.safetensors (``state``
    as given, no prefix), and under ``model.diffusion_model.`` <stem>_comfy_fp16 (fp16) and
    <stem>_fp8_scaled."""
    prefixed = {f"model.diffusion_model.{k}": v for k, v in state.items()}
    save_weights(state, folder / f"{stem}.safetensors")
    save_weights({k: v.half() for k, v in prefixed.items()},
                 folder / f"{stem}_comfy_fp16.safetensors")
    save_weights(fp8_scaled(prefixed), folder / f"{stem}_fp8_scaled.safetensors")


def comfy_text_encoder_state(pipe: WanPipeline, spiece: bytes) -> dict[str, torch.Tensor]:
    """What ComfyUI saves for UMT5: the encoder's weights and its tokenizer as bytes."""
    state = {k: v.detach().clone() for k, v in pipe.text_encoder.state_dict().items()
             if k != "encoder.embed_tokens.weight"}
    state["spiece_model"] = torch.frombuffer(bytearray(spiece), dtype=torch.uint8)
    return state


def fp8_scaled(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """ComfyUI's fp8 "scaled" format: 2-D weights stored as fp8 times a per-tensor scale."""
    out: dict[str, torch.Tensor] = {"scaled_fp8": torch.zeros(0, dtype=torch.float8_e4m3fn)}
    for key, value in state.items():
        if key.endswith(".weight") and value.ndim == 2:
            scale = value.abs().max().float().clamp(min=1e-8) / 448.0
            out[key] = (value.float() / scale).to(torch.float8_e4m3fn)
            out[key[: -len(".weight")] + ".scale_weight"] = scale.reshape(1)
        else:
            out[key] = value
    return out


def dequantized(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The weights an fp8-scaled file means (what the reference pipeline runs)."""
    return {k: (v.float() * state[k[: -len(".weight")] + ".scale_weight"].float()
                if k[: -len(".weight")] + ".scale_weight" in state else v)
            for k, v in state.items() if k != "scaled_fp8" and not k.endswith(".scale_weight")}


def write_single_files(pipe: WanPipeline, spiece: bytes, models: Path, stem: str) -> None:
    """ComfyUI's repackaged files: <stem>.safetensors (no prefix, fp32), <stem>_comfy_fp16
    (prefixed, fp16), <stem>_fp8_scaled (prefixed); umt5 and VAE files beside."""
    folder = models / "diffusion_models"
    write_transformer_files(original_transformer_state(pipe.transformer), folder, stem)
    if pipe.transformer_2 is not None:
        save_weights(original_transformer_state(pipe.transformer_2),
                     folder / f"{stem}_low_noise.safetensors")
    save_weights(comfy_text_encoder_state(pipe, spiece),
                 models / "text_encoders" / f"{stem}_umt5.safetensors")
    save_weights(original_vae_state(pipe.vae), models / "vae" / f"{stem}_vae.safetensors")
    encoder = getattr(pipe, "image_encoder", None)
    if encoder is not None:  # ComfyUI's clip_vision files: prefixed, with the projection
        state = {f"vision_model.{k.removeprefix('vision_model.')}": v.detach().clone()
                 for k, v in encoder.state_dict().items()}
        state["visual_projection.weight"] = torch.randn(CLIP_WIDTH, CLIP_WIDTH)
        save_weights(state, models / "clip_vision" / f"{stem}_clip_vision.safetensors")


def wan_lora(transformer: WanTransformer3DModel, rank: int = 4, seed: int = 0,
             ) -> dict[str, torch.Tensor]:
    """A random LoRA in the original (ComfyUI / musubi-tuner) key layout: lora_down/lora_up and
    alpha on every attention and feed-forward projection."""
    generator = torch.Generator().manual_seed(seed)
    original = original_transformer_state(transformer)
    state = {}
    for key, weight in original.items():
        if not re.match(r"blocks\.\d+\.(self_attn|cross_attn)\.[qkvo]\.weight$|"
                        r"blocks\.\d+\.ffn\.[02]\.weight$", key):
            continue
        stem = "diffusion_model." + key.removesuffix(".weight")
        out_features, in_features = weight.shape
        state[f"{stem}.lora_down.weight"] = torch.randn(rank, in_features, generator=generator)
        state[f"{stem}.lora_up.weight"] = 0.1 * torch.randn(out_features, rank,
                                                            generator=generator)
        state[f"{stem}.alpha"] = torch.tensor(float(rank))
    return state
