"""Tiny random video models in their real diffusers formats, built offline for tests.

Each builder writes a diffusers folder with ``save_pretrained`` (model_index.json, configs,
safetensors) and the tests load it back with ``from_pretrained(local_files_only=True)``:
- ModelScope / Zeroscope: ``TextToVideoSDPipeline`` (UNet3DConditionModel, AutoencoderKL,
  CLIPTextModel on the tiny CLIP tokenizer, DDIM);
- AnimateDiff: the tiny SD 1.x of ``tiny_sd.py`` with the adapters of ``tiny_motion.py``;
- Stable Video Diffusion: ``StableVideoDiffusionPipeline`` (UNetSpatioTemporalConditionModel,
  AutoencoderKLTemporalDecoder, CLIPVisionModelWithProjection, CLIPImageProcessor, Euler).
Sizes are the smallest the architectures accept (group norms of 32 for SVD), so a 32x32,
4-12 frame clip denoises in well under a second on two CPU cores.
"""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before diffusers/transformers read it

from pathlib import Path

import torch
from diffusers import (
    AutoencoderKL,
    AutoencoderKLTemporalDecoder,
    DDIMScheduler,
    EulerDiscreteScheduler,
    StableVideoDiffusionPipeline,
    TextToVideoSDPipeline,
    UNet3DConditionModel,
    UNetSpatioTemporalConditionModel,
)
from transformers import (
    CLIPImageProcessor,
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTokenizer,
    CLIPVisionConfig,
    CLIPVisionModelWithProjection,
)

from tests.generation.tiny_tokenizer import vocab_size, write_clip_tokenizer

TEXT_DIM = 16  # CLIP hidden size = the UNets' cross-attention size
SIZE = 32  # pixels; the tiny VAEs downsample by 2, so latents are 16x16
SVD_WINDOW = 4  # the tiny SVD UNet's num_frames (its context window)
MODELSCOPE_FOLDER, SVD_FOLDER = "tiny-modelscope", "tiny-svd"


def _text_parts() -> tuple[CLIPTokenizer, CLIPTextModel]:
    with tempfile.TemporaryDirectory() as scratch:  # the pipeline saves its own copy
        tok_dir = write_clip_tokenizer(Path(scratch))
        tokenizer = CLIPTokenizer.from_pretrained(tok_dir, local_files_only=True)
        vocab = vocab_size(tok_dir)
    config = CLIPTextConfig(
        vocab_size=vocab, hidden_size=TEXT_DIM, intermediate_size=32,
        num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=16,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, projection_dim=TEXT_DIM)
    return tokenizer, CLIPTextModel(config).eval()


def _vae() -> AutoencoderKL:
    return AutoencoderKL(
        block_out_channels=(8, 16), in_channels=3, out_channels=3, latent_channels=4,
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
        norm_num_groups=4, sample_size=SIZE)


def _ddim(beta_schedule: str) -> DDIMScheduler:
    return DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule=beta_schedule,
                         clip_sample=False, set_alpha_to_one=False, steps_offset=1)


def build_modelscope(target: Path, seed: int = 0) -> Path:
    """A tiny ModelScope-style ``TextToVideoSDPipeline`` saved as a diffusers folder."""
    torch.manual_seed(seed)
    tokenizer, text_encoder = _text_parts()
    unet = UNet3DConditionModel(
        block_out_channels=(8, 16), layers_per_block=1, sample_size=SIZE // 2,
        in_channels=4, out_channels=4, cross_attention_dim=TEXT_DIM, attention_head_dim=4,
        norm_num_groups=4, down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
        up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"))
    pipe = TextToVideoSDPipeline(vae=_vae(), text_encoder=text_encoder, tokenizer=tokenizer,
                                 unet=unet, scheduler=_ddim("scaled_linear"))
    pipe.save_pretrained(target)
    return target


def build_svd(target: Path, seed: int = 0) -> Path:
    """A tiny ``StableVideoDiffusionPipeline`` saved as a diffusers folder."""
    torch.manual_seed(seed)
    unet = UNetSpatioTemporalConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=SIZE // 2,
        in_channels=8, out_channels=4, cross_attention_dim=32, num_attention_heads=(2, 4),
        num_frames=SVD_WINDOW, addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=24,
        down_block_types=("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
        up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"))
    vae = AutoencoderKLTemporalDecoder(
        block_out_channels=(32, 64), in_channels=3, out_channels=3, latent_channels=4,
        down_block_types=("DownEncoderBlock2D",) * 2, layers_per_block=1, sample_size=SIZE)
    # 224 px in 32 px patches: the pipeline resizes a PIL keyframe to CLIP's 224x224 itself.
    vision = CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=32, projection_dim=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=37, image_size=224, patch_size=32)).eval()
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
        prediction_type="v_prediction", interpolation_type="linear", sigma_max=700.0,
        sigma_min=0.002, steps_offset=1, timestep_spacing="leading",
        timestep_type="continuous", use_karras_sigmas=True)
    pipe = StableVideoDiffusionPipeline(
        vae=vae, image_encoder=vision, unet=unet, scheduler=scheduler,
        feature_extractor=CLIPImageProcessor(crop_size=224, size=224))
    pipe.save_pretrained(target)
    return target


def build_all(models: Path) -> dict[str, Path]:
    """ModelScope and SVD as diffusers folders where the loader looks (``models/diffusers/``)."""
    return {"modelscope": build_modelscope(models / "diffusers" / MODELSCOPE_FOLDER),
            "svd": build_svd(models / "diffusers" / SVD_FOLDER)}
