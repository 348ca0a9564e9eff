"""Reading a single weights file safely: safetensors, or ``torch.load(weights_only=True)``.

A pickle can run code when it is loaded, so ``.pth``/``.ckpt``/``.pt``/``.bin`` files are only
ever read with torch's weights-only unpickler; a file that needs more is refused, not opened.
Every failure becomes a ``ModelLoadError`` that says what the file should have been.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from nodes.diffusion.model_files import ModelLoadError

SAFETENSORS_SUFFIXES = frozenset({".safetensors", ".sft"})
PICKLE_SUFFIXES = frozenset({".pth", ".ckpt", ".pt", ".bin"})
StateDict = dict[str, torch.Tensor]
# Keys a checkpoint nests its weights under.
NESTED_WEIGHTS = ("params_ema", "params", "state_dict")


def read_state_dict(path: Path, where: str) -> StateDict:
    """All tensors of one file, on the CPU (memory-mapped where the format allows).

    ``where`` names the folder the file belongs in, for the error messages.
    """
    if not path.is_file():
        raise ModelLoadError(f"{path.name} was not found: put it in {where}")
    suffix = path.suffix.lower()
    if suffix in SAFETENSORS_SUFFIXES:
        state = _read_safetensors(path, where)
    elif suffix in PICKLE_SUFFIXES:
        state = _read_pickle(path, where)
    else:
        raise ModelLoadError(f"{path.name}: unsupported file type {suffix!r}; expected "
                             f".safetensors (or .pth/.ckpt) in {where}")
    if not state:
        raise ModelLoadError(f"{path.name} holds no tensors; expected model weights in {where}")
    return state


def _read_safetensors(path: Path, where: str) -> StateDict:
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelLoadError(
            f"{path.name} is not a readable .safetensors file (truncated or corrupt: {exc}). "
            f"Download it again into {where}.") from None


def _read_pickle(path: Path, where: str) -> StateDict:
    # mmap keeps a multi-GB checkpoint out of RAM until its tensors are used (zip format only).
    mmap = zipfile.is_zipfile(path)
    try:
        loaded = torch.load(str(path), map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as exc:
        raise ModelLoadError(
            f"{path.name} holds Python objects other than tensors; Kinema reads .pth/.ckpt "
            f"files only with torch.load(weights_only=True) and never unpickles arbitrary "
            f"objects. Convert it to .safetensors and put that in {where} ({exc})") from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as exc:
        raise ModelLoadError(f"{path.name} is not a readable checkpoint (truncated or corrupt: "
                             f"{exc}). Download it again into {where}.") from None
    # Training checkpoints nest the weights under "state_dict" (sometimes twice); BasicSR's
    # (Real-ESRGAN) under "params_ema" or "params".
    while isinstance(loaded, dict) and (inner := next(
            (loaded[k] for k in NESTED_WEIGHTS if isinstance(loaded.get(k), dict)),
            None)) is not None:
        loaded = inner
    if not isinstance(loaded, dict):
        raise ModelLoadError(f"{path.name} holds a {type(loaded).__name__}, not a dict of "
                             f"tensors; expected model weights in {where}")
    return {k: v for k, v in loaded.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}


def shapes_of(state: StateDict) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in state.items()}


def check_fully_loaded(module: torch.nn.Module, what: str, name: str, hint: str) -> None:
    """Refuse a model some of whose weights were not in the file (they would stay empty)."""
    missing = [n for n, t in (*module.named_parameters(), *module.named_buffers())
               if t.device.type == "meta"]
    if missing:
        raise ModelLoadError(f"{name}: the {what} weights do not match its configuration "
                             f"({len(missing)} tensors missing, e.g. {missing[0]}). {hint}")


# ComfyUI's "scaled" fp8 files: weight = stored fp8 weight x its scale; the marker tensor and
# the input scales (used only by fp8 matrix multiplication) carry no weights.
WEIGHT_SCALE_SUFFIXES = (".scale_weight", ".weight_scale")
NOT_WEIGHTS_SUFFIXES = (".scale_input", ".input_scale", ".comfy_quant")
SCALED_FP8_MARKER = "scaled_fp8"
FP8_DTYPES = frozenset({torch.float8_e4m3fn, torch.float8_e5m2})


def dequantize_fp8(state: StateDict, dtype: torch.dtype) -> StateDict:
    """fp8 tensors as ``dtype``, with ComfyUI's per-tensor scales applied ("scaled" files:
    ``X.weight`` times ``X.scale_weight``); scale tensors and the format's marker removed.

    Other tensors keep their dtype. A scale is applied in float32, then cast, so a
    bf16 or fp16 result is the nearest value to what the file means.
    """
    scales = {key[: -len(suffix)] + ".weight": value for key, value in state.items()
              for suffix in WEIGHT_SCALE_SUFFIXES if key.endswith(suffix)}
    out: StateDict = {}
    for key, value in state.items():
        if key.rsplit(".", 1)[-1] == SCALED_FP8_MARKER or key.endswith(
                (*WEIGHT_SCALE_SUFFIXES, *NOT_WEIGHTS_SUFFIXES)):
            continue
        scale = scales.get(key)
        if value.dtype in FP8_DTYPES or scale is not None:
            # As ComfyUI does, a scale applies whatever the weight's dtype.
            target = dtype if value.dtype in FP8_DTYPES else value.dtype
            value = value.float() * scale.float() if scale is not None else value.float()
            value = value.to(target)
        out[key] = value
    return out
