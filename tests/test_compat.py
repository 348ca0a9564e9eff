"""The ComfyUI compatibility modules: folder_paths, comfy.utils, comfy.model_management,
node_helpers, latent_preview, comfy.comfy_types, comfy.k_diffusion.utils, and the stand-ins
for ComfyUI's core nodes in ``nodes``."""

from __future__ import annotations

import importlib
import pickle
import sys
from pathlib import Path

import pytest
import safetensors.torch
import torch

import comfy.model_management as mm
import comfy.utils
import folder_paths
import nodes
from engine import context
from engine.context import InterruptFlag, NodeContext, node_context
from engine.folders import Folders, UnsafePathError, use_folders


def recording_context() -> tuple[NodeContext, list]:
    reports: list[tuple[int, int, object]] = []
    ctx = NodeContext("p1", "3", "Plugin", lambda v, t, p: reports.append((v, t, p)),
                      InterruptFlag())
    return ctx, reports


# folder_paths ---------------------------------------------------------------------------


def test_folder_paths_follow_the_active_folders(folders, tmp_path):
    assert folder_paths.get_output_directory() == str(folders.output)
    assert folder_paths.get_input_directory() == str(folders.input)
    assert folder_paths.get_temp_directory() == str(folders.temp)
    assert folder_paths.models_dir == str(folders.models)
    assert folder_paths.base_path == str(folders.base)
    assert folder_paths.get_directory_by_type("temp") == str(folders.temp)
    assert folder_paths.get_directory_by_type("models") is None
    other = use_folders(Folders.under(tmp_path / "second"))
    assert folder_paths.get_output_directory() == str(other.output)


def test_set_output_directory_moves_where_nodes_save(folders, tmp_path):
    folder_paths.set_output_directory(str(tmp_path / "renders"))
    nodes.SaveImage().save_images(torch.zeros(1, 2, 2, 3), "Kinema")
    assert (tmp_path / "renders" / "Kinema_00001_.png").is_file()


def test_get_save_image_path_gives_comfyui_tuple_and_counts_on(folders):
    out = str(folders.output)
    full, filename, counter, subfolder, prefix = folder_paths.get_save_image_path(
        "shots/take", out, 64, 32)
    assert (full, filename, counter, subfolder, prefix) == (
        str(folders.output / "shots"), "take", 1, "shots", "shots/take")
    (Path(full) / f"{filename}_{counter:05}_.png").write_bytes(b"png")
    assert folder_paths.get_save_image_path("shots/take", out)[2] == 2
    assert folder_paths.get_save_image_path("img_%width%", out, 64, 32)[1] == "img_64"


def test_get_save_image_path_refuses_prefixes_that_leave_the_output_folder(folders):
    with pytest.raises(UnsafePathError, match="outside the output folder"):
        folder_paths.get_save_image_path("../../etc/x", str(folders.output))


def test_annotated_file_paths_pick_their_folder_and_stay_inside(folders):
    (folders.output / "a.png").write_bytes(b"x")
    assert folder_paths.get_annotated_filepath("a.png [output]") == str(folders.output / "a.png")
    assert folder_paths.get_annotated_filepath("b.png") == str(folders.input / "b.png")
    assert folder_paths.get_annotated_filepath("c.png [temp]") == str(folders.temp / "c.png")
    assert folder_paths.exists_annotated_filepath("a.png [output]")
    assert not folder_paths.exists_annotated_filepath("a.png")
    assert not folder_paths.exists_annotated_filepath("../output/a.png")
    with pytest.raises(UnsafePathError):
        folder_paths.get_annotated_filepath("../../x.png [input]")


def test_model_lists_and_paths_come_from_the_model_folders(folders):
    (folders.models / "checkpoints" / "sub").mkdir(parents=True)
    (folders.models / "checkpoints" / "sub" / "tiny.safetensors").write_bytes(b"")
    (folders.models / "checkpoints" / "notes.txt").write_text("not a model")
    assert folder_paths.get_filename_list("checkpoints") == ["sub/tiny.safetensors"]
    full = folder_paths.get_full_path("checkpoints", "sub/tiny.safetensors")
    assert full == str(folders.models / "checkpoints" / "sub" / "tiny.safetensors")
    assert folder_paths.get_full_path("checkpoints", "missing.safetensors") is None
    assert folder_paths.get_full_path("checkpoints", "../../../etc/passwd") is None
    with pytest.raises(FileNotFoundError):
        folder_paths.get_full_path_or_raise("checkpoints", "missing.safetensors")


