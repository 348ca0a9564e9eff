"""The objects generation nodes pass along: a loaded model and a text conditioning.

Socket types are Kinema's own names: these are not ComfyUI's MODEL/CLIP/VAE objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

KINEMA_MODEL = "KINEMA_MODEL"
KINEMA_CONDITIONING = "KINEMA_CONDITIONING"

# Families Kinema knows; the loaders detect them from the weights' keys.
SD1, SD2, MODELSCOPE, ANIMATEDIFF, SVD = "sd1", "sd2", "modelscope", "animatediff", "svd"
# ModelBundle.details: the diffusion model's weights are stored in fp8 (computed in bf16/fp16).
FP8_STORAGE = "fp8_storage"
WAN = "wan"
HUNYUAN = "hunyuan_video"
LTX = "ltx"
COGVIDEOX = "cogvideox"


def module_bytes(module: Any) -> int:
    """Bytes held by a module's parameters and buffers (0 for a component that is not one)."""
    if not isinstance(module, torch.nn.Module):
        return 0
    return sum(t.element_size() * t.nelement() for t in (*module.parameters(), *module.buffers()))


@dataclass
class ModelBundle:
    """A loaded diffusers pipeline (its components are the model) and where it came from."""

    family: str
    pipe: Any  # a diffusers DiffusionPipeline
    source: str
    device: torch.device
    dtype: torch.dtype
    details: dict[str, Any] = field(default_factory=dict)  # e.g. the motion adapter version
    # A view of another output's model (DiT Options, a LoRA): the same pipeline, whose weights
    # the loader's output already counts; counting them again would evict the loader's entry
    # and reload a second copy of the model.
    shares_pipe: bool = False

    @property
    def nbytes(self) -> int:
        """Bytes held by every component's parameters and buffers (the cache counts these)."""
        if self.shares_pipe:
            return 0
        return sum(module_bytes(component) for component in self.pipe.components.values())


@dataclass
class Conditioning:
    """Text embeddings for a prompt and its negative, made by one model's text encoder."""

    family: str
    source: str
    prompt: str
    negative_prompt: str
    prompt_embeds: torch.Tensor
    negative_prompt_embeds: torch.Tensor | None
    # What else the model reads with the embeddings (LTX-Video: the attention masks), by name.
    extras: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        tensors = [self.prompt_embeds, self.negative_prompt_embeds, *self.extras.values()]
        return sum(t.element_size() * t.nelement() for t in tensors if t is not None)


KINEMA_MOTION = "KINEMA_MOTION"


@dataclass
class MotionModule:
    """An AnimateDiff motion adapter (diffusers ``MotionAdapter``) and its version."""

    adapter: Any
    version: str  # "v1-5", "v2" or "v3"
    source: str

    @property
    def nbytes(self) -> int:
        return module_bytes(self.adapter)
