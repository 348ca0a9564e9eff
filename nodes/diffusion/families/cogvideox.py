"""CogVideoX 1.0 / 1.5, text-to-video and image-to-video: an expert transformer over spacetime
patches with the text tokens in the same sequence (diffusers' ``CogVideoXTransformer3DModel``),
a causal 3-D VAE (``AutoencoderKLCogVideoX``) and T5-XXL text embeddings, run by
``CogVideoXPipeline`` / ``CogVideoXImageToVideoPipeline``.

Two ways in:

- a diffusers folder (either pipeline), loaded as is;
- one file per component, as the published weights are usually passed around (CogVideoX has no
  ComfyUI "repackaged" release): the transformer's ``diffusion_pytorch_model.safetensors`` in
  diffusers' key layout (with or without ComfyUI's ``model.diffusion_model.`` prefix; fp32,
  fp16/bf16, fp8 and fp8 "scaled"), a T5-XXL encoder in ComfyUI's layout, and the VAE's
  ``diffusion_pytorch_model.safetensors``. The architecture is read from the tensors' shapes;
  what shapes cannot tell is taken from the published models (see ``transformer_config``), and
  the sampler from ``configs/cogvideox/scheduler/``.

The models are v-prediction DDIM/DPM models with a shifted, zero-terminal-SNR noise schedule
(``snr_shift_scale``), not flow matching: the samplers are CogVideoX's own DDIM and DPM++ 2M,
or diffusers' others given the same schedule (``make_sampler``).
"""

from __future__ import annotations

import re
from typing import Any

import torch
from accelerate import init_empty_weights
from diffusers import (
    AutoencoderKLCogVideoX,
    CogVideoXDDIMScheduler,
    CogVideoXDPMScheduler,
    CogVideoXImageToVideoPipeline,
    CogVideoXPipeline,
    CogVideoXTransformer3DModel,
    DDIMScheduler,
)

from nodes.diffusion.anchor import keyframe_image
from nodes.diffusion.bundle import COGVIDEOX, Conditioning, ModelBundle, MotionModule
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
    DIFFUSERS_DIR,
    DIFFUSION_MODELS_DIR,
    TEXT_ENCODERS_DIR,
    VAE_DIR,
    ModelLoadError,
    read_json,
    shipped_config,
)
from nodes.diffusion.progress import step_callback
from nodes.diffusion.schedulers import DEFAULT, make_scheduler
from nodes.diffusion.t5_encoders import load_t5_encoder, load_t5_tokenizer
from nodes.diffusion.video_vae import decode_video_latents
from nodes.diffusion.weights import shapes_of
from nodes.diffusion.windows import denoise_cogvideox

# Keys only CogVideoX's transformer has together (CogView's share the first two, not the
# top-level time embedding; Wan, LTX and Mochi name their parts otherwise).
MARKERS = ("patch_embed.text_proj.weight", "transformer_blocks.0.norm1.linear.weight",
           "time_embedding.linear_1.weight")
# The original (SAT) training checkpoints, before diffusers' conversion script.
SAT_MARKER = "mixins.patch_embed.proj.weight"
VAE_MARKER = "decoder.norm_out.conv_y.conv.weight"  # the decoder's spatially conditioned norm
T5_TOKENIZER = "t5-tokenizer"
TEXT_TOKENS = 226  # CogVideoXPipeline's max_sequence_length, and the learned tables' text part
BLOCK = re.compile(r"transformer_blocks\.(\d+)\.")
VAE_DOWN_BLOCK = re.compile(r"encoder\.down_blocks\.(\d+)\.")
VAE_RESNET = re.compile(r"encoder\.down_blocks\.0\.resnets\.(\d+)\.")

