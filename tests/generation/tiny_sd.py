"""A tiny random Stable Diffusion model in the real formats, built offline.

``build_sd_folder`` saves a StableDiffusionPipeline as a diffusers folder; ``write_ldm_checkpoint``
writes the same weights as one file in the original (LDM / CompVis) key layout, the inverse of
diffusers' ``convert_ldm_unet_checkpoint`` / ``convert_ldm_vae_checkpoint`` /
``convert_ldm_clip_checkpoint``, with its ``<stem>.config/`` sidecar.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import torch
from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from safetensors.torch import save_file
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from tests.generation.tiny_tokenizer import vocab_size, write_clip_tokenizer

LAYERS_PER_BLOCK = 2


def build_sd_pipeline(tokenizer_dir: Path, seed: int = 0, *,
                      sd2: bool = False) -> StableDiffusionPipeline:
    """SD 1.x's architecture at toy size: 2 UNet levels, a 2-level VAE, a 2-layer CLIP.

    ``sd2``: SD 2.x's differences (linear attention projections, GELU text encoder).
    """
    write_clip_tokenizer(tokenizer_dir)
    tokenizer = CLIPTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True)
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, layers_per_block=LAYERS_PER_BLOCK,
        block_out_channels=(32, 64), norm_num_groups=8, cross_attention_dim=32,
        attention_head_dim=4, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), use_linear_projection=sd2)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(16, 32),
        layers_per_block=1, norm_num_groups=8, sample_size=32,
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2)
    special = tokenizer.convert_tokens_to_ids(["<|startoftext|>", "<|endoftext|>"])
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=vocab_size(tokenizer_dir), hidden_size=32, intermediate_size=64,
        num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=16,
        hidden_act="gelu" if sd2 else "quick_gelu", projection_dim=32, bos_token_id=special[0],
        eos_token_id=special[1], pad_token_id=special[1]))
    scheduler = PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              skip_prk_steps=True, steps_offset=1, set_alpha_to_one=False)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                                   unet=unet, scheduler=scheduler, safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def build_sd_folder(folder: Path, tokenizer_dir: Path, seed: int = 0) -> StableDiffusionPipeline:
    """The tiny pipeline saved as a diffusers folder (safetensors) at ``folder``."""
    pipe = build_sd_pipeline(tokenizer_dir, seed)
    pipe.save_pretrained(str(folder), safe_serialization=True)
    return pipe


def write_ldm_checkpoint(pipe: StableDiffusionPipeline, path: Path, *,
                         with_tokenizer: bool = True) -> Path:
    """The pipeline's weights as one LDM-layout file, plus the ``<stem>.config/`` sidecar."""
    sd2 = pipe.unet.config.use_linear_projection  # how build_sd_pipeline marks SD 2.x
    text = ldm_open_clip(pipe.text_encoder) if sd2 else ldm_clip(pipe.text_encoder)
    state = {**ldm_unet(pipe.unet), **ldm_vae(pipe.vae), **text}
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:  # .ckpt / .pth: the training-checkpoint shape, weights under "state_dict"
        torch.save({"state_dict": state, "global_step": 1}, str(path))
    sidecar = path.with_name(path.stem + ".config")
    shutil.rmtree(sidecar, ignore_errors=True)
    pipe.save_pretrained(str(sidecar), safe_serialization=True)
    for weights in sidecar.rglob("*.safetensors"):  # the sidecar holds configs only
        weights.unlink()
    if not with_tokenizer:
        shutil.rmtree(sidecar / "tokenizer")
    return path


_RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "norm2": "out_layers.0",
           "conv2": "out_layers.3", "time_emb_proj": "emb_layers.1",
           "conv_shortcut": "skip_connection"}
_UNET_TOP = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
             "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2"}


def ldm_unet(unet: UNet2DConditionModel, prefix: str = "model.diffusion_model.",
             ) -> dict[str, torch.Tensor]:
    """diffusers UNet keys → the original ``input_blocks``/``middle_block``/``output_blocks``."""
    per = unet.config.layers_per_block + 1  # LDM numbers a level's resnets and its resampler
    up_has_attn = {b: bool(getattr(blk, "attentions", None)) for b, blk in
                   enumerate(unet.up_blocks)}
    out = {}
    for key, value in unet.state_dict().items():
        module, _, leaf = key.rpartition(".")
        if module in _UNET_TOP:
            new = f"{_UNET_TOP[module]}.{leaf}"
        elif m := re.match(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", key):
            block, kind, layer, rest = int(m[1]), m[2], int(m[3]), m[4]
            index = 1 + block * per + layer
            new = (f"input_blocks.{index}.0.{_resnet(rest)}" if kind == "resnets"
                   else f"input_blocks.{index}.1.{rest}")
        elif m := re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)", key):
            new = f"input_blocks.{1 + int(m[1]) * per + per - 1}.0.op.{m[2]}"
        elif m := re.match(r"mid_block\.resnets\.(\d+)\.(.*)", key):
            new = f"middle_block.{2 * int(m[1])}.{_resnet(m[2])}"
        elif m := re.match(r"mid_block\.attentions\.0\.(.*)", key):
            new = f"middle_block.1.{m[1]}"
        elif m := re.match(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", key):
            block, kind, layer, rest = int(m[1]), m[2], int(m[3]), m[4]
            index = block * per + layer
            new = (f"output_blocks.{index}.0.{_resnet(rest)}" if kind == "resnets"
                   else f"output_blocks.{index}.1.{rest}")
        elif m := re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)", key):
            block = int(m[1])
            slot = 2 if up_has_attn[block] else 1
            new = f"output_blocks.{block * per + per - 1}.{slot}.conv.{m[2]}"
        else:
            raise KeyError(f"no LDM name for UNet key {key}")
        out[prefix + new] = value
    return out


