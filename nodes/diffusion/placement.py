"""Where a loaded pipeline's weights live while it runs, chosen from the GPU's free memory.

A user should not have to guess an offload flag: when the whole pipeline fits beside room for
the activations it goes to the GPU; when only its largest component fits, diffusers' model CPU
offload moves one component at a time onto the GPU; when not even that fits, diffusers' group
offloading streams the transformer's layers in (leaf level, on a side CUDA stream, so copies
overlap compute). On the CPU nothing moves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from nodes.diffusion.bundle import module_bytes

GPU, MODEL_OFFLOAD, GROUP_OFFLOAD, CPU = "gpu", "model_offload", "group_offload", "cpu"
# Room kept free for activations, attention and the VAE's decode, beside the weights: a 480p
# 81-frame Wan clip takes about 3 GiB at bf16 in the transformer (its largest working set).
ACTIVATION_MARGIN = 3 << 30


@dataclass(frozen=True)
class Placement:
    """How the pipeline runs, and why (shown in the model's details)."""

    mode: str
    reason: str


def choose_placement(component_bytes: dict[str, int], free_bytes: int,
                     margin: int = ACTIVATION_MARGIN) -> Placement:
    """The placement for components of these sizes on a GPU with ``free_bytes`` free."""
    total = sum(component_bytes.values())
    largest_name, largest = max(component_bytes.items(), key=lambda kv: kv[1],
                                default=("", 0))
    gib = 1 << 30
    if total + margin <= free_bytes:
        return Placement(GPU, f"all {total / gib:.1f} GiB of weights fit in "
                              f"{free_bytes / gib:.1f} GiB free")
    if largest + margin <= free_bytes:
        return Placement(MODEL_OFFLOAD, f"{total / gib:.1f} GiB of weights do not fit in "
                                        f"{free_bytes / gib:.1f} GiB free; the largest part "
                                        f"({largest_name}, {largest / gib:.1f} GiB) does: one "
                                        f"component on the GPU at a time")
    return Placement(GROUP_OFFLOAD, f"not even {largest_name} ({largest / gib:.1f} GiB) fits "
                                    f"in {free_bytes / gib:.1f} GiB free: its layers stream in")


def place(pipe: Any, device: torch.device) -> Placement:
    """Put ``pipe`` on ``device`` as the free memory allows; the placement chosen."""
    if device.type != "cuda":
        pipe.to(device)
        return Placement(CPU, f"runs on {device.type}")
    free, _total = torch.cuda.mem_get_info(device)
    sizes = {name: module_bytes(part) for name, part in pipe.components.items()}
    placement = choose_placement(sizes, free)
    if placement.mode == GPU:
        pipe.to(device)
    elif placement.mode == MODEL_OFFLOAD:
        pipe.enable_model_cpu_offload(device=device)
    else:
        from diffusers.hooks import apply_group_offloading

        for name, part in pipe.components.items():
            if not isinstance(part, torch.nn.Module):
                continue
            if name == "vae":  # small, and its decode reads every weight per frame
                part.to(device)
            else:
                apply_group_offloading(part, onload_device=device, offload_type="leaf_level",
                                       use_stream=True)
    return placement
