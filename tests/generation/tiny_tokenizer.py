"""A real CLIP tokenizer (transformers' CLIPTokenizer files) with a tiny byte-level vocabulary.

No hub: vocab.json and merges.txt are written here. Every byte is a token (alone and as a
word end), plus a few merges, so any prompt tokenizes; the vocabulary stays under 600 entries.
"""

from __future__ import annotations

import json
from pathlib import Path

MERGES = ["r e", "e d</w>", "c i", "ci r", "l e</w>", "o n</w>", "a n", "t h", "th e</w>"]


def byte_symbols() -> list[str]:
    """GPT-2/CLIP's byte → printable-character table, in byte order."""
    keep = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
            + list(range(ord("®"), ord("ÿ") + 1)))
    symbols, extra = {}, 0
    for b in range(256):
        if b in keep:
            symbols[b] = chr(b)
        else:
            symbols[b] = chr(256 + extra)
            extra += 1
    return [symbols[b] for b in range(256)]


def write_clip_tokenizer(folder: Path, max_length: int = 16) -> Path:
    """vocab.json, merges.txt and the tokenizer configs CLIPTokenizer.from_pretrained reads."""
    folder.mkdir(parents=True, exist_ok=True)
    symbols = byte_symbols()
    vocab: dict[str, int] = {}
    for token in [*symbols, *(s + "</w>" for s in symbols)]:
        vocab.setdefault(token, len(vocab))
    for merge in MERGES:
        vocab.setdefault(merge.replace(" ", ""), len(vocab))
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(MERGES) + "\n")
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "model_max_length": max_length, "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>", "do_lower_case": True,
        "tokenizer_class": "CLIPTokenizer"}))
    (folder / "special_tokens_map.json").write_text(json.dumps({
        "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>", "pad_token": "<|endoftext|>"}))
    return folder


def vocab_size(folder: Path) -> int:
    return len(json.loads((folder / "vocab.json").read_text()))
