"""VideoEncode: what comes back out of each format (frames, rate, quality), the workflow it
embeds (read back by PyAV, Pillow and the canvas's own reader), the audio it carries over,
and files that appear only when complete."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image, ImageSequence

import nodes
from engine.executor import Executor
from engine.frames import Frames
from engine.graph import validate_prompt
from engine.registry import build_registry
from nodes.encode import VideoEncode
from nodes.video_io import LoadVideo
from tests.video.clips import clip, psnr
from tests.video.sources import decoded_audio, decoded_frames, tone_after, write_video

ROOT = Path(__file__).resolve().parents[2]
PROMPT = {"1": {"class_type": "LoadVideo", "inputs": {"video": "take.mp4"}}}
WORKFLOW = {"nodes": [{"id": 1, "type": "LoadVideo"}], "links": [], "version": 0.4}
CLIP = clip(12, 64, 48)


@pytest.fixture
def frames() -> Frames:
    writer = Frames.writer(64, 48, 8.0)
    writer.append(CLIP)
    return writer.finish()


def encode(frames: Frames, fmt: str = "h264-mp4", **options) -> dict:
    """The ui entry of one encode, with the workflow attached."""
    result = VideoEncode().encode(frames, format=fmt, prompt=PROMPT,
                                  extra_pnginfo={"workflow": WORKFLOW}, **options)
    return result["ui"]


def output_path(folders, entry: dict) -> Path:
    return folders.output / entry["subfolder"] / entry["filename"]


def luma(frames: np.ndarray) -> np.ndarray:
    """BT.709 luma of RGB frames (what 4:2:0 keeps at full resolution)."""
    return frames.astype(np.float64) @ np.array([0.2126, 0.7152, 0.0722])


@pytest.mark.parametrize("fmt", ["h264-mp4", "vp9-webm"])
def test_round_trip_keeps_count_rate_and_quality(folders, frames, fmt):
    full = encode(frames, fmt, crf=10, pix_fmt="yuv444p")["images"][0]
    got, fps = decoded_frames(output_path(folders, full))
    assert (len(got), fps) == (12, 8.0)
    assert psnr(got, CLIP) > 40
    # 4:2:0 halves the colour resolution of these hard-edged shapes; brightness stays sharp.
    default = encode(frames, fmt, crf=10)["images"][0]
    got, fps = decoded_frames(output_path(folders, default))
    assert (len(got), fps) == (12, 8.0)
    assert psnr(luma(got), luma(CLIP)) > 40
    assert psnr(got, CLIP) > 28


@pytest.mark.parametrize("fmt", ["h265-mp4", "av1-mp4", "av1-webm"])
def test_other_codecs_round_trip(folders, frames, fmt):
    entry = encode(frames, fmt, crf=10, preset="veryfast")["images"][0]
    path = output_path(folders, entry)
    got, fps = decoded_frames(path)
    assert (len(got), fps) == (12, 8.0)
    assert psnr(luma(got), luma(CLIP)) > 35
    if fmt == "h265-mp4":  # tagged so Apple players and browsers accept it
        with av.open(str(path)) as container:
            assert container.streams.video[0].codec_context.codec_tag == "hvc1"


def test_quality_follows_crf(folders, frames):
    sizes = {}
    for crf in (10, 35):
        entry = encode(frames, "h264-mp4", crf=crf)["images"][0]
        sizes[crf] = output_path(folders, entry).stat().st_size
    assert sizes[35] < sizes[10] / 2


def test_gif_and_webp_are_animated_images(folders, frames):
    gif = encode(frames, "gif")
    assert gif == {"images": [{"filename": "Kinema_00001_.gif", "subfolder": "",
                               "type": "output", "format": "image/gif"}], "animated": [True]}
    with Image.open(output_path(folders, gif["images"][0])) as image:
        assert image.n_frames == 12
        assert image.info["loop"] == 0
    webp = encode(frames, "webp", crf=10)["images"][0]
    assert webp["format"] == "image/webp"
    with Image.open(output_path(folders, webp)) as image:
        decoded = [np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(image)]
        image.seek(1)
        image.load()
        assert image.info["duration"] == 125  # 8 fps
    assert len(decoded) == 12
    assert psnr(np.stack(decoded), CLIP) > 28


def test_png_sequence_is_a_lossless_folder(folders, frames):
    entry = encode(frames, "png-sequence")["images"][0]
    assert entry == {"filename": "frame_00001.png", "subfolder": "Kinema_00001_",
                     "type": "output", "format": "image/png"}
    folder = folders.output / "Kinema_00001_"
    names = sorted(p.name for p in folder.iterdir())
    assert names == [f"frame_{i:05}.png" for i in range(1, 13)]
    with Image.open(folder / "frame_00007.png") as png:
        assert np.array_equal(np.asarray(png), CLIP[6])
        assert json.loads(png.text["workflow"]) == WORKFLOW
        assert json.loads(png.text["prompt"]) == PROMPT
    # the next encode counts on past the folder
    assert encode(frames, "h264-mp4")["images"][0]["filename"] == "Kinema_00002_.mp4"


def test_fps_overrides_the_frames_rate(folders, frames):
    entry = encode(frames, "h264-mp4", fps=24)["images"][0]
    got, fps = decoded_frames(output_path(folders, entry))
    assert (len(got), fps) == (12, 24.0)


def test_odd_sizes_and_ten_bit(folders):
    odd = Frames.from_images(torch.from_numpy(clip(4, 63, 47).astype(np.float32) / 255), 8.0)
    entry = encode(odd, "h264-mp4", crf=10, pix_fmt="yuv420p10le")["images"][0]
    path = output_path(folders, entry)
    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
        # 4:2:0 needs even sides: one repeated row and column
        assert (frame.width, frame.height, frame.format.name) == (64, 48, "yuv420p10le")
    got, _ = decoded_frames(path)
    assert psnr(luma(got[:, :47, :63]), luma(clip(4, 63, 47))) > 40


# --- the workflow inside the files -----------------------------------------------------------


def test_mp4_and_webm_carry_the_workflow_in_container_tags(folders, frames):
    mp4 = output_path(folders, encode(frames, "h264-mp4")["images"][0])
    with av.open(str(mp4)) as container:
        tags = container.metadata
        assert json.loads(tags["workflow"]) == WORKFLOW
        assert json.loads(tags["prompt"]) == PROMPT
        assert json.loads(tags["comment"]) == {"prompt": PROMPT, "workflow": WORKFLOW}
    webm = output_path(folders, encode(frames, "vp9-webm")["images"][0])
    with av.open(str(webm)) as container:
        tags = {key.lower(): value for key, value in container.metadata.items()}
        assert json.loads(tags["workflow"]) == WORKFLOW
        assert json.loads(tags["prompt"]) == PROMPT


def test_webp_and_gif_carry_the_workflow(folders, frames):
    webp = output_path(folders, encode(frames, "webp")["images"][0])
    with Image.open(webp) as image:
        exif = image.getexif()
        assert exif[0x010F] == f"workflow:{json.dumps(WORKFLOW)}"  # Make, as ComfyUI writes
        assert exif[0x0110] == f"prompt:{json.dumps(PROMPT)}"  # Model
    gif = output_path(folders, encode(frames, "gif")["images"][0])
    with Image.open(gif) as image:
        assert json.loads(image.info["comment"]) == {"prompt": PROMPT, "workflow": WORKFLOW}
        assert image.n_frames == 12  # the comment did not break the animation


def test_a_single_frame_webp_gets_its_workflow_too(folders, frames):
    one = Frames.from_images(frames.read(0, 1))
    webp = output_path(folders, encode(one, "webp")["images"][0])
    with Image.open(webp) as image:
        assert image.getexif()[0x010F] == f"workflow:{json.dumps(WORKFLOW)}"
        assert image.size == (64, 48)


def test_the_canvas_reader_reopens_the_workflow(folders, frames):
    """web/scripts/metadata.js (run by Node) finds the canvas workflow in each output."""
    paths = [output_path(folders, encode(frames, fmt)["images"][0])
             for fmt in ("h264-mp4", "vp9-webm", "webp")]
    script = """
        const m = await import(process.argv[1]);
        const fs = await import("node:fs");
        const found = [];
        for (const path of process.argv.slice(2)) {
          const file = new File([fs.readFileSync(path)], path.split("/").pop());
          found.push(await m.workflowFromFile(file));
        }
        console.log(JSON.stringify(found));
    """
    run = subprocess.run(["node", "--no-warnings", "--input-type=module", "-e", script,
                          str(ROOT / "web" / "scripts" / "metadata.js"), *map(str, paths)],
                         capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(run.stdout) == [WORKFLOW] * 3


# --- audio -----------------------------------------------------------------------------------


@pytest.fixture
def talking(folders) -> Frames:
    """1 s of a source whose tone starts at 0.5 s, loaded from 0.5 s on."""
    write_video(folders.input / "take.mp4", clip(16, 64, 48), fps=8, audio=tone_after(0.5, 2.0))
    loaded, _, _ = LoadVideo().load_video("take.mp4", skip_first_frames=4, frame_cap=8)
    return loaded


@pytest.mark.parametrize(("fmt", "codec"), [("h264-mp4", "aac"), ("vp9-webm", "opus")])
def test_the_audio_of_the_loaded_part_is_carried_over(folders, talking, fmt, codec):
    path = output_path(folders, encode(talking, fmt)["images"][0])
    with av.open(str(path)) as container:
        assert [s.type for s in container.streams] == ["video", "audio"]
        assert container.streams.audio[0].codec_context.name == codec
        assert container.duration / av.time_base == pytest.approx(1.0, abs=0.05)
    samples, rate = decoded_audio(path)
    assert len(samples) / rate == pytest.approx(1.0, abs=0.05)
    # the cut starts where the tone does: loud from the first tenth of a second on
    start = np.abs(samples[round(0.02 * rate):round(0.1 * rate)])
    assert start.max() > 0.3


def test_formats_without_audio_drop_it_quietly(folders, talking):
    for fmt in ("gif", "webp"):
        entry = encode(talking, fmt)["images"][0]
        assert output_path(folders, entry).is_file()


# --- errors and partial files ----------------------------------------------------------------


def all_files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


def test_an_unsupported_pix_fmt_is_a_clear_error_and_leaves_nothing(folders, frames):
    with pytest.raises(ValueError, match="input 'pix_fmt': vp9-webm cannot be written as "
                                         "yuv420p10le; choose yuv420p or yuv444p"):
        encode(frames, "vp9-webm", pix_fmt="yuv420p10le")
    with pytest.raises(ValueError, match=r"input 'pix_fmt'.*av1-mp4.*yuv444p"):
        encode(frames, "av1-mp4", pix_fmt="yuv444p")
    assert all_files(folders.output) == []


def test_sizes_an_encoder_cannot_take_are_refused_clearly(folders):
    def blank(width: int, height: int) -> Frames:
        return Frames.from_images(torch.zeros(2, height, width, 3))

    with pytest.raises(ValueError, match=r"input 'frames': h265-mp4 needs frames of at least "
                                         r"16x16, these are 8x8"):
        encode(blank(8, 8), "h265-mp4")
    # this libx265 corrupts memory on such widths: refused before it can take the process down
    with pytest.raises(ValueError, match=r"input 'frames': h265-mp4 cannot encode frames 33 to "
                                         r"49 pixels wide"):
        encode(blank(40, 32), "h265-mp4")
    assert all_files(folders.output) == []
    assert output_path(folders, encode(blank(40, 32), "h264-mp4")["images"][0]).is_file()


def test_a_missing_audio_source_fails_without_a_partial_file(folders, talking):
    (folders.input / "take.mp4").unlink()
    with pytest.raises(ValueError, match=r"input 'frames'.*'take.mp4'.*no longer exists"):
        encode(talking, "h264-mp4")
    assert all_files(folders.output) == []


# --- through the engine ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def registry():
    return build_registry(nodes)


LOAD = {"skip_first_frames": 0, "frame_cap": 0, "every_nth": 1, "force_fps": 0.0,
        "force_width": 0, "force_height": 0}
ENCODE = {"filename_prefix": "Kinema", "format": "h264-mp4", "crf": 19, "preset": "medium",
          "pix_fmt": "yuv420p", "fps": 0.0}


def test_the_engine_runs_load_and_encode_and_returns_the_ui_entry(folders, registry):
    write_video(folders.input / "take.mp4", CLIP, fps=8)
    prompt = {
        "1": {"class_type": "LoadVideo",
              "inputs": {**LOAD, "video": "take.mp4", "frame_cap": 6}},
        "2": {"class_type": "VideoEncode",
              "inputs": {**ENCODE, "frames": ["1", 0], "filename_prefix": "clips/run",
                         "format": "vp9-webm", "preset": "fast"}},
    }
    result = Executor(registry).execute(validate_prompt(prompt, registry),
                                        extra_data={"extra_pnginfo": {"workflow": WORKFLOW}})
    assert result.status == "success", result.error
    assert result.outputs["2"] == {
        "images": [{"filename": "run_00001_.webm", "subfolder": "clips", "type": "output",
                    "format": "video/webm"}],
        "animated": [True]}
    path = folders.output / "clips" / "run_00001_.webm"
    got, fps = decoded_frames(path)
    assert (len(got), fps) == (6, 8.0)
    with av.open(str(path)) as container:
        tags = {key.lower(): value for key, value in container.metadata.items()}
    assert json.loads(tags["prompt"]) == prompt
    assert json.loads(tags["workflow"]) == WORKFLOW


def test_an_image_batch_feeds_the_encoder(folders, registry):
    prompt = {
        "1": {"class_type": "EmptyImage",
              "inputs": {"width": 32, "height": 32, "batch_size": 5, "color": 0xFF8000}},
        "2": {"class_type": "VideoEncode",
              "inputs": {**ENCODE, "frames": ["1", 0], "format": "gif"}},
    }
    result = Executor(registry).execute(validate_prompt(prompt, registry))
    assert result.status == "success", result.error
    with Image.open(folders.output / result.outputs["2"]["images"][0]["filename"]) as image:
        assert image.n_frames == 5
        assert image.convert("RGB").getpixel((3, 3)) == (255, 128, 0)


def test_an_interrupted_encode_leaves_no_file(folders, registry, monkeypatch):
    monkeypatch.setattr(Frames, "chunk_frames", lambda self, chunk_bytes=0: 4)
    write_video(folders.input / "take.mp4", CLIP, fps=8)
    prompt = {
        "1": {"class_type": "LoadVideo", "inputs": {**LOAD, "video": "take.mp4"}},
        "2": {"class_type": "VideoEncode", "inputs": {**ENCODE, "frames": ["1", 0]}},
    }
    executor = Executor(registry)

    def interrupt_after_the_first_chunk(kind: str, data: dict) -> None:
        if kind == "progress" and data.get("node") == "2":
            executor.interrupt()

    executor.on_event = interrupt_after_the_first_chunk
    result = executor.execute(validate_prompt(prompt, registry))
    assert result.status == "interrupted"
    assert all_files(folders.output) == []
    shutil.rmtree(folders.output)  # nothing was held open on it either
