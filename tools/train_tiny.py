"""Train Kinema-Tiny: a VAE, a text-to-keyframe model and a keyframe-to-clip model.

    .venv/bin/python tools/train_tiny.py --stage all --work runs/tiny --out models/diffusers

Two stages, each reproducible from ``--seed`` and resumable: a checkpoint (weights, optimiser,
step, random states) is written to ``<work>/<stage>.pt`` every ``--save-every`` steps and picked
up by the next run of the same stage.

1. ``vae``: an AutoencoderKL (64 px → 16x16x8) learns to reconstruct tiny-world frames; its
   ``scaling_factor`` is then measured so that the latents the UNets see have unit variance.
2. ``diffusion``: one text encoder and two UNets learn together, on the frozen VAE's latents
   (v-prediction; 10% empty captions for guidance). The UNet2D learns the first frame of
   a caption's clip (the keyframe). The UNet3D learns the whole clip, with frame 0 always the
   clean keyframe latent in its input and left out of the loss: the motion is all it has to
   learn; at generation the temporal denoiser anchors frame 0 to the keyframe the same way.
   Sharing the text encoder means a prompt is encoded once for both models.

The learning rate warms up over the first steps and then follows a cosine down to a twentieth.

The diffusion stage exports diffusers folders the Kinema loaders read:
``kinema-tiny-keyframe`` (StableDiffusionPipeline) and ``kinema-tiny-video``
(TextToVideoSDPipeline), with a model card. Only training captions are used
(``tools/tiny_world.py`` holds the held-out ones back).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tools import tiny_models  # noqa: E402
from tools.tiny_world import FRAMES, Variation, render, training_scenes  # noqa: E402

STAGES = ("vae", "diffusion")
KEYFRAME_FOLDER, VIDEO_FOLDER = "kinema-tiny-keyframe", "kinema-tiny-video"
KEYFRAMES_PER_CLIP = 8  # a keyframe batch is cheap: a single frame, a 2D UNet
UNCONDITIONAL = 0.1  # share of empty captions: what classifier-free guidance subtracts
KL_WEIGHT = 1e-4  # per pixel value: enough to keep latents bounded, too little to blur them
WARMUP = 100  # steps (a tenth of a shorter run)
FINAL_LR = 0.05  # of the peak, at the last step


@dataclass
class Settings:
    """One stage's run."""

    stage: str
    steps: int
    batch: int
    lr: float
    seed: int
    work: Path
    out: Path
    save_every: int
    device: torch.device


def batch_of_clips(rng: np.random.Generator, count: int, frames: int = FRAMES,
                   ) -> tuple[list[str], torch.Tensor]:
    """Captions and clips ``[B,F,3,H,W]`` in -1..1 of random training scenes and variations."""
    scenes = training_scenes()
    picked = [scenes[i] for i in rng.integers(0, len(scenes), count)]
    clips = np.stack([render(s, Variation.random(rng), frames) for s in picked])
    pixels = torch.from_numpy(clips).float().div(127.5).sub(1).permute(0, 1, 4, 2, 3)
    return [s.caption for s in picked], pixels


