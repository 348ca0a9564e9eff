"""Where models run and in what precision: CUDA when present (fp16, or bf16), else CPU fp32."""

from __future__ import annotations

import os

import torch


def inference_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def inference_dtype(device: torch.device) -> torch.dtype:
    """fp32 on CPU (half precision is slow and inexact there); fp16 on GPU unless
    ``KINEMA_DTYPE=bf16`` asks for bfloat16 (safer range for large video models)."""
    if device.type != "cuda":
        return torch.float32
    return torch.bfloat16 if os.environ.get("KINEMA_DTYPE") == "bf16" else torch.float16
