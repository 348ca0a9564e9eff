"""FRAMES: chunked frame stores, spilling past the RAM budget, and IMAGE ↔ FRAMES links."""

from __future__ import annotations

import gc
import os
import subprocess

import numpy as np
import pytest
import torch

from engine import frames as frames_module
from engine.cache import OutputCache, estimate_nbytes
from engine.executor import Executor
from engine.frames import AudioSource, Frames, FramesError, frame_pool, set_frames_budget
from engine.graph import validate_prompt
from engine.registry import NodeRegistry


def indexed(count: int, size: int = 16) -> np.ndarray:
    """Frames whose every pixel is the frame's index: order is visible in any read."""
    return np.broadcast_to(np.arange(count, dtype=np.uint8)[:, None, None, None],
                           (count, size, size, 3)).copy()


def write(data: np.ndarray, fps: float = 24.0, chunk: int = 5) -> Frames:
    writer = Frames.writer(data.shape[2], data.shape[1], fps)
    for start in range(0, len(data), chunk):
        writer.append(data[start:start + chunk])
    return writer.finish()


@pytest.fixture
def budget(folders):
    """A frame budget a test can set, restored afterwards."""
    previous = frame_pool().budget_bytes
    yield set_frames_budget
    set_frames_budget(previous)


def test_frames_read_back_in_order_across_chunks(folders, monkeypatch):
    monkeypatch.setattr(frames_module, "CHUNK_BYTES", 2 * 16 * 16 * 3 * 3)  # 3-frame chunks
    data = indexed(20)
    store = write(data, chunk=7)
    assert len(store._storage.chunks) > 3
    assert (len(store), store.width, store.height, store.fps) == (20, 16, 16, 24.0)
    assert np.array_equal(store.read_raw(0, 20), data)
    assert np.array_equal(store.read_raw(4, 11), data[4:11])
    assert torch.equal(store.read(2, 5), torch.from_numpy(data[2:5]).float() / 255)


def test_chunks_with_overlap_see_every_frame_once_as_new(folders):
    store = write(indexed(23))
    seen = []
    for start, chunk in store.chunks(size=5, overlap=2):
        first_new = 0 if start == 0 else 2
        assert chunk.shape[0] <= 7
        seen += (chunk[first_new:, 0, 0, 0] * 255).round().int().tolist()
        assert round(chunk[0, 0, 0, 0].item() * 255) == start
    assert seen == list(range(23))


def test_chunks_beyond_the_budget_spill_to_the_temp_folder_and_come_back(folders, budget,
                                                                          monkeypatch):
    monkeypatch.setattr(frames_module, "CHUNK_BYTES", 2 * 32 * 32 * 3 * 4)  # 4-frame chunks
    budget(frame_pool().used_bytes + 2 * 32 * 32 * 3 * 4)  # room for two chunks
    data = np.random.default_rng(0).integers(0, 256, (30, 32, 32, 3), dtype=np.uint8)
    store = write(data)
    spilled = list((folders.temp / "frames").rglob("*.npy"))
    assert spilled, "chunks past the budget are written under temp/frames"
    assert store.nbytes == 2 * 32 * 32 * 3 * 4  # the RAM part is what the cache counts
    assert estimate_nbytes([[store]]) == store.nbytes
    assert store.disk_bytes == data.nbytes - store.nbytes
    assert np.array_equal(store.read_raw(0, 30), data)
    del store
    gc.collect()
    assert not any((folders.temp / "frames").rglob("*.npy")), "a dropped store leaves no files"
    assert frame_pool().used_bytes <= frame_pool().budget_bytes - 2 * 32 * 32 * 3 * 4


def test_an_image_batch_becomes_frames_without_visible_loss(folders):
    images = torch.rand(5, 12, 10, 3)
    store = Frames.from_images(images, fps=12)
    assert (len(store), store.width, store.height, store.dtype) == (5, 10, 12, "float16")
    assert (store.to_images() - images).abs().max() < 1e-3


def test_frames_of_another_size_cannot_join_a_clip(folders):
    writer = Frames.writer(16, 16, 8)
    writer.append(indexed(2))
    with pytest.raises(FramesError, match="32x32x3 cannot join a clip of 16x16x3"):
        writer.append(indexed(2, size=32))


def test_materialising_a_clip_too_big_for_memory_is_refused_by_name(folders, monkeypatch):
    store = write(indexed(10))
    monkeypatch.setattr(frames_module, "available_memory", lambda: store.image_bytes)
    with pytest.raises(FramesError, match=r"input 'pixels' takes an IMAGE batch.*10 frames"):
        store.to_images("pixels")


