"""Video nodes: interpolation quality and speed, encoder speed, and a long clip in bounded memory
(issue 6). Prints, side by side in one run:

1. interpolation at 512x512: a moving-shapes clip (``nodes/video/pattern.py``) rendered at
   half-frame steps; the even frames are the input, the odd ones the held-out truth. PSNR of
   the synthesised middle frames and middle frames per second for Kinema's optical-flow
   interpolator (``nodes/video/flow.py`` ``interpolate_pair``), FFmpeg's ``minterpolate``
   (Debian's ffmpeg, motion-compensated: ``mi_mode=mci:mc_mode=aobmc:me_mode=bidir:vsbmc=1``,
   fed and read as raw RGB through pipes) and a plain blend of the two neighbours.
2. encoder frames/s: the VideoEncode node (PyAV, libx264) against the ffmpeg command line
   (libx264) on the same frames with the same settings (crf, preset, yuv420p), the frames
   piped to ffmpeg as raw RGB; ratio Kinema / ffmpeg (target >= 0.9). Sides alternate.
3. a long clip: a 60 s 1920x1080 24 fps H.264 MP4 made from a 480x270 6 fps synthetic clip
   through x4 optical-flow interpolation and x4 Lanczos upscaling, run as a workflow by the
   engine in a fresh process (``--child``): peak RSS (VmHWM, target < 2 GB) and wall time,
   beside the bytes the same video takes as one float32 IMAGE tensor.

Run: ``.venv/bin/python bench/video.py [--quick]`` (needs ``ffmpeg`` on PATH: Debian's, which
``scripts/setup.sh --dev`` installs).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.folders import Folders, use_folders  # noqa: E402
from engine.frames import Frames  # noqa: E402
from nodes.video.pattern import clip  # noqa: E402
from tests.video.clips import psnr  # noqa: E402

MINTERPOLATE = "minterpolate=fps={fps}:mi_mode=mci:mc_mode=aobmc:me_mode=bidir:vsbmc=1"


def ffmpeg_version() -> str:
    out = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True, check=True)
    return out.stdout.splitlines()[0]


# --- 1. interpolation ---------------------------------------------------------------------

def interpolation(size: int, pairs: int, speed: float) -> dict[str, Any]:
    from nodes.video.flow import interpolate_pair

    truth = clip(2 * pairs + 1, size, size, speed, step=0.5)
    given, middles = truth[0::2], truth[1::2]
    results: dict[str, Any] = {}

    start = time.perf_counter()
    flow = [interpolate_pair(given[i], given[i + 1], [0.5])[0] for i in range(pairs)]
    results["kinema"] = (psnr(np.stack(flow), middles), pairs / (time.perf_counter() - start))

    start = time.perf_counter()
    blend = [((given[i].astype(np.uint16) + given[i + 1]) // 2).astype(np.uint8)
             for i in range(pairs)]
    results["blend"] = (psnr(np.stack(blend), middles), pairs / (time.perf_counter() - start))

    start = time.perf_counter()
    # minterpolate stops at the last frame's start: a repeat of it lets the last pair through.
    out = ffmpeg_minterpolate(np.concatenate([given, given[-1:]]), fps=6)
    elapsed = time.perf_counter() - start
    # Output frame 2i is input frame i; 2i+1 is the middle of the pair (i, i+1).
    synthesised = out[1:2 * pairs:2]
    results["ffmpeg"] = (psnr(synthesised, middles), pairs / elapsed)
    results["ffmpeg_keeps_inputs"] = psnr(out[0:2 * pairs + 1:2], given)
    return results


def ffmpeg_minterpolate(frames: np.ndarray, fps: int) -> np.ndarray:
    h, w = frames.shape[1:3]
    command = ["ffmpeg", "-v", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}",
               "-r", str(fps), "-i", "-", "-vf", MINTERPOLATE.format(fps=2 * fps),
               "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
    done = subprocess.run(command, input=frames.tobytes(), capture_output=True, check=True)
    return np.frombuffer(done.stdout, np.uint8).reshape(-1, h, w, 3)


# --- 2. encoder -----------------------------------------------------------------------------

def encoder(frames: np.ndarray, fps: int, crf: int, preset: str, rounds: int,
            work: Path) -> dict[str, Any]:
    from nodes.encode import VideoEncode

    n, h, w, _ = frames.shape
    writer = Frames.writer(w, h, fps)
    writer.append(frames)
    store = writer.finish()
    node = VideoEncode()
    kinema, ffmpeg = [], []
    sizes = {}
    for i in range(rounds):
        order = ("k", "f") if i % 2 == 0 else ("f", "k")
        for side in order:
            start = time.perf_counter()
            if side == "k":
                result = node.encode(frames=store, filename_prefix="bench", format="h264-mp4",
                                     crf=crf, preset=preset, pix_fmt="yuv420p", fps=0.0)
                kinema.append(time.perf_counter() - start)
                entry = result["ui"]["images"][0]
                sizes["kinema"] = (work / "output" / entry["subfolder"] /
                                   entry["filename"]).stat().st_size
            else:
                target = work / f"ffmpeg-{i}.mp4"
                command = ["ffmpeg", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24",
                           "-s", f"{w}x{h}", "-r", str(fps), "-i", "-", "-c:v", "libx264",
                           "-crf", str(crf), "-preset", preset, "-pix_fmt", "yuv420p",
                           str(target)]
                subprocess.run(command, input=frames.tobytes(), check=True)
                ffmpeg.append(time.perf_counter() - start)
                sizes["ffmpeg"] = target.stat().st_size
    k, f = statistics.median(kinema), statistics.median(ffmpeg)
    return {"frames": n, "size": f"{w}x{h}", "kinema_fps": n / k, "ffmpeg_fps": n / f,
            "ratio": f / k, "kinema_s": kinema, "ffmpeg_s": ffmpeg, "bytes": sizes}


# --- 3. a long clip in bounded memory -------------------------------------------------------

def long_clip_prompt(seconds: int) -> dict[str, Any]:
    return {
        "1": {"class_type": "SyntheticClip",
              "inputs": {"width": 480, "height": 270, "frames": seconds * 6, "fps": 6.0,
                         "speed": 6.0, "cut_at": 0}},
        "2": {"class_type": "FrameInterpolate",
              "inputs": {"frames": ["1", 0], "method": "optical_flow", "multiplier": 4,
                         "target_fps": 24.0, "rife_model": "none", "scene_threshold": 0.3}},
        "3": {"class_type": "FrameUpscale",
              "inputs": {"frames": ["2", 0], "method": "lanczos", "scale": 4,
                         "upscale_model": "none", "tile_size": 0, "tile_overlap": 32}},
        "4": {"class_type": "VideoEncode",
              "inputs": {"frames": ["3", 0], "filename_prefix": "long", "format": "h264-mp4",
                         "crf": 23, "preset": "veryfast", "pix_fmt": "yuv420p", "fps": 0.0}},
    }


def long_clip_child(seconds: int, base: Path) -> None:
    """Run the long-clip workflow in this (fresh) process; print figures as JSON."""
    import nodes
    from engine.cache import OutputCache
    from engine.executor import Executor
    from engine.graph import validate_prompt
    from engine.registry import build_registry

    folders = use_folders(Folders.under(base))
    folders.ensure()
    registry = build_registry(nodes)
    executor = Executor(registry, OutputCache())
    start = time.perf_counter()
    result = executor.execute(validate_prompt(long_clip_prompt(seconds), registry))
    wall = time.perf_counter() - start
    if result.status != "success":
        raise SystemExit(json.dumps(result.error)[:2000])
    entry = result.outputs["4"]["images"][0]
    path = folders.output / entry["subfolder"] / entry["filename"]
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text()
                  .splitlines() if ":" in line)
    peak = int(status["VmHWM"].split()[0]) * 1024
    spilled = sum(p.stat().st_size for p in (folders.temp / "frames").rglob("*.npy")) \
        if (folders.temp / "frames").is_dir() else 0
    print(json.dumps({"wall_s": wall, "peak_rss": peak, "path": str(path),
                      "file_bytes": path.stat().st_size, "spilled_bytes_at_end": spilled}))


def long_clip(seconds: int, frames_ram: int) -> dict[str, Any]:
    import av

    base = Path(tempfile.mkdtemp(prefix="kinema-bench-video-"))
    try:
        env = {"KINEMA_FRAMES_RAM": str(frames_ram), "PATH": "/usr/bin:/bin"}
        done = subprocess.run([sys.executable, __file__, "--child", str(seconds), str(base)],
                              capture_output=True, text=True, env=env, check=False)
        if done.returncode:
            raise SystemExit(f"long-clip child failed:\n{done.stderr[-3000:]}")
        figures = json.loads(done.stdout.strip().splitlines()[-1])
        with av.open(figures["path"]) as container:
            stream = container.streams.video[0]
            figures["output"] = {"frames": stream.frames, "fps": float(stream.average_rate),
                                 "size": f"{stream.width}x{stream.height}",
                                 "codec": stream.codec_context.name,
                                 "seconds": float(container.duration / 1e6)}
        n = figures["output"]["frames"]
        figures["float32_bytes"] = n * 1920 * 1080 * 3 * 4
        return figures
    finally:
        shutil.rmtree(base, ignore_errors=True)


# --- report ----------------------------------------------------------------------------------

def mib(n: float) -> str:
    return f"{n / (1 << 20):,.0f} MiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="fewer pairs and rounds, a 10 s long clip")
    parser.add_argument("--frames-ram", type=int, default=512 << 20,
                        help="KINEMA_FRAMES_RAM for the long clip (bytes of frames in RAM)")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        long_clip_child(int(args.child[0]), Path(args.child[1]))
        return
    if shutil.which("ffmpeg") is None:
        raise SystemExit("bench/video.py compares with the ffmpeg command line: install it "
                         "(apt-get install ffmpeg, or scripts/setup.sh --dev)")
    print(f"video bench: {ffmpeg_version()}")
    work = Path(tempfile.mkdtemp(prefix="kinema-bench-enc-"))
    use_folders(Folders.under(work)).ensure()
    try:
        pairs = 12 if args.quick else 30
        interp = interpolation(512, pairs, speed=8.0)
        print(f"\n1. interpolation, 512x512, {pairs} held-out middle frames, shapes moving "
              "8 px/frame")
        print(f"   {'method':<34}{'PSNR':>9}{'middle frames/s':>18}")
        for name, label in (("kinema", "Kinema optical flow"),
                            ("ffmpeg", "FFmpeg minterpolate (mci, aobmc)"),
                            ("blend", "plain blend")):
            quality, speed = interp[name]
            print(f"   {label:<34}{quality:>7.2f} dB{speed:>16.1f}")
        print(f"   (minterpolate keeps the input frames: PSNR {interp['ffmpeg_keeps_inputs']:.1f}"
              " dB on them)")

        frames = clip(48 if args.quick else 120, 1280, 720, 6.0)
        rounds = 2 if args.quick else 4
        enc = encoder(frames, 24, 19, "medium", rounds, work)
        print(f"\n2. encoder, {enc['frames']} frames {enc['size']}, libx264 crf 19 preset "
              f"medium yuv420p, median of {rounds}")
        print(f"   Kinema VideoEncode  {enc['kinema_fps']:7.1f} frames/s  "
              f"({enc['bytes']['kinema']:,} bytes)")
        print(f"   ffmpeg CLI          {enc['ffmpeg_fps']:7.1f} frames/s  "
              f"({enc['bytes']['ffmpeg']:,} bytes)")
        print(f"   ratio Kinema / ffmpeg {enc['ratio']:.3f}   (target >= 0.9)")
    finally:
        shutil.rmtree(work, ignore_errors=True)

    seconds = 10 if args.quick else 60
    long = long_clip(seconds, args.frames_ram)
    out = long["output"]
    print(f"\n3. {seconds} s clip: 480x270 6 fps synthetic -> x4 optical flow -> x4 Lanczos -> "
          f"H.264 (frames budget {mib(args.frames_ram)})")
    print(f"   output: {out['frames']} frames {out['size']} {out['fps']:g} fps {out['codec']}, "
          f"{out['seconds']:.1f} s, {long['file_bytes']:,} bytes")
    print(f"   wall time {long['wall_s']:.1f} s; peak RSS {mib(long['peak_rss'])} "
          f"(target < 2 GB); the same video as one float32 tensor: "
          f"{long['float32_bytes'] / (1 << 30):.1f} GiB")
    print("\nraw: " + json.dumps({"interpolation": interp, "encoder": enc, "long_clip": long}))


if __name__ == "__main__":
    main()
