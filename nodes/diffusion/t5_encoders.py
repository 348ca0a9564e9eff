"""T5 and UMT5 text encoders (Wan: UMT5-XXL; LTX-Video, CogVideoX: T5-XXL) from single files in
ComfyUI's layout, which is transformers' own key layout, with the size read from the shapes.

ComfyUI's files carry their SentencePiece tokenizer inside, as a uint8 tensor named
``spiece_model``; it becomes a transformers ``T5Tokenizer`` (no extra ids: ComfyUI tokenizes
with the bare SentencePiece model). A file without it takes the tokenizer folder under
``models/text_encoders/``, named in the error when missing.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Any

import torch
from accelerate import init_empty_weights
from transformers import (
    AutoTokenizer,
    T5Config,
    T5EncoderModel,
    T5Tokenizer,
    UMT5Config,
    UMT5EncoderModel,
)

from engine.folders import active_folders
from nodes.diffusion.families.base import fill_model
from nodes.diffusion.model_files import TEXT_ENCODERS_DIR, ModelLoadError
from nodes.diffusion.weights import StateDict

SPIECE_KEY = "spiece_model"
EMBEDDING = "shared.weight"
BLOCK = re.compile(r"encoder\.block\.(\d+)\.")
# What shapes cannot tell: the T5 family's fixed settings (T5 v1.1 / UMT5 XXL).
RELATIVE_MAX_DISTANCE = 128
LAYER_NORM_EPS = 1e-6


def is_t5_encoder(shapes: dict[str, tuple[int, ...]]) -> bool:
    return EMBEDDING in shapes and "encoder.block.0.layer.0.SelfAttention.q.weight" in shapes


def is_umt5(shapes: dict[str, tuple[int, ...]]) -> bool:
    """UMT5 has a relative position bias in every layer; T5 only in the first."""
    return "encoder.block.1.layer.0.SelfAttention.relative_attention_bias.weight" in shapes


def encoder_config(shapes: dict[str, tuple[int, ...]]) -> dict[str, Any]:
    """A T5/UMT5 encoder's config from its weights' shapes."""
    vocab, width = shapes[EMBEDDING]
    buckets, heads = shapes["encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"]
    inner = shapes["encoder.block.0.layer.0.SelfAttention.q.weight"][0]
    gated = "encoder.block.0.layer.1.DenseReluDense.wi_0.weight" in shapes
    ff = shapes["encoder.block.0.layer.1.DenseReluDense." + ("wi_0" if gated else "wi")
                + ".weight"][0]
    layers = 1 + max(int(m.group(1)) for k in shapes if (m := BLOCK.match(k)))
    return dict(vocab_size=vocab, d_model=width, d_kv=inner // heads, d_ff=ff, num_layers=layers,
                num_heads=heads, relative_attention_num_buckets=buckets,
                relative_attention_max_distance=RELATIVE_MAX_DISTANCE,
                feed_forward_proj="gated-gelu" if gated else "relu",
                layer_norm_epsilon=LAYER_NORM_EPS, is_encoder_decoder=False, use_cache=False,
                tie_word_embeddings=False)


def load_t5_encoder(state: StateDict, name: str, dtype: torch.dtype, *, umt5: bool,
                    ) -> torch.nn.Module:
    """The encoder of a T5 (``umt5=False``) or UMT5 single file, sized from its shapes."""
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    kind = "UMT5" if umt5 else "T5"
    if not is_t5_encoder(shapes) or is_umt5(shapes) != umt5:
        raise ModelLoadError(f"{name} is not a {kind} text encoder (expected {EMBEDDING} and "
                             f"encoder.block.* in transformers' layout, as ComfyUI saves "
                             f"{kind} files); put the model's own {kind} encoder in "
                             f"{TEXT_ENCODERS_DIR}")
    config_cls, model_cls = (UMT5Config, UMT5EncoderModel) if umt5 else (T5Config, T5EncoderModel)
    with init_empty_weights():
        model = model_cls(config_cls(**encoder_config(shapes)))
    weights = {k: v for k, v in state.items()
               if k != SPIECE_KEY and not k.startswith("decoder.")}
    # The encoder's token table is the shared one (tied in transformers).
    weights.setdefault("encoder.embed_tokens.weight", weights[EMBEDDING])
    return fill_model(model, weights, dtype, name, f"{kind} text encoder", TEXT_ENCODERS_DIR)


def load_t5_tokenizer(state: StateDict, name: str, folder_name: str) -> Any:
    """The tokenizer inside a ComfyUI text encoder file, else ``models/text_encoders/<folder>``."""
    spiece = state.get(SPIECE_KEY)
    if spiece is not None:
        # transformers converts a SentencePiece model from a file only; the file lives in the
        # project's temp folder for the conversion and goes with it.
        temp = active_folders().temp
        temp.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=temp) as folder:
            (Path(folder) / "spiece.model").write_bytes(spiece.numpy().tobytes())
            return T5Tokenizer.from_pretrained(folder, extra_ids=0)
    folder = active_folders().model_path("text_encoders", folder_name)
    if folder is None:
        raise ModelLoadError(
            f"{name} carries no tokenizer (ComfyUI's files hold it as '{SPIECE_KEY}'): put the "
            f"tokenizer folder (tokenizer.json, or spiece.model, and tokenizer_config.json; the "
            f"tokenizer/ folder of the model's diffusers release) in "
            f"{TEXT_ENCODERS_DIR}{folder_name}/")
    return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
