"""ComfyUI's ``latent_preview`` for plugins, mapped onto Kinema's progress.

In ComfyUI, samplers ask this module for a previewer that turns latents into preview
images. Kinema's samplers make their own previews (``engine.context`` progress events), so
``get_previewer`` answers None, as ComfyUI does with previews turned off; plugins that wrap it
(VideoHelperSuite's animated previews) load and see no previewer. ``prepare_callback`` gives a
sampler callback that reports each step to the running node's progress.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import Any

from comfy.utils import ProgressBar


class LatentPreviewMethod(StrEnum):
    NoPreviews = "none"
    Auto = "auto"
    Latent2RGB = "latent2rgb"
    TAESD = "taesd"


class LatentPreviewer:
    """Base class of ComfyUI's previewers, which plugins subclass."""

    def decode_latent_to_preview(self, x0: Any) -> Any:
        raise NotImplementedError

    def decode_latent_to_preview_image(self, preview_format: str, x0: Any) -> Any:
        raise NotImplementedError


def get_previewer(device: Any, latent_format: Any, *args: Any, **kwargs: Any,
                  ) -> LatentPreviewer | None:
    """No ComfyUI previewer: Kinema's samplers preview through its own progress events."""
    return None


def prepare_callback(model: Any, steps: int, x0_output_dict: dict | None = None,
                     ) -> Callable[[int, Any, Any, int], None]:
    """A k-diffusion style step callback reporting progress (and keeping ``x0`` if asked)."""
    bar = ProgressBar(steps)

    def callback(step: int, x0: Any, x: Any, total_steps: int) -> None:
        if x0_output_dict is not None:
            x0_output_dict["x0"] = x0
        bar.update_absolute(step + 1, total_steps)

    return callback
