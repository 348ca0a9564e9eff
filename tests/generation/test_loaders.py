"""Loading offline from models/: diffusers folders, single-file SD checkpoints in the original
layout, AnimateDiff motion adapters, and clear errors for missing, corrupt or foreign files."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import nodes
from engine.graph import PromptError, validate_prompt
from nodes.diffusion.families import checkpoint_family, folder_family
from nodes.diffusion.families.animatediff import load_motion_adapter, motion_version
from nodes.diffusion.loading import load_model
from nodes.diffusion.model_files import ModelLoadError
from nodes.loaders import KinemaModelLoader, MotionAdapterLoader, model_choices, motion_choices
from tests.generation.tiny_motion import build_motion_adapter, original_motion_state
from tests.generation.tiny_sd import build_sd_pipeline, write_ldm_checkpoint
from tests.generation.tiny_tokenizer import write_clip_tokenizer
from tests.generation.workspace import (
    CKPT,
    FOLDER,
    SAFETENSORS,
    registry,
)

COMPONENTS = ("unet", "vae", "text_encoder")


@pytest.fixture
def offline(monkeypatch):
    """Any attempt to open a network connection fails the test."""
    def refuse(*_args, **_kwargs):
        raise AssertionError("a loader tried to reach the network")
    monkeypatch.setattr(socket.socket, "connect", refuse)


def assert_same_weights(a, b) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("checkpoint", [SAFETENSORS, CKPT])
def test_single_file_and_folder_load_to_the_same_weights(workspace, offline, checkpoint):
    folder = load_model(workspace.models / "diffusers" / FOLDER, FOLDER)
    single = load_model(workspace.models / "checkpoints" / checkpoint, checkpoint)
    assert folder.family == single.family == "sd1"
    assert (folder.details["format"], single.details["format"]) == ("diffusers", "single-file")
    for component in COMPONENTS:
        assert_same_weights(getattr(folder.pipe, component), getattr(single.pipe, component))
        # ... which are the weights the tiny pipeline was saved with.
        assert_same_weights(getattr(workspace.pipe, component), getattr(single.pipe, component))
    assert dict(single.pipe.scheduler.config) == dict(folder.pipe.scheduler.config)
    assert single.pipe.tokenizer("a red circle").input_ids == \
        folder.pipe.tokenizer("a red circle").input_ids
    assert single.pipe.safety_checker is None and folder.pipe.safety_checker is None


def test_an_sd2_checkpoint_with_the_openclip_text_encoder_loads_as_sd2(tmp_path, offline):
    pipe = build_sd_pipeline(tmp_path / "tok", sd2=True)
    path = write_ldm_checkpoint(pipe, tmp_path / "sd2-tiny.safetensors")
    model = load_model(path, path.name)
    assert model.family == "sd2"
    for component in COMPONENTS:
        assert_same_weights(getattr(pipe, component), getattr(model.pipe, component))


def test_the_checkpoint_is_in_the_original_ldm_layout(workspace):
    from safetensors import safe_open
    with safe_open(str(workspace.models / "checkpoints" / SAFETENSORS), "pt") as f:
        keys = set(f.keys())
    for key in ("model.diffusion_model.input_blocks.0.0.weight",
                "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight",
                "model.diffusion_model.input_blocks.3.0.op.weight",
                "model.diffusion_model.middle_block.1.proj_in.weight",
                "model.diffusion_model.output_blocks.2.1.conv.weight",
                "first_stage_model.encoder.down.0.block.0.norm1.weight",
                "first_stage_model.decoder.mid.attn_1.q.weight",
                "cond_stage_model.transformer.text_model.embeddings.position_embedding.weight"):
        assert key in keys, key
    assert not any(k.startswith(("unet.", "vae.", "down_blocks.")) for k in keys)


def test_loader_node_lists_models_and_hides_sidecars_and_inner_files(workspace):
    assert model_choices() == [CKPT, SAFETENSORS, FOLDER]
    assert motion_choices() == ["tiny-v1-5", "tiny-v1-5.safetensors", "tiny-v2",
                                "tiny-v2.safetensors"]
    spec = KinemaModelLoader.INPUT_TYPES()["required"]["model"]
    assert spec[0] == model_choices() and spec[1]["default"] == CKPT


def test_loader_nodes_declare_inputs_when_no_models_exist(folders):
    assert KinemaModelLoader.INPUT_TYPES()["required"]["model"][0] == []
    assert MotionAdapterLoader.INPUT_TYPES()["required"]["motion_adapter"][0] == []
    registry_ = registry()
    for name in ("KinemaModelLoader", "MotionAdapterLoader", "KinemaTextEncode",
                 "KeyframeGenerator", "LatentDecode", "LatentEncode"):
        assert registry_.get(name).inputs(), name
        assert nodes.NODE_CLASS_MAPPINGS[name].CATEGORY.startswith("kinema/")


def test_a_missing_model_is_refused_before_running_with_where_to_put_it(workspace):
    prompt = {"1": {"class_type": "KinemaModelLoader", "inputs": {"model": "nope.safetensors"}},
              "2": {"class_type": "CaptureOutputs", "inputs": {"value": ["1", 0]}}}
    with pytest.raises(PromptError) as caught:
        validate_prompt(prompt, registry())
    details = str(caught.value.payload["node_errors"]["1"])
    assert "nope.safetensors" in details
    assert "models/checkpoints/" in details and "models/diffusers/<name>/" in details
    with pytest.raises(ModelLoadError, match="models/checkpoints/"):
        load_model(workspace.models / "checkpoints" / "nope.safetensors", "nope.safetensors")
    with pytest.raises(ModelLoadError, match="models/motion/"):
        load_motion_adapter(workspace.models / "motion" / "nope.ckpt", "nope.ckpt")


@pytest.mark.parametrize("suffix", [".safetensors", ".ckpt"])
def test_a_truncated_file_gives_a_clear_error(workspace, tmp_path, suffix):
    whole = (workspace.models / "checkpoints" / f"tiny-sd{suffix}").read_bytes()
    broken = tmp_path / f"broken{suffix}"
    broken.write_bytes(whole[: len(whole) // 3])
    with pytest.raises(ModelLoadError, match="truncated or corrupt") as caught:
        load_model(broken, broken.name)
    assert "models/checkpoints/" in str(caught.value)


class Payload:
    """Stands for any object a pickle could smuggle in (and run code while loading)."""


def test_a_pickle_with_objects_other_than_tensors_is_never_unpickled(tmp_path):
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "payload": Payload()}, str(path))
    with pytest.raises(ModelLoadError, match=r"weights_only=True"):
        load_model(path, path.name)


def test_a_foreign_file_names_the_expected_families_and_folders(tmp_path):
    path = tmp_path / "resnet.safetensors"
    save_file({"conv1.weight": torch.zeros(2, 3, 3, 3), "fc.bias": torch.zeros(2)}, str(path))
    with pytest.raises(ModelLoadError) as caught:
        load_model(path, path.name)
    message = str(caught.value)
    for expected in ("Stable Diffusion 1.x", "models/checkpoints/", "models/diffusers/<name>/",
                     "models/motion/", "conv1.weight"):
        assert expected in message


@pytest.mark.parametrize(("keys", "family_or_error"), [
    ({"model.diffusion_model.input_blocks.0.0.weight": (320, 4, 3, 3),
      "cond_stage_model.transformer.text_model.final_layer_norm.weight": (768,)}, "sd1"),
    ({"model.diffusion_model.input_blocks.0.0.weight": (320, 4, 3, 3),
      "cond_stage_model.model.ln_final.weight": (1024,)}, "sd2"),
    ({"conditioner.embedders.0.open_clip.model.visual.proj": (1280, 1024),
      "model.diffusion_model.input_blocks.1.0.time_stack.in_layers.0.weight": (320,)},
     "Stable Video Diffusion.*models/diffusers/<name>/"),
    ({"conditioner.embedders.1.model.ln_final.weight": (1280,),
      "model.diffusion_model.input_blocks.0.0.weight": (320, 4, 3, 3)}, "SDXL"),
    ({"down_blocks.0.motion_modules.0.temporal_transformer.norm.weight": (320,)},
     "motion module.*models/motion/"),
    ({"model.diffusion_model.input_blocks.0.0.weight": (320, 9, 3, 3),
      "cond_stage_model.transformer.text_model.final_layer_norm.weight": (768,)}, "inpainting"),
    ({"model.diffusion_model.input_blocks.0.0.weight": (320, 4, 3, 3)}, "no text encoder"),
])
def test_the_family_is_told_from_the_keys(keys, family_or_error):
    if family_or_error in ("sd1", "sd2"):
        assert checkpoint_family("x", keys)[1] == family_or_error
    else:
        with pytest.raises(ModelLoadError, match=family_or_error):
            checkpoint_family("x", keys)


def test_a_diffusers_folder_is_sd2_when_it_conditions_on_1024_wide_text(tmp_path):
    import json
    (tmp_path / "unet").mkdir()
    (tmp_path / "model_index.json").write_text(json.dumps(
        {"_class_name": "StableDiffusionPipeline"}))
    for width, family in ((768, "sd1"), (1024, "sd2")):
        (tmp_path / "unet" / "config.json").write_text(json.dumps(
            {"cross_attention_dim": width}))
        assert folder_family(tmp_path)[1:] == (family, "StableDiffusionPipeline")
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "FluxPipeline"}))
    with pytest.raises(ModelLoadError, match="not a family Kinema runs"):
        folder_family(tmp_path)


def test_a_checkpoint_that_does_not_fit_the_shipped_config_asks_for_a_sidecar(tmp_path):
    pipe = build_sd_pipeline(tmp_path / "tok")
    path = write_ldm_checkpoint(pipe, tmp_path / "finetune.safetensors")
    import shutil
    shutil.rmtree(tmp_path / "finetune.config")  # → the real SD 1.x shapes: nothing fits
    with pytest.raises(ModelLoadError, match=r"sidecar folder finetune\.config/"):
        load_model(path, path.name)


def test_without_tokenizer_files_the_error_says_where_to_put_them(tmp_path, folders):
    pipe = build_sd_pipeline(tmp_path / "tok")
    path = write_ldm_checkpoint(pipe, folders.models / "checkpoints" / "notok.safetensors",
                                with_tokenizer=False)
    with pytest.raises(ModelLoadError, match="models/text_encoders/clip-tokenizer/"):
        load_model(path, path.name)
    # The shared vocabulary folder serves every single-file model; the family sets padding.
    write_clip_tokenizer(folders.models / "text_encoders" / "clip-tokenizer")
    model = load_model(path, path.name)
    assert model.pipe.tokenizer.model_max_length == 77
    assert model.pipe.tokenizer("a red circle").input_ids == \
        pipe.tokenizer("a red circle").input_ids


def test_motion_adapter_file_and_folder_load_to_the_same_weights(workspace, offline):
    for name, version in (("tiny-v1-5", "v1-5"), ("tiny-v2", "v2")):
        folder = load_motion_adapter(workspace.models / "motion" / name, name)
        single = load_motion_adapter(workspace.models / "motion" / f"{name}.safetensors", name)
        assert folder.version == single.version == version
        assert_same_weights(folder.adapter, single.adapter)


@pytest.mark.parametrize(("frames", "mid", "version"), [
    (24, False, "v1-5"), (32, True, "v2"), (32, False, "v3")])
def test_the_motion_version_is_told_from_keys_and_shapes(frames, mid, version):
    adapter = build_motion_adapter(max_frames=frames, mid_block=mid)
    state = original_motion_state(adapter)
    assert motion_version("x", {k: tuple(v.shape) for k, v in state.items()}) == version
    diffusers_layout = {k: tuple(v.shape) for k, v in adapter.state_dict().items()}
    assert motion_version("x", diffusers_layout) == version


def test_a_motion_adapter_without_sidecar_uses_the_shipped_config_for_its_version(tmp_path):
    from tests.generation.tiny_motion import write_original_motion_file
    path = write_original_motion_file(build_motion_adapter(max_frames=32, mid_block=True),
                                      tmp_path / "mm.safetensors", sidecar=False)
    # The tiny shapes are not the real v2's: the shipped v2 config is tried, and refused.
    with pytest.raises(ModelLoadError, match=r"AnimateDiff v2.*sidecar folder mm\.config/"):
        load_motion_adapter(path, path.name)


def test_a_checkpoint_in_the_motion_folder_is_refused_clearly(workspace):
    path = workspace.models / "checkpoints" / SAFETENSORS
    with pytest.raises(ModelLoadError, match="not an AnimateDiff motion module"):
        load_motion_adapter(path, path.name)


def test_comfyui_scaled_fp8_files_are_read_with_their_scales(tmp_path):
    from nodes.diffusion.weights import dequantize_fp8, read_state_dict

    torch.manual_seed(0)
    weight, bias = torch.randn(16, 8) * 0.02, torch.randn(16)
    scale = weight.abs().max() / 448  # the largest float8_e4m3fn value
    save_file({"blocks.0.proj.weight": (weight / scale).to(torch.float8_e4m3fn),
               "blocks.0.proj.scale_weight": scale.reshape(()),
               "blocks.0.proj.scale_input": torch.ones(()),
               "blocks.0.proj.bias": bias.to(torch.bfloat16),
               "blocks.1.norm.weight": torch.ones(8).to(torch.float8_e4m3fn),
               "scaled_fp8": torch.zeros(0, dtype=torch.float8_e4m3fn)},
              str(tmp_path / "wan_fp8_scaled.safetensors"))
    state = dequantize_fp8(read_state_dict(tmp_path / "wan_fp8_scaled.safetensors",
                                           "models/diffusion_models/"), torch.float32)
    assert sorted(state) == ["blocks.0.proj.bias", "blocks.0.proj.weight",
                             "blocks.1.norm.weight"]
    # fp8 keeps about 3 significant bits: within an eighth of each value, scale applied.
    error = (state["blocks.0.proj.weight"] - weight).abs()
    assert bool((error <= weight.abs() / 8 + scale).all())
    assert state["blocks.0.proj.weight"].abs().max() < 1  # the raw fp8 values reach 448
    assert state["blocks.1.norm.weight"].tolist() == [1.0] * 8
    assert state["blocks.0.proj.bias"].dtype == torch.bfloat16  # only fp8 is converted


def test_an_fp8_scaled_checkpoint_loads_close_to_the_full_one(workspace, offline, tmp_path):
    state = load_file(str(workspace.models / "checkpoints" / SAFETENSORS))
    scaled: dict[str, torch.Tensor] = {"scaled_fp8": torch.zeros(0, dtype=torch.float8_e4m3fn)}
    for key, value in state.items():
        if key.endswith(".weight") and value.dim() >= 2:
            scale = value.abs().max().clamp(min=1e-12) / 448
            scaled[key] = (value / scale).to(torch.float8_e4m3fn)
            scaled[key.removesuffix("weight") + "scale_weight"] = scale.float()
        else:
            scaled[key] = value
    path = tmp_path / "sd15_fp8_e4m3fn_scaled.safetensors"
    save_file(scaled, str(path))
    # The tiny model's shapes come from its sidecar configs, as a fine-tune's would.
    sidecar = workspace.models / "checkpoints" / (Path(SAFETENSORS).stem + ".config")
    shutil.copytree(sidecar, tmp_path / (path.stem + ".config"))
    full = load_model(workspace.models / "checkpoints" / SAFETENSORS, SAFETENSORS)
    fp8 = load_model(path, path.name)
    for component in COMPONENTS:
        a = getattr(full.pipe, component).state_dict()
        b = getattr(fp8.pipe, component).state_dict()
        assert a.keys() == b.keys()
        for key in a:
            assert b[key].dtype == a[key].dtype
            assert float((a[key] - b[key]).abs().max()) <= float(a[key].abs().max()) / 8 + 1e-6
