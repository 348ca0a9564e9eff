"""Image nodes: output sizes and values on known pixels, progress and interrupt."""

from __future__ import annotations

import pytest
import torch

import nodes
from engine.context import InterruptFlag, InterruptProcessingException, NodeContext, node_context
from engine.registry import build_registry
from nodes.image import (
    EmptyImage,
    ImageBatch,
    ImageBlend,
    ImageBlur,
    ImageFromBatch,
    ImageInvert,
    ImageScale,
    ImageScaleBy,
    ImageSharpen,
    RepeatImageBatch,
)
from nodes.imaging import UPSCALE_METHODS, resample


def solid(value: float, batch: int = 1, height: int = 4, width: int = 4) -> torch.Tensor:
    return torch.full((batch, height, width, 3), value)


def frames(count: int, height: int = 4, width: int = 6) -> torch.Tensor:
    """A batch whose frame i is filled with i / 100, so frames can be told apart."""
    return torch.arange(count, dtype=torch.float32).view(-1, 1, 1, 1).expand(
        count, height, width, 3) / 100


def recording_context(flag: InterruptFlag | None = None) -> tuple[NodeContext, list]:
    reports: list[tuple[int, int]] = []
    ctx = NodeContext("p1", "7", "Test", lambda v, t, _p: reports.append((v, t)),
                      flag or InterruptFlag())
    return ctx, reports


def test_every_builtin_node_documents_its_inputs_with_defaults_and_bounds():
    registry = build_registry(nodes, entry_points=False)
    for name in registry.names():
        node = registry.get(name)
        assert node.cls.__doc__, name
        assert node.description, name
        for spec in node.inputs().values():
            if spec.section == "hidden":
                continue
            assert spec.options.get("tooltip"), f"{name}.{spec.name} has no tooltip"
            if spec.type in ("INT", "FLOAT"):
                assert {"default", "min", "max"} <= spec.options.keys(), f"{name}.{spec.name}"
                assert spec.options["min"] <= spec.options["default"] <= spec.options["max"]
            if spec.is_combo and spec.choices:
                assert spec.options.get("default") in spec.choices, f"{name}.{spec.name}"


def test_nodes_package_carries_comfyui_names():
    assert nodes.MAX_RESOLUTION == 16384
    assert nodes.NODE_CLASS_MAPPINGS["SaveImage"] is nodes.SaveImage
    assert nodes.NODE_DISPLAY_NAME_MAPPINGS["ImageScale"] == "Upscale Image"
    scale_inputs = list(ImageScale.INPUT_TYPES()["required"])
    assert scale_inputs == ["image", "upscale_method", "width", "height", "crop"]


def test_empty_image_fills_the_colour_at_the_asked_size():
    (image,) = EmptyImage().generate(width=5, height=3, batch_size=2, color=0xFF8000)
    assert image.shape == (2, 3, 5, 3)
    assert torch.allclose(image[1, 2, 4], torch.tensor([1.0, 128 / 255, 0.0]))


def test_invert_twice_is_identity():
    image = torch.rand(2, 5, 7, 3)
    (once,) = ImageInvert().invert(image)
    (twice,) = ImageInvert().invert(once)
    assert torch.allclose(once, 1 - image)
    assert torch.allclose(twice, image)


@pytest.mark.parametrize("method", UPSCALE_METHODS)
def test_image_scale_gives_the_asked_size_with_every_method(method):
    image = torch.rand(2, 10, 20, 3)
    (out,) = ImageScale().upscale(image, method, width=13, height=7, crop="disabled")
    assert out.shape == (2, 7, 13, 3)


@pytest.mark.parametrize("method", UPSCALE_METHODS)
def test_resampling_a_flat_image_keeps_its_value(method):
    (out,) = ImageScale().upscale(solid(0.3, height=6, width=9), method, 17, 11, "disabled")
    assert torch.allclose(out, torch.full_like(out, 0.3), atol=1e-4)


def test_image_scale_zero_side_keeps_the_aspect_ratio():
    image = torch.rand(1, 10, 20, 3)
    (wide,) = ImageScale().upscale(image, "bilinear", width=40, height=0, crop="disabled")
    (tall,) = ImageScale().upscale(image, "bilinear", width=0, height=5, crop="disabled")
    (same,) = ImageScale().upscale(image, "bilinear", width=0, height=0, crop="disabled")
    assert wide.shape == (1, 20, 40, 3)
    assert tall.shape == (1, 5, 10, 3)
    assert same is image


def test_center_crop_keeps_the_middle_instead_of_stretching():
    image = torch.zeros(1, 2, 6, 3)
    image[:, :, 2:4] = 1.0  # a white middle band two pixels wide between black sides
    (out,) = ImageScale().upscale(image, "nearest-exact", width=2, height=2, crop="center")
    assert torch.equal(out, torch.ones(1, 2, 2, 3))


def test_nearest_upscale_repeats_known_pixels():
    image = torch.tensor([[0.0, 1.0]]).view(1, 1, 2, 1).expand(1, 1, 2, 3)
    (out,) = ImageScaleBy().upscale(image, "nearest-exact", scale_by=2.0)
    assert out.shape == (1, 2, 4, 3)
    assert out[0, 0, :, 0].tolist() == [0.0, 0.0, 1.0, 1.0]


def test_resample_handles_video_latents_frame_by_frame():
    latents = torch.rand(1, 4, 3, 8, 8)  # [B,C,T,H,W]
    out = resample(latents, 4, 4, "area", "disabled")
    assert out.shape == (1, 4, 3, 4, 4)
    assert torch.allclose(out[:, :, 1], resample(latents[:, :, 1], 4, 4, "area", "disabled"))