class Trainer:
    """The parts every stage shares: models on the device, checkpoints, progress."""

    def __init__(self, settings: Settings, modules: dict[str, torch.nn.Module],
                 trainable: list[str]):
        self.s = settings
        self.modules = {k: m.to(settings.device) for k, m in modules.items()}
        params = [p for name in trainable for p in self.modules[name].parameters()]
        self.optimiser = torch.optim.AdamW(params, lr=settings.lr, weight_decay=1e-4)
        self.schedule = torch.optim.lr_scheduler.LambdaLR(self.optimiser, self._lr_factor)
        self.step = 0
        self.rng = np.random.default_rng(settings.seed)
        torch.manual_seed(settings.seed)
        self.checkpoint = settings.work / f"{settings.stage}.pt"
        if self.checkpoint.is_file():
            self._resume()

    def _lr_factor(self, step: int) -> float:
        warmup = min(WARMUP, self.s.steps // 10)
        if step < warmup:
            return (step + 1) / warmup
        progress = min((step - warmup) / max(self.s.steps - warmup, 1), 1.0)
        return FINAL_LR + (1 - FINAL_LR) * 0.5 * (1 + math.cos(math.pi * progress))

    def run(self, loss_fn: Callable[[np.random.Generator], torch.Tensor]) -> None:
        for module in self.modules.values():
            module.train()
        start, last = time.perf_counter(), self.step
        losses: list[float] = []
        while self.step < self.s.steps:
            loss = loss_fn(self.rng)
            self.optimiser.zero_grad(set_to_none=True)
            loss.backward()
            self.optimiser.step()
            self.schedule.step()
            self.step += 1
            losses.append(loss.item())
            if self.step % 50 == 0 or self.step == self.s.steps:
                rate = (self.step - last) / (time.perf_counter() - start)
                print(f"[{self.s.stage}] step {self.step}/{self.s.steps} "
                      f"loss {np.mean(losses):.4f} lr {self.schedule.get_last_lr()[0]:.2e} "
                      f"({rate:.2f} steps/s)", flush=True)
                losses.clear()
            if self.step % self.s.save_every == 0 or self.step == self.s.steps:
                self._save()
        for module in self.modules.values():
            module.eval()

    def _save(self) -> None:
        self.s.work.mkdir(parents=True, exist_ok=True)
        state = {"step": self.step, "optimiser": self.optimiser.state_dict(),
                 "schedule": self.schedule.state_dict(),
                 "modules": {k: m.state_dict() for k, m in self.modules.items()},
                 "numpy_rng": json.dumps(self.rng.bit_generator.state),
                 "torch_rng": torch.get_rng_state()}
        tmp = self.checkpoint.with_suffix(".tmp")
        torch.save(state, tmp)
        tmp.replace(self.checkpoint)

    def _resume(self) -> None:
        state = torch.load(self.checkpoint, map_location="cpu", weights_only=True)
        for name, module in self.modules.items():
            module.load_state_dict(state["modules"][name])
        self.optimiser.load_state_dict(state["optimiser"])
        self.schedule.load_state_dict(state["schedule"])
        self.step = int(state["step"])
        self.rng.bit_generator.state = json.loads(state["numpy_rng"])
        torch.set_rng_state(state["torch_rng"])
        print(f"[{self.s.stage}] resumed at step {self.step}", flush=True)


def load_stage(work: Path, stage: str, name: str, module: torch.nn.Module) -> torch.nn.Module:
    """A module trained by an earlier stage, from its checkpoint."""
    path = work / f"{stage}.pt"
    if not path.is_file():
        raise SystemExit(f"stage {stage!r} has not run: no {path}; run --stage {stage} first")
    state = torch.load(path, map_location="cpu", weights_only=True)
    module.load_state_dict(state["modules"][name])
    return module.eval().requires_grad_(False)


def train_vae(s: Settings) -> None:
    trainer = Trainer(s, {"vae": tiny_models.vae()}, ["vae"])
    vae = trainer.modules["vae"]

    def loss(rng: np.random.Generator) -> torch.Tensor:
        _, clips = batch_of_clips(rng, max(1, s.batch // 4))
        frames = clips[:, rng.integers(0, FRAMES, 4)].flatten(0, 1).to(s.device)
        posterior = vae.encode(frames).latent_dist
        decoded = vae.decode(posterior.sample()).sample
        kl = posterior.kl().mean() / frames[0].numel()
        return F.mse_loss(decoded, frames) + KL_WEIGHT * kl

    trainer.run(loss)


def trained_vae(s: Settings) -> AutoencoderKL:
    """The VAE stage's autoencoder, its ``scaling_factor`` set so latents have unit variance.

    Measured on a fixed sample of clips, so every later stage (and its export) gets the same.
    """
    vae = load_stage(s.work, "vae", "vae", tiny_models.vae()).to(s.device)
    _, clips = batch_of_clips(np.random.default_rng(0), 32)
    with torch.no_grad():
        latents = vae.encode(clips.flatten(0, 1)[::4].to(s.device)).latent_dist.mean
    vae.register_to_config(scaling_factor=round(1.0 / latents.std().item(), 5))
    return vae


def _text(tokenizer, encoder, captions: list[str], rng: np.random.Generator,
          device: torch.device, drop: float) -> torch.Tensor:
    captions = ["" if rng.random() < drop else c for c in captions]
    ids = tokenizer(captions, padding="max_length", max_length=tiny_models.MAX_TOKENS,
                    truncation=True, return_tensors="pt").input_ids.to(device)
    return encoder(ids)[0]


def _latents(vae, pixels: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return vae.encode(pixels).latent_dist.mean * vae.config.scaling_factor


def train_diffusion(s: Settings) -> None:
    tokenizer = tiny_models.write_tokenizer(s.work / "tokenizer")
    vae = trained_vae(s)
    trainer = Trainer(s, {"text_encoder": tiny_models.text_encoder(len(tokenizer)),
                          "keyframe_unet": tiny_models.keyframe_unet(),
                          "temporal_unet": tiny_models.temporal_unet()},
                      ["text_encoder", "keyframe_unet", "temporal_unet"])
    encoder = trainer.modules["text_encoder"]
    keyframe_unet = trainer.modules["keyframe_unet"]
    temporal_unet = trainer.modules["temporal_unet"]
    noise_schedule = tiny_models.scheduler()
    timesteps = noise_schedule.config.num_train_timesteps

    def noised(latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Noisy latents, the velocity a v-prediction model must output, and the timesteps."""
        noise = torch.randn_like(latents)
        t = torch.randint(0, timesteps, (len(latents),), device=s.device)
        return (noise_schedule.add_noise(latents, noise, t),
                noise_schedule.get_velocity(latents, noise, t), t)

    def keyframe_loss(rng: np.random.Generator) -> torch.Tensor:
        captions, frames = batch_of_clips(rng, KEYFRAMES_PER_CLIP * s.batch, frames=1)
        noisy, velocity, t = noised(_latents(vae, frames[:, 0].to(s.device)))
        text = _text(tokenizer, encoder, captions, rng, s.device, UNCONDITIONAL)
        return F.mse_loss(keyframe_unet(noisy, t, text).sample, velocity)

    def temporal_loss(rng: np.random.Generator) -> torch.Tensor:
        captions, clips = batch_of_clips(rng, s.batch)
        b, f = clips.shape[:2]
        latents = _latents(vae, clips.flatten(0, 1).to(s.device))
        latents = latents.unflatten(0, (b, f)).transpose(1, 2)  # [B,C,F,h,w]
        noisy, velocity, t = noised(latents)
        noisy[:, :, 0] = latents[:, :, 0]  # the clean keyframe, as generation anchors it
        text = _text(tokenizer, encoder, captions, rng, s.device, UNCONDITIONAL)
        predicted = temporal_unet(noisy, t, text).sample
        return F.mse_loss(predicted[:, :, 1:], velocity[:, :, 1:])

    trainer.run(lambda rng: keyframe_loss(rng) + temporal_loss(rng))
    export_keyframe(s, tokenizer, vae, encoder, keyframe_unet)
    export_video(s, tokenizer, vae, encoder, temporal_unet)


def export_keyframe(s: Settings, tokenizer, vae, encoder, unet) -> Path:
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline(vae=vae.cpu(), text_encoder=encoder.cpu(),
                                   tokenizer=tokenizer, unet=unet.cpu(),
                                   scheduler=tiny_models.scheduler(), safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    return _export(pipe, s, KEYFRAME_FOLDER)


def export_video(s: Settings, tokenizer, vae, encoder, unet) -> Path:
    from diffusers import TextToVideoSDPipeline

    pipe = TextToVideoSDPipeline(vae=vae.cpu(), text_encoder=encoder.cpu(),
                                 tokenizer=tokenizer, unet=unet.cpu(),
                                 scheduler=tiny_models.scheduler())
    return _export(pipe, s, VIDEO_FOLDER)


def _export(pipe, s: Settings, name: str) -> Path:
    folder = s.out / name
    # fp16 halves what the repository carries; the loaders cast to their own dtype.
    pipe.to(torch.float16).save_pretrained(folder, safe_serialization=True)
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    (folder / "MODEL_CARD.md").write_text(
        f"# {name}\n\nPart of Kinema-Tiny, trained by `tools/train_tiny.py` (stage {s.stage!r}, "
        f"{s.steps} steps, batch {s.batch}, lr {s.lr}, seed {s.seed}, on {s.device}).\n"
        "It knows only the tiny world of `tools/tiny_world.py`: six colours, three shapes, "
        "seven motions, three backgrounds; some colour-motion pairs were held out of "
        f"training to measure generalisation. {size / 1e6:.1f} MB.\n")
    print(f"[{s.stage}] exported {folder} ({size / 1e6:.1f} MB)", flush=True)
    return folder


TRAINERS = {"vae": train_vae, "diffusion": train_diffusion}
# steps, batch (frames for the VAE, clips for diffusion), learning rate
DEFAULTS = {"vae": (2000, 16, 1e-3), "diffusion": (2000, 4, 5e-4)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stage", choices=(*STAGES, "all"), default="all")
    parser.add_argument("--steps", type=int, help="steps of the stage (default per stage)")
    parser.add_argument("--batch", type=int, help="batch size (default per stage)")
    parser.add_argument("--lr", type=float, help="learning rate (default per stage)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "tiny")
    parser.add_argument("--out", type=Path, default=ROOT / "models" / "diffusers")
    parser.add_argument("--save-every", type=int, default=200)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    for stage in STAGES if args.stage == "all" else (args.stage,):
        steps, batch, lr = DEFAULTS[stage]
        settings = Settings(stage, args.steps or steps, args.batch or batch, args.lr or lr,
                            args.seed, args.work, args.out, args.save_every,
                            torch.device(args.device))
        TRAINERS[stage](settings)


if __name__ == "__main__":
    main()
