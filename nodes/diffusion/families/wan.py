"""Wan 2.1 / 2.2 text-to-video: a diffusion transformer over spacetime patches (diffusers'
``WanTransformer3DModel``), a causal 3-D VAE (``AutoencoderKLWan``) and UMT5 text embeddings,
run by ``WanPipeline``.

Two ways in:

- a diffusers folder (``WanPipeline``; Wan 2.2 A14B's has ``transformer_2`` and a
  ``boundary_ratio``; TI2V-5B's ``expand_timesteps``), loaded as is;
- ComfyUI's "repackaged" single files, one per component (``diffusion_models/``,
  ``text_encoders/``, ``vae/``), in the original or ComfyUI layout (with or without the
  ``model.diffusion_model.`` prefix), fp32/fp16/bf16/fp8 and fp8 "scaled". The architecture
  is read from the tensors' shapes as ComfyUI's model detection reads it, so any size loads
  with no config; only the sampler (UniPC, flow shift 3) is shipped, since shapes cannot tell
  it.

Wan 2.2 A14B is two experts of the same shape: the high-noise one denoises while the timestep is
at or above ``boundary_ratio`` x 1000, the low-noise one after.
"""

from __future__ import annotations

import math
import re
from typing import Any

import torch
from accelerate import init_empty_weights
from diffusers import (
    AutoencoderKLWan,
    WanImageToVideoPipeline,
    WanPipeline,
    WanTransformer3DModel,
)
from diffusers.loaders.single_file_utils import (
    convert_wan_transformer_to_diffusers,
    convert_wan_vae_to_diffusers,
)

from nodes.diffusion.anchor import keyframe_image
from nodes.diffusion.bundle import WAN, Conditioning, ModelBundle, MotionModule
from nodes.diffusion.clip_vision import clip_image_processor, load_clip_vision
from nodes.diffusion.families.base import (
    COMFY_PREFIX,
    ComponentFile,
    Family,
    Shapes,
    TextEmbeddings,
    VideoLatents,
    VideoSettings,
    config_from_shapes,
    fill_model,
    image_frames,
    latent_windows,
    no_motion,
    quiet,
    refuse_parts,
    scheduler_from,
    strip_prefix,
    text_conditioning,
    transformer_run,
)
from nodes.diffusion.model_files import (
    CLIP_VISION_DIR,
    DIFFUSION_MODELS_DIR,
    TEXT_ENCODERS_DIR,
    VAE_DIR,
    ModelLoadError,
    read_json,
    shipped_config,
)
from nodes.diffusion.progress import step_callback
from nodes.diffusion.schedulers import make_flow_scheduler
from nodes.diffusion.t5_encoders import load_t5_encoder, load_t5_tokenizer
from nodes.diffusion.video_vae import decode_video_latents
from nodes.diffusion.weights import StateDict, shapes_of
from nodes.diffusion.windows import ContextWindows, denoise_wan

MARKER = "head.modulation"
UMT5_TOKENIZER = "umt5-tokenizer"
# Every Wan transformer has 128-wide attention heads (1.3B: 12, 5B: 24, 14B: 40), as ComfyUI's
# model detection assumes: the head count is not in any tensor's shape.
HEAD_DIM = 128
# WanPipeline's own defaults: 480p, 512 text tokens; the models were trained on 81 frames.
DEFAULT_WIDTH, DEFAULT_HEIGHT = 832, 480
TEXT_TOKENS = 512
WINDOW_FRAMES = 81
# Wan 2.2 A14B's expert switch (its configs): T2V at t = 875, I2V at t = 900.
BOUNDARY_T2V, BOUNDARY_I2V = 0.875, 0.9
I2V_CHANNELS = 36  # 16 noise + 4 mask + 16 image latent channels
TI2V_CHANNELS = 48  # Wan 2.2 TI2V-5B: the 48-channel VAE's latents
WAN22_VAE_MARKER = "encoder.downsamples.0.downsamples.0.residual.0.gamma"
DIM_MULT_LAST = 4  # AutoencoderKLWan's dim_mult [1, 2, 4, 4]: the decoder starts 4x wide
VAE_DOWNSAMPLING = 8  # three 2x spatial downsamplings
BLOCK = re.compile(r"blocks\.(\d+)\.")


