"""Tiny random CogVideoX models in the real formats, built offline: diffusers folders
(``CogVideoXPipeline``, ``CogVideoXImageToVideoPipeline``; a T5 encoder and the SentencePiece
tokenizer of ``tiny_wan``) and the single files the published weights come as, made from the
same weights: the transformer's and the VAE's ``diffusion_pytorch_model.safetensors`` (diffusers'
layout; the transformer also with ComfyUI's prefix in fp16, and fp8 "scaled") and a T5 file in
ComfyUI's layout carrying its tokenizer.

Three models, each like a published one in everything the loader reads from the weights or
takes from the published values:

- ``T2V``: CogVideoX-5B (1.0, 3-D RoPE), text to video;
- ``I2V``: CogVideoX-5B-I2V (1.0, image latents on the channels, a learned position table,
  here learned at the tiny clip's size: a folder only, as shapes cannot tell that size);
- ``I2V_15``: CogVideoX1.5-5B-I2V (2x2x2 patches, the "ofs" embedding, inverted latent
  scaling; its odd latent frame count is padded by the pipeline).
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import (
    AutoencoderKLCogVideoX,
    CogVideoXDDIMScheduler,
    CogVideoXImageToVideoPipeline,
    CogVideoXPipeline,
    CogVideoXTransformer3DModel,
)
from transformers import T5Config, T5EncoderModel

from nodes.diffusion.families.cogvideox import SAMPLE_1_0, SAMPLE_1_5
from nodes.diffusion.model_files import CONFIGS
from tests.generation import tiny_wan

T2V, I2V, I2V_15 = "tiny-cogvideox", "tiny-cogvideox-i2v", "tiny-cogvideox15-i2v"
TEXT_WIDTH = tiny_wan.TEXT_WIDTH  # the T5 encoder's (tiny_wan.t5_encoder)
# 9 frames are 3 latent frames of 4x4 (2x2 patches): an odd count, which CogVideoX 1.5 pads.
FRAMES, SIZE = 9, 32
LATENT_SIZE = SIZE // 8


def build_pipeline(kind: str, work: Path, seed: int = 0) -> CogVideoXPipeline:
    """One tiny model (``T2V``, ``I2V`` or ``I2V_15``) as its diffusers pipeline."""
    torch.manual_seed(seed)
    tok = tiny_wan.tokenizer(tiny_wan.spiece_model(), work / "spiece")
    encoder = tiny_wan.t5_encoder(len(tok), T5EncoderModel, T5Config)
    version_15 = kind == I2V_15
    if kind == T2V:
        layout = dict(in_channels=16, **SAMPLE_1_0)
    elif kind == I2V:
        layout = dict(in_channels=32, use_learned_positional_embeddings=True,
                      sample_height=LATENT_SIZE, sample_width=LATENT_SIZE, sample_frames=FRAMES)
    else:
        layout = dict(in_channels=32, patch_size_t=2, patch_bias=False, ofs_embed_dim=16,
                      **SAMPLE_1_5)
    # 16-wide heads (the real ones are 64): RoPE splits a head 4:6:6 over time, height, width.
    transformer = CogVideoXTransformer3DModel(
        num_attention_heads=2, attention_head_dim=16, out_channels=16, time_embed_dim=16,
        text_embed_dim=TEXT_WIDTH, num_layers=2, use_rotary_positional_embeddings=True,
        **layout)
    # The real VAE's shape in miniature: 4 levels (8x down, 4x in time), 32 groups per norm.
    vae = AutoencoderKLCogVideoX(block_out_channels=(32, 32, 32, 32), layers_per_block=1,
                                 scaling_factor=0.7, invert_scale_latents=version_15)
    scheduler = CogVideoXDDIMScheduler.from_pretrained(str(CONFIGS / "cogvideox"),
                                                       subfolder="scheduler")
    cls = CogVideoXPipeline if kind == T2V else CogVideoXImageToVideoPipeline
    pipe = cls(tokenizer=tok, text_encoder=encoder, vae=vae.eval(),
               transformer=transformer.eval(), scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def write_single_files(pipe: CogVideoXPipeline, spiece: bytes, models: Path, stem: str) -> None:
    """<stem>.safetensors (diffusers' layout, fp32), <stem>_comfy_fp16 (prefixed, fp16),
    <stem>_fp8_scaled (prefixed); the T5 file and the VAE beside."""
    # The transformer's diffusion_pytorch_model.safetensors is diffusers' own state dict.
    tiny_wan.write_transformer_files(tiny_wan.detached_state(pipe.transformer),
                                     models / "diffusion_models", stem)
    tiny_wan.save_weights(tiny_wan.comfy_text_encoder_state(pipe, spiece),
                          models / "text_encoders" / f"{stem}_t5xxl.safetensors")
    tiny_wan.save_weights(tiny_wan.detached_state(pipe.vae),
                          models / "vae" / f"{stem}_vae.safetensors")