# What the published models fix and shapes cannot tell (diffusers' conversion script):
# 1.0 (2B, 5B, 5B-I2V) was trained on 49 frames of 480x720; 1.5 on 81 frames, its 3-D RoPE
# laid over a 300x300 latent grid (its "sample" size), and sampled at 768x1360 by default.
SAMPLE_1_0 = dict(sample_height=60, sample_width=90, sample_frames=49)
SAMPLE_1_5 = dict(sample_height=300, sample_width=300, sample_frames=81)
DEFAULT_SIZE_1_5 = (1360, 768)  # width, height
# 1.5 patches are 2x2 pixels by 2 latent frames, projected by one Linear whose input width is
# channels x 2 x 2 x 2: the patch and the channel count cannot be told apart from it.
PATCH_1_5, PATCH_T_1_5 = 2, 2
TEMPORAL_COMPRESSION = 4  # every CogVideoX VAE's: 4 frames per latent frame
# The 2B is the only CogVideoX with a fixed sin-cos position table instead of 3-D RoPE. Neither
# leaves a tensor in the file (the table is a non-persistent buffer, RoPE has no weights), so
# the 2B is known by its width: 30 heads of 64.
WIDTH_2B = 1920
# Per model, what its VAE and sampler were trained with (the VAE file is the same for all):
# the 2B scales latents by 1.15258426 and shifts the SNR by 3, the 5B models by 0.7 and 1;
# 1.5's image-to-video latents are scaled the inverse way ("invert_scale_latents").
SCALING_2B, SCALING_5B = 1.15258426, 0.7
SNR_SHIFT_2B = 3.0
# The samplers CogVideoX was made with; the widget's other names get diffusers' generic ones.
OWN_SAMPLERS = {"ddim": CogVideoXDDIMScheduler, "dpmpp_2m": CogVideoXDPMScheduler}