def transformer_config(shapes: Shapes) -> dict[str, Any]:
    """``WanTransformer3DModel``'s config from an original-layout state dict's shapes."""
    dim, in_channels, *patch = shapes["patch_embedding.weight"]
    out_channels = shapes["head.head.weight"][0] // (patch[0] * patch[1] * patch[2])
    config: dict[str, Any] = dict(
        patch_size=tuple(patch), num_attention_heads=dim // HEAD_DIM,
        attention_head_dim=HEAD_DIM, in_channels=in_channels, out_channels=out_channels,
        text_dim=shapes["text_embedding.0.weight"][1],
        freq_dim=shapes["time_embedding.0.weight"][1],
        ffn_dim=shapes["blocks.0.ffn.0.weight"][0],
        num_layers=1 + max(int(m.group(1)) for k in shapes if (m := BLOCK.match(k))),
        cross_attn_norm="blocks.0.norm3.weight" in shapes,
        qk_norm="rms_norm_across_heads" if "blocks.0.self_attn.norm_q.weight" in shapes else None)
    if "img_emb.proj.1.weight" in shapes:  # I2V: CLIP vision tokens through their own k/v
        config.update(image_dim=shapes["img_emb.proj.1.weight"][1], added_kv_proj_dim=dim)
        if "img_emb.emb_pos" in shapes:  # first-last-frame: two images' tokens
            config["pos_embed_seq_len"] = shapes["img_emb.emb_pos"][1]
    return config


def vae_config(shapes: Shapes) -> dict[str, Any]:
    """``AutoencoderKLWan``'s config (Wan 2.1's VAE at any width) from the shapes."""
    return dict(base_dim=shapes["encoder.conv1.weight"][0], z_dim=shapes["conv2.weight"][0])