def test_trimmed_audio_follows_the_frames_kept(tmp_path):
    audio = AudioSource(tmp_path / "a.mp4", 1, start=2.0, duration=10.0)
    assert audio.trimmed(3.0, 4.0) == AudioSource(tmp_path / "a.mp4", 1, 5.0, 4.0)
    assert audio.trimmed(8.0, None).duration == 2.0
    assert audio.trimmed(8.0, 5.0).duration == 2.0


# --- IMAGE ↔ FRAMES links in a graph ------------------------------------------------------

class Gradient:
    """An IMAGE batch of ``count`` frames, frame i filled with i/10."""

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "run"
    CATEGORY = "test"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"count": ("INT", {"default": 3, "min": 1, "max": 100})}}

    def run(self, count):
        return (torch.arange(count).float().div(10).view(-1, 1, 1, 1).expand(-1, 4, 4, 3),)


class CountFrames:
    """FRAMES → their length, and the mean of the last frame."""

    RETURN_TYPES = ("INT", "FLOAT")
    FUNCTION = "run"
    CATEGORY = "test"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"frames": ("FRAMES",)}}

    def run(self, frames):
        assert isinstance(frames, Frames)
        return (len(frames), frames.read(len(frames) - 1, len(frames)).mean().item())


class MakeFrames:
    """A FRAMES clip of ``count`` frames, frame i filled with i."""

    RETURN_TYPES = ("FRAMES",)
    FUNCTION = "run"
    CATEGORY = "test"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"count": ("INT", {"default": 3, "min": 1, "max": 100})}}

    def run(self, count):
        return (write(indexed(count, size=4)),)


class MeanImage:
    """IMAGE → its batch size and mean."""

    RETURN_TYPES = ("INT", "FLOAT")
    FUNCTION = "run"
    CATEGORY = "test"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"images": ("IMAGE",)}}

    def run(self, images):
        assert isinstance(images, torch.Tensor)
        return {"ui": {"shape": [list(images.shape)]},
                "result": (images.shape[0], images.mean().item())}


class Show:
    """Output node showing a value."""

    RETURN_TYPES = ()
    FUNCTION = "run"
    CATEGORY = "test"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("INT",)}}

    def run(self, value):
        return {"ui": {"value": [value]}}


@pytest.fixture
def executor():
    registry = NodeRegistry()
    registry.register_mappings({"Gradient": Gradient, "CountFrames": CountFrames,
                                "MakeFrames": MakeFrames, "MeanImage": MeanImage,
                                "Show": Show}, source="test")
    return registry, Executor(registry, OutputCache(1 << 30))


def test_an_image_output_feeds_a_frames_input(folders, executor):
    registry, ex = executor
    prompt = {"1": {"class_type": "Gradient", "inputs": {"count": 4}},
              "2": {"class_type": "CountFrames", "inputs": {"frames": ["1", 0]}},
              "3": {"class_type": "Show", "inputs": {"value": ["2", 0]}}}
    result = ex.execute(validate_prompt(prompt, registry))
    assert result.status == "success", result.error
    assert result.outputs["3"] == {"value": [4]}


def test_a_frames_output_feeds_an_image_input_and_is_cached(folders, executor):
    registry, ex = executor
    prompt = {"1": {"class_type": "MakeFrames", "inputs": {"count": 6}},
              "2": {"class_type": "MeanImage", "inputs": {"images": ["1", 0]}}}
    result = ex.execute(validate_prompt(prompt, registry))
    assert result.status == "success", result.error
    assert result.outputs["2"] == {"shape": [[6, 4, 4, 3]]}
    assert ex.cache.total_bytes >= 6 * 4 * 4 * 3  # the store's chunks are counted
    again = ex.execute(validate_prompt(prompt, registry))
    assert again.executed == [] and set(again.cached) == {"1", "2"}


def test_a_clip_too_big_for_an_image_input_fails_naming_node_and_input(folders, executor,
                                                                        monkeypatch):
    registry, ex = executor
    monkeypatch.setattr(frames_module, "available_memory", lambda: 1000)
    prompt = {"1": {"class_type": "MakeFrames", "inputs": {"count": 50}},
              "2": {"class_type": "MeanImage", "inputs": {"images": ["1", 0]}}}
    result = ex.execute(validate_prompt(prompt, registry))
    assert result.status == "error"
    assert result.error["node_id"] == "2"
    assert "input 'images' takes an IMAGE batch" in result.error["exception_message"]


def test_spills_left_by_a_dead_process_are_removed_and_live_ones_kept(folders):
    child = subprocess.Popen(["sleep", "0"])
    child.wait()
    orphan = folders.temp / "frames" / f"{child.pid}-abc"
    live = folders.temp / "frames" / f"{os.getpid()}-def"
    for folder in (orphan, live):
        folder.mkdir(parents=True)
        (folder / "000000000.npy").write_bytes(b"x")
    frames_module.remove_orphan_spills(folders.temp)
    assert not orphan.exists() and live.exists()
