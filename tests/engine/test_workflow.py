"""Workflow JSON: parsing both formats, the canvas rules of ComfyUI's frontend, round trips."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.registry import NodeRegistry
from engine.workflow import (
    WorkflowError,
    api_to_canvas,
    canvas_to_api,
    check_api,
    parse_workflow,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "workflows"


class _Node:
    FUNCTION = "run"
    CATEGORY = "test"
    RETURN_TYPES: ClassVar[tuple] = ()

    def run(self, **kwargs: Any) -> tuple:
        return ()


class LoadImage(_Node):
    RETURN_TYPES = ("IMAGE", "MASK")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": (["example.png", "cat.png"], {"image_upload": True})}}


class LoadImageMask(_Node):
    RETURN_TYPES = ("MASK",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": (["example.png"], {"image_upload": True}),
                             "channel": (["alpha", "red", "green", "blue"],)}}


class LoadVideo(_Node):
    RETURN_TYPES = ("IMAGE",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"video": (["clip.mp4"], {"video_upload": True})},
                "optional": {"frame_cap": ("INT", {"default": 0})}}


class ImageScale(_Node):
    RETURN_TYPES = ("IMAGE",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "image": ("IMAGE",),
            "upscale_method": (["nearest-exact", "bilinear", "area", "bicubic", "lanczos"],),
            "width": ("INT", {"default": 512, "min": 0, "max": 16384, "step": 1}),
            "height": ("INT", {"default": 512, "min": 0, "max": 16384, "step": 1}),
            "crop": (["disabled", "center"],)}}


class ImageInvert(_Node):
    RETURN_TYPES = ("IMAGE",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE",)}}


class ImageBlend(_Node):
    RETURN_TYPES = ("IMAGE",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image1": ("IMAGE",), "image2": ("IMAGE",),
                             "blend_factor": ("FLOAT", {"default": 0.5})}}


class SaveImage(_Node):
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"images": ("IMAGE",),
                             "filename_prefix": ("STRING", {"default": "ComfyUI"})},
                "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}}


class PreviewImage(_Node):
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"images": ("IMAGE",)}}


class CheckpointLoader(_Node):
    RETURN_TYPES = ("MODEL", "CLIP", "VAE")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"ckpt_name": (["tiny.safetensors", "big.safetensors"],)}}


class CLIPTextEncode(_Node):
    RETURN_TYPES = ("CONDITIONING",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"text": ("STRING", {"multiline": True}), "clip": ("CLIP",)}}


class EmptyLatentImage(_Node):
    RETURN_TYPES = ("LATENT",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"width": ("INT", {"default": 512}),
                             "height": ("INT", {"default": 512}),
                             "batch_size": ("INT", {"default": 1})}}


class KSampler(_Node):
    RETURN_TYPES = ("LATENT",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL",),
            "seed": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF}),
            "steps": ("INT", {"default": 20}),
            "cfg": ("FLOAT", {"default": 8.0}),
            "sampler_name": (["euler", "dpmpp_2m"],),
            "scheduler": (["normal", "karras"],),
            "positive": ("CONDITIONING",),
            "negative": ("CONDITIONING",),
            "latent_image": ("LATENT",),
            "denoise": ("FLOAT", {"default": 1.0})}}


class VAEDecode(_Node):
    RETURN_TYPES = ("IMAGE",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"samples": ("LATENT",), "vae": ("VAE",)}}


class Jitter(_Node):
    """A control_after_generate INT not named seed, a controlled combo, a forceInput INT."""

    RETURN_TYPES = ("IMAGE", "INT")
    RETURN_NAMES = ("image", "amount")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE",),
                             "amount": ("INT", {"default": 3, "control_after_generate": True}),
                             "style": (["soft", "hard"], {"control_after_generate": True}),
                             "frames": ("INT", {"forceInput": True})},
                "optional": {"mask": ("MASK",),
                             "label": ("STRING", {"default": "j"}),
                             "enabled": ("BOOLEAN", {"default": True})}}


class IntConstant(_Node):
    RETURN_TYPES = ("INT",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("INT", {"default": 0})}}


TEST_NODES = [LoadImage, LoadImageMask, LoadVideo, ImageScale, ImageInvert, ImageBlend,
              SaveImage, PreviewImage, CheckpointLoader, CLIPTextEncode, EmptyLatentImage,
              KSampler, VAEDecode, Jitter, IntConstant]


@pytest.fixture(scope="module")
def registry() -> NodeRegistry:
    reg = NodeRegistry()
    for cls in TEST_NODES:
        reg.register(cls.__name__, cls, display_name=f"{cls.__name__} (test)")
    return reg


def strip_meta(prompt: dict[str, Any]) -> dict[str, Any]:
    return {k: {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in prompt.items()}


def canvas_node(nid: int, type_: str, *, inputs=(), outputs=(), widgets=None, mode=0,
                title=None) -> dict[str, Any]:
    node: dict[str, Any] = {"id": nid, "type": type_, "pos": [0, 0], "size": [200, 100],
                            "flags": {}, "order": nid, "mode": mode, "properties": {},
                            "inputs": [dict(i) for i in inputs],
                            "outputs": [dict(o) for o in outputs]}
    if widgets is not None:
        node["widgets_values"] = widgets
    if title:
        node["title"] = title
    return node


def inp(name: str, type_: str, link: int | None, widget: bool = False) -> dict[str, Any]:
    slot: dict[str, Any] = {"name": name, "type": type_, "link": link}
    if widget:
        slot["widget"] = {"name": name}
    return slot


def out(type_: str, links: list[int], slot: int = 0) -> dict[str, Any]:
    return {"name": type_, "type": type_, "links": links, "slot_index": slot}


TXT2IMG: dict[str, Any] = {
    "4": {"class_type": "CheckpointLoader", "inputs": {"ckpt_name": "tiny.safetensors"}},
    "5": {"class_type": "EmptyLatentImage",
          "inputs": {"width": 512, "height": 512, "batch_size": 1}},
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat", "clip": ["4", 1]}},
    "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["4", 1]}},
    "3": {"class_type": "KSampler",
          "inputs": {"seed": 156680208700286, "steps": 20, "cfg": 8.0, "sampler_name": "euler",
                     "scheduler": "normal", "denoise": 1.0, "model": ["4", 0],
                     "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]}},
    "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
    "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI",
                                                "images": ["8", 0]}},
}


# --- the fixture file -------------------------------------------------------------------------

def test_fixture_canvas_file(registry):
    text = (FIXTURES / "load_scale_invert_save.json").read_text()
    prompt = parse_workflow(text, registry)
    assert prompt == {
        "1": {"class_type": "LoadImage", "inputs": {"image": "example.png"},
              "_meta": {"title": "LoadImage (test)"}},
        "3": {"class_type": "ImageScale",
              "inputs": {"upscale_method": "nearest-exact", "width": 512, "height": 512,
                         "crop": "disabled", "image": ["1", 0]},
              "_meta": {"title": "Scale to 512"}},
        "5": {"class_type": "SaveImage",
              "inputs": {"filename_prefix": "inverted/ComfyUI", "images": ["3", 0]},
              "_meta": {"title": "SaveImage (test)"}},
    }


def test_fixture_round_trips_through_canvas(registry):
    prompt = parse_workflow((FIXTURES / "load_scale_invert_save.json").read_bytes(), registry)
    assert canvas_to_api(api_to_canvas(prompt, registry), registry) == prompt


# --- format detection -------------------------------------------------------------------------

def test_api_format_as_is_with_string_ids(registry):
    raw = {3: {"class_type": "ImageInvert", "inputs": {"image": [2, 0]}},
           "2": {"class_type": "LoadImage", "inputs": {"image": "cat.png"}}}
    prompt = parse_workflow(raw, registry)
    assert prompt == {"3": {"class_type": "ImageInvert", "inputs": {"image": ["2", 0]}},
                      "2": {"class_type": "LoadImage", "inputs": {"image": "cat.png"}}}
    assert parse_workflow(json.dumps(TXT2IMG), registry) == TXT2IMG


def test_prompt_wrapper(registry):
    body = {"prompt": TXT2IMG, "client_id": "abc", "extra_data": {}}
    assert parse_workflow(json.dumps(body).encode(), registry) == TXT2IMG
    canvas = api_to_canvas(TXT2IMG, registry)
    assert strip_meta(parse_workflow({"prompt": canvas}, registry)) == TXT2IMG


def test_node_called_prompt_is_not_a_wrapper(registry):
    raw = {"prompt": {"class_type": "IntConstant", "inputs": {"value": 1}}}
    assert parse_workflow(raw, registry) == raw


def test_empty_api_prompt(registry):
    assert parse_workflow("{}", registry) == {}


# --- errors -----------------------------------------------------------------------------------

@pytest.mark.parametrize("text", ["{", "", "nul", b"\xff\xfe{", "[" * 100000])
def test_malformed_json(registry, text):
    with pytest.raises(WorkflowError) as info:
        parse_workflow(text, registry)
    assert info.value.error["type"] == "malformed_json"
    assert set(info.value.error) == {"type", "message", "details", "extra_info"}


@pytest.mark.parametrize("data", [
    "[]", "3", '"x"', "null",
    {"1": "not a node"},
    {"1": {"inputs": {}}},
    {"1": {"class_type": 3, "inputs": {}}},
    {"1": {"class_type": "X", "inputs": []}},
    {"nodes": [1, 2], "links": []},
    {"nodes": [{"id": 1}], "links": []},
    {"nodes": [{"type": "LoadImage"}], "links": []},
    {"nodes": [{"id": [1], "type": "LoadImage"}], "links": []},
    {"nodes": [{"id": 1, "type": "X"}, {"id": 1, "type": "Y"}], "links": []},
    {"nodes": [{"id": 1, "type": "X", "inputs": "nope"}], "links": []},
    {"nodes": [{"id": 1, "type": "X", "inputs": [3]}], "links": []},
    {"nodes": [], "links": {"1": []}},
    {"nodes": [], "links": [[1, 2]]},
    {"nodes": [], "links": ["abc"]},
    {"nodes": [], "links": [[None, 1, 0, 2, 0, "IMAGE"]]},
    {"nodes": [], "links": [[1, 1, "0", 2, 0, "IMAGE"]]},
    {"nodes": [], "links": [{"id": 1, "origin_id": None, "origin_slot": 0}]},
])
def test_wrong_shapes(registry, data):
    with pytest.raises(WorkflowError) as info:
        parse_workflow(data, registry)
    assert info.value.error["type"] == "invalid_prompt"
    assert info.value.error["message"]
    assert isinstance(info.value.error["extra_info"], dict)


def test_error_from_a_ready_error_dict():
    exc = WorkflowError({"type": "invalid_prompt", "message": "no workflow", "details": "a.png",
                         "extra_info": {"x": 1}})
    assert str(exc) == "no workflow"
    assert exc.error == {"type": "invalid_prompt", "message": "no workflow", "details": "a.png",
                         "extra_info": {"x": 1}}
    assert WorkflowError("m", type="t").error == {"type": "t", "message": "m", "details": "",
                                                   "extra_info": {}}


def test_link_to_missing_link_or_node(registry):
    missing_link = {"nodes": [canvas_node(1, "ImageInvert",
                                          inputs=[inp("image", "IMAGE", 9)])], "links": []}
    with pytest.raises(WorkflowError) as info:
        parse_workflow(missing_link, registry)
    assert info.value.error["extra_info"]["link_id"] == 9
    assert "node 1 input 'image'" in info.value.error["details"]
    missing_node = copy.deepcopy(missing_link)
    missing_node["links"] = [[9, 42, 0, 1, 0, "IMAGE"]]
    with pytest.raises(WorkflowError) as info:
        parse_workflow(missing_node, registry)
    assert info.value.error["extra_info"]["node_id"] == "42"


def test_reroute_loop_is_an_error(registry):
    canvas = {"nodes": [
        canvas_node(1, "Reroute", inputs=[inp("", "*", 2)], outputs=[out("*", [1])]),
        canvas_node(2, "Reroute", inputs=[inp("", "*", 1)], outputs=[out("*", [2, 3])]),
        canvas_node(3, "ImageInvert", inputs=[inp("image", "IMAGE", 3)])],
        "links": [[1, 1, 0, 2, 0, "*"], [2, 2, 0, 1, 0, "*"], [3, 2, 0, 3, 0, "IMAGE"]]}
    with pytest.raises(WorkflowError, match="loops"):
        canvas_to_api(canvas, registry)


def test_garbage_inside_nodes_is_a_workflow_error(registry):
    canvas = {"nodes": [canvas_node(1, "ImageInvert", inputs=[inp("image", "IMAGE", 1)]),
                        {"id": 2, "type": "Reroute", "inputs": [], "mode": 0,
                         "outputs": [out("*", [1])]},
                        {"id": 3, "type": "SaveImage", "widgets_values": 7, "mode": [1]}],
              "links": [[1, 2, 0, 1, 0, "IMAGE"]]}
    prompt = canvas_to_api(canvas, registry)  # an unlinked reroute drops the input
    assert prompt["1"]["inputs"] == {}
    assert prompt["3"]["inputs"] == {}
    canvas["nodes"][1]["inputs"] = [{"name": "", "link": {"x": 1}}]
    with pytest.raises(WorkflowError):
        canvas_to_api(canvas, registry)
    with pytest.raises(WorkflowError):
        canvas_to_api([], registry)  # type: ignore[arg-type]
    with pytest.raises(WorkflowError):
        api_to_canvas({"1": None}, registry)  # type: ignore[dict-item]


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                    lambda c: st.lists(c, max_size=4) | st.dictionaries(
                        st.sampled_from(["nodes", "links", "id", "type", "inputs", "outputs",
                                         "link", "mode", "widgets_values", "prompt", "name",
                                         "class_type", "1", "origin_id"]), c, max_size=5),
                    max_leaves=30))
def test_fuzz_only_workflow_errors(registry, data):
    try:
        parse_workflow(data, registry)
    except WorkflowError as exc:
        assert exc.error["type"] in {"invalid_prompt", "malformed_json"}


# --- canvas rules -----------------------------------------------------------------------------

def test_widgets_skip_seed_control_value(registry):
    canvas = {"nodes": [
        canvas_node(3, "KSampler", inputs=[inp("model", "MODEL", None)],
                    widgets=[42, "randomize", 30, 6.5, "dpmpp_2m", "karras", 0.75])],
        "links": []}
    inputs = canvas_to_api(canvas, registry)["3"]["inputs"]
    assert inputs == {"seed": 42, "steps": 30, "cfg": 6.5, "sampler_name": "dpmpp_2m",
                      "scheduler": "karras", "denoise": 0.75}


def test_widgets_without_control_value_still_map(registry):
    canvas = {"nodes": [canvas_node(3, "KSampler",
                                    widgets=[42, 30, 6.5, "dpmpp_2m", "karras", 0.75])],
              "links": []}
    assert canvas_to_api(canvas, registry)["3"]["inputs"]["steps"] == 30


def test_control_option_and_controlled_combo_filter(registry):
    # amount (INT with control_after_generate) + control; style (combo) + control + filter.
    canvas = {"nodes": [canvas_node(1, "Jitter", widgets=[
        7, "increment", "hard", "increment-wrap", "", "label", False])], "links": []}
    inputs = canvas_to_api(canvas, registry)["1"]["inputs"]
    assert inputs == {"amount": 7, "style": "hard", "label": "label", "enabled": False}


@pytest.mark.parametrize(("node", "values", "expected"), [
    ("LoadImage", ["cat.png", "image"], {"image": "cat.png"}),
    ("LoadImage", ["cat.png"], {"image": "cat.png"}),
    ("LoadImage", ["cat.png", None], {"image": "cat.png"}),
    ("LoadImageMask", ["example.png", "red", "image"], {"image": "example.png",
                                                        "channel": "red"}),
    ("LoadVideo", ["clip.mp4", "video", 16], {"video": "clip.mp4", "frame_cap": 16}),
    ("LoadVideo", ["clip.mp4", 16], {"video": "clip.mp4", "frame_cap": 16}),
])
def test_upload_value_skipped(registry, node, values, expected):
    canvas = {"nodes": [canvas_node(1, node, widgets=values)], "links": []}
    assert canvas_to_api(canvas, registry)["1"]["inputs"] == expected


def test_widgets_values_as_dict(registry):
    canvas = {"nodes": [
        canvas_node(1, "ImageScale", widgets={"upscale_method": "area", "width": 64,
                                              "height": 32, "crop": "center",
                                              "control_after_generate": "fixed"}),
        canvas_node(2, "SomePluginNode", widgets={"speed": 2})], "links": []}
    prompt = canvas_to_api(canvas, registry)
    assert prompt["1"]["inputs"] == {"upscale_method": "area", "width": 64, "height": 32,
                                     "crop": "center"}
    assert prompt["2"]["inputs"] == {"speed": 2}


def test_converted_widget_takes_the_link(registry):
    canvas = {"nodes": [
        canvas_node(1, "IntConstant", outputs=[out("INT", [1])], widgets=[5]),
        canvas_node(2, "KSampler", inputs=[inp("model", "MODEL", None),
                                           inp("seed", "INT", 1, widget=True)],
                    widgets=[42, "fixed", 30, 6.5, "euler", "normal", 1.0]),
    ], "links": [[1, 1, 0, 2, 1, "INT"]]}
    inputs = canvas_to_api(canvas, registry)["2"]["inputs"]
    assert inputs["seed"] == ["1", 0]
    assert inputs["steps"] == 30 and inputs["denoise"] == 1.0


def test_new_frontend_widget_sockets_unlinked_keep_values(registry):
    canvas = {"nodes": [canvas_node(1, "ImageScale", inputs=[
        inp("image", "IMAGE", None), inp("upscale_method", "COMBO", None, widget=True),
        inp("width", "INT", None, widget=True), inp("height", "INT", None, widget=True)],
        widgets=["bicubic", 10, 20, "center"])], "links": []}
    assert canvas_to_api(canvas, registry)["1"]["inputs"] == {
        "upscale_method": "bicubic", "width": 10, "height": 20, "crop": "center"}


def test_mute_drops_node_and_its_links(registry):
    canvas = {"nodes": [
        canvas_node(1, "LoadImage", outputs=[out("IMAGE", [1])], widgets=["cat.png", "image"],
                    mode=2),
        canvas_node(2, "ImageInvert", inputs=[inp("image", "IMAGE", 1)],
                    outputs=[out("IMAGE", [])]),
    ], "links": [[1, 1, 0, 2, 0, "IMAGE"]]}
    assert canvas_to_api(canvas, registry) == {
        "2": {"class_type": "ImageInvert", "inputs": {}, "_meta": {"title": "ImageInvert (test)"}}}


def test_bypass_passes_matching_input_through(registry):
    canvas = {"nodes": [
        canvas_node(1, "LoadImage", outputs=[out("IMAGE", [1]), out("MASK", [2], 1)],
                    widgets=["cat.png", "image"]),
        canvas_node(2, "Jitter", mode=4,
                    inputs=[inp("image", "IMAGE", 1), inp("frames", "INT", None),
                            inp("mask", "MASK", 2)],
                    outputs=[out("IMAGE", [3]), out("INT", [4], 1)],
                    widgets=[1, "fixed", "soft", "fixed", "", "j", True]),
        canvas_node(3, "ImageInvert", inputs=[inp("image", "IMAGE", 3)]),
        canvas_node(4, "IntConstant", inputs=[inp("value", "INT", 4, widget=True)],
                    widgets=[9]),
    ], "links": [[1, 1, 0, 2, 0, "IMAGE"], [2, 1, 1, 2, 2, "MASK"], [3, 2, 0, 3, 0, "IMAGE"],
                 [4, 2, 1, 4, 0, "INT"]]}
    prompt = canvas_to_api(canvas, registry)
    assert "2" not in prompt
    assert prompt["3"]["inputs"] == {"image": ["1", 0]}
    # The bypassed INT output has an unlinked INT input to pass: the input is dropped.
    assert prompt["4"]["inputs"] == {}


def test_bypass_with_no_matching_type_drops_input(registry):
    canvas = {"nodes": [
        canvas_node(1, "EmptyLatentImage", outputs=[out("LATENT", [1])], widgets=[8, 8, 1]),
        canvas_node(2, "VAEDecode", mode=4, inputs=[inp("samples", "LATENT", 1),
                                                    inp("vae", "VAE", None)],
                    outputs=[out("IMAGE", [2])]),
        canvas_node(3, "SaveImage", inputs=[inp("images", "IMAGE", 2)], widgets=["x"]),
    ], "links": [[1, 1, 0, 2, 0, "LATENT"], [2, 2, 0, 3, 0, "IMAGE"]]}
    assert canvas_to_api(canvas, registry)["3"]["inputs"] == {"filename_prefix": "x"}


def test_bypass_chain_through_reroutes(registry):
    canvas = {"nodes": [
        canvas_node(1, "LoadImage", outputs=[out("IMAGE", [1])], widgets=["cat.png", "image"]),
        canvas_node(2, "Reroute", inputs=[inp("", "*", 1)], outputs=[out("IMAGE", [2])]),
        canvas_node(3, "ImageInvert", mode=4, inputs=[inp("image", "IMAGE", 2)],
                    outputs=[out("IMAGE", [3])]),
        canvas_node(4, "Reroute", inputs=[inp("", "*", 3)], outputs=[out("IMAGE", [4])]),
        canvas_node(5, "Reroute", inputs=[inp("", "*", 4)], outputs=[out("IMAGE", [5, 6])]),
        canvas_node(6, "ImageInvert", mode=4, inputs=[inp("image", "IMAGE", 5)],
                    outputs=[out("IMAGE", [7])]),
        canvas_node(7, "SaveImage", inputs=[inp("images", "IMAGE", 7)], widgets=["a"]),
        canvas_node(8, "PreviewImage", inputs=[inp("images", "IMAGE", 6)]),
    ], "links": [[1, 1, 0, 2, 0, "*"], [2, 2, 0, 3, 0, "IMAGE"], [3, 3, 0, 4, 0, "*"],
                 [4, 4, 0, 5, 0, "*"], [5, 5, 0, 6, 0, "IMAGE"], [6, 5, 0, 8, 0, "IMAGE"],
                 [7, 6, 0, 7, 0, "IMAGE"]]}
    prompt = canvas_to_api(canvas, registry)
    assert sorted(prompt) == ["1", "7", "8"]
    assert prompt["7"]["inputs"]["images"] == ["1", 0]
    assert prompt["8"]["inputs"]["images"] == ["1", 0]


def test_link_objects_schema_v1(registry):
    canvas = {"version": 1, "state": {"lastNodeId": 3, "lastLinkId": 2}, "nodes": [
        canvas_node(1, "LoadImage", outputs=[out("IMAGE", [1])], widgets=["cat.png", "image"]),
        canvas_node(2, "Reroute", inputs=[inp("", "*", 1)], outputs=[out("IMAGE", [2])]),
        canvas_node(3, "ImageInvert", inputs=[inp("image", "IMAGE", 2)]),
    ], "links": [
        {"id": 1, "origin_id": 1, "origin_slot": 0, "target_id": 2, "target_slot": 0,
         "type": "*"},
        {"id": 2, "origin_id": 2, "origin_slot": 0, "target_id": 3, "target_slot": 0,
         "type": "IMAGE", "parentId": 5}]}
    assert parse_workflow(canvas, registry)["3"]["inputs"] == {"image": ["1", 0]}


def test_primitive_node_value_written_into_targets(registry):
    canvas = {"nodes": [
        canvas_node(1, "PrimitiveNode", outputs=[{"name": "INT", "type": "INT", "links": [1, 2],
                                                 "widget": {"name": "seed"}}],
                    widgets=[1234, "fixed"], title="Seed"),
        canvas_node(2, "KSampler", inputs=[inp("seed", "INT", 1, widget=True)],
                    widgets=[1, "fixed", 30, 6.5, "euler", "normal", 1.0]),
        canvas_node(3, "EmptyLatentImage", inputs=[inp("width", "INT", 2, widget=True)],
                    widgets=[64, 64, 1]),
        canvas_node(4, "PrimitiveNode", outputs=[{"name": "connect to widget input",
                                                 "type": "*", "links": [3]}]),
        canvas_node(5, "EmptyLatentImage", inputs=[inp("height", "INT", 3, widget=True)],
                    widgets=[64, 99, 1]),
        canvas_node(6, "MarkdownNote", widgets=["# hi"]),
    ], "links": [[1, 1, 0, 2, 0, "INT"], [2, 1, 0, 3, 0, "INT"], [3, 4, 0, 5, 0, "INT"]]}
    prompt = canvas_to_api(canvas, registry)
    assert sorted(prompt) == ["2", "3", "5"]
    assert prompt["2"]["inputs"]["seed"] == 1234
    assert prompt["3"]["inputs"] == {"width": 1234, "height": 64, "batch_size": 1}
    assert prompt["5"]["inputs"]["height"] == 99  # an empty primitive leaves the widget value


def test_unknown_types_convert_with_links_only(registry):
    canvas = {"nodes": [
        canvas_node(1, "LoadImage", outputs=[out("IMAGE", [1])], widgets=["cat.png", "image"]),
        canvas_node(2, "MysteryNode", inputs=[inp("pixels", "IMAGE", 1)],
                    outputs=[out("IMAGE", [2])], widgets=[1, "x", True]),
        canvas_node(3, "SaveImage", inputs=[inp("images", "IMAGE", 2)], widgets=["a"]),
    ], "links": [[1, 1, 0, 2, 0, "IMAGE"], [2, 2, 0, 3, 0, "IMAGE"]]}
    prompt = canvas_to_api(canvas, registry)
    assert prompt["2"] == {"class_type": "MysteryNode", "inputs": {"pixels": ["1", 0]},
                           "_meta": {"title": "MysteryNode"}}
    assert prompt["3"]["inputs"]["images"] == ["2", 0]


def test_titles_and_string_node_ids(registry):
    canvas = {"nodes": [canvas_node(1, "IntConstant", widgets=[1], title="Frames"),
                        {**canvas_node(2, "IntConstant", widgets=[2]), "id": "10:2"}],
              "links": []}
    prompt = canvas_to_api(canvas, registry)
    assert prompt["1"]["_meta"] == {"title": "Frames"}
    assert prompt["10:2"]["_meta"] == {"title": "IntConstant (test)"}


# --- API -> canvas ----------------------------------------------------------------------------

def test_api_to_canvas_shape(registry):
    canvas = api_to_canvas(TXT2IMG, registry)
    assert set(canvas) == {"last_node_id", "last_link_id", "nodes", "links", "groups",
                           "config", "extra", "version"}
    assert canvas["last_node_id"] == 9 and canvas["last_link_id"] == len(canvas["links"]) == 9
    nodes = {n["id"]: n for n in canvas["nodes"]}
    ks = nodes[3]
    assert ks["widgets_values"] == [156680208700286, "fixed", 20, 8.0, "euler", "normal", 1.0]
    assert [i["name"] for i in ks["inputs"]] == ["model", "positive", "negative",
                                                 "latent_image"]
    assert ks["properties"] == {"Node name for S&R": "KSampler"}
    assert ks["mode"] == 0 and ks["flags"] == {} and ks["title"] == "KSampler (test)"
    ckpt = nodes[4]
    assert [o["links"] for o in ckpt["outputs"]] == [[ks["inputs"][0]["link"]],
                                                     [nodes[6]["inputs"][0]["link"],
                                                      nodes[7]["inputs"][0]["link"]],
                                                     [nodes[8]["inputs"][1]["link"]]]
    assert [o["slot_index"] for o in ckpt["outputs"]] == [0, 1, 2]
    for link in canvas["links"]:
        lid, src, src_slot, dst, dst_slot, ltype = link
        assert nodes[dst]["inputs"][dst_slot]["link"] == lid
        assert lid in nodes[src]["outputs"][src_slot]["links"]
        assert nodes[src]["outputs"][src_slot]["type"] == ltype
    orders = sorted(n["order"] for n in canvas["nodes"])
    assert orders == list(range(len(TXT2IMG)))
    json.dumps(canvas)  # plain JSON


def test_api_to_canvas_upload_and_linked_widget(registry):
    prompt = {"1": {"class_type": "LoadImage", "inputs": {"image": "cat.png"}},
              "2": {"class_type": "IntConstant", "inputs": {"value": 300}},
              "3": {"class_type": "ImageScale",
                    "inputs": {"image": ["1", 0], "upscale_method": "area", "width": ["2", 0],
                               "height": 200, "crop": "center"}}}
    canvas = api_to_canvas(prompt, registry)
    nodes = {n["id"]: n for n in canvas["nodes"]}
    assert nodes[1]["widgets_values"] == ["cat.png", "image"]
    assert nodes[3]["inputs"][1] == {"name": "width", "type": "INT", "link": 2,
                                     "widget": {"name": "width"}}
    assert nodes[3]["widgets_values"] == ["area", 512, 200, "center"]
    assert strip_meta(canvas_to_api(canvas, registry)) == prompt


def _overlap(a: dict[str, Any], b: dict[str, Any]) -> bool:
    (ax, ay), (aw, ah) = a["pos"], a["size"]
    (bx, by), (bw, bh) = b["pos"], b["size"]
    return ax < bx + bw and bx < ax + aw and ay - 30 < by + bh and by - 30 < ay + ah


def test_layout_columns_by_depth_without_overlaps(registry):
    canvas = api_to_canvas(TXT2IMG, registry)
    nodes = {n["id"]: n for n in canvas["nodes"]}
    x = {nid: n["pos"][0] for nid, n in nodes.items()}
    assert x[4] == x[5] < x[6] == x[7] < x[3] < x[8] < x[9]
    assert x[6] - x[4] >= 350
    for a in canvas["nodes"]:
        for b in canvas["nodes"]:
            assert a is b or not _overlap(a, b), (a["id"], b["id"])
    for link in canvas["links"]:  # links run left to right
        assert x[link[1]] < x[link[3]]


def test_non_numeric_ids_are_mapped_and_restored(registry):
    prompt = {"load": {"class_type": "LoadImage", "inputs": {"image": "cat.png"}},
              "7": {"class_type": "ImageInvert", "inputs": {"image": ["load", 0]}},
              "07": {"class_type": "PreviewImage", "inputs": {"images": ["7", 0]}}}
    canvas = api_to_canvas(prompt, registry)
    ids = sorted(n["id"] for n in canvas["nodes"])
    assert all(isinstance(i, int) for i in ids) and len(set(ids)) == 3 and 7 in ids
    assert canvas["last_node_id"] == max(ids)
    assert strip_meta(canvas_to_api(canvas, registry)) == prompt


def test_api_to_canvas_unknown_type_and_cycle_do_not_crash(registry):
    prompt = {"1": {"class_type": "Mystery", "inputs": {"a": ["2", 1], "speed": 3}},
              "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 2]}},
              "3": {"class_type": "PreviewImage", "inputs": {"images": ["9", 0]}}}
    canvas = api_to_canvas(prompt, registry)
    nodes = {n["id"]: n for n in canvas["nodes"]}
    assert len(nodes[1]["outputs"]) == 3
    assert nodes[1]["widgets_values"] == {"speed": 3}
    back = canvas_to_api(canvas, registry)
    assert back["1"]["inputs"] == {"a": ["2", 1], "speed": 3}
    assert back["2"]["inputs"] == {"image": ["1", 2]}


# --- round trips ------------------------------------------------------------------------------

def test_round_trip_txt2img_with_meta(registry):
    prompt = copy.deepcopy(TXT2IMG)
    for nid, node in prompt.items():
        node["_meta"] = {"title": f"node {nid}"}
    assert canvas_to_api(api_to_canvas(prompt, registry), registry) == prompt
    assert check_api(prompt) == prompt


def _widget_value(spec_type: str, choices, draw) -> Any:
    if choices:
        return draw(st.sampled_from(choices))
    return draw({"INT": st.integers(-2**63, 2**64), "BOOLEAN": st.booleans(),
                 "FLOAT": st.floats(allow_nan=False, allow_infinity=False),
                 "STRING": st.text(max_size=8)}[spec_type])


@st.composite
def api_prompts(draw, registry: NodeRegistry) -> dict[str, Any]:
    prompt: dict[str, Any] = {}
    outputs: list[tuple[str, int, str]] = []  # (node id, slot, type) available upstream
    for i in range(draw(st.integers(1, 8))):
        nid = draw(st.sampled_from([str(i + 1), str(i + 20), f"n{i}"]))
        if nid in prompt:
            continue
        node_type = registry.get(draw(st.sampled_from([c.__name__ for c in TEST_NODES])))
        assert node_type is not None
        inputs: dict[str, Any] = {}
        for name, spec in node_type.inputs().items():
            if spec.section == "hidden":
                continue
            sources = [o for o in outputs if o[2] == spec.type]
            link = sources and (not spec.is_widget or draw(st.booleans()))
            if link and (spec.section == "required" or draw(st.booleans())):
                src = draw(st.sampled_from(sources))
                inputs[name] = [src[0], src[1]]
            elif spec.is_widget:
                inputs[name] = _widget_value(spec.type, spec.choices, draw)
        prompt[nid] = {"class_type": node_type.name, "inputs": inputs}
        outputs += [(nid, s, t) for s, t in enumerate(node_type.return_types)]
    return prompt


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_round_trip_random_prompts(registry, data):
    prompt = data.draw(api_prompts(registry))
    canvas = api_to_canvas(prompt, registry)
    back = canvas_to_api(json.loads(json.dumps(canvas)), registry)
    assert strip_meta(back) == prompt
    nodes = canvas["nodes"]
    for a in nodes:
        for b in nodes:
            assert a is b or not _overlap(a, b)
