"""Kinema-Tiny's parts as diffusers models, and its word-level CLIP tokenizer.

Everything is a stock diffusers/transformers class, saved in the layout the Kinema loaders
read (a ``StableDiffusionPipeline`` folder for the keyframe model, a ``TextToVideoSDPipeline``
folder for the temporal model), so the trained model needs no special path in Kinema. The
sizes are chosen for CPU training: a VAE that halves the side twice (64 px → 16x16x8 latents,
a third of the pixels' numbers, so reconstruction is easy), UNets of about a million parameters
that attend to the text at their coarser level only, a two-layer text encoder over the world's
words.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from pathlib import Path

from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel, UNet3DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from tools.tiny_world import BACKGROUNDS, COLOURS, MOTIONS, SHAPES, SIZE

TEXT_WIDTH = 64
MAX_TOKENS = 16  # "a purple triangle moving right on a sky blue background" is 12 words
LATENT_CHANNELS = 8
VAE_FACTOR = 4
GROUPS = 8


def world_words() -> list[str]:
    """Every word a caption of the tiny world uses."""
    words = {"a", "on", "background"}
    for phrase in (*COLOURS, *SHAPES, *MOTIONS, *BACKGROUNDS):
        words.update(phrase.split())
    return sorted(words)


def write_tokenizer(folder: Path) -> CLIPTokenizer:
    """A CLIP tokenizer whose vocabulary holds each world word as one token.

    CLIP's BPE starts from characters (the last one marked ``</w>``) and applies its merges in
    rank order; merges learnt the way BPE learns them (the most frequent adjacent pair first,
    until every world word is one symbol) rebuild exactly those words. Single letters stay in
    the vocabulary, so any other prompt still tokenizes, letter by letter.
    """
    folder.mkdir(parents=True, exist_ok=True)
    letters = sorted(set("abcdefghijklmnopqrstuvwxyz"))
    vocab: dict[str, int] = {}
    for token in [*letters, *(ch + "</w>" for ch in letters)]:
        vocab.setdefault(token, len(vocab))
    merges = _learn_merges(world_words())
    for left, right in merges:
        vocab.setdefault(left + right, len(vocab))
    for special in ("<|startoftext|>", "<|endoftext|>"):
        vocab[special] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(
        f"{left} {right}" for left, right in merges) + "\n")
    special = {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>",
               "unk_token": "<|endoftext|>", "pad_token": "<|endoftext|>"}
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "model_max_length": MAX_TOKENS, "do_lower_case": True,
        "tokenizer_class": "CLIPTokenizer", **special}))
    (folder / "special_tokens_map.json").write_text(json.dumps(special))
    return CLIPTokenizer.from_pretrained(folder)


def _learn_merges(words: list[str]) -> list[tuple[str, str]]:
    spelled = [[*word[:-1], word[-1] + "</w>"] for word in words]
    merges: list[tuple[str, str]] = []
    while any(len(pieces) > 1 for pieces in spelled):
        counts: Counter[tuple[str, str]] = Counter(
            pair for pieces in spelled for pair in itertools.pairwise(pieces))
        best = max(counts, key=lambda pair: (counts[pair], pair))  # ties: a fixed order
        merges.append(best)
        for pieces in spelled:
            i = 0
            while i < len(pieces) - 1:
                if (pieces[i], pieces[i + 1]) == best:
                    pieces[i:i + 2] = [pieces[i] + pieces[i + 1]]
                i += 1
    return merges


def text_encoder(vocab_size: int) -> CLIPTextModel:
    return CLIPTextModel(CLIPTextConfig(
        vocab_size=vocab_size, hidden_size=TEXT_WIDTH, intermediate_size=2 * TEXT_WIDTH,
        num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=MAX_TOKENS,
        projection_dim=TEXT_WIDTH, eos_token_id=vocab_size - 1, bos_token_id=vocab_size - 2,
        pad_token_id=vocab_size - 1))


def vae() -> AutoencoderKL:
    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=LATENT_CHANNELS,
        down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(32, 64, 64), layers_per_block=1, norm_num_groups=GROUPS,
        sample_size=SIZE)


def keyframe_unet() -> UNet2DConditionModel:
    return UNet2DConditionModel(
        sample_size=SIZE // VAE_FACTOR, in_channels=LATENT_CHANNELS,
        out_channels=LATENT_CHANNELS, layers_per_block=1, block_out_channels=(32, 64),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=TEXT_WIDTH,
        attention_head_dim=8, norm_num_groups=GROUPS)


def temporal_unet() -> UNet3DConditionModel:
    return UNet3DConditionModel(
        sample_size=SIZE // VAE_FACTOR, in_channels=LATENT_CHANNELS,
        out_channels=LATENT_CHANNELS, layers_per_block=1, block_out_channels=(32, 64),
        down_block_types=("DownBlock3D", "CrossAttnDownBlock3D"),
        up_block_types=("CrossAttnUpBlock3D", "UpBlock3D"), cross_attention_dim=TEXT_WIDTH,
        attention_head_dim=8, norm_num_groups=GROUPS)


def scheduler() -> DDIMScheduler:
    """SD's noise schedule (scaled linear betas) with v-prediction, as SD 2 uses.

    Predicting the noise, a small model learns to denoise locally long before it learns to
    carry the keyframe's content into the later frames: at high noise that content is a tiny
    part of the noise it predicts. v-prediction makes it predict the clean clip there.
    """
    return DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                         num_train_timesteps=1000, clip_sample=False, set_alpha_to_one=False,
                         steps_offset=1, prediction_type="v_prediction")
