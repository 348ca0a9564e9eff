"""Latent decode/encode: chunked equals whole, tiled is close to whole, video latents decode
frame by frame, and the nodes run in a graph."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from nodes.diffusion.latents import decode_latents, encode_images, tiled_decode
from nodes.diffusion.loading import load_model
from tests.generation.workspace import (
    FOLDER,
    max_abs_diff,
    run_graph,
)


@pytest.fixture
def model(workspace):
    return load_model(workspace.models / "diffusers" / FOLDER, FOLDER)


def latents(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_chunked_decode_equals_decoding_all_at_once(model):
    samples = latents(5, 4, 16, 16)
    whole = decode_latents(model, samples, chunk_size=0)
    assert whole.shape == (5, 32, 32, 3)
    for chunk in (1, 2, 3):
        assert max_abs_diff(decode_latents(model, samples, chunk_size=chunk), whole) <= 1e-6


def test_video_latents_decode_to_one_image_per_frame(model):
    video = latents(2, 4, 3, 16, 16)  # [B,C,F,h,w]
    frames = decode_latents(model, video, chunk_size=2)
    assert frames.shape == (6, 32, 32, 3)
    # Batch-major frame order, each frame as its own image latent would decode.
    assert max_abs_diff(frames[4], decode_latents(model, video[1, :, 1][None])[0]) <= 1e-6
    # SVD's frames-first layout [B,F,C,h,w] is read too.
    assert max_abs_diff(decode_latents(model, video.transpose(1, 2)), frames) <= 1e-6


def test_tiled_decode_is_close_to_decoding_whole_frames(model):
    samples = latents(1, 4, 64, 64, seed=1)  # 128 px: 3x3 tiles of 64 px, 32 px overlaps
    whole = decode_latents(model, samples)
    tiled = decode_latents(model, samples, tile_size=64, tile_overlap=32)
    assert tiled.shape == whole.shape
    # The VAE normalises each tile on its own statistics, so tiles are close, not equal.
    difference = (tiled - whole).abs()
    print(f"tiled vs whole: max {float(difference.max()):.3g}, "
          f"mean {float(difference.mean()):.3g}")
    assert float(difference.mean()) <= 0.01 and float(difference.max()) <= 0.1
    # A tile as large as the frame is no tiling at all.
    assert torch.equal(decode_latents(model, samples, tile_size=128, tile_overlap=32), whole)


class PointwiseDecoder:
    """A stand-in VAE whose output pixel depends on one latent only: tiling must be exact."""

    config = SimpleNamespace(block_out_channels=(1, 1, 1), out_channels=3)

    def decode(self, z: torch.Tensor, return_dict: bool = False) -> tuple[torch.Tensor]:
        return (F.interpolate(torch.tanh(z[:, :3] * 1.7), scale_factor=4, mode="nearest"),)


@pytest.mark.parametrize(("height", "width", "tile", "overlap"), [
    (16, 16, 32, 8), (13, 22, 24, 8), (40, 9, 32, 0), (17, 17, 16, 12)])
def test_tile_blending_covers_every_pixel_once_in_weight(height, width, tile, overlap):
    decoder = PointwiseDecoder()
    z = latents(2, 4, height, width)
    whole = decoder.decode(z)[0]
    assert max_abs_diff(tiled_decode(decoder, z, tile, overlap), whole) <= 1e-6


def test_chunked_encode_equals_encoding_all_at_once_and_decodes_back(model):
    images = torch.rand(3, 32, 32, 3, generator=torch.Generator().manual_seed(2))
    whole = encode_images(model, images)
    assert whole.shape == (3, 4, 16, 16)
    assert max_abs_diff(encode_images(model, images, chunk_size=1), whole) <= 1e-5
    assert decode_latents(model, whole).shape == images.shape
    with pytest.raises(ValueError, match="multiple of 2"):
        encode_images(model, images[:, :31])


def test_latent_nodes_run_in_a_graph(workspace):
    graph = {
        "1": {"class_type": "KinemaModelLoader", "inputs": {"model": FOLDER}},
        "2": {"class_type": "EmptyImage", "inputs": {"width": 32, "height": 32,
                                                     "batch_size": 2, "color": 0x3366CC}},
        "3": {"class_type": "LatentEncode", "inputs": {"model": ["1", 0], "image": ["2", 0],
                                                       "chunk_size": 1}},
        "4": {"class_type": "LatentDecode", "inputs": {
            "model": ["1", 0], "latent": ["3", 0], "chunk_size": 1, "tile": True,
            "tile_size": 16, "tile_overlap": 8}},
        "5": {"class_type": "CaptureOutputs", "inputs": {"value": ["4", 0]}},
    }
    run = run_graph(graph)
    assert run.result.status == "success", run.result.error
    assert run.captured["5"].shape == (2, 32, 32, 3)
    assert run.progress("4") == [(1, 2), (2, 2)]