def test_folder_names_and_paths_is_a_live_writable_view(folders, tmp_path):
    extra = tmp_path / "more-upscalers"
    extra.mkdir()
    (extra / "x4.pth").write_bytes(b"")
    # ComfyUI's name for Kinema's "upscale" kind; mutating the list writes through.
    folder_paths.folder_names_and_paths["upscale_models"][0].append(str(extra))
    assert folder_paths.get_filename_list("upscale_models") == ["x4.pth"]
    assert extra in folders.model_kinds["upscale"][0]

    folder_paths.folder_names_and_paths["ipadapter"] = ([str(extra)], {".bin"})
    (extra / "ip.bin").write_bytes(b"")
    assert "ipadapter" in folder_paths.folder_names_and_paths
    paths, exts = folder_paths.folder_names_and_paths["ipadapter"]
    assert list(paths) == [str(extra)] and set(exts) == {".bin"}
    exts.add(".pth")
    assert folder_paths.get_filename_list("ipadapter") == ["ip.bin", "x4.pth"]
    assert "controlnet" in folder_paths.folder_names_and_paths  # ComfyUI's standard kinds


def test_add_model_folder_path_puts_default_folders_first(folders, tmp_path):
    folder_paths.add_model_folder_path("loras", str(tmp_path / "shared"))
    folder_paths.add_model_folder_path("loras", str(tmp_path / "mine"), is_default=True)
    assert folder_paths.get_folder_paths("loras") == [
        str(tmp_path / "mine"), str(folders.models / "loras"), str(tmp_path / "shared")]
    folder_paths.add_model_folder_path("brand_new", str(tmp_path / "new"))
    assert folder_paths.get_folder_paths("brand_new") == [str(tmp_path / "new")]


# comfy.utils ----------------------------------------------------------------------------


def test_progress_bar_reports_through_the_running_node_context():
    ctx, reports = recording_context()
    with node_context(ctx):
        bar = comfy.utils.ProgressBar(4)
        bar.update(1)
        bar.update(2)
        bar.update_absolute(9, preview="img")
    assert reports == [(1, 4, None), (3, 4, None), (4, 4, "img")]


def test_progress_bar_is_a_noop_outside_a_node_call():
    assert context.current_context() is None
    bar = comfy.utils.ProgressBar(2)
    bar.update(1)
    assert bar.current == 1


def test_progress_bar_stops_an_interrupted_prompt():
    ctx, _ = recording_context()
    with node_context(ctx):
        bar = comfy.utils.ProgressBar(3)
        mm.interrupt_current_processing()
        with pytest.raises(mm.InterruptProcessingException):
            bar.update(1)


def test_common_upscale_resizes_channels_first_samples():
    samples = torch.rand(2, 3, 10, 20)
    assert comfy.utils.common_upscale(samples, 8, 8, "bicubic", "center").shape == (2, 3, 8, 8)
    assert comfy.utils.common_upscale(samples, 40, 5, "lanczos", "disabled").shape == (2, 3, 5, 40)


def test_load_torch_file_reads_safetensors_and_plain_torch_files(tmp_path):
    weights = {"w": torch.arange(6.0).view(2, 3)}
    safetensors.torch.save_file(weights, tmp_path / "m.safetensors", metadata={"k": "v"})
    torch.save({"state_dict": weights, "epoch": 3}, tmp_path / "m.ckpt")
    loaded, meta = comfy.utils.load_torch_file(tmp_path / "m.safetensors", return_metadata=True)
    assert torch.equal(loaded["w"], weights["w"]) and meta == {"k": "v"}
    assert torch.equal(comfy.utils.load_torch_file(str(tmp_path / "m.ckpt"))["w"], weights["w"])