def test_resample_refuses_unknown_methods():
    with pytest.raises(ValueError, match="bislerp"):
        resample(torch.rand(1, 3, 4, 4), 2, 2, "bislerp", "disabled")


def test_blur_keeps_flat_images_and_spreads_a_point_symmetrically():
    (flat,) = ImageBlur().blur(solid(0.6, height=9, width=9), blur_radius=3, sigma=1.0)
    assert torch.allclose(flat, torch.full_like(flat, 0.6), atol=1e-6)
    point = torch.zeros(1, 9, 9, 3)
    point[0, 4, 4] = 1.0
    (spread,) = ImageBlur().blur(point, blur_radius=2, sigma=1.0)
    assert spread[0, 4, 4, 0] < 1.0
    assert spread[0, 4, 3, 0] == pytest.approx(spread[0, 4, 5, 0].item())
    assert spread[0, 3, 4, 0] == pytest.approx(spread[0, 5, 4, 0].item())
    assert spread.sum().item() == pytest.approx(3.0, rel=1e-5)  # energy stays inside


def test_blur_works_on_images_smaller_than_the_kernel():
    (out,) = ImageBlur().blur(torch.rand(1, 2, 3, 3), blur_radius=5, sigma=1.0)
    assert out.shape == (1, 2, 3, 3)


def test_sharpen_raises_edge_contrast_and_alpha_zero_is_identity():
    edge = torch.zeros(1, 8, 8, 3)
    edge[:, :, 4:] = 0.5
    (same,) = ImageSharpen().sharpen(edge, sharpen_radius=1, sigma=1.0, alpha=0.0)
    (sharp,) = ImageSharpen().sharpen(edge, sharpen_radius=1, sigma=1.0, alpha=0.5)
    assert torch.allclose(same, edge, atol=1e-6)
    assert sharp[0, 0, 4, 0] > 0.5  # bright side of the edge gets brighter
    assert sharp[0, 0, 3, 0] == 0.0  # dark side darker (clipped at 0)
    assert sharp[0, 0, 0, 0] == 0.0 and sharp[0, 0, 7, 0] == pytest.approx(0.5)


@pytest.mark.parametrize(("mode", "expected"), [
    ("normal", 0.25),
    ("multiply", 0.75 * 0.25),
    ("screen", 1 - 0.25 * 0.75),
    ("overlay", 1 - 2 * 0.25 * 0.75),  # base 0.75 > 0.5: the screen branch
    ("soft_light", 0.75 - 0.5 * 0.75 * 0.25),  # blend 0.25 <= 0.5: the darkening branch
    ("difference", 0.5),
])
def test_blend_modes_on_known_pixels(mode, expected):
    (out,) = ImageBlend().blend_images(solid(0.75), solid(0.25), blend_factor=1.0, blend_mode=mode)
    assert torch.allclose(out, torch.full_like(out, expected))


def test_blend_factor_mixes_with_image1_and_clips():
    (half,) = ImageBlend().blend_images(solid(0.2), solid(0.6), 0.5, "normal")
    (clipped,) = ImageBlend().blend_images(solid(0.2), solid(0.6), 1.0, "difference")
    assert torch.allclose(half, torch.full_like(half, 0.4))
    assert torch.equal(clipped, torch.zeros_like(clipped))


def test_blend_resizes_image2_to_image1():
    (out,) = ImageBlend().blend_images(solid(0.5, height=8, width=8), solid(1.0, height=3,
                                       width=5), 1.0, "multiply")
    assert out.shape == (1, 8, 8, 3)
    assert torch.allclose(out, torch.full_like(out, 0.5), atol=1e-5)


def test_image_batch_appends_and_resizes_image2():
    (out,) = ImageBatch().batch(solid(0.1, batch=2), solid(0.9, height=8, width=8))
    assert out.shape == (3, 4, 4, 3)
    assert torch.allclose(out[2], torch.full((4, 4, 3), 0.9))


def test_image_batch_refuses_mismatched_channels():
    with pytest.raises(ValueError, match="channels"):
        ImageBatch().batch(solid(0.1), torch.zeros(1, 4, 4, 4))


def test_image_from_batch_picks_the_right_frames_and_clamps():
    batch = frames(6)
    (picked,) = ImageFromBatch().frombatch(batch, batch_index=2, length=3)
    (tail,) = ImageFromBatch().frombatch(batch, batch_index=10, length=4)
    (rest,) = ImageFromBatch().frombatch(batch, batch_index=4, length=10)
    assert (picked[:, 0, 0, 0] * 100).round().tolist() == [2, 3, 4]
    assert (tail[:, 0, 0, 0] * 100).round().tolist() == [5]
    assert (rest[:, 0, 0, 0] * 100).round().tolist() == [4, 5]


def test_repeat_image_batch_repeats_the_whole_batch():
    (out,) = RepeatImageBatch().repeat(frames(2), amount=3)
    assert (out[:, 0, 0, 0] * 100).round().tolist() == [0, 1, 0, 1, 0, 1]


def test_long_filters_report_progress_to_the_running_node():
    ctx, reports = recording_context()
    with node_context(ctx):
        ImageBlur().blur(frames(40), blur_radius=1, sigma=1.0)
    assert reports == [(16, 40), (32, 40), (40, 40)]


def test_filters_stop_when_the_prompt_is_interrupted():
    flag = InterruptFlag()
    flag.set()
    ctx, _ = recording_context(flag)
    with node_context(ctx), pytest.raises(InterruptProcessingException):
        ImageSharpen().sharpen(frames(20), 1, 1.0, 1.0)
