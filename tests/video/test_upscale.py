"""Upscaling frames: resampling, Kinema's own Real-ESRGAN networks, spandrel's, and tiling."""

from __future__ import annotations

import sys
import types
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
import torch

import nodes
from engine.cache import OutputCache
from engine.context import InterruptFlag, InterruptProcessingException, NodeContext, node_context
from engine.executor import Executor
from engine.frames import AudioSource, Frames
from engine.graph import validate_prompt
from engine.registry import build_registry
from nodes.diffusion.model_files import ModelLoadError
from nodes.upscale import FrameUpscale, load_upscale_model
from nodes.video.esrgan import network_from_state
from nodes.video.tiling import blend_weights, tile_spans, upscale_tiled
from tests.video import tiny_esrgan
from tests.video.clips import clip

AUDIO = AudioSource(Path("/clips/source.mp4"))


@pytest.fixture
def models(folders) -> dict[str, Path]:
    return tiny_esrgan.install_models(folders.models)


def moving_clip(count: int = 3, width: int = 24, height: int = 16,
                audio: AudioSource | None = None) -> Frames:
    writer = Frames.writer(width, height, 10.0, audio=audio)
    writer.append(clip(count, width, height))
    return writer.finish()


@pytest.mark.parametrize(("name", "architecture", "scale"), [
    ("rrdb_x4", "RRDBNet", 4), ("rrdb_x2", "RRDBNet", 2),
    ("srvgg_x4", "SRVGGNetCompact", 4), ("srvgg_x2", "SRVGGNetCompact", 2),
])
def test_each_architecture_is_detected_with_its_scale_and_upscales_by_it(models, name,
                                                                          architecture, scale):
    model = load_upscale_model(models[name])
    assert (model.architecture, model.scale) == (architecture, scale)
    with torch.inference_mode():
        out = model.network(torch.rand(2, 3, 10, 14))
    assert out.shape == (2, 3, 10 * scale, 14 * scale)


@pytest.mark.parametrize("layout", [tiny_esrgan.bsrgan_layout, tiny_esrgan.sequential_layout])
def test_bsrgan_and_original_esrgan_key_layouts_give_the_same_network(layout):
    state = tiny_esrgan.rrdbnet_state(4)
    images = torch.rand(1, 3, 12, 12)
    expected = network_from_state(state)(images)
    renamed = network_from_state(layout(state))
    assert renamed.scale == 4
    torch.testing.assert_close(renamed(images), expected, rtol=0, atol=0)


def test_bare_and_params_wrapped_pth_files_load_alike(folders, tmp_path):
    state = tiny_esrgan.srvgg_state(2)
    bare = load_upscale_model(tiny_esrgan.save_pth(state, tmp_path / "bare.pth", wrap=None))
    wrapped = load_upscale_model(tiny_esrgan.save_pth(state, tmp_path / "p.pth", wrap="params"))
    images = torch.rand(1, 3, 6, 6)
    torch.testing.assert_close(bare.network(images), wrapped.network(images))


def test_pth_holding_python_objects_is_refused_not_unpickled(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"params_ema": tiny_esrgan.srvgg_state(2), "opt": types.SimpleNamespace(a=1)},
               path)
    with pytest.raises(ModelLoadError, match=r"weights_only=True"):
        load_upscale_model(path)


def foreign_weights(tmp_path: Path) -> Path:
    return tiny_esrgan.save_safetensors(
        {"layers.0.conv.weight": torch.rand(8, 3, 3, 3), "layers.0.conv.bias": torch.rand(8)},
        tmp_path / "models" / "upscale" / "SwinIR_x2.safetensors")


def test_foreign_weights_without_spandrel_name_what_kinema_reads(folders, monkeypatch):
    monkeypatch.setitem(sys.modules, "spandrel", None)  # importing it fails
    with pytest.raises(ModelLoadError, match=r"RRDBNet .* SRVGGNetCompact .*pip install spandrel"):
        load_upscale_model(foreign_weights(folders.base))


def test_broken_weights_of_a_known_architecture_are_refused(tmp_path):
    state = tiny_esrgan.srvgg_state(4)
    state["body.2.weight"] = state["body.2.weight"][:, :4]
    path = tiny_esrgan.save_safetensors(state, tmp_path / "cut.safetensors")
    with pytest.raises(ModelLoadError, match="SRVGGNetCompact's keys but not its shapes"):
        load_upscale_model(path)


