"""The Kinema-Tiny training script: every stage runs, resumes, and exports folders that the
Kinema loaders read like any other weights."""

from __future__ import annotations

import numpy as np
import torch

from nodes.diffusion.bundle import MODELSCOPE, SD1
from nodes.diffusion.loading import load_model
from tools import train_tiny


def train(tmp_path, steps: int, stage: str = "all") -> None:
    train_tiny.main(["--stage", stage, "--steps", str(steps), "--batch", "2",
                     "--work", str(tmp_path / "work"), "--out", str(tmp_path / "out"),
                     "--save-every", "1", "--device", "cpu"])


def test_all_stages_export_models_the_loaders_read(tmp_path, capsys):
    train(tmp_path, 2)
    keyframe = load_model(tmp_path / "out" / train_tiny.KEYFRAME_FOLDER, "keyframe")
    video = load_model(tmp_path / "out" / train_tiny.VIDEO_FOLDER, "video")
    assert (keyframe.family, video.family) == (SD1, MODELSCOPE)
    assert "Kinema-Tiny" in (tmp_path / "out" / train_tiny.VIDEO_FOLDER /
                             "MODEL_CARD.md").read_text()
    shared = keyframe.pipe.text_encoder.state_dict()
    for name, tensor in video.pipe.text_encoder.state_dict().items():
        assert torch.equal(tensor, shared[name]), "one text encoder for both models"
    assert "[diffusion] step 2/2" in capsys.readouterr().out


def test_the_exported_vae_scales_latents_to_unit_variance(tmp_path):
    train(tmp_path, 1)
    vae = load_model(tmp_path / "out" / train_tiny.VIDEO_FOLDER, "video").pipe.vae.float()
    _, clips = train_tiny.batch_of_clips(np.random.default_rng(7), 8)
    with torch.no_grad():
        latents = vae.encode(clips.flatten(0, 1)).latent_dist.mean
    assert 0.8 < (latents * vae.config.scaling_factor).std().item() < 1.25


def test_a_stage_resumes_where_its_checkpoint_stopped(tmp_path, capsys):
    train(tmp_path, 2, "vae")
    first = torch.load(tmp_path / "work" / "vae.pt", weights_only=True)
    train(tmp_path, 3, "vae")
    out = capsys.readouterr().out
    assert "[vae] resumed at step 2" in out and "[vae] step 3/3" in out
    resumed = torch.load(tmp_path / "work" / "vae.pt", weights_only=True)
    assert resumed["step"] == 3 and first["step"] == 2
