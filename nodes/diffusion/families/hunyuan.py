"""HunyuanVideo text-to-video: a dual/single-stream diffusion transformer over spacetime patches
(diffusers' ``HunyuanVideoTransformer3DModel``), a causal 3-D VAE
(``AutoencoderKLHunyuanVideo``), and two text encoders: a Llama (LLaVA-Llama-3-8B) whose
hidden states the transformer attends to, and CLIP-L, whose pooled embedding modulates it; run
by ``HunyuanVideoPipeline``.

Two ways in:

- a diffusers folder (``HunyuanVideoPipeline``), loaded as is;
- ComfyUI's "repackaged" single files, one per component: the transformer
  (``hunyuan_video_t2v_720p_bf16.safetensors``, Tencent's key layout, with or without
  ``model.diffusion_model.``; fp16/bf16/fp8/fp8 "scaled"), the VAE
  (``hunyuan_video_vae_bf16.safetensors``, Tencent's layout, which is diffusers'), the Llama
  (``llava_llama3_fp8_scaled.safetensors``, transformers' layout under ``model.``) as
  ``text_encoder`` and CLIP-L (``clip_l.safetensors``) as ``text_encoder_2``. Sizes are read
  from the tensors' shapes; what shapes cannot tell is shipped in ``configs/hunyuan_video/``.
  The files carry no tokenizers: Llama's comes from ``models/text_encoders/llama-tokenizer/``,
  CLIP's from the ``clip-tokenizer/`` folder the SD single files use.

HunyuanVideo T2V is guidance-distilled: the TemporalDenoiser's ``cfg`` is its embedded guidance
(``guidance_scale``, a model input), not classifier-free guidance, so each step is one
transformer pass and the negative prompt is not used (the pipeline's true CFG, which would need
it, is left off as in its default call).
"""

from __future__ import annotations

import inspect
import re
from typing import Any

import torch
from accelerate import init_empty_weights
from diffusers import (
    AutoencoderKLHunyuanVideo,
    HunyuanVideoPipeline,
    HunyuanVideoTransformer3DModel,
)
from diffusers.loaders.single_file_utils import convert_hunyuan_video_transformer_to_diffusers
from transformers import (
    AutoTokenizer,
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTokenizer,
    LlamaConfig,
    LlamaModel,
)

from engine.folders import active_folders
from nodes.diffusion.bundle import HUNYUAN, Conditioning, ModelBundle, MotionModule
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
    DIFFUSION_MODELS_DIR,
    TEXT_ENCODERS_DIR,
    TOKENIZER_DIR,
    TOKENIZER_NAME,
    VAE_DIR,
    ModelLoadError,
    read_json,
    shipped_config,
)
from nodes.diffusion.progress import step_callback
from nodes.diffusion.schedulers import DEFAULT, FLOW_SCHEDULERS, make_flow_scheduler
from nodes.diffusion.video_vae import decode_video_latents
from nodes.diffusion.weights import StateDict, shapes_of
from nodes.diffusion.windows import ContextWindows, denoise_hunyuan

# The key diffusers' own single-file detection takes for HunyuanVideo's transformer.
MARKER = "txt_in.individual_token_refiner.blocks.0.adaLN_modulation.1.bias"
# Every HunyuanVideo transformer has 128-wide heads (24 in the 13B), as ComfyUI's model
# detection assumes; RoPE splits a head 16:56:56 over time, height and width (shipped config).
HEAD_DIM = 128
# The pipeline's defaults: 720p, 256 Llama tokens after the template; trained on 129 frames.
DEFAULT_WIDTH, DEFAULT_HEIGHT = 1280, 720
TEXT_TOKENS = 256
WINDOW_FRAMES = 129
# The VAE's 8x8 pixels times the transformer's 2x2 patches.
SIZE_STEP = 16
# Llama's and CLIP-L's heads are 128 and 64 wide; neither count is in a tensor's shape.
LLAMA_HEAD_DIM, CLIP_HEAD_DIM = 128, 64
CLIP_TOKENS = 77
LLAMA_TOKENIZER = "llama-tokenizer"
LLAMA_TOKENIZER_DIR = f"{TEXT_ENCODERS_DIR}{LLAMA_TOKENIZER}/"
LLAMA_PREFIX = "model."
LLAMA_PARTS = ("embed_tokens.", "layers.", "norm.")
# CLIP-L's text tower, by its names without transformers 4's ``text_model.`` (ComfyUI's files
# have it; transformers 5's CLIPTextModel does not).
CLIP_EMBEDDING = "embeddings.token_embedding.weight"
CLIP_TEXT = "text_model."
CLIP_PARTS = ("embeddings.", "encoder.", "final_layer_norm.")
VAE_MARKERS = ("decoder.conv_in.conv.weight", "decoder.conv_norm_out.weight",
               "post_quant_conv.weight")
