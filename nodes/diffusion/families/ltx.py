"""LTX-Video (0.9.x) text-to-video and image-to-video: a diffusion transformer over one token
per latent voxel (diffusers' ``LTXVideoTransformer3DModel``), a 32x spatial / 8x temporal VAE
(``AutoencoderKLLTXVideo``, timestep-conditioned from 0.9.1 on) and T5-XXL text embeddings with
their attention masks, run by ``LTXPipeline`` (``LTXImageToVideoPipeline`` with a keyframe).

Two ways in:

- a diffusers folder (``LTXPipeline``, ``LTXImageToVideoPipeline``, or 0.9.7's
  ``LTXConditionPipeline``: the same five components), loaded as is;
- ComfyUI's files through the DiT loader: the all-in-one checkpoint
  (``ltx-video-2b-v0.9.5.safetensors``: the transformer under ``model.diffusion_model.``, the
  VAE under ``vae.``) as both the diffusion model and the VAE, and a T5-XXL text encoder file.
  fp32/fp16/bf16/fp8 and fp8 "scaled". The transformer's and the VAE's architectures (0.9.0,
  0.9.1, 0.9.5 and later VAEs) are read from the tensors' shapes; only the sampler (flow-match
  Euler with resolution-dependent shift) is shipped, since shapes cannot tell it.

The pipeline's latents are a packed token sequence; they are kept unpacked here
(``[B,C,F,H,W]``, normalised as the transformer sees them), since a sequence does not say its
grid. Decoding is the pipeline's own: denormalise, and for a timestep-conditioned VAE add the
decode noise drawn from the generator where the denoising left it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import torch
from accelerate import init_empty_weights
from diffusers import (
    AutoencoderKLLTXVideo,
    LTXImageToVideoPipeline,
    LTXPipeline,
    LTXVideoTransformer3DModel,
)
from diffusers.loaders.single_file_utils import (
    convert_ltx_transformer_checkpoint_to_diffusers,
    convert_ltx_vae_checkpoint_to_diffusers,
)
from diffusers.utils.torch_utils import randn_tensor

from nodes.diffusion.anchor import keyframe_image
from nodes.diffusion.bundle import LTX, Conditioning, ModelBundle, MotionModule
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
    no_motion,
    quiet,
    refuse_parts,
    scheduler_from,
    text_conditioning,
    transformer_run,
)
from nodes.diffusion.model_files import (
    DIFFUSION_MODELS_DIR,
    TEXT_ENCODERS_DIR,
    VAE_DIR,
    ModelLoadError,
    shipped_config,
)
from nodes.diffusion.progress import step_callback
from nodes.diffusion.schedulers import make_flow_scheduler
from nodes.diffusion.t5_encoders import load_t5_encoder, load_t5_tokenizer
from nodes.diffusion.video_vae import decode_video_latents
from nodes.diffusion.weights import StateDict, shapes_of

VAE_PREFIX = "vae."
MARKER = "patchify_proj.weight"
# LTX-2's audio-video transformer shares LTX-Video's key names but not its architecture.
LTX2_MARKER = "av_ca_a2v_gate_adaln_single."
T5_TOKENIZER = "t5-tokenizer"
# Every LTX-Video transformer has 32 attention heads (2B: 64 wide, 13B: 128), as ComfyUI's
# model detection assumes: the head count is not in any tensor's shape. Nor are these, the
# same in every release: one latent voxel per token, the feed-forward's activation, the norms.
HEADS = 32
FIXED_TRANSFORMER = dict(patch_size=1, patch_size_t=1, activation_fn="gelu-approximate",
                         qk_norm="rms_norm_across_heads", norm_eps=1e-6)
# The VAE's fixed settings (RGB in and out, causal encoder, non-causal decoder).
RGB = 3
FIXED_VAE = dict(in_channels=RGB, out_channels=RGB, patch_size_t=1, resnet_norm_eps=1e-6,
                 scaling_factor=1.0, encoder_causal=True, decoder_causal=False)
DOWNSAMPLE_TYPES = {2: "temporal", 4: "spatial", 8: "spatiotemporal"}  # by stride product
DOWNSAMPLE_STRIDES = {"temporal": (2, 1), "spatial": (1, 2), "spatiotemporal": (2, 2),
                      "conv": (2, 2)}  # (time, space)
# LTXPipeline's own defaults (both pipelines default to 704x512), and LTXImageToVideoPipeline's
# too: 128 text tokens, 25 fps for the positional scale, decode at timestep 0 with no noise.
DEFAULT_WIDTH, DEFAULT_HEIGHT = 704, 512
TEXT_TOKENS = 128
FRAME_RATE = 25
DECODE_TIMESTEP = 0.0
# LTX-Video was trained on clips of up to 257 frames (8k+1), its model card's limit; the
# pipelines default to 161 and 121, which fit.
WINDOW_FRAMES = 257
SIZE_MULTIPLE = 32
PROMPT_MASK, NEGATIVE_MASK = "prompt_attention_mask", "negative_prompt_attention_mask"


@dataclass
class LTXLatents(VideoLatents):
    """Unpacked latents, and what the pipeline's decode draws on after its denoising loop."""

    noise_state: torch.Tensor | None = None  # the generator's state when the loop ended
    text_dtype: torch.dtype | None = None  # the pipeline decodes in it (None: the VAE's dtype)
    decode_timestep: float = DECODE_TIMESTEP
    decode_noise_scale: float | None = None  # None: the decode timestep, as the pipeline does