class DoublingNet(torch.nn.Module):
    """Stands in for a spandrel architecture: a 1x1 conv (identity) and a nearest x2."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 3, 1)
        torch.nn.init.dirac_(self.conv.weight)
        torch.nn.init.zeros_(self.conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.interpolate(self.conv(x), scale_factor=2.0)


def test_other_architectures_run_through_spandrel_when_it_is_installed(folders, monkeypatch):
    seen = []

    class ModelLoader:
        def load_from_state_dict(self, state):
            seen.append(sorted(state))
            return types.SimpleNamespace(model=DoublingNet(), scale=2, purpose="SR",
                                         supports_half=True, input_channels=3)

    monkeypatch.setitem(sys.modules, "spandrel", types.SimpleNamespace(ModelLoader=ModelLoader))
    foreign_weights(folders.base)
    frames = moving_clip()
    (out,) = FrameUpscale().upscale(frames, "model", 2, "SwinIR_x2.safetensors", 0, 0)
    assert seen == [["layers.0.conv.bias", "layers.0.conv.weight"]]
    expected = frames.read_raw(0, 3).repeat(2, axis=1).repeat(2, axis=2)
    np.testing.assert_array_equal(out.read_raw(0, 3), expected)


def test_tiles_cover_the_length_and_their_blend_weights_add_up_to_one():
    for length, tile, overlap in ((100, 32, 8), (97, 64, 32), (40, 24, 16), (64, 64, 8)):
        spans = tile_spans(length, tile, overlap)
        assert spans[0][0] == 0 and spans[-1][1] == length
        assert all(b - a == min(tile, length) for a, b in spans)
        assert all(prev[1] - nxt[0] >= overlap for prev, nxt in pairwise(spans))
        total = torch.zeros(length * 2)
        weights = blend_weights(spans, 2, torch.device("cpu"))
        for (a, b), weight in zip(spans, weights, strict=True):
            total[a * 2:b * 2] += weight
        torch.testing.assert_close(total, torch.ones(length * 2))


@pytest.mark.parametrize(("state", "receptive_field"), [
    (tiny_esrgan.rrdbnet_state(4), tiny_esrgan.RRDB_RECEPTIVE_FIELD),
    (tiny_esrgan.rrdbnet_state(2), 2 * tiny_esrgan.RRDB_RECEPTIVE_FIELD),
    (tiny_esrgan.srvgg_state(4), tiny_esrgan.SRVGG_RECEPTIVE_FIELD),
])
def test_tiled_equals_untiled_when_the_overlap_covers_the_receptive_field(state,
                                                                          receptive_field):
    # Tiles give no weight to the outer quarter of each overlap, so an overlap of four times
    # the network's reach makes every weighted tile pixel exact.
    network = network_from_state(state)
    overlap = 4 * receptive_field
    images = torch.rand(1, 3, overlap + 12, overlap + 21)  # 2 x 3 tiles
    with torch.inference_mode():
        whole = upscale_tiled(network, images, network.scale, 0, 0, network.size_multiple)
        tiled = upscale_tiled(network, images, network.scale, overlap + 8, overlap,
                              network.size_multiple)
    assert tiled.shape == whole.shape
    assert (tiled - whole).abs().max() < 1e-4


def test_too_small_an_overlap_shows_at_the_seams():
    network = network_from_state(tiny_esrgan.srvgg_state(4))
    images = torch.rand(1, 3, 40, 56)
    with torch.inference_mode():
        whole = upscale_tiled(network, images, 4, 0, 0)
        tiled = upscale_tiled(network, images, 4, 24, 4)
    assert (tiled - whole).abs().max() > 1e-2


@pytest.mark.parametrize("method", ["lanczos", "bicubic"])
def test_resampling_enlarges_every_frame_and_keeps_rate_order_and_audio(method):
    frames = moving_clip(audio=AUDIO)
    (out,) = FrameUpscale().upscale(frames, method, 4)
    assert (out.width, out.height, len(out), out.fps, out.dtype) == (96, 64, 3, 10.0, "uint8")
    assert out.audio == AUDIO
    shrunk = out.read(0, 3).movedim(-1, 1)
    shrunk = torch.nn.functional.avg_pool2d(shrunk, 4).movedim(1, -1)
    assert (shrunk - frames.read(0, 3)).abs().mean() < 0.02


def test_model_upscale_runs_in_tiles_and_matches_the_untiled_run(models):
    frames = moving_clip(count=2, width=40, height=28)
    (whole,) = FrameUpscale().upscale(frames, "model", 4, models["srvgg_x4"].name, 0, 0)
    (tiled,) = FrameUpscale().upscale(frames, "model", 4, models["srvgg_x4"].name, 24, 16)
    assert (tiled.width, tiled.height, len(tiled), tiled.dtype) == (160, 112, 2, "uint8")
    difference = np.abs(tiled.read_raw(0, 2).astype(int) - whole.read_raw(0, 2).astype(int))
    assert difference.max() <= 1  # rounding to 8 bits


def test_a_model_of_another_scale_is_resized_to_the_asked_one(models):
    frames = moving_clip(count=1, width=20, height=12)
    (down,) = FrameUpscale().upscale(frames, "model", 2, models["rrdb_x4"].name, 0, 0)
    (up,) = FrameUpscale().upscale(frames, "model", 4, models["srvgg_x2"].name, 0, 0)
    assert (down.width, down.height) == (40, 24)
    assert (up.width, up.height) == (80, 48)


def test_model_method_without_a_model_says_where_models_go(folders):
    with pytest.raises(ValueError, match=r"needs an upscale_model .*models/upscale/"):
        FrameUpscale().upscale(moving_clip(), "model", 2, "none")


def test_upscale_model_choices_list_the_folder_or_none(folders):
    assert FrameUpscale.INPUT_TYPES()["required"]["upscale_model"][0] == ["none"]
    tiny_esrgan.install_models(folders.models)
    choices = FrameUpscale.INPUT_TYPES()["required"]["upscale_model"][0]
    assert "tiny_RealESRGAN_x4plus.pth" in choices and "tiny_general_x2.safetensors" in choices


def test_upscale_through_the_engine_with_a_model(models):
    prompt = {
        "1": {"class_type": "EmptyImage",
              "inputs": {"width": 20, "height": 12, "batch_size": 3, "color": 0x336699}},
        "2": {"class_type": "FrameUpscale",
              "inputs": {"frames": ["1", 0], "method": "model", "scale": 4,
                         "upscale_model": models["rrdb_x2"].name, "tile_size": 16,
                         "tile_overlap": 8}},
        "3": {"class_type": "FramesInfo", "inputs": {"frames": ["2", 0]}},
        "4": {"class_type": "PreviewImage", "inputs": {"images": ["2", 0]}},
    }
    registry = build_registry(nodes, entry_points=False)
    executor = Executor(registry, OutputCache(1 << 28))
    result = executor.execute(validate_prompt(prompt, registry))
    assert result.status == "success", result
    assert len(result.outputs["4"]["images"]) == 3


def test_half_precision_runs_give_the_full_precision_picture(models, monkeypatch):
    # On CUDA models run in fp16; the same code path is taken on the CPU here.
    frames = moving_clip(count=2, width=24, height=16)
    (full,) = FrameUpscale().upscale(frames, "model", 4, models["srvgg_x4"].name, 16, 8)
    monkeypatch.setattr("nodes.upscale.inference_dtype", lambda device: torch.float16)
    (half,) = FrameUpscale().upscale(frames, "model", 4, models["srvgg_x4"].name, 16, 8)
    difference = np.abs(half.read_raw(0, 2).astype(int) - full.read_raw(0, 2).astype(int))
    assert difference.mean() < 0.5 and difference.max() <= 8


def test_progress_is_reported_per_chunk_and_interrupt_stops_the_run(models, monkeypatch):
    monkeypatch.setattr(Frames, "chunk_frames", lambda self: 32)  # 2 frames a chunk at x4
    reports: list[tuple[int, int]] = []
    flag = InterruptFlag()
    ctx = NodeContext("p", "1", "FrameUpscale", lambda v, t, _p: reports.append((v, t)), flag)
    with node_context(ctx):
        FrameUpscale().upscale(moving_clip(count=5), "model", 4, models["srvgg_x4"].name)
        assert reports == [(2, 5), (4, 5), (5, 5)]
        flag.set()
        with pytest.raises(InterruptProcessingException):
            FrameUpscale().upscale(moving_clip(count=5), "bicubic", 2)


def test_a_model_refuses_frames_with_another_channel_count(models):
    writer = Frames.writer(8, 8, 10.0, channels=4)
    writer.append(np.zeros((1, 8, 8, 4), np.uint8))
    with pytest.raises(ValueError, match="input 'frames' has 4 channels"):
        FrameUpscale().upscale(writer.finish(), "model", 4, models["srvgg_x4"].name)
