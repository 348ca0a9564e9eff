"""Where models run and in what precision: CUDA when present (fp16, or bf16), else CPU fp32."""

from __future__ import annotations

import os

import torch


def inference_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def inference_dtype(device: torch.device, prefer_bf16: bool = False) -> torch.dtype:
    """fp32 on CPU (half precision is slow and inexact there); on a GPU bfloat16 where the
    model prefers it (the diffusion transformers and their T5/Llama encoders overflow fp16) and
    the GPU has it, or when ``KINEMA_DTYPE=bf16`` asks; fp16 otherwise."""
    if device.type != "cuda":
        return torch.float32
    wanted = prefer_bf16 or os.environ.get("KINEMA_DTYPE") == "bf16"
    return torch.bfloat16 if wanted and torch.cuda.is_bf16_supported() else torch.float16
