"""The node contract, built-ins, custom_nodes plugins and entry-point packs."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import pytest

import nodes
from app.runtime import Runtime
from engine.cache import OutputCache
from engine.executor import Executor
from engine.folders import active_folders, use_folders
from engine.graph import validate_prompt
from engine.registry import (
    NodeContractError,
    NodeRegistry,
    build_registry,
    import_plugin,
    load_plugins,
)
from tests.engine.toy_nodes import Number

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


@pytest.fixture
def runtime(tmp_path):
    previous = active_folders()
    yield Runtime.create(base_dir=tmp_path, custom_nodes=[FIXTURES / "custom_nodes"],
                         cache_bytes=1 << 28)
    use_folders(previous)


def test_builtins_follow_the_contract():
    registry = build_registry(nodes, entry_points=False)
    for name in ("EmptyImage", "LoadImage", "SaveImage", "PreviewImage", "ImageInvert",
                 "ImageScale", "ImageScaleBy", "ImageBlur", "ImageSharpen", "ImageBlend",
                 "ImageBatch", "ImageFromBatch", "RepeatImageBatch", "PrimitiveInt",
                 "PrimitiveFloat", "PrimitiveString"):
        node_type = registry.get(name)
        assert node_type is not None, name
        assert node_type.source == "builtin"
        assert node_type.description, f"{name} has no description"


def test_a_class_breaking_the_contract_is_refused():
    class NoFunction:
        RETURN_TYPES = ("INT",)
        FUNCTION = "missing"

        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {}}

    with pytest.raises(NodeContractError, match="missing"):
        NodeRegistry().register("NoFunction", NoFunction)


def test_plugins_load_and_failures_are_reported_by_name(runtime):
    registry = runtime.registry
    assert registry.get("Vignette").display_name == "Vignette (test pack)"
    assert registry.get("ConstantText").source == "hijack"
    assert "broken_pack" in registry.import_errors
    assert "comfy.sd" in registry.import_errors["broken_pack"]
    assert registry.web_directories()["vignette_pack"].name == "web"


def test_a_plugin_cannot_replace_a_builtin(runtime):
    assert runtime.registry.get("ImageInvert").source == "builtin"
    assert any("ImageInvert" in c and "hijack" in c for c in runtime.registry.conflicts)


def test_plugin_chains_with_builtins(runtime):
    prompt = {"1": {"class_type": "EmptyImage",
                    "inputs": {"width": 32, "height": 16, "batch_size": 3, "color": 0xFFFFFF}},
              "2": {"class_type": "Vignette", "inputs": {"image": ["1", 0], "strength": 1.0,
                                                         "width": 64}},
              "3": {"class_type": "ImageInvert", "inputs": {"image": ["2", 0]}},
              "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0],
                                                          "filename_prefix": "plugin"}}}
    events = []
    runtime.executor.on_event = lambda t, d: events.append((t, d))
    result = runtime.executor.execute(validate_prompt(prompt, runtime.registry))
    assert result.status == "success", result.error
    images = result.outputs["4"]["images"]
    assert len(images) == 3
    saved = runtime.folders.output / images[0]["filename"]
    assert saved.is_file()
    # The plugin's ProgressBar reached the engine's progress events.
    progress = [d for t, d in events if t == "progress" and d["node"] == "2"]
    assert [p["value"] for p in progress] == [1, 2, 3]


def test_entry_point_packs_load(monkeypatch):
    ep = metadata.EntryPoint(name="ep_pack", value="tests.fixtures.ep_pack",
                             group="kinema.nodes")
    monkeypatch.setattr(metadata, "entry_points",
                        lambda group=None: [ep] if group == "kinema.nodes" else [])
    registry = build_registry(nodes)
    assert registry.get("Shout").source == "ep_pack"


def test_broken_entry_point_is_reported(monkeypatch):
    ep = metadata.EntryPoint(name="gone", value="tests.fixtures.does_not_exist",
                             group="kinema.nodes")
    monkeypatch.setattr(metadata, "entry_points", lambda group=None: [ep])
    registry = build_registry(nodes)
    assert "does_not_exist" in registry.import_errors["gone"]
    assert "EmptyImage" in registry


def test_input_order_and_widgets():
    registry = NodeRegistry()
    registry.register("Number", Number)
    spec = registry.get("Number").inputs()["value"]
    assert spec.is_widget and spec.options["max"] == 100
    assert registry.get("Number").input_order() == ["value"]


def loose_pack_registry() -> NodeRegistry:
    registry = build_registry(nodes, entry_points=False)
    module = import_plugin(FIXTURES / "server_nodes" / "loose_pack")
    registry.register_module(module, source="loose_pack")
    return registry


def test_declarations_comfyui_accepts_load_and_run():
    registry = loose_pack_registry()
    darken = registry.get("LooseDarken")
    # RETURN_NAMES = () and a short OUTPUT_IS_LIST read as ComfyUI reads them.
    assert darken.return_names == ("IMAGE", "INT")
    assert darken.output_is_list == (False, False)
    assert list(darken.inputs()) == ["image", "amount", "node_id"]
    assert registry.get("LooseAnything").return_types == ("*",)
    prompt = {"1": {"class_type": "EmptyImage",
                    "inputs": {"width": 8, "height": 4, "batch_size": 2, "color": 0xFFFFFF}},
              "2": {"class_type": "LooseDarken", "inputs": {"image": ["1", 0], "amount": 0.25}},
              "3": {"class_type": "LooseAnything", "inputs": {"value": ["2", 1]}},
              "4": {"class_type": "PreviewImage", "inputs": {"images": ["2", 0]}}}
    executor = Executor(registry, OutputCache(0))
    result = executor.execute(validate_prompt(prompt, registry))
    assert result.status == "success", result.error
    assert result.outputs["3"]["text"] == ["int"]


def test_a_broken_node_is_skipped_alone_with_its_reason():
    registry = loose_pack_registry()
    assert "LooseBroken" not in registry
    assert "loose_pack" not in registry.import_errors
    report = registry.plugin_report()["loose_pack"]
    assert report["loaded"] and report["nodes"] == ["LooseAnything", "LooseDarken"]
    assert "does_not_exist" in report["refused_nodes"]["LooseBroken"]
    assert any(line.startswith("custom node pack loose_pack: node LooseBroken skipped")
               for line in registry.failure_lines())


def test_a_v3_only_pack_is_refused_with_a_clear_reason(tmp_path):
    (tmp_path / "v3_pack.py").write_text("async def comfy_entrypoint():\n    return None\n")
    registry = NodeRegistry()
    load_plugins(registry, [tmp_path])
    assert "V3 node API" in registry.import_errors["v3_pack"]


def test_a_return_types_string_is_refused_with_the_fix():
    class Oops:
        RETURN_TYPES = ("IMAGE")  # a string: the comma is missing
        FUNCTION = "run"

        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {}}

        def run(self):
            return ()

    with pytest.raises(NodeContractError, match=r"\('IMAGE',\)"):
        NodeRegistry().register("Oops", Oops)
