"""ComfyUI's ``comfy.model_management`` for plugins: devices, memory, and the interrupt flag.

The interrupt functions act on the running node's context (``engine.context``): setting the
flag stops the prompt at its next progress tick; outside a node call they do nothing.
Kinema manages loaded models itself, so ComfyUI's model loading and offloading calls are
not provided.
"""

from __future__ import annotations

import gc
import os
from enum import Enum
from pathlib import Path
from typing import Any

import torch

from engine.context import InterruptProcessingException, current_context

__all__ = [
    "CPUState",
    "InterruptProcessingException",
    "VRAMState",
    "cast_to_device",
    "cpu_state",
    "get_autocast_device",
    "get_free_memory",
    "get_torch_device",
    "get_torch_device_name",
    "intermediate_device",
    "interrupt_current_processing",
    "is_device_cpu",
    "is_device_cuda",
    "is_device_mps",
    "processing_interrupted",
    "soft_empty_cache",
    "text_encoder_offload_device",
    "throw_exception_if_processing_interrupted",
    "unet_offload_device",
    "vram_state",
]


class VRAMState(Enum):
    DISABLED = 0  # no GPU: everything runs on the CPU
    NO_VRAM = 1
    LOW_VRAM = 2
    NORMAL_VRAM = 3
    HIGH_VRAM = 4
    SHARED = 5


class CPUState(Enum):
    GPU = 0
    CPU = 1
    MPS = 2


_HAS_CUDA = torch.cuda.is_available()
vram_state = VRAMState.NORMAL_VRAM if _HAS_CUDA else VRAMState.DISABLED
cpu_state = CPUState.GPU if _HAS_CUDA else CPUState.CPU


def get_torch_device() -> torch.device:
    """The device models run on: the current CUDA GPU, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def get_torch_device_name(device: torch.device | str | None = None) -> str:
    """A readable name of the device (``"cuda:0 NVIDIA H200"``, ``"cpu"``)."""
    device = torch.device(device) if device is not None else get_torch_device()
    if device.type == "cuda":
        return f"{device} {torch.cuda.get_device_name(device)}"
    return device.type


def text_encoder_offload_device() -> torch.device:
    return torch.device("cpu")


def cast_to_device(tensor: torch.Tensor, device: torch.device | str,
                   dtype: torch.dtype | None, copy: bool = False) -> torch.Tensor:
    """``tensor`` on ``device`` as ``dtype`` (a new tensor when ``copy``)."""
    return tensor.to(device=device, dtype=dtype or tensor.dtype, copy=copy)


def intermediate_device() -> torch.device:
    """Where node outputs (images, latents between nodes) live: the CPU."""
    return torch.device("cpu")


def unet_offload_device() -> torch.device:
    return torch.device("cpu")


def is_device_cpu(device: torch.device | str) -> bool:
    return torch.device(device).type == "cpu"


def is_device_cuda(device: torch.device | str) -> bool:
    return torch.device(device).type == "cuda"


def is_device_mps(device: torch.device | str) -> bool:
    return torch.device(device).type == "mps"


def get_autocast_device(device: torch.device | str) -> str:
    return torch.device(device).type


def soft_empty_cache(force: bool = False) -> None:
    """Return cached, unused GPU memory to the driver."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.ipc_collect()


def _available_ram() -> int:
    """Bytes of RAM this process can still use: MemAvailable, capped by a cgroup v2 limit."""
    available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            used = int(Path("/sys/fs/cgroup/memory.current").read_text())
            available = min(available, max(0, int(limit) - used))
    except (OSError, ValueError):
        pass
    return available


def get_free_memory(dev: torch.device | str | None = None,
                    torch_free_too: bool = False) -> int | tuple[int, int]:
    """Free bytes on ``dev`` (default: ``get_torch_device()``), counting torch's reusable cache.

    With ``torch_free_too`` returns ``(free_total, free_inside_torch_cache)``.
    """
    device = torch.device(dev) if dev is not None else get_torch_device()
    if device.type == "cuda":
        free_driver, _ = torch.cuda.mem_get_info(device)
        stats = torch.cuda.memory_stats(device)
        torch_free = (stats.get("reserved_bytes.all.current", 0)
                      - stats.get("active_bytes.all.current", 0))
        total_free = free_driver + torch_free
    else:
        total_free = torch_free = _available_ram()
    return (total_free, torch_free) if torch_free_too else total_free


def interrupt_current_processing(value: bool = True) -> None:
    """Set (or clear) the running prompt's interrupt flag; no-op outside a node call."""
    ctx = current_context()
    if ctx is None:
        return
    if value:
        ctx.interrupt.set()
    else:
        ctx.interrupt.clear()


def processing_interrupted() -> bool:
    ctx = current_context()
    return ctx is not None and ctx.interrupt.is_set()


def throw_exception_if_processing_interrupted() -> None:
    """Raise InterruptProcessingException when the running prompt was interrupted."""
    ctx = current_context()
    if ctx is not None:
        ctx.check_interrupted()


def __getattr__(name: str) -> Any:
    raise AttributeError(f"comfy.model_management.{name} is not supported by Kinema "
                         "(Kinema loads and offloads models itself)")