def _resnet(rest: str) -> str:
    module, _, leaf = rest.partition(".")
    return f"{_RESNET.get(module, module)}.{leaf}"


_VAE_ATTN = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def ldm_vae(vae: AutoencoderKL, prefix: str = "first_stage_model.") -> dict[str, torch.Tensor]:
    """diffusers VAE keys → the original ``encoder.down.N.block.M`` / ``decoder.up`` layout."""
    levels = len(vae.config.block_out_channels)
    out = {}
    for key, value in vae.state_dict().items():
        new = key.replace("conv_norm_out", "norm_out")
        if m := re.match(r"(encoder|decoder)\.(down|up)_blocks\.(\d+)\.(resnets|downsamplers|"
                         r"upsamplers)\.(\d+)\.(.*)", key):
            side, way, block, kind, layer, rest = m.groups()
            level = int(block) if way == "down" else levels - 1 - int(block)
            if kind == "resnets":
                rest = rest.replace("conv_shortcut", "nin_shortcut")
                new = f"{side}.{way}.{level}.block.{layer}.{rest}"
            else:
                new = f"{side}.{way}.{level}.{'downsample' if way == 'down' else 'upsample'}.{rest}"
        elif m := re.match(r"(encoder|decoder)\.mid_block\.resnets\.(\d+)\.(.*)", key):
            rest = m[3].replace("conv_shortcut", "nin_shortcut")
            new = f"{m[1]}.mid.block_{int(m[2]) + 1}.{rest}"
        elif m := re.match(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.*)\.(weight|bias)$",
                           key):
            new = f"{m[1]}.mid.attn_1.{_VAE_ATTN[m[2]]}.{m[3]}"
            if m[3] == "weight" and value.ndim == 2:  # LDM's attention projections are 1x1 convs
                value = value[:, :, None, None]
        out[prefix + new] = value
    return out


def ldm_clip(text_encoder: CLIPTextModel, prefix: str = "cond_stage_model.transformer.",
             ) -> dict[str, torch.Tensor]:
    """CLIP keep transformers' names under ``cond_stage_model.transformer.text_model.``."""
    out = {}
    for key, value in text_encoder.state_dict().items():
        name = key if key.startswith("text_model.") else f"text_model.{key}"
        out[prefix + name] = value
    return out


_OPEN_CLIP = {"layer_norm1": "ln_1", "layer_norm2": "ln_2", "mlp.fc1": "mlp.c_fc",
              "mlp.fc2": "mlp.c_proj", "self_attn.out_proj": "attn.out_proj"}


def ldm_open_clip(text_encoder: CLIPTextModel, prefix: str = "cond_stage_model.model.",
                  ) -> dict[str, torch.Tensor]:
    """SD 2.x's OpenCLIP layout: ``transformer.resblocks.N`` with fused q/k/v projections."""
    state = {k.removeprefix("text_model."): v for k, v in text_encoder.state_dict().items()}
    hidden = text_encoder.config.hidden_size
    out = {"token_embedding.weight": state.pop("embeddings.token_embedding.weight"),
           "positional_embedding": state.pop("embeddings.position_embedding.weight"),
           "ln_final.weight": state.pop("final_layer_norm.weight"),
           "ln_final.bias": state.pop("final_layer_norm.bias"),
           "text_projection": torch.eye(hidden)}  # unused by CLIPTextModel, as in SD 2.x
    for layer in range(text_encoder.config.num_hidden_layers):
        old, new = f"encoder.layers.{layer}.", f"transformer.resblocks.{layer}."
        for kind in ("weight", "bias"):
            out[f"{new}attn.in_proj_{kind}"] = torch.cat(
                [state.pop(f"{old}self_attn.{p}_proj.{kind}") for p in "qkv"])
            for ours, theirs in _OPEN_CLIP.items():
                out[f"{new}{theirs}.{kind}"] = state.pop(f"{old}{ours}.{kind}")
    assert not state, f"unconverted text encoder keys: {sorted(state)}"
    return {prefix + k: v for k, v in out.items()}
