"""Interpolate Frames: in-between frames by optical flow, RIFE and blending, frame counts and
rates, chunk seams, scene cuts, RIFE weights, and a run through the engine."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import nodes
from engine.executor import Executor
from engine.frames import Frames
from engine.graph import PromptError, validate_prompt
from engine.registry import build_registry
from nodes import interpolate as interpolate_module
from nodes.diffusion.model_files import ModelLoadError
from nodes.interpolate import FrameInterpolate
from nodes.video.rife import warp
from tests.generation.workspace import CaptureOutputs
from tests.video.clips import clip, psnr
from tests.video.tiny_rife import VARIANTS, save_tiny_rife, tiny_rife_state


def store(frames: np.ndarray, fps: float = 8.0) -> Frames:
    writer = Frames.writer(frames.shape[2], frames.shape[1], fps)
    writer.append(frames)
    return writer.finish()


def run(frames: Frames, **inputs) -> Frames:
    # Cut detection is off unless a test asks: flat test frames differ like scenes do.
    options = {"method": "blend", "multiplier": 2, "target_fps": 0.0, "rife_model": "none",
               "scene_threshold": 0.0, **inputs}
    (out,) = FrameInterpolate().interpolate(frames, **options)
    return out


def flat_frames(values: list[int], size: int = 8) -> np.ndarray:
    """Frames of one grey level each: any blend of them is readable from one pixel."""
    return np.stack([np.full((size, size, 3), v, np.uint8) for v in values])


def levels(frames: Frames) -> list[int]:
    return frames.read_raw(0, len(frames))[:, 0, 0, 0].astype(int).tolist()


def test_optical_flow_beats_a_blend_on_moving_shapes(folders):
    # Rendered at half steps; every other frame is given and the ones between are held out.
    rendered = clip(9, 96, 96, speed=4.0, step=0.5)
    given, held_out = rendered[0::2], rendered[1::2]
    scores = {}
    for method in ("optical_flow", "blend"):
        out = run(store(given), method=method).read_raw(0, 9)
        assert np.array_equal(out[0::2], given), "the originals pass through unchanged"
        scores[method] = np.mean([psnr(a, b) for a, b in zip(out[1::2], held_out, strict=True)])
    print(f"PSNR of the held-out middles: {scores}")
    assert scores["optical_flow"] > scores["blend"] + 4.0, scores


@pytest.mark.parametrize("multiplier", [2, 4, 8])
def test_a_multiplier_gives_n_minus_one_times_m_plus_one_frames_at_m_times_the_fps(
        folders, multiplier):
    out = run(store(flat_frames([0, 80, 160, 240]), fps=12.0), multiplier=multiplier)
    assert len(out) == 3 * multiplier + 1
    assert out.fps == 12.0 * multiplier
    assert out.dtype == "uint8"
    expected = np.rint(np.linspace(0, 240, 3 * multiplier + 1)).astype(int).tolist()
    assert levels(out) == expected, "originals every m frames, in-betweens in time order"


def test_target_fps_resamples_at_those_times(folders):
    clip_in = store(flat_frames([0, 40, 80, 120, 160]), fps=8.0)  # level 40 per frame
    up = run(clip_in, target_fps=20.0, multiplier=4)
    assert (len(up), up.fps) == (11, 20.0)
    assert levels(up) == [16 * k for k in range(11)]  # frame k at 8/20 k: level 16 k
    down = run(clip_in, target_fps=6.0)
    assert (len(down), down.fps) == (4, 6.0)
    assert levels(down) == [0, 53, 107, 160]  # positions 0, 4/3, 8/3, 4


def test_a_cut_is_held_not_blended(folders):
    rendered = clip(6, 64, 64, speed=4.0, cut_at=3)
    for method in ("optical_flow", "blend"):
        out = run(store(rendered), method=method, multiplier=4, scene_threshold=0.5)
        out = out.read_raw(0, 21)
        # Frames 2 and 3 are different scenes: t = 1/4, 1/2 repeat 2, t = 3/4 repeats 3.
        assert np.array_equal(out[9], rendered[2]) and np.array_equal(out[10], rendered[2])
        assert np.array_equal(out[11], rendered[3])
        assert not np.array_equal(out[5], rendered[1]), "within a scene frames are made"
    blended = run(store(rendered), multiplier=4).read_raw(0, 21)
    assert not any(np.array_equal(blended[10], rendered[i]) for i in (2, 3)), \
        "with detection off the cut is cross-faded"


@pytest.mark.parametrize("method", ["optical_flow", "blend"])
def test_chunk_seams_neither_drop_nor_repeat_frames(folders, monkeypatch, method):
    rendered = store(clip(7, 48, 40, speed=3.0))
    whole = {fps: run(rendered, method=method, multiplier=3, target_fps=fps).read_raw(0, 99)
             for fps in (0.0, 13.0)}
    for size in (1, 2, 3):
        monkeypatch.setattr(interpolate_module, "CHUNK_FRAMES", size)
        for fps, expected in whole.items():
            chunked = run(rendered, method=method, multiplier=3, target_fps=fps)
            assert np.array_equal(chunked.read_raw(0, len(chunked)), expected), (size, fps)


def test_progress_is_reported_once_per_chunk(folders, monkeypatch):
    reports = []
    monkeypatch.setattr(interpolate_module, "report_progress",
                        lambda done, total: reports.append((done, total)))
    monkeypatch.setattr(interpolate_module, "CHUNK_FRAMES", 4)
    run(store(flat_frames(list(range(0, 100, 10)))))
    assert reports == [(4, 10), (8, 10), (10, 10)]


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_tiny_rife_weights_load_and_make_frames(folders, variant):
    save_tiny_rife(folders.models / "interpolate", f"rife{variant}.pth", variant=variant)
    assert f"rife{variant}.pth" in FrameInterpolate.INPUT_TYPES()["required"]["rife_model"][0]
    rendered = clip(3, 72, 40, speed=4.0)  # not a multiple of 32: padded, then cropped
    out = run(store(rendered), method="rife", rife_model=f"rife{variant}.pth", multiplier=4)
    frames = out.read_raw(0, len(out))
    assert frames.shape == (9, 40, 72, 3) and out.fps == 32.0
    assert np.array_equal(frames[0::4], rendered)
    # A made frame mixes its two neighbours, warped: it stays within their range.
    a, b = rendered[0], rendered[1]
    for made in frames[1:4]:
        assert made.min() >= min(a.min(), b.min()) and made.max() <= max(a.max(), b.max())
    assert not np.array_equal(frames[1], frames[3]), "the time reaches the network"


def test_rife_with_no_flow_and_an_even_mask_cross_fades(folders):
    state = tiny_rife_state("4.26")
    for key in state:
        if ".lastconv." in key:  # flows, mask and features all zero
            state[key] = torch.zeros_like(state[key])
    (folders.models / "interpolate").mkdir()
    torch.save(state, folders.models / "interpolate" / "still.pth")
    rendered = clip(2, 50, 34, speed=6.0)
    out = run(store(rendered), method="rife", rife_model="still.pth").read_raw(0, 3)
    even = (rendered[0].astype(np.float32) + rendered[1]) / 2
    assert np.abs(out[1] - even).max() <= 1.0


def test_warp_reads_each_pixel_at_its_position_plus_the_flow():
    image = torch.arange(5 * 7, dtype=torch.float32).view(1, 1, 5, 7)
    flow = torch.zeros(1, 2, 5, 7)
    flow[:, 0], flow[:, 1] = 2.0, -1.0
    moved = warp(image, flow)
    assert torch.allclose(moved[0, 0, 1:, :5], image[0, 0, :-1, 2:], atol=1e-4)


def test_weights_of_another_model_get_a_clear_error(folders):
    folder = folders.models / "interpolate"
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({"conv_first.weight": torch.zeros(64, 3, 3, 3)}, folder / "esrgan.pth")
    with pytest.raises(ModelLoadError, match=r"expected RIFE IFNet 4\.x weights \(keys "
                                             r"block0\.conv0.*got 1 tensors \(conv_first"):
        run(store(clip(2, 32, 32)), method="rife", rife_model="esrgan.pth")
    old = {"block0.conv0.0.0.weight": torch.zeros(96, 7, 3, 3),
           "block0.convblock.0.0.weight": torch.zeros(192, 192, 3, 3)}
    torch.save(old, folder / "rife40.pth")
    with pytest.raises(ModelLoadError, match=r"RIFE 4\.5 or later"):
        run(store(clip(2, 32, 32)), method="rife", rife_model="rife40.pth")


def test_rife_without_weights_is_refused_at_validation_naming_the_folder(folders):
    registry = build_registry(nodes)
    prompt = {"1": {"class_type": "EmptyImage", "inputs": {"width": 16, "height": 16,
                                                           "batch_size": 2, "color": 0}},
              "2": {"class_type": "FrameInterpolate", "inputs": {
                  "frames": ["1", 0], "method": "rife", "multiplier": 2, "target_fps": 0.0,
                  "rife_model": "none", "scene_threshold": 0.5}},
              "3": {"class_type": "PreviewImage", "inputs": {"images": ["2", 0]}}}
    with pytest.raises(PromptError) as caught:
        validate_prompt(prompt, registry)
    assert "models/interpolate/" in str(caught.value.node_errors)


def test_runs_through_the_engine_from_an_image_batch(folders):
    registry = build_registry(nodes)
    registry.register_mappings({"CaptureOutputs": CaptureOutputs}, source="test")
    black = {"class_type": "EmptyImage", "inputs": {"width": 24, "height": 16,
                                                     "batch_size": 1, "color": 0}}
    white = {"class_type": "EmptyImage", "inputs": {"width": 24, "height": 16,
                                                     "batch_size": 1, "color": 0xFFFFFF}}
    prompt = {"1": black, "2": white,
              "3": {"class_type": "ImageBatch", "inputs": {"image1": ["1", 0],
                                                           "image2": ["2", 0]}},
              "4": {"class_type": "FrameInterpolate", "inputs": {
                  "frames": ["3", 0], "method": "optical_flow", "multiplier": 4,
                  "target_fps": 0.0, "rife_model": "none", "scene_threshold": 0.0}},
              "5": {"class_type": "CaptureOutputs", "inputs": {"value": ["4", 0]}}}
    result = Executor(registry).execute(validate_prompt(prompt, registry))
    assert result.status == "success", result.error
    out = CaptureOutputs.seen["5"]
    assert isinstance(out, Frames) and (len(out), out.fps) == (5, 32.0)
    assert levels(out) == [0, 64, 128, 191, 255]