def transformer_config(shapes: Shapes) -> dict[str, Any]:
    """``CogVideoXTransformer3DModel``'s config from a diffusers-layout state dict's shapes.

    Raises KeyError for a missing tensor and ValueError for shapes no CogVideoX has.
    """
    proj = shapes["patch_embed.proj.weight"]
    width = proj[0]
    # q/k are LayerNorm-ed per head, so the norm's width is the head's.
    head_dim = shapes["transformer_blocks.0.attn1.norm_q.weight"][0]
    out_width = shapes["proj_out.weight"][0]
    if len(proj) == 4:  # 1.0: a Conv2d over each latent frame
        patch, patch_t, in_channels = proj[2], None, proj[1]
        out_channels = out_width // (patch * patch)
        patch_bias = "patch_embed.proj.bias" in shapes
        sample = dict(SAMPLE_1_0)
    else:  # 1.5: a Linear over 2x2x2 patches
        patch, patch_t = PATCH_1_5, PATCH_T_1_5
        in_channels = proj[1] // (patch * patch * patch_t)
        out_channels = out_width // (patch * patch * patch_t)
        # diffusers gives 1.5's Linear a bias whatever patch_bias says: published False.
        patch_bias = False
        sample = dict(SAMPLE_1_5)
    learned = "patch_embed.pos_embedding" in shapes
    config: dict[str, Any] = dict(
        num_attention_heads=width // head_dim, attention_head_dim=head_dim,
        in_channels=in_channels, out_channels=out_channels,
        time_embed_dim=shapes["time_embedding.linear_1.weight"][0],
        text_embed_dim=shapes["patch_embed.text_proj.weight"][1],
        num_layers=1 + max(int(m.group(1)) for k in shapes if (m := BLOCK.match(k))),
        attention_bias="transformer_blocks.0.attn1.to_q.bias" in shapes,
        patch_size=patch, patch_size_t=patch_t, patch_bias=patch_bias,
        ofs_embed_dim=shapes["ofs_embedding.linear_1.weight"][0]
        if "ofs_embedding.linear_1.weight" in shapes else None,
        use_rotary_positional_embeddings=patch_t is not None or learned or width != WIDTH_2B,
        use_learned_positional_embeddings=learned, max_text_seq_length=TEXT_TOKENS, **sample)
    if learned:  # 5B-I2V: a learned table over the text and the trained clip's patches
        patches = shapes["patch_embed.pos_embedding"][1] - TEXT_TOKENS
        grid = (sample["sample_height"] // patch) * (sample["sample_width"] // patch) * (
            (sample["sample_frames"] - 1) // TEMPORAL_COMPRESSION + 1)
        if patches != grid:
            raise ValueError(f"a learned position table of {patches} patches, not the "
                             f"{grid} of CogVideoX-5B-I2V's 49 frames of 480x720")
    return config


def vae_config(shapes: Shapes) -> dict[str, Any]:
    """``AutoencoderKLCogVideoX``'s config: sizes from the shapes, the rest as published."""
    fixed = read_json(shipped_config(COGVIDEOX) / "vae" / "config.json")
    blocks = 1 + max(int(m.group(1)) for k in shapes if (m := VAE_DOWN_BLOCK.match(k)))
    config = {k: v for k, v in fixed.items() if not k.startswith("_")}
    config.update(
        in_channels=shapes["encoder.conv_in.conv.weight"][1],
        out_channels=shapes["decoder.conv_out.conv.weight"][0],
        block_out_channels=[shapes[f"encoder.down_blocks.{i}.resnets.0.conv2.conv.weight"][0]
                            for i in range(blocks)],
        down_block_types=["CogVideoXDownBlock3D"] * blocks,
        up_block_types=["CogVideoXUpBlock3D"] * blocks,
        latent_channels=shapes["decoder.conv_in.conv.weight"][1],
        layers_per_block=1 + max(int(m.group(1)) for k in shapes if (m := VAE_RESNET.match(k))),
        use_quant_conv="quant_conv.weight" in shapes,
        use_post_quant_conv="post_quant_conv.weight" in shapes)
    return config


def published_settings(transformer: CogVideoXTransformer3DModel) -> dict[str, Any]:
    """What the model's VAE and sampler were trained with, told from its transformer."""
    is_2b = not transformer.config.use_rotary_positional_embeddings
    return dict(scaling_factor=SCALING_2B if is_2b else SCALING_5B,
                invert_scale_latents=transformer.config.patch_size_t is not None,
                snr_shift_scale=SNR_SHIFT_2B if is_2b else 1.0)


def make_sampler(name: str, base: Any) -> Any:
    """A fresh sampler named ``name`` (``default``: the model's own) on the model's schedule.

    ``ddim`` and ``dpmpp_2m`` are CogVideoX's own DDIM and DPM++ 2M. diffusers' generic samplers
    know nothing of ``snr_shift_scale``: they get the model's noise schedule as betas (already
    shifted and zero-terminal), so every sampler denoises the schedule the model learned.
    """
    config = dict(base.config)
    if "snr_shift_scale" not in config:  # a folder that ships a generic scheduler
        return make_scheduler(name, base)
    if name in OWN_SAMPLERS:
        return OWN_SAMPLERS[name].from_config(config)
    if name == DEFAULT:
        return make_scheduler(name, base)
    cumprod = base.alphas_cumprod.double()
    previous = torch.cat([cumprod.new_ones(1), cumprod[:-1]])
    betas = (1 - cumprod / previous).tolist()
    config.pop("snr_shift_scale")
    return make_scheduler(name, DDIMScheduler.from_config({**config, "trained_betas": betas}))


def decoded_frames(latent_frames: int, temporal: int) -> int:
    """How many frames the VAE decodes ``latent_frames`` into: it decodes them in pairs, each
    latent frame ``temporal`` frames, except the first of an odd count, which stays one."""
    return temporal * latent_frames - (temporal - 1) * (latent_frames % 2)


def clip_frames(frames: int, temporal: int) -> int:
    """The frames CogVideoX's pipelines give for ``num_frames=frames``."""
    return decoded_frames((frames - 1) // temporal + 1, temporal)


def check_frames(frames: int, temporal: int) -> None:
    """Refuse a frame count the pipeline would silently change, naming the nearest valid."""
    if clip_frames(frames, temporal) == frames:
        return
    below = next(f for f in range(frames, 0, -1) if clip_frames(f, temporal) == f)
    above = next(f for f in range(frames, frames + 4 * temporal) if clip_frames(f, temporal) == f)
    raise ValueError(
        f"CogVideoX cannot make a clip of {frames} frames (its VAE decodes latent frames in "
        f"pairs of {2 * temporal} frames; an odd count's first latent frame is one frame, so "
        f"clips are 8k or 8k+1 frames long: 49 for CogVideoX 1.0, 81 for 1.5): it would make "
        f"{clip_frames(frames, temporal)}. Choose {below} or {above} frames")


class CogVideoX(Family):
    names = (COGVIDEOX,)
    offloads = True
    prefers_bf16 = True
    frame_vae = False
    lora_components = ("transformer",)
    companions = (f"a T5-XXL text encoder (in {TEXT_ENCODERS_DIR}) and the CogVideoX VAE (the "
                  f"vae/ folder's diffusion_pytorch_model.safetensors, in {VAE_DIR})")
    pipelines = {"CogVideoXPipeline": COGVIDEOX, "CogVideoXImageToVideoPipeline": COGVIDEOX}

    def recognise(self, name: str, shapes: Shapes) -> str | None:
        for prefix in ("", COMFY_PREFIX):
            if all(prefix + marker in shapes for marker in MARKERS):
                return COGVIDEOX
            if prefix + SAT_MARKER in shapes:
                raise ModelLoadError(
                    f"{name} is an original (SAT) CogVideoX checkpoint; Kinema reads CogVideoX "
                    f"in diffusers' layout: the transformer's diffusion_pytorch_model.safetensors "
                    f"in {DIFFUSION_MODELS_DIR} (Load DiT Video Model), or the whole diffusers "
                    f"folder in {DIFFUSERS_DIR}. diffusers' scripts/convert_cogvideox_to_"
                    f"diffusers.py converts SAT checkpoints.")
        return None

    def load_parts(self, transformer: ComponentFile, text_encoder: ComponentFile,
                   vae: ComponentFile, transformer_2: ComponentFile | None,
                   dtype: torch.dtype, clip_vision: ComponentFile | None = None,
                   text_encoder_2: ComponentFile | None = None) -> Any:
        """CogVideoXPipeline (or the image-to-video one) from one file per component."""
        refuse_parts("CogVideoX", transformer, diffusion_model_2=transformer_2,
                     clip_vision=clip_vision, text_encoder_2=text_encoder_2)
        model = _transformer(transformer, dtype)
        settings = published_settings(model)
        encoder = load_t5_encoder(text_encoder.state, text_encoder.name, dtype, umt5=False)
        if encoder.config.d_model != model.config.text_embed_dim:
            raise ModelLoadError(f"{text_encoder.name} gives {encoder.config.d_model}-wide text "
                                 f"embeddings; {transformer.name} reads "
                                 f"{model.config.text_embed_dim}: use the T5-XXL encoder "
                                 "(t5xxl_fp16 / t5xxl_fp8_e4m3fn)")
        tokenizer = load_t5_tokenizer(text_encoder.state, text_encoder.name, T5_TOKENIZER)
        autoencoder = _vae(vae, dtype, settings)
        channels = autoencoder.config.latent_channels
        if model.config.in_channels not in (channels, 2 * channels):
            raise ModelLoadError(f"{vae.name} has {channels} latent channels; "
                                 f"{transformer.name} denoises {model.config.in_channels}: use "
                                 "the CogVideoX VAE")
        scheduler = scheduler_from(shipped_config(COGVIDEOX))
        scheduler = type(scheduler).from_config(scheduler.config,
                                                snr_shift_scale=settings["snr_shift_scale"])
        cls = (CogVideoXImageToVideoPipeline if model.config.in_channels == 2 * channels
               else CogVideoXPipeline)
        return cls(tokenizer=tokenizer, text_encoder=encoder, vae=autoencoder,
                   transformer=model, scheduler=scheduler)

    def encode_text(self, model: ModelBundle, prompt: str, negative_prompt: str,
                    ) -> TextEmbeddings:
        # As CogVideoXPipeline.__call__ encodes: 226 tokens, the negative always (cfg is
        # chosen later).
        with torch.no_grad():
            embeds, negative = model.pipe.encode_prompt(
                prompt, negative_prompt, True, 1, max_sequence_length=TEXT_TOKENS,
                device=model.device)
        return embeds, negative, {}

    def video_pipeline(self, model: ModelBundle, motion: MotionModule | None,
                       scheduler: str, *, image: bool = False) -> Any:
        """CogVideoXPipeline, or the image-to-video one for an I2V model (``image``: whether a
        keyframe was given; each kind of model needs it, or refuses it)."""
        no_motion(model, motion)
        parts = model.pipe.components
        transformer = parts["transformer"]
        takes_image = transformer.config.in_channels == 2 * parts["vae"].config.latent_channels
        if image and not takes_image:
            raise ValueError(f"{model.source} is a CogVideoX text-to-video model: disconnect the "
                             "keyframe (image-to-video needs CogVideoX-5B-I2V or "
                             "CogVideoX1.5-5B-I2V)")
        if takes_image and not image:
            raise ValueError(f"{model.source} is a CogVideoX image-to-video model: connect a "
                             "keyframe (the clip's first frame)")
        cls = CogVideoXImageToVideoPipeline if takes_image else CogVideoXPipeline
        return quiet(cls(tokenizer=parts["tokenizer"], text_encoder=parts["text_encoder"],
                         vae=parts["vae"], transformer=transformer,
                         scheduler=make_sampler(scheduler, parts["scheduler"])))

    def window(self, pipe: Any) -> int | None:
        return int(pipe.transformer.config.sample_frames)

    def denoise(self, model: ModelBundle, s: VideoSettings, conditioning: Conditioning | None,
                motion: MotionModule | None, keyframe: torch.Tensor | None) -> VideoLatents:
        pipe = self.video_pipeline(model, motion, s.scheduler, image=keyframe is not None)
        config = pipe.transformer.config
        conditioning = text_conditioning(model, conditioning, config.text_embed_dim,
                                         own_encoder=True)
        window = self.window(pipe)
        temporal = pipe.vae_scale_factor_temporal
        windows = latent_windows(s, window, temporal)
        if windows is not None and (keyframe is not None or config.patch_size_t):
            # I2V conditions every window on the first frame's latent, and 1.5 pads latent
            # frames to whole temporal patches: neither slides as a plain clip does.
            raise ValueError(f"{s.frames} frames are more than this CogVideoX model denoises "
                             f"at once: make at most {s.context_length or window} frames "
                             f"(sliding windows are for CogVideoX 1.0 text-to-video)")
        check_frames(s.frames, temporal)
        width, height = self._size(pipe, s)
        args = dict(prompt_embeds=conditioning.prompt_embeds,
                    negative_prompt_embeds=conditioning.negative_prompt_embeds,
                    height=height, width=width, num_frames=s.frames,
                    num_inference_steps=s.steps, guidance_scale=s.cfg, generator=s.generator(),
                    output_type="latent", callback_on_step_end=step_callback())
        if keyframe is not None:
            # The image a user hands the pipeline; it resizes it to the clip's size.
            args["image"] = keyframe_image(keyframe)
        with transformer_run(model, pipe):
            if windows is not None:
                args.pop("output_type")
                latents = denoise_cogvideox(pipe, windows, **args)
            else:
                latents = pipe(**args).frames
        # CogVideoX 1.5 pads the latent frames to whole temporal patches at the front and drops
        # the padding before it decodes: the clip is what is left.
        latent_frames = (s.frames - 1) // temporal + 1
        padding = (-latent_frames) % config.patch_size_t if config.patch_size_t else 0
        return VideoLatents(latents[:, padding:], pipe, model.family)

    def _size(self, pipe: Any, s: VideoSettings) -> tuple[int, int]:
        """(width, height): the widgets', else the size the model was made for; checked."""
        config = pipe.transformer.config
        scale = pipe.vae_scale_factor_spatial
        if config.patch_size_t is None:
            default = (config.sample_width * scale, config.sample_height * scale)
        else:
            default = DEFAULT_SIZE_1_5
        width, height = s.width or default[0], s.height or default[1]
        step = scale * config.patch_size
        if width % step or height % step:
            raise ValueError(f"CogVideoX makes clips whose sides are multiples of {step} pixels "
                             f"(its VAE's {scale} times its {config.patch_size}-wide patches); "
                             f"{width}x{height} is not")
        sample = (config.sample_width * scale, config.sample_height * scale)
        if config.use_learned_positional_embeddings and (width, height) != sample:
            raise ValueError(f"this CogVideoX model (5B-I2V) makes only {sample[0]}x{sample[1]} "
                             f"clips (its position table is learned at that size); set width "
                             f"and height to 0 or to {sample[0]} and {sample[1]}")
        return width, height

    def latent_layout(self, latents: torch.Tensor) -> torch.Tensor:
        return latents.permute(0, 2, 1, 3, 4)

    def decode(self, video: VideoLatents, chunk: int, tile: bool | None = None,
               tile_size: int = 0, tile_overlap: int = 0) -> torch.Tensor:
        # The pipeline's own decode of the whole clip (the causal VAE already decodes two
        # latent frames at a time with its cache; cutting the clip elsewhere would change the
        # frames), in the VAE's own spatial tiles for large frames or after running out of
        # memory.
        pipe = video.pipe
        return decode_video_latents(pipe.vae, video.latents, tile, tile_size, tile_overlap,
                                    pipe.decode_latents)

    @torch.no_grad()
    def decode_samples(self, model: ModelBundle, samples: torch.Tensor, tile_size: int,
                       tile_overlap: int) -> torch.Tensor:
        """A LATENT of this model decoded as the pipeline decodes its latents, in tiles when
        asked."""
        vae = model.pipe.vae
        latents = samples.to(model.pipe._execution_device, vae.dtype).permute(0, 2, 1, 3, 4)
        video = VideoLatents(latents, model.pipe, model.family)
        return image_frames(model.pipe, self.decode(video, 0, True if tile_size else None,
                                                    tile_size, tile_overlap))


def _transformer(part: ComponentFile, dtype: torch.dtype) -> CogVideoXTransformer3DModel:
    state = strip_prefix(part.state)
    shapes = shapes_of(state)
    hint = f"Download it again into {DIFFUSION_MODELS_DIR}."
    if not all(marker in shapes for marker in MARKERS):
        raise ModelLoadError(f"{part.name} is not a CogVideoX diffusion transformer in "
                             f"diffusers' layout (no {MARKERS[0]}); put the transformer's "
                             f"diffusion_pytorch_model.safetensors in {DIFFUSION_MODELS_DIR}")
    try:
        config = transformer_config(shapes)
    except KeyError as exc:
        raise ModelLoadError(f"{part.name}: a CogVideoX diffusion transformer without {exc}; "
                             f"the file is incomplete. {hint}") from None
    except ValueError as exc:
        raise ModelLoadError(f"{part.name}: {exc}; Kinema cannot tell its configuration from "
                             f"its weights: load the model's diffusers folder from "
                             f"{DIFFUSERS_DIR}") from None
    with init_empty_weights():
        model = CogVideoXTransformer3DModel(**config)
    return fill_model(model, state, dtype, part.name, "CogVideoX diffusion transformer",
                 DIFFUSION_MODELS_DIR)


def _vae(part: ComponentFile, dtype: torch.dtype,
         settings: dict[str, Any]) -> AutoencoderKLCogVideoX:
    shapes = shapes_of(part.state)
    if VAE_MARKER not in shapes:
        raise ModelLoadError(f"{part.name} is not a CogVideoX VAE in diffusers' layout (no "
                             f"{VAE_MARKER}); put the CogVideoX vae/ folder's "
                             f"diffusion_pytorch_model.safetensors in {VAE_DIR}")
    config = config_from_shapes(vae_config, shapes, part.name, "CogVideoX VAE", VAE_DIR)
    config.update(scaling_factor=settings["scaling_factor"],
                  invert_scale_latents=settings["invert_scale_latents"])
    with init_empty_weights():
        model = AutoencoderKLCogVideoX(**config)
    return fill_model(model, part.state, dtype, part.name, "CogVideoX VAE", VAE_DIR)


FAMILY = CogVideoX()