def transformer_weights(state: StateDict) -> StateDict:
    """The transformer's weights alone, without ComfyUI's prefix (and without the VAE's)."""
    return {k.removeprefix(COMFY_PREFIX): v for k, v in state.items()
            if not k.startswith(VAE_PREFIX)}


def _count(shapes: Shapes, pattern: str) -> int:
    """How many numbered children ``pattern`` (a regex with one group) finds."""
    found = {int(m.group(1)) for k in shapes if (m := re.match(pattern, k))}
    return 1 + max(found) if found else 0


def transformer_config(shapes: Shapes) -> dict[str, Any]:
    """``LTXVideoTransformer3DModel``'s config from an original-layout state dict's shapes."""
    inner, in_channels = shapes["patchify_proj.weight"]
    block = "transformer_blocks.0."
    return dict(
        in_channels=in_channels, out_channels=shapes["proj_out.weight"][0],
        num_attention_heads=HEADS, attention_head_dim=inner // HEADS,
        cross_attention_dim=shapes[block + "attn2.to_k.weight"][1],
        num_layers=_count(shapes, r"transformer_blocks\.(\d+)\."),
        caption_channels=shapes["caption_projection.linear_1.weight"][1],
        norm_elementwise_affine=block + "norm1.weight" in shapes,
        attention_bias=block + "attn1.to_q.bias" in shapes,
        attention_out_bias=block + "attn1.to_out.0.bias" in shapes, **FIXED_TRANSFORMER)


def _first_in_channels(shapes: Shapes, prefix: str) -> int | None:
    """The channels entering a VAE block: its first convolution's input width."""
    for key in ("resnets.0.conv1.conv.weight", "conv_in.conv1.conv.weight",
                "downsamplers.0.conv.conv.weight", "downsamplers.0.conv.weight",
                "upsamplers.0.conv.conv.weight"):
        if prefix + key in shapes:
            return shapes[prefix + key][1]
    return None