class _Payload:
    """Pickles into a call of ``_touch`` — what a malicious checkpoint would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (_touch, (str(self.marker),))


def _touch(path: str) -> None:
    Path(path).write_text("code ran")


def test_load_torch_file_refuses_pickles_with_arbitrary_objects(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"w": torch.zeros(1), "x": _Payload(marker)}, tmp_path / "evil.pt")
    with pytest.raises(pickle.UnpicklingError, match="weights_only"):
        comfy.utils.load_torch_file(tmp_path / "evil.pt", safe_load=False)
    assert not marker.exists()


def test_save_torch_file_writes_safetensors(tmp_path):
    comfy.utils.save_torch_file({"a": torch.ones(2)}, tmp_path / "out.safetensors")
    assert torch.equal(comfy.utils.load_torch_file(tmp_path / "out.safetensors")["a"],
                       torch.ones(2))


# comfy.model_management -----------------------------------------------------------------


def test_interrupt_maps_onto_the_node_context_flag():
    assert mm.InterruptProcessingException is context.InterruptProcessingException
    ctx, _ = recording_context()
    with node_context(ctx):
        assert not mm.processing_interrupted()
        mm.throw_exception_if_processing_interrupted()
        mm.interrupt_current_processing(True)
        assert ctx.interrupt.is_set() and mm.processing_interrupted()
        with pytest.raises(context.InterruptProcessingException):
            mm.throw_exception_if_processing_interrupted()
        mm.interrupt_current_processing(False)
        mm.throw_exception_if_processing_interrupted()


def test_interrupt_functions_are_noops_outside_a_node_call():
    mm.interrupt_current_processing()
    assert not mm.processing_interrupted()
    mm.throw_exception_if_processing_interrupted()


def test_devices_and_memory():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert mm.get_torch_device().type == expected
    assert mm.intermediate_device() == torch.device("cpu")
    assert mm.unet_offload_device() == torch.device("cpu")
    assert mm.get_free_memory(torch.device("cpu")) > 0
    assert mm.get_torch_device_name("cpu") == "cpu"
    assert mm.text_encoder_offload_device() == torch.device("cpu")
    half = mm.cast_to_device(torch.ones(2), "cpu", torch.float16)
    assert half.dtype == torch.float16 and half.tolist() == [1.0, 1.0]
    mm.soft_empty_cache()


# unsupported ComfyUI modules ------------------------------------------------------------


@pytest.mark.parametrize(("statement", "what"), [
    ("import comfy.sd", "the ComfyUI module 'comfy.sd'"),
    ("from comfy import samplers", "the ComfyUI module 'comfy.samplers'"),
    ("import comfy.ldm.modules.attention", "the ComfyUI module 'comfy.ldm'"),
    ("import execution", "ComfyUI's executor, the module 'execution'"),
    ("from comfy_api.latest import io", "ComfyUI's V3 node API, the module 'comfy_api'"),
    ("from comfy_extras.nodes_mask import composite", "ComfyUI's extra node implementations"),
])
def test_unsupported_comfy_modules_fail_at_import_with_a_clear_error(statement, what):
    with pytest.raises(ImportError, match=f"Kinema does not provide {what}"):
        exec(statement, {})


def test_a_packs_own_module_named_like_comfyuis_still_imports(tmp_path, monkeypatch):
    (tmp_path / "execution.py").write_text("WHO = 'the pack'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "execution", raising=False)
    assert importlib.import_module("execution").WHO == "the pack"
    monkeypatch.delitem(sys.modules, "execution")


def test_supported_comfy_modules_import_and_name_missing_functions():
    assert importlib.import_module("comfy.utils") is comfy.utils
    with pytest.raises(AttributeError, match="not supported by Kinema"):
        _ = mm.load_models_gpu


# node_helpers, latent_preview, comfy_types, k_diffusion.utils, core node stand-ins ------


def test_node_helpers_pillow_opens_a_truncated_image(tmp_path):
    from PIL import Image

    import node_helpers

    path = tmp_path / "cut.jpg"
    noise = (torch.rand(48, 64, 3) * 255).to(torch.uint8).numpy()
    Image.fromarray(noise).save(path, quality=95)
    path.write_bytes(path.read_bytes()[:-500])  # the end of the file is lost

    def load(p):
        with Image.open(p) as image:
            image.load()
            return image.size

    with pytest.raises(OSError):
        load(path)
    assert node_helpers.pillow(load, path) == (64, 48)
    with pytest.raises(OSError):  # the retry does not leave truncated loading switched on
        load(path)


def test_node_helpers_edit_comfyui_conditioning():
    import node_helpers

    cond = [[torch.zeros(1, 2, 4), {"pooled_output": None}]]
    out = node_helpers.conditioning_set_values(cond, {"strength": 0.5})
    assert out[0][1] == {"pooled_output": None, "strength": 0.5}
    assert cond[0][1] == {"pooled_output": None}  # the input is not changed
    twice = node_helpers.conditioning_set_values(
        node_helpers.conditioning_set_values(cond, {"area": [1]}, append=True), {"area": [2]},
        append=True)
    assert twice[0][1]["area"] == [1, 2]
    rgb, cut = node_helpers.image_alpha_fix(torch.zeros(1, 2, 2, 3), torch.zeros(1, 2, 2, 4))
    assert rgb.shape[-1] == cut.shape[-1] == 3
    rgba, opaque = node_helpers.image_alpha_fix(torch.zeros(1, 2, 2, 4), torch.zeros(1, 2, 2, 3))
    assert rgba.shape[-1] == opaque.shape[-1] == 4 and bool((opaque[..., 3] == 1).all())


def test_latent_preview_gives_no_previewer_and_a_progress_callback():
    import latent_preview

    assert latent_preview.get_previewer("cpu", None) is None
    ctx, reports = recording_context()
    kept: dict = {}
    with node_context(ctx):
        callback = latent_preview.prepare_callback(None, 3, kept)
        for step in range(3):
            callback(step, torch.ones(1), torch.zeros(1), 3)
    assert [r[:2] for r in reports] == [(1, 3), (2, 3), (3, 3)]
    assert kept["x0"].item() == 1


def test_comfy_types_name_socket_types_as_plain_strings():
    from comfy.comfy_types.node_typing import IO

    assert IO.IMAGE == "IMAGE" and str(IO.LATENT) == "LATENT"
    assert not (IO.ANY != "IMAGE")  # the wildcard matches every type  # noqa: SIM202


def test_folder_of_images_lists_images_recursively(tmp_path):
    from PIL import Image

    from comfy.k_diffusion.utils import FolderOfImages

    (tmp_path / "sub").mkdir()
    for name in ("b.png", "sub/a.webp"):
        Image.new("RGB", (4, 4)).save(tmp_path / name)
    (tmp_path / "notes.txt").write_text("not an image")
    images = FolderOfImages(tmp_path)
    assert len(images) == 2 and images[0][0].size == (4, 4)
    assert ".png" in FolderOfImages.IMG_EXTENSIONS


def test_comfyui_core_nodes_missing_in_kinema_refuse_when_used():
    from nodes import VAEEncode

    assert VAEEncode is nodes.VAEEncode  # one class, so plugins' subclasses agree
    with pytest.raises(NotImplementedError, match="ComfyUI's core node VAEEncode"):
        VAEEncode.INPUT_TYPES()
    with pytest.raises(AttributeError):
        _ = nodes.NotANode

    class BatchedEncode(VAEEncode):  # VideoHelperSuite's way: its own inputs, core calls
        RETURN_TYPES = ("LATENT",)

        def encode(self, vae, pixels):
            return super().encode(vae, VAEEncode.vae_encode_crop_pixels(pixels))

    assert not hasattr(BatchedEncode, "RETURN_NAMES")  # declarations still read as absent
    for call in (lambda: BatchedEncode().encode(None, None),
                 lambda: nodes.VAEDecode().decode(None, None),
                 lambda: VAEEncode.vae_encode_crop_pixels(None)):
        with pytest.raises(NotImplementedError, match="core node VAE"):
            call()