VAE_PREFIX = "vae."  # Tencent's training checkpoints nest the VAE under it
# What the transformer reads besides the Llama embeddings: by the pipeline's argument names, so
# a conditioning's extras go back to the pipeline as they are.
POOLED, MASK = "pooled_prompt_embeds", "prompt_attention_mask"
DOUBLE = re.compile(r"double_blocks\.(\d+)\.")
SINGLE = re.compile(r"single_blocks\.(\d+)\.")
REFINER = re.compile(r"txt_in\.individual_token_refiner\.blocks\.(\d+)\.")
LINEAR1 = re.compile(r"single_blocks\.(\d+)\.linear1\.(weight|bias)$")
LLAMA_LAYER = re.compile(r"layers\.(\d+)\.")
CLIP_LAYER = re.compile(r"encoder\.layers\.(\d+)\.")
VAE_DOWN_BLOCK = re.compile(r"encoder\.down_blocks\.(\d+)\.")
VAE_RESNET = re.compile(r"encoder\.down_blocks\.0\.resnets\.(\d+)\.")


def _count(pattern: re.Pattern[str], shapes: Shapes) -> int:
    """How many numbered blocks ``pattern`` finds (0 for none)."""
    return 1 + max((int(m.group(1)) for k in shapes if (m := pattern.match(k))), default=-1)


def _fixed(component: str) -> dict[str, Any]:
    """The settings of a component that its shapes cannot tell (``configs/hunyuan_video/``)."""
    config = read_json(shipped_config(HUNYUAN) / component / "config.json")
    return {k: v for k, v in config.items() if not k.startswith("_")}


def transformer_config(shapes: Shapes) -> dict[str, Any]:
    """``HunyuanVideoTransformer3DModel``'s config from a Tencent-layout state dict's shapes.

    Raises KeyError for a missing tensor and ValueError for shapes no HunyuanVideo has.
    """
    width, in_channels, patch_t, patch, _ = shapes["img_in.proj.weight"]
    if width % HEAD_DIM:
        raise ValueError(f"a {width}-wide transformer, not a whole number of {HEAD_DIM}-wide "
                         "heads")
    return dict(
        _fixed("transformer"), in_channels=in_channels,
        out_channels=shapes["final_layer.linear.weight"][0] // (patch_t * patch * patch),
        num_attention_heads=width // HEAD_DIM, attention_head_dim=HEAD_DIM,
        num_layers=_count(DOUBLE, shapes), num_single_layers=_count(SINGLE, shapes),
        num_refiner_layers=_count(REFINER, shapes),
        mlp_ratio=shapes["double_blocks.0.img_mlp.fc1.weight"][0] / width,
        patch_size=patch, patch_size_t=patch_t,
        guidance_embeds="guidance_in.mlp.0.weight" in shapes,
        text_embed_dim=shapes["txt_in.input_embedder.weight"][1],
        pooled_projection_dim=shapes["vector_in.in_layer.weight"][1])


