"""Frame operations: counts, order, rate, size and audio, across chunk boundaries."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import engine.frames
import nodes
import nodes.frame_ops as frame_ops
from engine.cache import OutputCache
from engine.executor import Executor
from engine.frames import AudioSource, Frames
from engine.graph import validate_prompt
from engine.registry import build_registry
from nodes.frame_ops import (
    FramesConcat,
    FramesCrop,
    FramesEveryNth,
    FramesInfo,
    FramesPingPong,
    FramesResize,
    FramesReverse,
    FramesTrim,
)

FPS = 12.0
AUDIO = AudioSource(Path("/clips/source.mp4"), 1, 0.0, None)
CHUNK = 3  # frames the operations read at once here: every clip spans several chunks


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch, folders):
    """Read 3 frames at a time, and store clips in chunks of a few frames (one 8x6 RGB uint8
    frame is 144 bytes; the writer makes chunks of CHUNK_BYTES / 2)."""
    monkeypatch.setattr(frame_ops, "CHUNK_FRAMES", CHUNK)
    monkeypatch.setattr(engine.frames, "CHUNK_BYTES", 4 * 144 * 2)


def indexed(count: int, first: int = 0, width: int = 8, height: int = 6,
            dtype: str = "uint8", audio: AudioSource | None = None) -> Frames:
    """``count`` frames where every pixel of frame i holds ``first + i`` (as a uint8 level)."""
    writer = Frames.writer(width, height, FPS, dtype, 3, audio)
    levels = np.arange(first, first + count, dtype=np.uint8)
    writer.append(np.broadcast_to(levels[:, None, None, None], (count, height, width, 3)))
    return writer.finish()


def levels(frames: Frames) -> list[int]:
    """The index each frame carries (its top-left pixel, as a uint8 level)."""
    raw = frames.read_raw(0, len(frames))[:, 0, 0, 0]
    return np.rint(raw.astype(np.float32) * (255 if raw.dtype != np.uint8 else 1)).astype(
        int).tolist()


def test_trim_keeps_count_frames_from_start_and_trims_the_audio():
    (out,) = FramesTrim().trim(indexed(10, audio=AUDIO), start=3, count=4)
    assert levels(out) == [3, 4, 5, 6]
    assert (out.fps, out.width, out.height, out.dtype) == (FPS, 8, 6, "uint8")
    assert out.audio == AudioSource(AUDIO.path, 1, 3 / FPS, 4 / FPS)


def test_trim_count_zero_keeps_the_rest_and_a_long_count_stops_at_the_end():
    assert levels(FramesTrim().trim(indexed(10), start=6, count=0)[0]) == [6, 7, 8, 9]
    assert levels(FramesTrim().trim(indexed(10), start=8, count=50)[0]) == [8, 9]


def test_trim_start_past_the_end_is_refused():
    with pytest.raises(ValueError, match="start 10 is outside the clip's 10 frames"):
        FramesTrim().trim(indexed(10), start=10, count=1)


def test_every_nth_divides_the_rate_and_keeps_the_audio_from_the_offset():
    (out,) = FramesEveryNth().select(indexed(11, audio=AUDIO), n=3, offset=1)
    assert levels(out) == [1, 4, 7, 10]
    assert out.fps == FPS / 3
    assert out.audio == AudioSource(AUDIO.path, 1, 1 / FPS, None)


def test_every_nth_with_keep_fps_plays_faster_without_audio():
    (out,) = FramesEveryNth().select(indexed(10, audio=AUDIO), n=2, offset=0, keep_fps=True)
    assert levels(out) == [0, 2, 4, 6, 8]
    assert out.fps == FPS
    assert out.audio is None


def test_every_nth_further_apart_than_a_chunk_reads_only_the_kept_frames(monkeypatch):
    clip = indexed(17)
    reads = record_reads(monkeypatch)
    (out,) = FramesEveryNth().select(clip, n=5, offset=2)
    monkeypatch.undo()
    assert reads == [(2, 3), (7, 8), (12, 13)]
    assert levels(out) == [2, 7, 12]


def test_concat_plays_second_after_first_at_the_first_rate():
    second = indexed(4, first=100)
    (out,) = FramesConcat().concat(indexed(5), second)
    assert levels(out) == [0, 1, 2, 3, 4, 100, 101, 102, 103]
    assert out.fps == FPS


def test_concat_of_different_sizes_names_the_second_input():
    with pytest.raises(ValueError, match=r"input 'second' is 6x6 .* 'first' is 8x6"):
        FramesConcat().concat(indexed(3), indexed(3, width=6))


def test_concat_of_uint8_and_float16_gives_float16_in_order():
    (out,) = FramesConcat().concat(indexed(2), indexed(2, first=50, dtype="float16"))
    assert out.dtype == "float16"
    assert levels(out) == [0, 1, 50, 51]


def test_concat_of_two_trims_of_one_source_keeps_the_audio_whole():
    clip = indexed(10, audio=AUDIO)
    (head,) = FramesTrim().trim(clip, start=0, count=6)
    (tail,) = FramesTrim().trim(clip, start=6, count=0)
    (out,) = FramesConcat().concat(head, tail)
    assert levels(out) == list(range(10))
    assert (out.audio.path, out.audio.stream, out.audio.start) == (AUDIO.path, 1, 0.0)
    assert out.audio.duration == pytest.approx(10 / FPS)


def test_concat_keeps_the_first_audio_only_where_it_can_be_placed():
    other = AudioSource(Path("/clips/other.mp4"))
    silent_second = FramesConcat().concat(indexed(6, audio=AUDIO), indexed(3))[0]
    assert silent_second.audio == AudioSource(AUDIO.path, 1, 0.0, 6 / FPS)
    assert FramesConcat().concat(indexed(6, audio=AUDIO), indexed(3, audio=other))[0].audio \
        is None
    assert FramesConcat().concat(indexed(6), indexed(3, audio=other))[0].audio is None


def record_reads(monkeypatch) -> list[tuple[int, int]]:
    reads: list[tuple[int, int]] = []
    read_raw = Frames.read_raw

    def recording(self, start, stop):
        reads.append((start, stop))
        return read_raw(self, start, stop)

    monkeypatch.setattr(Frames, "read_raw", recording)
    return reads


def test_reverse_reads_chunks_from_the_end_and_drops_audio(monkeypatch):
    clip = indexed(10, audio=AUDIO)
    reads = record_reads(monkeypatch)
    (out,) = FramesReverse().reverse(clip)
    monkeypatch.undo()
    assert levels(out) == list(range(9, -1, -1))
    assert reads == [(7, 10), (4, 7), (1, 4), (0, 1)]
    assert out.audio is None
    assert out.fps == FPS


@pytest.mark.parametrize(("count", "expected"), [
    (5, [0, 1, 2, 3, 4, 3, 2, 1]),
    (8, [0, 1, 2, 3, 4, 5, 6, 7, 6, 5, 4, 3, 2, 1]),
    (2, [0, 1]),
    (1, [0]),
])
def test_ping_pong_goes_back_without_repeating_either_end(count, expected):
    (out,) = FramesPingPong().ping_pong(indexed(count, audio=AUDIO))
    assert levels(out) == expected
    assert out.audio is None


def test_ping_pong_of_an_empty_clip_is_refused():
    with pytest.raises(ValueError, match="'frames' has no frames"):
        FramesPingPong().ping_pong(Frames.writer(8, 6, FPS).finish())


@pytest.mark.parametrize("method", ["lanczos", "bicubic", "bilinear", "nearest"])
def test_resize_changes_the_size_and_keeps_order_rate_dtype_and_audio(method):
    (out,) = FramesResize().resize(indexed(7, audio=AUDIO), 16, 10, method, "stretch")
    assert (out.width, out.height, len(out), out.dtype) == (16, 10, 7, "uint8")
    assert np.all(out.read_raw(0, 7) == np.arange(7)[:, None, None, None])
    assert (out.fps, out.audio) == (FPS, AUDIO)


def bordered(count: int = 4) -> Frames:
    """12x6 frames, black with white 3-pixel columns at both sides."""
    frames = np.zeros((count, 6, 12, 3), np.uint8)
    frames[:, :, :3] = frames[:, :, -3:] = 255
    writer = Frames.writer(12, 6, FPS)
    writer.append(frames)
    return writer.finish()


def test_resize_crop_cuts_the_sides_to_the_new_aspect_and_stretch_keeps_them():
    (cropped,) = FramesResize().resize(bordered(), 6, 6, "nearest", "crop")
    (stretched,) = FramesResize().resize(bordered(), 6, 6, "nearest", "stretch")
    assert cropped.read_raw(0, 4).max() == 0
    assert stretched.read_raw(0, 4)[:, :, 0].min() == 255


def test_resize_with_a_zero_side_keeps_the_aspect_ratio():
    (out,) = FramesResize().resize(bordered(), 0, 3, "bilinear", "crop")
    assert (out.width, out.height) == (6, 3)


def test_crop_keeps_the_rectangle_of_every_frame():
    x = np.arange(8, dtype=np.uint8) * 20
    frames = np.broadcast_to(x[None, None, :, None], (5, 6, 8, 3)) + np.arange(5, dtype=np.uint8)[
        :, None, None, None]
    writer = Frames.writer(8, 6, FPS, audio=AUDIO)
    writer.append(np.ascontiguousarray(frames))
    (out,) = FramesCrop().crop(writer.finish(), x=2, y=1, width=4, height=3)
    assert (out.width, out.height, len(out), out.audio) == (4, 3, 5, AUDIO)
    np.testing.assert_array_equal(out.read_raw(0, 5), frames[:, 1:4, 2:6])


def test_crop_outside_the_frame_says_what_fits():
    with pytest.raises(ValueError, match=r"4x3 at \(6, 1\) does not fit .* x \+ width <= 8"):
        FramesCrop().crop(indexed(2), x=6, y=1, width=4, height=3)


def test_info_reports_rate_count_and_size():
    assert FramesInfo().info(indexed(10, width=8, height=6)) == (FPS, 10, 8, 6)


def test_operations_chain_through_the_engine_from_an_image_batch():
    # EmptyImage's IMAGE batch becomes FRAMES at the first link, and FRAMES become IMAGE
    # again for PreviewImage.
    prompt = {
        "1": {"class_type": "EmptyImage",
              "inputs": {"width": 8, "height": 6, "batch_size": 6, "color": 0x102030}},
        "2": {"class_type": "FramesTrim", "inputs": {"frames": ["1", 0], "start": 1,
                                                     "count": 3}},
        "3": {"class_type": "FramesPingPong", "inputs": {"frames": ["2", 0]}},
        "4": {"class_type": "FramesResize", "inputs": {"frames": ["3", 0], "width": 16,
                                                       "height": 12, "method": "bilinear",
                                                       "fit": "crop"}},
        "5": {"class_type": "PreviewImage", "inputs": {"images": ["4", 0]}},
    }
    registry = build_registry(nodes, entry_points=False)
    result = Executor(registry, OutputCache(1 << 28)).execute(validate_prompt(prompt, registry))
    assert result.status == "success", result
    assert len(result.outputs["5"]["images"]) == 4
