"""An existing ComfyUI install's models, through its folder names and extra_model_paths.yaml."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import folder_paths
from app.extra_model_paths import ExtraModelPathsError, load_extra_model_paths
from engine.folders import Folders, active_folders, use_folders
from tests.app.live_server import LiveServer

ROOT = Path(__file__).resolve().parents[2]

# The shape of ComfyUI's extra_model_paths.yaml.example.
COMFY_YAML = """\
comfyui:
    base_path: {base}
    is_default: true
    checkpoints: models/checkpoints/
    unet: models/unet/
    text_encoders: |
        models/text_encoders/
        models/clip/
    vae: models/vae/
    custom_nodes: custom_nodes/
a111:
    base_path: ~/does-not-matter
    loras: |
         models/Lora
         models/LyCORIS
"""


def touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")


@pytest.fixture
def comfy_install(tmp_path):
    install = tmp_path / "ComfyUI"
    for name in ("models/checkpoints/sd15.safetensors", "models/unet/wan2.1_t2v_1.3B.safetensors",
                 "models/clip/umt5_xxl_fp8.safetensors", "models/vae/wan_2.1_vae.safetensors",
                 "models/text_encoders/t5xxl.safetensors"):
        touch(install / name)
    config = tmp_path / "extra_model_paths.yaml"
    config.write_text(COMFY_YAML.format(base="ComfyUI"))  # relative to the file's folder
    previous = active_folders()
    yield install, config
    use_folders(previous)


def test_a_comfyui_install_is_read_through_its_yaml(comfy_install, tmp_path):
    install, config = comfy_install
    folders = use_folders(Folders.under(tmp_path / "kinema"))
    touch(folders.models / "diffusion_models" / "mine.safetensors")
    custom_nodes = load_extra_model_paths(config, folders)
    assert custom_nodes == [install / "custom_nodes"]
    # is_default: the install's folders come first; ComfyUI's names map onto Kinema's kinds.
    assert folder_paths.get_filename_list("diffusion_models") == [
        "mine.safetensors", "wan2.1_t2v_1.3B.safetensors"]
    assert folder_paths.get_full_path("unet", "wan2.1_t2v_1.3B.safetensors") == str(
        install / "models/unet/wan2.1_t2v_1.3B.safetensors")
    assert folder_paths.get_filename_list("text_encoders") == [
        "t5xxl.safetensors", "umt5_xxl_fp8.safetensors"]
    assert folders.model_kinds["loras"][0][-2:] == [
        Path.home() / "does-not-matter/models/Lora", Path.home() / "does-not-matter/models/LyCORIS"]


def test_comfyui_folder_names_inside_kinemas_models_folder(tmp_path):
    previous = active_folders()
    try:
        folders = use_folders(Folders.under(tmp_path))
        touch(folders.models / "unet" / "old_layout.safetensors")
        touch(folders.models / "clip" / "clip_l.safetensors")
        assert folder_paths.get_filename_list("diffusion_models") == ["old_layout.safetensors"]
        assert folder_paths.get_filename_list("text_encoders") == ["clip_l.safetensors"]
    finally:
        use_folders(previous)


def test_a_broken_yaml_is_a_clear_error(tmp_path):
    config = tmp_path / "extra_model_paths.yaml"
    config.write_text("comfyui: [not, a, mapping]\n")
    with pytest.raises(ExtraModelPathsError, match="section 'comfyui' is not a mapping"):
        load_extra_model_paths(config, Folders.under(tmp_path))
    config.write_text("comfyui:\n  base_path: [unclosed\n")
    with pytest.raises(ExtraModelPathsError, match="cannot read"):
        load_extra_model_paths(config, Folders.under(tmp_path))


def test_the_server_lists_the_installs_models(comfy_install, tmp_path):
    _, config = comfy_install
    base = tmp_path / "base"
    base.mkdir()
    with LiveServer(base, "--extra-model-paths", str(config)) as live:
        assert live.get("/models/diffusion_models") == ["wan2.1_t2v_1.3B.safetensors"]
        assert "sd15.safetensors" in live.get("/models/checkpoints")


def test_the_cli_refuses_a_broken_yaml_with_a_structured_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("- just\n- a list\n")
    workflow = ROOT / "workflows" / "image_basics.json"
    proc = subprocess.run([sys.executable, "server.py", "run", str(workflow), "--quiet",
                           "--output-dir", str(tmp_path / "out"), "--extra-model-paths",
                           str(bad)], cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 2
    assert json.loads(proc.stderr)["error"]["type"] == "invalid_extra_model_paths"