def convert_transformer(state: StateDict, width: int) -> StateDict:
    """Tencent's transformer keys → diffusers'.

    diffusers' converter splits each single block's fused q/k/v/MLP projection at the 13B's
    width (3072) whatever the model's; the split is done here at the model's own width, and the
    rest of the renaming is left to diffusers.
    """
    state = dict(state)
    for key in [k for k in state if LINEAR1.match(k)]:
        block, kind = LINEAR1.match(key).groups()
        fused = state.pop(key)
        q, k, v, mlp = torch.split(fused, [width, width, width, fused.shape[0] - 3 * width])
        stem = f"single_transformer_blocks.{block}"
        for name, part in (("attn.to_q", q), ("attn.to_k", k), ("attn.to_v", v),
                           ("proj_mlp", mlp)):
            state[f"{stem}.{name}.{kind}"] = part
    return convert_hunyuan_video_transformer_to_diffusers(state)


def vae_config(shapes: Shapes) -> dict[str, Any]:
    """``AutoencoderKLHunyuanVideo``'s config: sizes from the shapes, the rest as published."""
    blocks = _count(VAE_DOWN_BLOCK, shapes)
    return dict(
        _fixed("vae"), in_channels=shapes["encoder.conv_in.conv.weight"][1],
        out_channels=shapes["decoder.conv_out.conv.weight"][0],
        latent_channels=shapes["decoder.conv_in.conv.weight"][1],
        block_out_channels=[shapes[f"encoder.down_blocks.{i}.resnets.0.conv2.conv.weight"][0]
                            for i in range(blocks)],
        down_block_types=["HunyuanVideoDownBlock3D"] * blocks,
        up_block_types=["HunyuanVideoUpBlock3D"] * blocks,
        layers_per_block=_count(VAE_RESNET, shapes),
        mid_block_add_attention="encoder.mid_block.attentions.0.to_q.weight" in shapes)


def llama_config(shapes: Shapes) -> dict[str, Any]:
    """The Llama's ``LlamaConfig`` arguments from its (unprefixed) shapes."""
    vocab, hidden = shapes["embed_tokens.weight"]
    return dict(
        _fixed("text_encoder"), vocab_size=vocab, hidden_size=hidden,
        intermediate_size=shapes["layers.0.mlp.gate_proj.weight"][0],
        num_hidden_layers=_count(LLAMA_LAYER, shapes),
        num_attention_heads=shapes["layers.0.self_attn.q_proj.weight"][0] // LLAMA_HEAD_DIM,
        num_key_value_heads=shapes["layers.0.self_attn.k_proj.weight"][0] // LLAMA_HEAD_DIM,
        head_dim=LLAMA_HEAD_DIM, attention_bias="layers.0.self_attn.q_proj.bias" in shapes)


def clip_config(shapes: Shapes) -> dict[str, Any]:
    """CLIP-L's ``CLIPTextConfig`` arguments from its text tower's shapes (names without
    ``text_model.``; the token ids come from its tokenizer)."""
    vocab, width = shapes[CLIP_EMBEDDING]
    return dict(
        _fixed("text_encoder_2"), vocab_size=vocab, hidden_size=width,
        intermediate_size=shapes["encoder.layers.0.mlp.fc1.weight"][0],
        num_hidden_layers=_count(CLIP_LAYER, shapes),
        num_attention_heads=width // CLIP_HEAD_DIM,
        max_position_embeddings=shapes["embeddings.position_embedding.weight"][0])


def valid_frames(frames: int, temporal: int) -> bool:
    """Whether the VAE decodes a clip of exactly ``frames`` frames: 1 + ``temporal`` x k."""
    return frames >= 1 and (frames - 1) % temporal == 0


