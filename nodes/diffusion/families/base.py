"""The contract every model family fulfils, and what the generation nodes pass to it.

A family is one module under ``nodes/diffusion/families/`` holding a ``Family`` subclass: it
recognises its weights, loads its components, encodes text, denoises a clip (with progress and
interrupt) and knows its latent layout and window. The nodes and the shared generation code ask
the model's family; no code outside a family's module tests which family a model is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import diffusers
import torch

from nodes.diffusion.acceleration import KINEMA_ACCELERATION, accelerated
from nodes.diffusion.bundle import Conditioning, ModelBundle, MotionModule
from nodes.diffusion.loras import LORAS, drop_stale_adapters, lora_weights
from nodes.diffusion.model_files import DIFFUSERS_DIR, FOLDER_FAMILIES, ModelLoadError, read_json
from nodes.diffusion.schedulers import DEFAULT
from nodes.diffusion.weights import StateDict, check_fully_loaded
from nodes.diffusion.windows import ContextWindows

Shapes = Mapping[str, tuple[int, ...]]
# (prompt embeddings, negative prompt embeddings or None, extras such as attention masks)
TextEmbeddings = tuple[torch.Tensor, torch.Tensor | None, dict[str, torch.Tensor]]
# ComfyUI saves a diffusion model's weights under this prefix; the original releases do not.
COMFY_PREFIX = "model.diffusion_model."


@dataclass(frozen=True)
class VideoSettings:
    """What the user chose for one clip (the TemporalDenoiser node's widgets)."""

    frames: int = 16
    steps: int = 25
    cfg: float = 7.5
    min_cfg: float = 1.0  # SVD only: guidance at the first frame (cfg is the last frame's)
    seed: int = 0
    scheduler: str = DEFAULT
    width: int = 0  # 0: the model's default size (SVD: the keyframe's size)
    height: int = 0
    fps: int = 7
    motion_bucket_id: int = 127
    noise_aug_strength: float = 0.02
    context_length: int = 0  # 0: the model's own window
    context_overlap: int = 4
    context_blend: str = "cosine"
    shift: float = 0.0  # flow-matching families: the sigma shift (0: the model's own)

    def generator(self) -> torch.Generator:
        """Seeded on the CPU as a user would: the same noise on every device."""
        return torch.Generator("cpu").manual_seed(self.seed)


@dataclass
class VideoLatents:
    """Denoised latents in the pipeline's own layout, and the pipeline that made them."""

    latents: torch.Tensor
    pipe: Any
    family: str


@dataclass
class ComponentFile:
    """One component's weights, read from a single file, and the name the user picked."""

    state: StateDict
    name: str


def strip_prefix(state: StateDict) -> StateDict:
    """A diffusion model's weights without ComfyUI's ``model.diffusion_model.`` prefix."""
    if any(k.startswith(COMFY_PREFIX) for k in state):
        return {k.removeprefix(COMFY_PREFIX): v for k, v in state.items()}
    return state


def key_prefixes(shapes: Shapes) -> Callable[[str], bool]:
    """``has(prefix)``: whether any key starts with ``prefix`` (first dotted part indexed)."""
    heads = {k.split(".", 1)[0] for k in shapes}

    def has(prefix: str) -> bool:
        head = prefix.split(".", 1)[0]
        return head in heads and any(k.startswith(prefix) for k in shapes)

    return has


class Family:
    """One model family. Subclasses override what their models do differently."""

    #: The ``ModelBundle.family`` names this module serves.
    names: tuple[str, ...] = ()
    #: diffusers pipeline class (model_index.json's ``_class_name``) → family name.
    pipelines: Mapping[str, str] = {}
    #: Whether the keyframe generator (text → one image) runs it.
    makes_images = False
    #: Whether its weights may be offloaded when VRAM is short (``placement.py``); the UNet
    #: families stay whole on the device.
    offloads = False
    #: Whether it runs in bf16 on GPUs that have it (fp16 overflows in the DiTs' encoders).
    prefers_bf16 = False
    #: Whether its VAE codes frames one by one (a 2-D VAE), so LatentEncode can use it.
    frame_vae = True
    #: The components LoRAs load into (diffusers' own LoRA loading); none: no LoRAs.
    lora_components: tuple[str, ...] = ()
    #: For the diffusion transformers ComfyUI keeps one file per component: what Load DiT
    #: Video Model needs beside the diffusion model (said when one is given to Load Model).
    companions = ""

    # --- recognising and loading ---------------------------------------------------------

    def recognise(self, name: str, shapes: Shapes) -> str | None:
        """The family name of a single file's weights, None when they are not this family's.

        May raise ModelLoadError for a file that is this family's but cannot load this way.
        """
        return None

    def folder_family(self, folder: Path, class_name: str) -> str:
        """The family of a diffusers folder whose pipeline class is one of ``pipelines``."""
        return self.pipelines[class_name]

    def folder_pipeline(self, class_name: str) -> tuple[Any, dict[str, Any]]:
        """The pipeline class that loads a folder, and what to pass its ``from_pretrained``."""
        return getattr(diffusers, class_name), {}

    def load_folder(self, folder: Path, name: str, class_name: str, dtype: torch.dtype) -> Any:
        """The diffusers pipeline of a folder, offline."""
        cls, kwargs = self.folder_pipeline(class_name)
        try:
            return cls.from_pretrained(str(folder), local_files_only=True, dtype=dtype, **kwargs)
        except Exception as exc:
            raise ModelLoadError(
                f"{name}: the diffusers folder could not be loaded ({type(exc).__name__}: {exc})."
                f" Expected a complete {class_name} folder (model_index.json, and each "
                f"component's config and weights) in {DIFFUSERS_DIR}.") from exc

    def load_single_file(self, path: Path, state: StateDict, family: str, name: str,
                         dtype: torch.dtype) -> Any:
        """The pipeline of a single file this family recognised."""
        if self.companions:
            raise ModelLoadError(
                f"{name} is a {family} diffusion model alone: load it with the Load DiT Video "
                f"Model node as its diffusion_model, together with {self.companions}; or put "
                f"the whole diffusers folder in {DIFFUSERS_DIR}.")
        raise ModelLoadError(f"{name}: {family} models load only as diffusers folders of "
                             f"{FOLDER_FAMILIES} in {DIFFUSERS_DIR}")

    def load_parts(self, transformer: ComponentFile, text_encoder: ComponentFile,
                   vae: ComponentFile, transformer_2: ComponentFile | None,
                   dtype: torch.dtype, clip_vision: ComponentFile | None = None,
                   text_encoder_2: ComponentFile | None = None) -> Any:
        """The pipeline of a model kept as one file per component (ComfyUI's layout for
        diffusion transformers): the diffusion model, its text encoder and VAE, and a second
        diffusion model where the family has two experts."""
        raise ModelLoadError(f"{transformer.name} is a whole {self.names[0]} checkpoint, not a "
                             "diffusion model alone: load it with Load Model (Kinema)")

    def load_lora(self, model: ModelBundle, state: StateDict, adapter: str, expert: str,
                  name: str) -> tuple[str, ...]:
        """Load a LoRA into the model as adapter ``adapter`` (once); the names of the
        components that carry it (``expert`` picks among a family's experts)."""
        targets = self.lora_targets(model, expert)
        if not targets:
            raise ValueError(f"{name}: LoRAs on {model.family} models are not supported; "
                             "Kinema applies LoRAs to the diffusion-transformer families")
        for target in targets:
            module = getattr(model.pipe, target)
            if adapter in (getattr(module, "peft_config", None) or {}):
                continue  # loaded by an earlier run: the cached model keeps its adapters
            drop_stale_adapters(module, name, adapter)
            try:
                self.load_lora_into(model.pipe, state, adapter, target)
            except (ValueError, KeyError, RuntimeError) as exc:
                raise ModelLoadError(f"{name} is not a LoRA for this {model.family} model "
                                     f"({exc}); put LoRAs in models/loras/") from exc
        return targets

    def lora_targets(self, model: ModelBundle, expert: str) -> tuple[str, ...]:
        """The components a LoRA goes into (``expert``: a family's choice among its experts)."""
        return self.lora_components

    def load_lora_into(self, pipe: Any, state: StateDict, adapter: str, target: str) -> None:
        """Load the LoRA into one component with diffusers' own loader."""
        pipe.load_lora_weights(dict(state), adapter_name=adapter)

    # --- generating ----------------------------------------------------------------------

    def encode_text(self, model: ModelBundle, prompt: str, negative_prompt: str,
                    ) -> TextEmbeddings:
        """(prompt, negative prompt) embeddings as the pipeline's ``__call__`` makes them, and
        what else its model reads with them, by the pipeline's argument names."""
        pipe = model.pipe
        if not hasattr(pipe, "encode_prompt") or getattr(pipe, "text_encoder", None) is None:
            raise ValueError(f"{model.source} ({model.family}) has no text encoder: it is "
                             "conditioned on an image (use its keyframe input), not on a prompt")
        # One embedding per prompt, and the negative one for classifier-free guidance (an
        # empty negative is encoded too, as there).
        with torch.no_grad():
            embeds, negative = pipe.encode_prompt(prompt, model.device, 1, True, negative_prompt)
        return embeds, negative, {}

    def video_pipeline(self, model: ModelBundle, motion: MotionModule | None,
                       scheduler: str) -> Any:
        """A fresh video pipeline over the model's components (a fresh scheduler)."""
        raise ValueError(f"{model.source} is a {model.family!r} model, not a video model: use a "
                         "video model (ModelScope/Zeroscope, SD 1.x with a motion adapter, SVD, "
                         "Wan)")

    def window(self, pipe: Any) -> int | None:
        """How many frames the model denoises at once; None when it has no limit."""
        return None

    def context_windows(self, pipe: Any, s: VideoSettings) -> ContextWindows | None:
        """The windows a clip needs, or None when it fits (the plain pipeline call)."""
        length = s.context_length or self.window(pipe)
        if length is not None and s.frames > length:
            return ContextWindows(s.frames, length, s.context_overlap, s.context_blend)
        return None

    def denoise(self, model: ModelBundle, s: VideoSettings, conditioning: Conditioning | None,
                motion: MotionModule | None, keyframe: torch.Tensor | None) -> VideoLatents:
        """Denoise one clip; progress, previews and interrupt go to the running node."""
        raise ValueError(f"{model.source} is a {model.family!r} model, not a video model")

    def latent_layout(self, latents: torch.Tensor) -> torch.Tensor:
        """The pipeline's latents in Kinema's video LATENT layout, ``[B,C,F,H,W]``."""
        return latents

    def decode_samples(self, model: ModelBundle, samples: torch.Tensor, tile_size: int,
                       tile_overlap: int) -> torch.Tensor | None:
        """LATENT samples → IMAGE frames ``[N,H,W,C]`` for a family whose VAE decodes whole
        clips (a 3-D VAE); None lets the frame-by-frame decode of ``latents.py`` do it."""
        return None

    def decode(self, video: VideoLatents, chunk: int) -> torch.Tensor:
        """The pipeline's own decode, ``chunk`` frames at a time (0: all); ``[B,C,F,H,W]``."""
        return video.pipe.decode_latents(video.latents, chunk or video.latents.shape[2])


def config_from_shapes(make: Callable[[Shapes], dict[str, Any]], shapes: Shapes, name: str,
                       what: str, where: str) -> dict[str, Any]:
    """``make(shapes)``: a model's config read from its weights' shapes; a missing tensor or an
    impossible shape is said as an incomplete file."""
    try:
        return make(shapes)
    except (KeyError, ValueError, ZeroDivisionError) as exc:
        raise ModelLoadError(f"{name}: a {what} without {exc}; the file is incomplete or not a "
                             f"{what}. Download it again into {where}.") from None


def fill_model(model: Any, state: StateDict, dtype: torch.dtype, name: str, what: str,
               where: str) -> Any:
    """Put converted weights into a model built on the meta device, in ``dtype`` except the
    modules the library keeps in float32 (diffusers' norms and time embeddings, T5's ``wo``),
    as its ``from_pretrained`` does. A file of another model that shares the names (a tensor
    of the wrong size) is said plainly."""
    keep = tuple(getattr(model, "_keep_in_fp32_modules", None) or ())
    weights = {}
    for key, value in state.items():
        fp32 = value.is_floating_point() and any(part in keep for part in key.split("."))
        weights[key] = value.to(torch.float32 if fp32 and dtype != torch.float32 else dtype)
    hint = f"Expected a complete {what} file in {where}."
    try:
        _, unexpected = model.load_state_dict(weights, strict=False, assign=True)
    except RuntimeError as exc:
        detail = next((line.strip() for line in str(exc).splitlines() if "size mismatch" in line),
                      str(exc).splitlines()[0])
        raise ModelLoadError(f"{name}: its weights do not fit a {what} ({detail}). "
                             f"{hint}") from None
    if unexpected:
        raise ModelLoadError(f"{name}: weights the {what} does not have "
                             f"({', '.join(sorted(unexpected)[:3])}). {hint}")
    check_fully_loaded(model, what, name, hint)
    return model.eval()


def scheduler_from(root: Path) -> Any:
    """The scheduler configured in ``root/scheduler/`` (a shipped config or a sidecar)."""
    config = read_json(root / "scheduler" / "scheduler_config.json")
    cls = getattr(diffusers, str(config.get("_class_name")), None)
    if not (isinstance(cls, type) and issubclass(cls, diffusers.SchedulerMixin)):
        raise ModelLoadError(f"{root / 'scheduler'}: unknown scheduler "
                             f"{config.get('_class_name')!r}")
    return cls.from_pretrained(str(root), subfolder="scheduler", local_files_only=True)


@contextmanager
def transformer_run(model: ModelBundle, pipe: Any, masked_attention: bool = False,
                    ) -> Iterator[None]:
    """The DiT Options and the LoRAs the graph chose, on the pipeline's transformer(s), for
    one run (undone after it: the cached model is shared by every run). ``masked_attention``:
    the family's transformer is called with attention masks."""
    modules = {name: getattr(pipe, name, None) for name in ("transformer", "transformer_2")}
    modules = {name: module for name, module in modules.items() if module is not None}
    with accelerated(list(modules.values()), model.details.get(KINEMA_ACCELERATION),
                     masked_attention), lora_weights(modules, model.details.get(LORAS, [])):
        yield


def image_frames(pipe: Any, video: torch.Tensor) -> torch.Tensor:
    """A decoded clip ``[B,C,F,H,W]`` in -1..1 → IMAGE frames ``[B*F,H,W,C]`` in 0..1 on the CPU,
    through the pipeline's own postprocessing."""
    frames = pipe.video_processor.postprocess_video(video=video, output_type="pt")
    return frames.flatten(0, 1).permute(0, 2, 3, 1).float().cpu().contiguous()


def quiet(pipe: Any) -> Any:
    """The pipeline, reporting progress through the engine's hook instead of tqdm."""
    pipe.set_progress_bar_config(disable=True)
    return pipe


def refuse_parts(family: str, transformer: ComponentFile, **parts: ComponentFile | None,
                 ) -> None:
    """Refuse components (Load DiT Video Model inputs) that a family does not have."""
    for input_name, part in parts.items():
        if part is not None:
            raise ModelLoadError(f"{transformer.name} is a {family} model, which has no "
                                 f"{input_name}: set {input_name} to none ({part.name} was "
                                 f"given)")


def text_conditioning(model: ModelBundle, conditioning: Conditioning | None, width: int,
                      own_encoder: bool = False) -> Conditioning:
    """The conditioning a text-to-video model needs: present, and as wide as it reads.

    ``own_encoder``: only this family's encoder will do. The DiT families' encoders (UMT5-XXL,
    T5-XXL, Llama 3 8B) all give 4096-wide embeddings, so width cannot tell a miswired graph;
    the UNet families share CLIP and may take each other's (Kinema-Tiny's graph does).
    """
    if conditioning is None:
        raise ValueError(f"{model.family} models need a text conditioning: connect one "
                         "(KinemaTextEncode with this model)")
    if own_encoder and conditioning.family != model.family:
        raise ValueError(f"the conditioning was encoded by a {conditioning.family} model "
                         f"({conditioning.source}); {model.source} is a {model.family} model: "
                         f"encode the prompt with this model")
    if conditioning.prompt_embeds.shape[-1] != width:
        raise ValueError(f"the conditioning comes from a {conditioning.family} text encoder "
                         f"({conditioning.prompt_embeds.shape[-1]} wide) but this model expects "
                         f"{width}: encode the prompt with this model")
    return conditioning


def latent_windows(s: VideoSettings, window_frames: int, temporal: int,
                   ) -> ContextWindows | None:
    """Windows over the latent frames of a causal 3-D VAE (``temporal`` frames each after the
    first), the pixel-frame settings converted: 81 frames are 21 latent frames at 4, and an
    overlap of 4 frames is 1; None when the clip fits ``context_length`` (0: the model's)."""
    length = s.context_length or window_frames
    if s.frames <= length:
        return None
    latent_length = (length - 1) // temporal + 1
    overlap = min(max(1, s.context_overlap // temporal), latent_length - 1)
    return ContextWindows((s.frames - 1) // temporal + 1, latent_length, overlap,
                          s.context_blend)


def no_motion(model: ModelBundle, motion: MotionModule | None) -> None:
    """Refuse a motion adapter on a family that is not animated by one."""
    if motion is not None:
        raise ValueError(f"a motion adapter animates SD 1.x models; {model.source} is a "
                         f"{model.family!r} model: disconnect the motion input")


def first_sentence(exc: Exception) -> str:
    """diffusers' shape errors go on with advice for its own API; keep what went wrong."""
    text = " ".join(str(exc).split())
    cut = text.find(". ")
    return f"{type(exc).__name__}: {text[:cut + 1] if cut > 0 else text}"