def wan22_vae_config(shapes: Shapes) -> dict[str, Any]:
    """Wan 2.2's residual VAE (TI2V-5B's, 48 channels, 16x spatial): sizes from the shapes,
    the latent statistics and the residual layout from the shipped config."""
    shipped = read_json(shipped_config(WAN) / "vae22" / "config.json")
    shipped.pop("_class_name")
    in_channels = shapes["encoder.conv1.weight"][1]  # RGB patchified: 3 x patch x patch
    patch = math.isqrt(in_channels // 3)
    return dict(shipped, base_dim=shapes["encoder.conv1.weight"][0],
                decoder_base_dim=shapes["decoder.conv1.weight"][0] // DIM_MULT_LAST,
                z_dim=shapes["conv2.weight"][0], in_channels=in_channels,
                out_channels=shapes["decoder.head.2.weight"][0], patch_size=patch,
                scale_factor_spatial=patch * VAE_DOWNSAMPLING)


# Wan 2.2's VAE nests its resnets and resamplers one level deeper than 2.1's; the middle,
# head and quant convs are named alike, so after this renaming diffusers' 2.1 conversion
# handles the rest (and keeps the already-renamed keys).
RESNET_PARTS = {"residual.0.gamma": "norm1.gamma", "residual.2.weight": "conv1.weight",
                "residual.2.bias": "conv1.bias", "residual.3.gamma": "norm2.gamma",
                "residual.6.weight": "conv2.weight", "residual.6.bias": "conv2.bias",
                "shortcut.weight": "conv_shortcut.weight", "shortcut.bias": "conv_shortcut.bias"}
NESTED_BLOCK = re.compile(r"(encoder|decoder)\.(down|up)samples\.(\d+)\.(?:down|up)samples\."
                          r"(\d+)\.(.+)$")


def wan22_vae_block_name(key: str) -> str:
    """A Wan 2.2 VAE key's diffusers name, for the nested down/up blocks (others unchanged)."""
    match = NESTED_BLOCK.match(key)
    if match is None:
        return key
    side, way, block, index, rest = match.groups()
    blocks = f"{side}.{way}_blocks.{block}"
    if rest in RESNET_PARTS:
        return f"{blocks}.resnets.{index}.{RESNET_PARTS[rest]}"
    return f"{blocks}.{way}sampler.{rest}"  # resample.* and time_conv.*


class Wan(Family):
    names = (WAN,)
    lora_components = ("transformer",)
    offloads = True
    prefers_bf16 = True
    frame_vae = False
    pipelines = {"WanPipeline": WAN, "WanImageToVideoPipeline": WAN}
    companions = (f"its text encoder (umt5_xxl_*.safetensors in {TEXT_ENCODERS_DIR}) and VAE "
                  f"(wan_2.1_vae or wan2.2_vae.safetensors in {VAE_DIR})")

    def recognise(self, name: str, shapes: Shapes) -> str | None:
        return WAN if MARKER in shapes or COMFY_PREFIX + MARKER in shapes else None

    def load_parts(self, transformer: ComponentFile, text_encoder: ComponentFile,
                   vae: ComponentFile, transformer_2: ComponentFile | None,
                   dtype: torch.dtype, clip_vision: ComponentFile | None = None,
                   text_encoder_2: ComponentFile | None = None) -> Any:
        """WanPipeline (WanImageToVideoPipeline for image-to-video models) from ComfyUI's
        single files (weights already read and dequantized)."""
        refuse_parts("Wan", transformer, text_encoder_2=text_encoder_2)
        high = _transformer(transformer, dtype)
        low = _transformer(transformer_2, dtype) if transformer_2 is not None else None
        if low is not None and dict(low.config) != dict(high.config):
            raise ModelLoadError(f"{transformer_2.name} does not match {transformer.name}: Wan "
                                 "2.2's two experts are the same architecture (high noise "
                                 "first, low noise second)")
        encoder = load_t5_encoder(text_encoder.state, text_encoder.name, dtype, umt5=True)
        if encoder.config.d_model != high.config.text_dim:
            raise ModelLoadError(f"{text_encoder.name} gives {encoder.config.d_model}-wide text "
                                 f"embeddings; {transformer.name} reads {high.config.text_dim}: "
                                 "use Wan's UMT5-XXL encoder")
        tokenizer = load_t5_tokenizer(text_encoder.state, text_encoder.name, UMT5_TOKENIZER)
        autoencoder = _vae(vae, dtype)
        if autoencoder.config.z_dim != high.config.in_channels and (
                high.config.in_channels != I2V_CHANNELS):
            raise ModelLoadError(f"{vae.name} has {autoencoder.config.z_dim} latent channels; "
                                 f"{transformer.name} denoises {high.config.in_channels}: use "
                                 "the VAE of the same Wan version")
        boundary = None
        if low is not None:
            boundary = BOUNDARY_I2V if high.config.in_channels == I2V_CHANNELS else BOUNDARY_T2V
        parts = dict(tokenizer=tokenizer, text_encoder=encoder, vae=autoencoder,
                     scheduler=scheduler_from(shipped_config(WAN)), transformer=high,
                     transformer_2=low, boundary_ratio=boundary,
                     expand_timesteps=high.config.in_channels == TI2V_CHANNELS)
        if high.config.image_dim is not None:  # Wan 2.1 I2V: the keyframe's CLIP features
            if clip_vision is None:
                raise ModelLoadError(f"{transformer.name} is a Wan 2.1 image-to-video model: it "
                                     f"needs CLIP vision (clip_vision_h.safetensors in "
                                     f"{CLIP_VISION_DIR}) as clip_vision")
            image_encoder = load_clip_vision(clip_vision, dtype)
            if image_encoder.config.hidden_size != high.config.image_dim:
                raise ModelLoadError(f"{clip_vision.name} gives {image_encoder.config.hidden_size}"
                                     f"-wide image features; {transformer.name} reads "
                                     f"{high.config.image_dim}: use clip_vision_h")
            return WanImageToVideoPipeline(**parts, image_encoder=image_encoder,
                                           image_processor=clip_image_processor(image_encoder))
        refuse_parts("Wan model without image features", transformer, clip_vision=clip_vision)
        if high.config.in_channels == I2V_CHANNELS:  # Wan 2.2 I2V A14B: latents only
            return WanImageToVideoPipeline(**parts)
        return WanPipeline(**parts)

    def lora_targets(self, model: ModelBundle, expert: str) -> tuple[str, ...]:
        if model.pipe.transformer_2 is None:
            return ("transformer",)
        return {"both": ("transformer", "transformer_2"), "high_noise": ("transformer",),
                "low_noise": ("transformer_2",)}[expert]

    def load_lora_into(self, pipe: Any, state: StateDict, adapter: str, target: str) -> None:
        # diffusers loads into the second expert only when asked to, and then only there.
        pipe.load_lora_weights(dict(state), adapter_name=adapter,
                               load_into_transformer_2=target == "transformer_2")

    def encode_text(self, model: ModelBundle, prompt: str, negative_prompt: str,
                    ) -> TextEmbeddings:
        # As WanPipeline.__call__ encodes: 512 tokens, the negative always (cfg is chosen later).
        with torch.no_grad():
            embeds, negative = model.pipe.encode_prompt(
                prompt, negative_prompt, True, 1, max_sequence_length=TEXT_TOKENS,
                device=model.device)
        return embeds, negative, {}

    def video_pipeline(self, model: ModelBundle, motion: MotionModule | None,
                       scheduler: str, *, shift: float = 0.0, image: bool = False,
                       ) -> Any:
        """WanPipeline, or WanImageToVideoPipeline when a keyframe conditions the clip."""
        no_motion(model, motion)
        parts = model.pipe.components
        transformer = parts["transformer"]
        expand = model.pipe.config.expand_timesteps
        takes_image = transformer.config.in_channels == I2V_CHANNELS or expand
        if image and not takes_image:
            raise ValueError(f"{model.source} is a Wan text-to-video model: disconnect the "
                             "keyframe (image-to-video needs a Wan I2V or TI2V model)")
        if not image and transformer.config.in_channels == I2V_CHANNELS:
            raise ValueError(f"{model.source} is a Wan image-to-video model: connect a "
                             "keyframe")
        common = dict(tokenizer=parts["tokenizer"], text_encoder=parts["text_encoder"],
                      vae=parts["vae"], transformer=transformer,
                      scheduler=make_flow_scheduler(scheduler, parts["scheduler"], shift),
                      transformer_2=parts.get("transformer_2"), expand_timesteps=expand,
                      boundary_ratio=model.pipe.config.boundary_ratio)
        if not image:
            return quiet(WanPipeline(**common))
        return quiet(WanImageToVideoPipeline(
            **common, image_encoder=parts.get("image_encoder"),
            image_processor=parts.get("image_processor")))

    def window(self, pipe: Any) -> int | None:
        return WINDOW_FRAMES

    def context_windows(self, pipe: Any, s: VideoSettings) -> ContextWindows | None:
        return latent_windows(s, WINDOW_FRAMES, pipe.vae_scale_factor_temporal)

    def denoise(self, model: ModelBundle, s: VideoSettings, conditioning: Conditioning | None,
                motion: MotionModule | None, keyframe: torch.Tensor | None) -> VideoLatents:
        pipe = self.video_pipeline(model, motion, s.scheduler, shift=s.shift,
                                   image=keyframe is not None)
        conditioning = text_conditioning(model, conditioning, pipe.transformer.config.text_dim,
                                         own_encoder=True)
        args = dict(prompt_embeds=conditioning.prompt_embeds,
                    negative_prompt_embeds=conditioning.negative_prompt_embeds,
                    height=s.height or DEFAULT_HEIGHT, width=s.width or DEFAULT_WIDTH,
                    num_frames=s.frames, num_inference_steps=s.steps, guidance_scale=s.cfg,
                    generator=s.generator(), callback_on_step_end=step_callback())
        windows = self.context_windows(pipe, s)
        with transformer_run(model, pipe):
            if keyframe is not None:
                if windows is not None:
                    raise ValueError(f"image-to-video makes at most "
                                     f"{s.context_length or WINDOW_FRAMES} frames at once "
                                     f"(context_length), asked for {s.frames}")
                latents = pipe(image=keyframe_image(keyframe), output_type="latent",
                               **args).frames
            elif windows is not None:
                latents = denoise_wan(pipe, windows, **args)
            else:
                latents = pipe(output_type="latent", **args).frames
        return VideoLatents(latents, pipe, model.family)

    def decode(self, video: VideoLatents, chunk: int) -> torch.Tensor:
        return _decode(video.pipe, video.latents)

    def decode_samples(self, model: ModelBundle, samples: torch.Tensor, tile_size: int,
                       tile_overlap: int) -> torch.Tensor:
        return image_frames(model.pipe, _decode(model.pipe, samples, True if tile_size else None,
                                                tile_size, tile_overlap))


@torch.no_grad()
def _decode(pipe: Any, latents: torch.Tensor, tile: bool | None = None, tile_size: int = 0,
            tile_overlap: int = 0) -> torch.Tensor:
    """WanPipeline's decode: undo the per-channel latent normalisation, then the 3-D VAE
    (tiled in space for large frames, or after running out of memory)."""
    vae = pipe.vae
    shape = (1, vae.config.z_dim, 1, 1, 1)
    # The execution device: under model offload the VAE waits on the CPU until it runs.
    latents = latents.to(pipe._execution_device, vae.dtype)
    mean = torch.tensor(vae.config.latents_mean).view(shape).to(latents.device, latents.dtype)
    std = 1.0 / torch.tensor(vae.config.latents_std).view(shape).to(latents.device,
                                                                    latents.dtype)
    return decode_video_latents(vae, latents / std + mean, tile, tile_size, tile_overlap)


def _transformer(part: ComponentFile, dtype: torch.dtype) -> WanTransformer3DModel:
    state = strip_prefix(part.state)
    shapes = shapes_of(state)
    if MARKER not in shapes:
        raise ModelLoadError(f"{part.name} is not a Wan diffusion model (no {MARKER}); put Wan "
                             f"2.1/2.2 diffusion models in {DIFFUSION_MODELS_DIR}")
    config = config_from_shapes(transformer_config, shapes, part.name, "Wan diffusion model",
                                DIFFUSION_MODELS_DIR)
    with init_empty_weights():
        model = WanTransformer3DModel(**config)
    return fill_model(model, convert_wan_transformer_to_diffusers(dict(state)), dtype, part.name,
                 "Wan diffusion model", DIFFUSION_MODELS_DIR)


def _vae(part: ComponentFile, dtype: torch.dtype) -> AutoencoderKLWan:
    shapes = shapes_of(part.state)
    if "decoder.middle.0.residual.0.gamma" not in shapes or "conv2.weight" not in shapes:
        raise ModelLoadError(f"{part.name} is not a Wan VAE (expected the original layout of "
                             f"wan_2.1_vae.safetensors or wan2.2_vae.safetensors) in {VAE_DIR}")
    if WAN22_VAE_MARKER in shapes:
        config, state = wan22_vae_config(shapes), convert_wan_vae_to_diffusers(
            {wan22_vae_block_name(k): v for k, v in part.state.items()})
    else:
        config, state = vae_config(shapes), convert_wan_vae_to_diffusers(part.state)
    with init_empty_weights():
        model = AutoencoderKLWan(**config)
    return fill_model(model, state, dtype, part.name, "Wan VAE", VAE_DIR)


FAMILY = Wan()