class HunyuanVideo(Family):
    """HunyuanVideo T2V: diffusers folders and ComfyUI's single files, one clip of up to 129
    frames (4k+1) per run, embedded guidance, flow-matching samplers."""

    names = (HUNYUAN,)
    offloads = True
    prefers_bf16 = True
    frame_vae = False
    lora_components = ("transformer",)
    companions = (f"its Llama text encoder (llava_llama3_*.safetensors) as text_encoder and "
                  f"CLIP-L (clip_l.safetensors) as text_encoder_2, both in {TEXT_ENCODERS_DIR}, "
                  f"and its VAE (hunyuan_video_vae_bf16.safetensors) in {VAE_DIR}")
    pipelines = {"HunyuanVideoPipeline": HUNYUAN}

    def recognise(self, name: str, shapes: Shapes) -> str | None:
        return HUNYUAN if MARKER in shapes or COMFY_PREFIX + MARKER in shapes else None

    def load_parts(self, transformer: ComponentFile, text_encoder: ComponentFile,
                   vae: ComponentFile, transformer_2: ComponentFile | None,
                   dtype: torch.dtype, clip_vision: ComponentFile | None = None,
                   text_encoder_2: ComponentFile | None = None) -> Any:
        """HunyuanVideoPipeline from ComfyUI's single files (weights already read and
        dequantized)."""
        refuse_parts("HunyuanVideo", transformer, diffusion_model_2=transformer_2,
                     clip_vision=clip_vision)
        if text_encoder_2 is None:
            raise ModelLoadError(f"{transformer.name} is a HunyuanVideo model: it needs CLIP-L "
                                 f"(clip_l.safetensors in {TEXT_ENCODERS_DIR}) as "
                                 f"text_encoder_2, besides its Llama as text_encoder")
        model = _transformer(transformer, dtype)
        config = model.config
        tokenizer = load_llama_tokenizer(text_encoder.name)
        llama = _llama(text_encoder, dtype)
        if llama.config.hidden_size != config.text_embed_dim:
            raise ModelLoadError(f"{text_encoder.name} gives {llama.config.hidden_size}-wide text "
                                 f"embeddings; {transformer.name} reads {config.text_embed_dim}: "
                                 "use HunyuanVideo's Llama (llava_llama3)")
        tokenizer_2 = load_clip_tokenizer(text_encoder_2.name)
        clip = _clip(text_encoder_2, tokenizer_2, dtype)
        if clip.config.hidden_size != config.pooled_projection_dim:
            raise ModelLoadError(f"{text_encoder_2.name} gives {clip.config.hidden_size}-wide "
                                 f"pooled embeddings; {transformer.name} reads "
                                 f"{config.pooled_projection_dim}: use CLIP-L (clip_l)")
        autoencoder = _vae(vae, dtype)
        if autoencoder.config.latent_channels != config.in_channels:
            raise ModelLoadError(f"{vae.name} has {autoencoder.config.latent_channels} latent "
                                 f"channels; {transformer.name} denoises {config.in_channels}: "
                                 "use HunyuanVideo's VAE")
        return HunyuanVideoPipeline(
            text_encoder=llama, tokenizer=tokenizer, transformer=model, vae=autoencoder,
            scheduler=scheduler_from(shipped_config(HUNYUAN)), text_encoder_2=clip,
            tokenizer_2=tokenizer_2)

    def encode_text(self, model: ModelBundle, prompt: str, negative_prompt: str,
                    ) -> TextEmbeddings:
        # As HunyuanVideoPipeline.__call__ encodes: the prompt template, 256 Llama tokens and
        # CLIP's pooled embedding. Without true CFG the call encodes no negative, nor do we.
        with torch.no_grad():
            embeds, pooled, mask = model.pipe.encode_prompt(
                prompt=prompt, device=model.device, max_sequence_length=TEXT_TOKENS)
        return embeds, None, {POOLED: pooled, MASK: mask}

    def video_pipeline(self, model: ModelBundle, motion: MotionModule | None,
                       scheduler: str, *, shift: float = 0.0) -> Any:
        """A fresh HunyuanVideoPipeline over the model's components, with the sampler asked
        for (``default``: its flow-matching Euler) at the model's shift or ``shift``."""
        no_motion(model, motion)
        parts = model.pipe.components
        sampler = make_flow_scheduler(scheduler, parts["scheduler"], shift)
        # The pipeline hands its scheduler the sigmas it denoises; a sampler that takes none
        # (DPM-Solver) would fail inside it.
        if "sigmas" not in inspect.signature(sampler.set_timesteps).parameters:
            usable = [name for name in (DEFAULT, *FLOW_SCHEDULERS) if name != scheduler]
            raise ValueError(f"HunyuanVideo's pipeline sets the sampler's sigmas itself, which "
                             f"{scheduler} cannot take: choose one of {', '.join(usable)}")
        return quiet(HunyuanVideoPipeline(**{**parts, "scheduler": sampler}))

    def window(self, pipe: Any) -> int | None:
        return WINDOW_FRAMES

    def context_windows(self, pipe: Any, s: VideoSettings) -> ContextWindows | None:
        return latent_windows(s, WINDOW_FRAMES, pipe.vae_scale_factor_temporal)

    def denoise(self, model: ModelBundle, s: VideoSettings, conditioning: Conditioning | None,
                motion: MotionModule | None, keyframe: torch.Tensor | None) -> VideoLatents:
        if keyframe is not None:
            raise ValueError(f"{model.source} is HunyuanVideo text-to-video: disconnect the "
                             "keyframe (Kinema does not run HunyuanVideo image-to-video)")
        pipe = self.video_pipeline(model, motion, s.scheduler, shift=s.shift)
        conditioning = text_conditioning(model, conditioning,
                                         pipe.transformer.config.text_embed_dim, own_encoder=True)
        if any(key not in conditioning.extras for key in (POOLED, MASK)):
            raise ValueError(f"the conditioning comes from a {conditioning.family} text encoder, "
                             "without the CLIP pooled embedding and attention mask HunyuanVideo "
                             "reads: encode the prompt with this model")
        self._check_frames(pipe, s)
        width, height = self._size(s)
        args = dict(prompt_embeds=conditioning.prompt_embeds,
                    pooled_prompt_embeds=conditioning.extras[POOLED],
                    prompt_attention_mask=conditioning.extras[MASK],
                    height=height, width=width, num_frames=s.frames,
                    num_inference_steps=s.steps,
                    # Embedded guidance (the model was distilled from CFG at this scale), not
                    # CFG: true_cfg_scale stays 1, one pass per step, the negative unused.
                    guidance_scale=s.cfg, generator=s.generator(),
                    callback_on_step_end=step_callback())
        windows = self.context_windows(pipe, s)
        with transformer_run(model, pipe, masked_attention=True):
            if windows is not None:
                latents = denoise_hunyuan(pipe, windows, **args)
            else:
                latents = pipe(output_type="latent", **args).frames
        return VideoLatents(latents, pipe, model.family)

    def _check_frames(self, pipe: Any, s: VideoSettings) -> None:
        """Refuse a clip the VAE cannot make (longer ones than the window slide windows)."""
        temporal = pipe.vae_scale_factor_temporal
        if not valid_frames(s.frames, temporal):
            below = max(1, s.frames - (s.frames - 1) % temporal)
            raise ValueError(f"HunyuanVideo makes clips of {temporal}k+1 frames (its VAE turns "
                             f"each latent frame after the first into {temporal}); "
                             f"{s.frames} is not: choose {below} or {below + temporal} frames")

    def _size(self, s: VideoSettings) -> tuple[int, int]:
        """(width, height): the widgets', else 1280x720; multiples of 16 pixels."""
        width, height = s.width or DEFAULT_WIDTH, s.height or DEFAULT_HEIGHT
        if width % SIZE_STEP or height % SIZE_STEP:
            raise ValueError(f"HunyuanVideo makes clips whose sides are multiples of "
                             f"{SIZE_STEP} pixels (its VAE's 8 times its 2-pixel patches); "
                             f"{width}x{height} is not")
        return width, height

    def latent_layout(self, latents: torch.Tensor) -> torch.Tensor:
        """The pipeline's latents are already ``[B,C,F,H,W]``."""
        return latents

    def decode(self, video: VideoLatents, chunk: int) -> torch.Tensor:
        # Whole clips, as the pipeline decodes: the VAE already walks the clip in time itself.
        return _decode(video.pipe, video.latents)

    def decode_samples(self, model: ModelBundle, samples: torch.Tensor, tile_size: int,
                       tile_overlap: int) -> torch.Tensor:
        """A LATENT of this model decoded as the pipeline decodes its latents (tiled in space
        when asked, for large frames, or after running out of memory)."""
        return image_frames(model.pipe, _decode(model.pipe, samples, True if tile_size else None,
                                                tile_size, tile_overlap))


