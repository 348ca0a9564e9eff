"""LoadImage, SaveImage and PreviewImage against a throwaway set of folders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from engine.folders import UnsafePathError
from nodes.image_io import LoadImage, PreviewImage, SaveImage

PROMPT = {"1": {"class_type": "EmptyImage", "inputs": {"width": 4, "height": 2}}}
WORKFLOW = {"nodes": [{"id": 1, "type": "EmptyImage"}], "links": []}


def gradient(batch: int = 1, height: int = 2, width: int = 4) -> torch.Tensor:
    values = torch.linspace(0, 1, batch * height * width * 3)
    return values.view(batch, height, width, 3)


def test_save_image_writes_pngs_carrying_prompt_and_workflow(folders):
    result = SaveImage().save_images(gradient(2), "Kinema", prompt=PROMPT,
                                     extra_pnginfo={"workflow": WORKFLOW})
    images = result["ui"]["images"]
    assert images == [
        {"filename": "Kinema_00001_.png", "subfolder": "", "type": "output"},
        {"filename": "Kinema_00002_.png", "subfolder": "", "type": "output"},
    ]
    with Image.open(folders.output / "Kinema_00001_.png") as png:
        assert json.loads(png.text["prompt"]) == PROMPT
        assert json.loads(png.text["workflow"]) == WORKFLOW
        assert png.size == (4, 2)
        pixels = np.asarray(png, dtype=np.float32) / 255
    assert np.allclose(pixels, gradient(2)[0].numpy(), atol=1 / 510 + 1e-6)


def test_save_image_counts_on_and_honours_subfolders(folders):
    SaveImage().save_images(gradient(), "clips/shot")
    again = SaveImage().save_images(gradient(), "clips/shot")["ui"]["images"]
    assert again == [{"filename": "shot_00002_.png", "subfolder": "clips", "type": "output"}]
    assert sorted(p.name for p in (folders.output / "clips").iterdir()) == [
        "shot_00001_.png", "shot_00002_.png"]


def test_save_image_refuses_a_prefix_that_leaves_the_output_folder(folders):
    with pytest.raises(UnsafePathError):
        SaveImage().save_images(gradient(), "../escape")
    with pytest.raises(UnsafePathError):
        SaveImage().save_images(gradient(), "/tmp/abs")
    assert not (folders.base / "escape_00001_.png").exists()


def test_save_image_writes_to_the_folder_active_at_call_time(folders, tmp_path):
    node = SaveImage()
    elsewhere = tmp_path / "other-out"
    folders.output = elsewhere
    node.save_images(gradient(), "Kinema")
    assert (elsewhere / "Kinema_00001_.png").is_file()


def test_save_image_fills_prefix_variables(folders):
    names = SaveImage().save_images(gradient(2), "frame_%batch_num%_%width%x%height%")
    assert [i["filename"] for i in names["ui"]["images"]] == [
        "frame_0_4x2_00001_.png", "frame_1_4x2_00001_.png"]


def test_plugin_subclass_may_redirect_like_comfyui(folders, tmp_path):
    class PluginPreview(SaveImage):
        def __init__(self):
            self.output_dir = str(tmp_path / "plugin")
            self.type = "temp"
            self.prefix_append = "_x"

    out = PluginPreview().save_images(gradient(), "p")["ui"]["images"]
    assert out == [{"filename": "p_x_00001_.png", "subfolder": "", "type": "temp"}]
    assert (tmp_path / "plugin" / "p_x_00001_.png").is_file()


def test_preview_image_goes_to_the_temp_folder(folders):
    (entry,) = PreviewImage().save_images(gradient(), prompt=PROMPT)["ui"]["images"]
    assert entry["type"] == "temp"
    assert (folders.temp / entry["filename"]).is_file()
    assert not any(folders.output.iterdir())
    assert PreviewImage.OUTPUT_NODE and "filename_prefix" not in PreviewImage.INPUT_TYPES()[
        "required"]


def write_rgba(path: Path) -> np.ndarray:
    rgba = np.zeros((3, 5, 4), dtype=np.uint8)
    rgba[..., 0] = 255
    rgba[..., 3] = np.array([0, 64, 128, 192, 255], dtype=np.uint8)
    Image.fromarray(rgba).save(path)
    return rgba


def test_load_image_gives_rgb_and_mask_from_alpha(folders):
    rgba = write_rgba(folders.input / "sprite.png")
    assert "sprite.png" in LoadImage.INPUT_TYPES()["required"]["image"][0]
    image, mask = LoadImage().load_image("sprite.png")
    assert image.shape == (1, 3, 5, 3) and mask.shape == (1, 3, 5)
    assert torch.all(image[..., 0] == 1.0) and torch.all(image[..., 1:] == 0.0)
    expected = 1.0 - torch.from_numpy(rgba[..., 3].astype(np.float32) / 255)
    assert torch.allclose(mask[0], expected)


def test_load_image_without_alpha_gives_an_empty_mask_of_its_size(folders):
    Image.new("RGB", (6, 4), (0, 255, 0)).save(folders.input / "green.jpg", quality=100)
    image, mask = LoadImage().load_image("green.jpg")
    assert image.shape == (1, 4, 6, 3)
    assert torch.equal(mask, torch.zeros(1, 4, 6))


def test_load_image_reads_every_frame_of_an_animation(folders):
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    first, *rest = [Image.new("RGB", (4, 4), c) for c in colours]
    first.save(folders.input / "anim.gif", save_all=True, append_images=rest, duration=40)
    image, mask = LoadImage().load_image("anim.gif")
    assert image.shape == (3, 4, 4, 3) and mask.shape == (3, 4, 4)
    assert image[:, 0, 0].argmax(dim=-1).tolist() == [0, 1, 2]


def test_load_image_refuses_names_that_leave_the_input_folder(folders):
    (folders.base / "secret.png").write_bytes(b"")
    assert "leaves its folder" in LoadImage.VALIDATE_INPUTS("../secret.png")
    with pytest.raises(UnsafePathError):
        LoadImage().load_image("../secret.png")


def test_validate_inputs_reports_a_missing_file(folders):
    assert "missing.png" in LoadImage.VALIDATE_INPUTS("missing.png")
    write_rgba(folders.input / "there.png")
    assert LoadImage.VALIDATE_INPUTS("there.png") is True


def test_is_changed_follows_the_file_contents(folders):
    path = folders.input / "a.png"
    Image.new("RGB", (2, 2), (10, 10, 10)).save(path)
    before = LoadImage.IS_CHANGED("a.png")
    assert LoadImage.IS_CHANGED("a.png") == before
    Image.new("RGB", (2, 2), (200, 10, 10)).save(path)
    assert LoadImage.IS_CHANGED("a.png") != before


def test_saved_image_loads_back_through_an_annotated_name(folders):
    saved = gradient()
    SaveImage().save_images(saved, "round")
    image, _ = LoadImage().load_image("round_00001_.png [output]")
    assert torch.allclose(image, saved, atol=1 / 510 + 1e-6)
