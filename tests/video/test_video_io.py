"""LoadVideo and LoadImageSequence: which frames they keep, at what rate and size, the audio
that goes along, the files they list, and the errors a user gets for a bad file."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from aiohttp import FormData, web
from PIL import Image

from app.files import add_file_routes
from engine.frames import Frames
from nodes.video_io import LoadImageSequence, LoadVideo, image_folders
from tests.video.clips import clip, psnr
from tests.video.sources import tone_after, write_audio_only, write_video

MEDIA = Path(__file__).resolve().parents[1] / "fixtures" / "media"
SOURCE = clip(16, 64, 48)  # 2 s at 8 fps


@pytest.fixture
def source(folders) -> Path:
    return write_video(folders.input / "source.mp4", SOURCE, fps=8)


def source_indices(frames: Frames) -> list[int]:
    """Which source frame each loaded frame is (the best match, which must be close)."""
    indices = []
    for frame in frames.read_raw(0, len(frames)):
        scores = [psnr(frame, candidate) for candidate in SOURCE]
        best = int(np.argmax(scores))
        assert scores[best] > 40, f"frame matches no source frame (best {scores[best]:.1f} dB)"
        indices.append(best)
    return indices


def load(name: str = "source.mp4", **options) -> tuple[Frames, float, int]:
    return LoadVideo().load_video(name, **options)


def test_loads_every_frame_at_the_source_rate(source):
    frames, fps, count = load()
    assert (fps, count, len(frames)) == (8.0, 16, 16)
    assert (frames.width, frames.height, frames.dtype, frames.fps) == (64, 48, "uint8", 8.0)
    assert source_indices(frames) == list(range(16))
    assert psnr(frames.read_raw(0, 16), SOURCE) > 40
    assert frames.audio is None  # the source has no audio stream


def test_skip_cap_and_every_nth_pick_the_frames_they_say(source):
    frames, fps, count = load(skip_first_frames=3, frame_cap=4, every_nth=2)
    assert source_indices(frames) == [3, 5, 7, 9]
    assert (fps, count) == (4.0, 4)  # one kept frame stands for two: the duration holds


def test_skipping_seeks_to_a_keyframe_and_still_lands_on_the_frame(folders):
    write_video(folders.input / "gop.mp4", SOURCE, fps=8, gop=4)
    frames, _, _ = load("gop.mp4", skip_first_frames=6, frame_cap=3)
    assert source_indices(frames) == [6, 7, 8]


def test_force_fps_drops_or_repeats_frames_by_time(source):
    slower, fps, count = load(force_fps=4)
    assert (fps, count) == (4.0, 8)
    assert source_indices(slower) == list(range(0, 16, 2))
    faster, fps, count = load(force_fps=16, frame_cap=6)
    assert (fps, count) == (16.0, 6)
    assert source_indices(faster) == [0, 0, 1, 1, 2, 2]
    # skip counts frames at the forced rate: 2 frames at 4 fps = 0.5 s = source frame 4
    skipped, _, _ = load(force_fps=4, skip_first_frames=2, frame_cap=2)
    assert source_indices(skipped) == [4, 6]


def test_force_size_resizes_and_one_side_keeps_the_aspect(source):
    frames, _, _ = load(force_width=32)
    assert (frames.width, frames.height) == (32, 24)
    expected = np.asarray(Image.fromarray(SOURCE[5]).resize((32, 24), Image.Resampling.BOX))
    assert psnr(frames.read_raw(5, 6)[0], expected) > 30
    frames, _, _ = load(force_width=40, force_height=20, frame_cap=2)
    assert (frames.width, frames.height, len(frames)) == (40, 20, 2)
    frames, _, _ = load(force_height=96, frame_cap=1)
    assert (frames.width, frames.height) == (128, 96)


def test_the_audio_of_the_kept_part_goes_along(folders):
    write_video(folders.input / "talk.mp4", SOURCE, fps=8, audio=tone_after(0.5, 2.0))
    frames, _, _ = load("talk.mp4", skip_first_frames=4, frame_cap=8)
    audio = frames.audio
    assert audio is not None
    assert audio.path == folders.input / "talk.mp4"
    assert audio.stream == 1  # the audio stream's index in the file
    assert audio.start == pytest.approx(0.5)
    assert audio.duration == pytest.approx(1.0)
    halved, _, _ = load("talk.mp4", every_nth=2)
    assert halved.audio.start == pytest.approx(0.0)
    assert halved.audio.duration == pytest.approx(2.0)


@pytest.mark.parametrize(("name", "count", "size"), [
    ("mdta.mp4", 8, 64), ("cmt.mp4", 8, 64), ("tags.webm", 8, 64), ("anim.webp", 4, 32)])
def test_reads_the_ffmpeg_made_fixtures(folders, name, count, size):
    shutil.copy(MEDIA / name, folders.input / name)
    frames, fps, loaded = load(name)
    assert loaded == len(frames) == count
    assert (frames.width, frames.height) == (size, size)
    assert fps > 0
    assert frames.read_raw(0, count).std() > 1  # pictures, not a blank decode


def test_an_output_video_loads_by_its_annotated_name(folders):
    write_video(folders.output / "made.mp4", SOURCE[:4], fps=8)
    _, _, count = load("made.mp4 [output]")
    assert count == 4
    assert LoadVideo.VALIDATE_INPUTS("made.mp4 [output]") is True
    assert LoadVideo.IS_CHANGED("made.mp4 [output]")


def test_input_list_holds_videos_and_the_upload_option(folders, source):
    (folders.input / "still.png").write_bytes(b"")
    (folders.input / "clips").mkdir()
    shutil.copy(MEDIA / "tags.webm", folders.input / "clips" / "tags.webm")
    spec = LoadVideo.INPUT_TYPES()["required"]
    files, options = spec["video"]
    assert files == ["clips/tags.webm", "source.mp4"]
    assert options["video_upload"] is True
    assert list(spec) == ["video", "skip_first_frames", "frame_cap", "every_nth", "force_fps",
                          "force_width", "force_height"]
    for name, (_, opts) in spec.items():
        assert opts.get("tooltip"), name


def test_a_missing_file_is_a_clear_error(folders):
    assert "Invalid video file" in LoadVideo.VALIDATE_INPUTS("gone.mp4")
    assert "Invalid video file" in LoadVideo.VALIDATE_INPUTS("../outside.mp4")
    with pytest.raises(ValueError, match=r"input 'video'.*'gone.mp4' does not exist"):
        load("gone.mp4")


def test_a_file_that_is_not_a_video_is_a_clear_error(folders):
    (folders.input / "notes.mp4").write_text("these are my notes, not a video\n" * 20)
    with pytest.raises(ValueError, match=r"input 'video'.*'notes.mp4' is not a video"):
        load("notes.mp4")
    write_audio_only(folders.input / "song.mp4", tone_after(0, 0.5))
    with pytest.raises(ValueError, match=r"input 'video'.*'song.mp4' has no video stream"):
        load("song.mp4")


def test_skipping_past_the_end_says_so(source):
    with pytest.raises(ValueError, match=r"input 'skip_first_frames'.*leaves none"):
        load(skip_first_frames=40)


def test_is_changed_follows_the_file(source):
    before = LoadVideo.IS_CHANGED("source.mp4")
    assert LoadVideo.IS_CHANGED("source.mp4") == before
    write_video(source, SOURCE[:8], fps=8)
    assert LoadVideo.IS_CHANGED("source.mp4") != before


# --- LoadImageSequence -----------------------------------------------------------------------


def write_sequence(folder: Path, names: list[str], frames: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, pixels in zip(names, frames, strict=True):
        Image.fromarray(pixels).save(folder / name)


def test_image_sequence_loads_in_natural_order(folders):
    names = ["f1.png", "f2.png", "f10.png", "f3.png"]
    write_sequence(folders.input / "shots" / "a", names, SOURCE[[0, 1, 3, 2]])
    frames, fps, count = LoadImageSequence().load_sequence("shots/a", fps=12)
    assert (fps, count, frames.dtype) == (12.0, 4, "uint8")
    assert np.array_equal(frames.read_raw(0, 4), SOURCE[:4])  # f1, f2, f3, f10
    frames, fps, count = LoadImageSequence().load_sequence("shots/a", fps=12, every_nth=2,
                                                           skip_first_frames=1)
    assert (fps, count) == (6.0, 2)
    assert np.array_equal(frames.read_raw(0, 2), SOURCE[[1, 3]])


def test_image_sequence_lists_folders_and_resizes_odd_ones_out(folders):
    write_sequence(folders.input / "seq", ["a.png", "b.png"], SOURCE[:2])
    Image.fromarray(SOURCE[2]).resize((32, 24)).save(folders.input / "seq" / "c.png")
    (folders.input / "loose.png").write_bytes(b"")  # the input folder itself is not listed
    assert image_folders() == ["seq"]
    assert LoadImageSequence.INPUT_TYPES()["required"]["directory"][0] == ["seq"]
    frames, _, count = LoadImageSequence().load_sequence("seq")
    assert (count, frames.width, frames.height) == (3, 64, 48)
    frames, _, _ = LoadImageSequence().load_sequence("seq", force_width=32)
    assert (frames.width, frames.height) == (32, 24)


def test_sixteen_bit_sequences_keep_their_depth(folders):
    (folders.input / "deep").mkdir()
    ramp = (np.arange(64 * 48, dtype=np.uint32).reshape(48, 64) * 21).astype(np.uint16)
    Image.fromarray(ramp).save(folders.input / "deep" / "0.png")
    frames, _, _ = LoadImageSequence().load_sequence("deep")
    assert frames.dtype == "float16"
    got = frames.read(0, 1)[0, ..., 0].numpy()
    assert np.abs(got - ramp / 65535).max() < 1e-3  # finer than 8 bits (1/255)


def test_image_sequence_errors_name_the_input(folders):
    (folders.input / "empty").mkdir()
    with pytest.raises(ValueError, match=r"input 'directory'.*holds no images"):
        LoadImageSequence().load_sequence("empty")
    assert "not a folder" in LoadImageSequence.VALIDATE_INPUTS("nowhere")
    assert "leaves its folder" in LoadImageSequence.VALIDATE_INPUTS("../..")


# --- uploads ---------------------------------------------------------------------------------


async def test_a_video_uploaded_through_upload_image_is_listed_by_load_video(aiohttp_client,
                                                                           folders):
    app = web.Application()
    add_file_routes(app.router)
    client = await aiohttp_client(app)
    form = FormData()
    form.add_field("image", (MEDIA / "tags.webm").read_bytes(), filename="take1.webm",
                   content_type="video/webm")
    resp = await client.post("/upload/image", data=form)
    assert resp.status == 200
    assert await resp.json() == {"name": "take1.webm", "subfolder": "", "type": "input"}
    assert LoadVideo.INPUT_TYPES()["required"]["video"][0] == ["take1.webm"]
    resp = await client.get("/view", params={"filename": "take1.webm", "type": "input"},
                            headers={"Range": "bytes=0-3"})
    assert resp.status == 206  # browsers seek in videos with range requests
    assert resp.headers["Content-Type"] == "video/webm"
    assert await resp.read() == (MEDIA / "tags.webm").read_bytes()[:4]