@torch.no_grad()
def _decode(pipe: Any, latents: torch.Tensor, tile: bool | None = None, tile_size: int = 0,
            tile_overlap: int = 0) -> torch.Tensor:
    """HunyuanVideoPipeline's decode: undo the latent scaling, then the 3-D VAE (its tiling
    settings are the ones ``decode_video_latents`` drives)."""
    vae = pipe.vae
    latents = latents.to(pipe._execution_device, vae.dtype) / vae.config.scaling_factor
    return decode_video_latents(vae, latents, tile, tile_size, tile_overlap)


def load_llama_tokenizer(name: str) -> Any:
    """Llama's tokenizer from ``models/text_encoders/llama-tokenizer/``: ComfyUI's Llama files
    carry none, and Kinema fetches nothing."""
    folder = active_folders().model_path("text_encoders", LLAMA_TOKENIZER)
    hint = (f"{name} carries no tokenizer: put the Llama tokenizer (tokenizer.json and "
            f"tokenizer_config.json: the tokenizer/ folder of the HunyuanVideo diffusers release, "
            f"hunyuanvideo-community/HunyuanVideo) in {LLAMA_TOKENIZER_DIR}")
    if folder is None:
        raise ModelLoadError(hint)
    if (folder / "tokenizer").is_dir() and not (folder / "tokenizer_config.json").is_file():
        folder = folder / "tokenizer"
    try:
        return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{LLAMA_TOKENIZER_DIR} could not be read as a tokenizer "
                             f"({type(exc).__name__}: {exc}). {hint}") from None