def vae_config(shapes: Shapes) -> dict[str, Any]:
    """``AutoencoderKLLTXVideo``'s config from a diffusers-layout state dict's shapes: 0.9.0's
    VAE, 0.9.1's (timestep-conditioned decoder with noise injection) and 0.9.5's (and later:
    separate spatial and temporal downsamplers, a 2048-wide encoder end)."""
    patch = math.isqrt(shapes["encoder.conv_in.conv.weight"][1] // RGB)
    latent_channels = shapes["encoder.conv_out.conv.weight"][0] - 1  # + one shared log-variance
    downs = _count(shapes, r"encoder\.down_blocks\.(\d+)\.")
    # 0.9.5's blocks change width in their downsampler (a space-to-depth with its own
    # convolution); earlier ones in a closing res block.
    new_encoder = any(f"encoder.down_blocks.{i}.downsamplers.0.conv.conv.weight" in shapes
                      for i in range(downs))
    widths = [shapes["encoder.conv_in.conv.weight"][0]]
    layers, scaling, kinds = [], [], []
    for i in range(downs):
        prefix = f"encoder.down_blocks.{i}."
        layers.append(_count(shapes, re.escape(prefix) + r"resnets\.(\d+)\."))
        scaling.append(any(k.startswith(prefix + "downsamplers.0.") for k in shapes))
        width_in = widths[-1]
        if new_encoder:
            following = (_first_in_channels(shapes, f"encoder.down_blocks.{i + 1}.")
                         if i + 1 < downs else shapes["encoder.conv_out.conv.weight"][1])
            down = shapes.get(prefix + "downsamplers.0.conv.conv.weight")
            kinds.append("conv" if down is None else DOWNSAMPLE_TYPES[following // down[0]])
            widths.append(following)
        elif prefix + "conv_out.conv2.conv.weight" in shapes:
            widths.append(shapes[prefix + "conv_out.conv2.conv.weight"][0])
        elif i + 1 < downs:
            widths.append(width_in)
    layers.append(_count(shapes, r"encoder\.mid_block\.resnets\.(\d+)\."))

    ups = _count(shapes, r"decoder\.up_blocks\.(\d+)\.")
    up_layers = [_count(shapes, r"decoder\.mid_block\.resnets\.(\d+)\.")]
    noise = [any(k.startswith("decoder.mid_block.") and k.endswith("per_channel_scale1")
                 for k in shapes)]
    up_widths, up_scaling, factors = [], [], []
    for i in range(ups):
        prefix = f"decoder.up_blocks.{i}."
        up_layers.append(_count(shapes, re.escape(prefix) + r"resnets\.(\d+)\."))
        noise.append(any(k.startswith(prefix) and k.endswith("per_channel_scale1")
                         for k in shapes))
        upsampler = shapes.get(prefix + "upsamplers.0.conv.conv.weight")
        up_scaling.append(upsampler is not None)
        if upsampler is not None:  # in: width x factor; out: width x 8 (depth-to-space 2x2x2)
            width = upsampler[0] // 8
            factors.append(upsampler[1] // width)
        else:
            width = shapes[prefix + "resnets.0.conv1.conv.weight"][0]
            factors.append(1)
        up_widths.append(width * factors[-1])
    config: dict[str, Any] = dict(
        latent_channels=latent_channels, patch_size=patch,
        block_out_channels=tuple(widths), layers_per_block=tuple(layers),
        spatio_temporal_scaling=tuple(scaling),
        down_block_types=(("LTXVideo095DownBlock3D" if new_encoder else "LTXVideoDownBlock3D"),)
        * downs,
        downsample_type=tuple(kinds) if new_encoder else ("conv",) * downs,
        decoder_block_out_channels=tuple(reversed(up_widths)),
        decoder_layers_per_block=tuple(reversed(up_layers)),
        decoder_spatio_temporal_scaling=tuple(reversed(up_scaling)),
        decoder_inject_noise=tuple(reversed(noise)),
        # Not in any shape: every release that widens before its upsampler (0.9.1 on) adds
        # the residual, and 0.9.0 does neither.
        upsample_residual=tuple(f > 1 for f in reversed(factors)),
        upsample_factor=tuple(reversed(factors)),
        timestep_conditioning="decoder.timestep_scale_multiplier" in shapes, **FIXED_VAE)
    if new_encoder:
        # diffusers' formula (patch x 2^downsamplers) assumes each halves space and time.
        time = space = 1
        for kind, scales in zip(kinds, scaling, strict=True):
            if scales:
                time *= DOWNSAMPLE_STRIDES[kind][0]
                space *= DOWNSAMPLE_STRIDES[kind][1]
        config.update(spatial_compression_ratio=patch * space, temporal_compression_ratio=time)
    return config


class LTXVideo(Family):
    names = (LTX,)
    offloads = True
    prefers_bf16 = True
    frame_vae = False
    lora_components = ("transformer",)
    companions = (f"the same file as its vae (it holds the VAE too) and a T5-XXL text encoder "
                  f"(t5xxl_*.safetensors in {TEXT_ENCODERS_DIR})")
    pipelines = {"LTXPipeline": LTX, "LTXImageToVideoPipeline": LTX,
                 "LTXConditionPipeline": LTX}

    def recognise(self, name: str, shapes: Shapes) -> str | None:
        if MARKER not in shapes and COMFY_PREFIX + MARKER not in shapes:
            return None
        if any(k.removeprefix(COMFY_PREFIX).startswith(LTX2_MARKER) for k in shapes):
            raise ModelLoadError(f"{name} is an LTX-2 model (audio and video); Kinema runs "
                                 "LTX-Video 0.9.x")
        return LTX

    def load_parts(self, transformer: ComponentFile, text_encoder: ComponentFile,
                   vae: ComponentFile, transformer_2: ComponentFile | None,
                   dtype: torch.dtype, clip_vision: ComponentFile | None = None,
                   text_encoder_2: ComponentFile | None = None) -> Any:
        """LTXPipeline from ComfyUI's files (weights already read and dequantized)."""
        refuse_parts("LTX-Video", transformer, diffusion_model_2=transformer_2,
                     clip_vision=clip_vision, text_encoder_2=text_encoder_2)
        model = _transformer(transformer, dtype)
        encoder = load_t5_encoder(text_encoder.state, text_encoder.name, dtype, umt5=False)
        if encoder.config.d_model != model.config.caption_channels:
            raise ModelLoadError(f"{text_encoder.name} gives {encoder.config.d_model}-wide text "
                                 f"embeddings; {transformer.name} reads "
                                 f"{model.config.caption_channels}: use the T5-XXL encoder")
        tokenizer = load_t5_tokenizer(text_encoder.state, text_encoder.name, T5_TOKENIZER)
        autoencoder = _vae(vae, dtype)
        if autoencoder.config.latent_channels != model.config.in_channels:
            raise ModelLoadError(f"{vae.name} has {autoencoder.config.latent_channels} latent "
                                 f"channels; {transformer.name} denoises "
                                 f"{model.config.in_channels}: use the VAE of the same "
                                 "LTX-Video checkpoint")
        return LTXPipeline(scheduler=scheduler_from(shipped_config(LTX)), vae=autoencoder,
                           text_encoder=encoder, tokenizer=tokenizer, transformer=model)

    def encode_text(self, model: ModelBundle, prompt: str, negative_prompt: str,
                    ) -> TextEmbeddings:
        # As LTXPipeline.__call__ encodes: 128 tokens, the negative always (cfg is chosen
        # later); the transformer reads the masks too, so they travel with the embeddings.
        with torch.no_grad():
            embeds, mask, negative, negative_mask = model.pipe.encode_prompt(
                prompt, negative_prompt, True, 1, max_sequence_length=TEXT_TOKENS,
                device=model.device)
        return embeds, negative, {PROMPT_MASK: mask, NEGATIVE_MASK: negative_mask}

    def video_pipeline(self, model: ModelBundle, motion: MotionModule | None,
                       scheduler: str, *, shift: float = 0.0, image: bool = False,
                       ) -> Any:
        """LTXPipeline, or LTXImageToVideoPipeline when a keyframe starts the clip."""
        no_motion(model, motion)
        if scheduler == "dpmpp_2m":
            raise ValueError("dpmpp_2m cannot run LTX-Video: its pipeline sets the sigmas, "
                             "which DPM-Solver does not take; use default, euler or unipc")
        parts = model.pipe.components
        base = parts["scheduler"]
        if shift and base.config.get("use_dynamic_shifting"):
            # The model shifts by the clip's size; a shift the user sets replaces that.
            base = type(base).from_config(base.config, use_dynamic_shifting=False)
        cls = LTXImageToVideoPipeline if image else LTXPipeline
        return quiet(cls(scheduler=make_flow_scheduler(scheduler, base, shift), vae=parts["vae"],
                         text_encoder=parts["text_encoder"], tokenizer=parts["tokenizer"],
                         transformer=parts["transformer"]))

    def window(self, pipe: Any) -> int | None:
        return WINDOW_FRAMES

    def denoise(self, model: ModelBundle, s: VideoSettings, conditioning: Conditioning | None,
                motion: MotionModule | None, keyframe: torch.Tensor | None) -> VideoLatents:
        pipe = self.video_pipeline(model, motion, s.scheduler, shift=s.shift,
                                   image=keyframe is not None)
        conditioning = text_conditioning(model, conditioning,
                                         pipe.transformer.config.caption_channels, own_encoder=True)
        if PROMPT_MASK not in conditioning.extras:
            raise ValueError(f"the conditioning comes from a {conditioning.family} text encoder "
                             "without attention masks, which LTX-Video reads: encode the prompt "
                             "with this model")
        if self.context_windows(pipe, s) is not None:
            raise ValueError(f"{s.frames} frames are more than LTX-Video denoises at once "
                             f"({s.context_length or WINDOW_FRAMES}); make at most that many")
        width, height = s.width or DEFAULT_WIDTH, s.height or DEFAULT_HEIGHT
        if width % SIZE_MULTIPLE or height % SIZE_MULTIPLE:
            raise ValueError(f"LTX-Video makes frames whose width and height are multiples of "
                             f"{SIZE_MULTIPLE}; {width}x{height} is not")
        generator = s.generator()
        negative = conditioning.negative_prompt_embeds
        args = dict(prompt_embeds=conditioning.prompt_embeds,
                    prompt_attention_mask=conditioning.extras[PROMPT_MASK],
                    negative_prompt_embeds=negative,
                    negative_prompt_attention_mask=(None if negative is None
                                                    else conditioning.extras[NEGATIVE_MASK]),
                    height=height, width=width, num_frames=s.frames, frame_rate=FRAME_RATE,
                    num_inference_steps=s.steps, guidance_scale=s.cfg, generator=generator,
                    output_type="latent", callback_on_step_end=step_callback())
        if keyframe is not None:
            args["image"] = keyframe_image(keyframe)
        with transformer_run(model, pipe, masked_attention=True):
            packed = pipe(**args).frames
        # The pipeline's own unpacking, over the grid it denoised.
        frames = (s.frames - 1) // pipe.vae_temporal_compression_ratio + 1
        ratio = pipe.vae_spatial_compression_ratio
        latents = pipe._unpack_latents(packed, frames, height // ratio, width // ratio,
                                       pipe.transformer_spatial_patch_size,
                                       pipe.transformer_temporal_patch_size)
        return LTXLatents(latents, pipe, model.family, noise_state=generator.get_state(),
                          text_dtype=conditioning.prompt_embeds.dtype)

    def decode(self, video: VideoLatents, chunk: int, tile: bool | None = None,
               tile_size: int = 0, tile_overlap: int = 0) -> torch.Tensor:
        # LTXPipeline's decode: its VAE decodes the clip at once, as there, unless the frames
        # are large or memory runs out (then in tiles, its own tiling).
        if not isinstance(video, LTXLatents):
            video = LTXLatents(video.latents, video.pipe, video.family)
        vae = video.pipe.vae
        latents = video.pipe._denormalize_latents(
            video.latents.to(video.pipe._execution_device), vae.latents_mean, vae.latents_std,
            vae.config.scaling_factor).to(video.text_dtype or vae.dtype)
        timestep = None
        if vae.config.timestep_conditioning:
            step = video.decode_timestep
            scale = step if video.decode_noise_scale is None else video.decode_noise_scale
            generator = torch.Generator("cpu")
            if video.noise_state is not None:
                generator.set_state(video.noise_state)
            noise = randn_tensor(latents.shape, generator=generator, device=latents.device,
                                 dtype=latents.dtype)
            batch = latents.shape[0]
            timestep = torch.tensor([step] * batch, device=latents.device, dtype=latents.dtype)
            scale = torch.tensor([scale] * batch, device=latents.device,
                                 dtype=latents.dtype)[:, None, None, None, None]
            latents = (1 - scale) * latents + scale * noise
        return decode_video_latents(
            vae, latents.to(vae.dtype), tile, tile_size, tile_overlap,
            lambda z: vae.decode(z, timestep, return_dict=False)[0])

    @torch.no_grad()
    def decode_samples(self, model: ModelBundle, samples: torch.Tensor, tile_size: int,
                       tile_overlap: int) -> torch.Tensor:
        """A LATENT of this model decoded as the pipeline decodes it (at its default decode
        timestep, which adds no noise), in tiles when asked."""
        video = LTXLatents(samples, model.pipe, model.family,
                           text_dtype=model.pipe.text_encoder.dtype)
        return image_frames(model.pipe, self.decode(video, 0, True if tile_size else None,
                                                    tile_size, tile_overlap))


def _transformer(part: ComponentFile, dtype: torch.dtype) -> LTXVideoTransformer3DModel:
    state = transformer_weights(part.state)
    shapes = shapes_of(state)
    if MARKER not in shapes:
        raise ModelLoadError(f"{part.name} is not an LTX-Video diffusion model (no {MARKER}); "
                             f"put LTX-Video checkpoints in {DIFFUSION_MODELS_DIR}")
    config = config_from_shapes(transformer_config, shapes, part.name,
                                "LTX-Video diffusion model", DIFFUSION_MODELS_DIR)
    with init_empty_weights():
        model = LTXVideoTransformer3DModel(**config)
    return fill_model(model, convert_ltx_transformer_checkpoint_to_diffusers(dict(state)),
                      dtype, part.name, "LTX-Video diffusion model", DIFFUSION_MODELS_DIR)


def _vae(part: ComponentFile, dtype: torch.dtype) -> AutoencoderKLLTXVideo:
    """The VAE of an all-in-one checkpoint (``vae.*``), of a file holding it alone in the
    original layout (no prefix), or in diffusers' layout."""
    state = part.state
    if "latents_mean" not in state:  # the original layout: diffusers converts ``vae.*`` only
        if not any(k.startswith(VAE_PREFIX) for k in state):
            state = {VAE_PREFIX + k: v for k, v in state.items()}
        try:
            state = convert_ltx_vae_checkpoint_to_diffusers(dict(state))
        except KeyError as exc:
            raise ModelLoadError(
                f"{part.name} holds no LTX-Video VAE (no {exc}): pick the LTX-Video checkpoint "
                f"itself as the vae, in {VAE_DIR}") from None
    shapes = shapes_of(state)
    config = config_from_shapes(vae_config, shapes, part.name, "LTX-Video VAE", VAE_DIR)
    with init_empty_weights():
        model = AutoencoderKLLTXVideo(**config)
    return fill_model(model, state, dtype, part.name, "LTX-Video VAE", VAE_DIR)


FAMILY = LTXVideo()