def load_clip_tokenizer(name: str) -> CLIPTokenizer:
    """CLIP-L's tokenizer from the shared ``clip-tokenizer/`` folder (the SD single files')."""
    shared = active_folders().model_path("text_encoders", TOKENIZER_NAME)
    for folder in ([] if shared is None else [shared, shared / "tokenizer"]):
        if (folder / "tokenizer.json").is_file() or all(
                (folder / f).is_file() for f in ("vocab.json", "merges.txt")):
            return CLIPTokenizer.from_pretrained(str(folder), local_files_only=True,
                                                 model_max_length=CLIP_TOKENS)
    raise ModelLoadError(
        f"{name} carries no tokenizer: put CLIP's vocab.json and merges.txt (or tokenizer.json) "
        f"in {TOKENIZER_DIR} (the tokenizer_2/ folder of the HunyuanVideo diffusers release, or "
        f"the tokenizer/ folder of any Stable Diffusion diffusers model)")


def _transformer(part: ComponentFile, dtype: torch.dtype) -> HunyuanVideoTransformer3DModel:
    state = strip_prefix(part.state)
    shapes = shapes_of(state)
    what = "HunyuanVideo diffusion model"
    if MARKER not in shapes:
        raise ModelLoadError(f"{part.name} is not a HunyuanVideo diffusion model in Tencent's "
                             f"layout (no {MARKER}); put hunyuan_video_t2v_720p_*.safetensors "
                             f"in {DIFFUSION_MODELS_DIR}")
    config = config_from_shapes(transformer_config, shapes, part.name, what, DIFFUSION_MODELS_DIR)
    if config["in_channels"] != config["out_channels"]:
        raise ModelLoadError(f"{part.name} is a HunyuanVideo image-to-video model "
                             f"({config['in_channels']} input channels); Kinema runs "
                             "HunyuanVideo text-to-video")
    with init_empty_weights():
        model = HunyuanVideoTransformer3DModel(**config)
    width = config["num_attention_heads"] * HEAD_DIM
    try:
        weights = convert_transformer(state, width)
    except (KeyError, RuntimeError) as exc:
        raise ModelLoadError(f"{part.name}: a {what} whose weights cannot be converted "
                             f"({type(exc).__name__}: {exc}); the file is incomplete. Download "
                             f"it again into {DIFFUSION_MODELS_DIR}.") from None
    return fill_model(model, weights, dtype, part.name, what, DIFFUSION_MODELS_DIR)


def _vae(part: ComponentFile, dtype: torch.dtype) -> AutoencoderKLHunyuanVideo:
    state = part.state
    if any(k.startswith(VAE_PREFIX) for k in state):
        state = {k.removeprefix(VAE_PREFIX): v for k, v in state.items()
                 if k.startswith(VAE_PREFIX)}
    shapes = shapes_of(state)
    if not all(marker in shapes for marker in VAE_MARKERS) or len(
            shapes["post_quant_conv.weight"]) != 5:
        raise ModelLoadError(f"{part.name} is not a HunyuanVideo VAE in Tencent's (diffusers') "
                             f"layout; put hunyuan_video_vae_bf16.safetensors in {VAE_DIR}")
    config = config_from_shapes(vae_config, shapes, part.name, "HunyuanVideo VAE", VAE_DIR)
    try:
        with init_empty_weights():
            model = AutoencoderKLHunyuanVideo(**config)
    except ValueError as exc:
        raise ModelLoadError(f"{part.name}: a VAE of a shape HunyuanVideo's is not ({exc}); put "
                             f"hunyuan_video_vae_bf16.safetensors in {VAE_DIR}") from None
    return fill_model(model, state, dtype, part.name, "HunyuanVideo VAE", VAE_DIR)


def _llama(part: ComponentFile, dtype: torch.dtype) -> LlamaModel:
    state = {k.removeprefix(LLAMA_PREFIX): v for k, v in part.state.items()}
    if any(k.endswith(CLIP_EMBEDDING) for k in state):
        raise ModelLoadError(f"{part.name} is CLIP-L: it goes in text_encoder_2; text_encoder "
                             f"is HunyuanVideo's Llama (llava_llama3_*.safetensors in "
                             f"{TEXT_ENCODERS_DIR})")
    # Only the decoder stack: a language-model head or a vision tower beside it is not used.
    state = {k: v for k, v in state.items() if k.startswith(LLAMA_PARTS)}
    if "embed_tokens.weight" not in state:
        raise ModelLoadError(f"{part.name} is not a Llama text encoder (expected "
                             f"model.embed_tokens.weight and model.layers.*, as ComfyUI saves "
                             f"llava_llama3); put HunyuanVideo's Llama in {TEXT_ENCODERS_DIR}")
    what = "Llama text encoder"
    config = config_from_shapes(llama_config, shapes_of(state), part.name, what,
                              TEXT_ENCODERS_DIR)
    with init_empty_weights():
        model = LlamaModel(LlamaConfig(**config))
    return fill_model(model, state, dtype, part.name, what, TEXT_ENCODERS_DIR)


def _clip(part: ComponentFile, tokenizer: CLIPTokenizer, dtype: torch.dtype) -> CLIPTextModel:
    prefix = next((k[: -len(CLIP_EMBEDDING)] for k in part.state if k.endswith(CLIP_EMBEDDING)),
                  None)
    if prefix is None:
        raise ModelLoadError(f"{part.name} is not a CLIP text encoder (expected "
                             f"{CLIP_TEXT}{CLIP_EMBEDDING}, as in clip_l.safetensors); "
                             f"text_encoder_2 is CLIP-L, in {TEXT_ENCODERS_DIR}")
    # The text tower alone: its projection and logit scale are not what the pooled embedding
    # uses, and its position ids are rebuilt by the model.
    state = {k.removeprefix(prefix): v for k, v in part.state.items()
             if k.removeprefix(prefix).startswith(CLIP_PARTS) and k.startswith(prefix)
             and not k.endswith("position_ids")}
    what = "CLIP-L text encoder"
    config = config_from_shapes(clip_config, shapes_of(state), part.name, what, TEXT_ENCODERS_DIR)
    # The pooled embedding is read at the first end token: the tokenizer's ids say which.
    ids = dict(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
               pad_token_id=tokenizer.pad_token_id)
    with init_empty_weights():
        model = CLIPTextModel(CLIPTextConfig(**config, **ids))
    if any(k.startswith(CLIP_TEXT) for k in model.state_dict()):  # transformers 4's names
        state = {CLIP_TEXT + k: v for k, v in state.items()}
    return fill_model(model, state, dtype, part.name, what, TEXT_ENCODERS_DIR)


FAMILY = HunyuanVideo()
