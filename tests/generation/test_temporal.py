"""TemporalDenoiser: the same frames as the diffusers video pipelines, sliding context windows,
progress, interrupt and caching, on tiny random models saved in their real formats."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from diffusers import (
    AnimateDiffPipeline,
    DiffusionPipeline,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    MotionAdapter,
    StableVideoDiffusionPipeline,
    TextToVideoSDPipeline,
    UNetMotionModel,
)
from PIL import Image

from engine.cache import OutputCache
from engine.executor import Executor
from engine.folders import active_folders, use_folders
from nodes.diffusion.anchor import keyframe_image
from nodes.diffusion.bundle import (
    ANIMATEDIFF,
    KINEMA_CONDITIONING,
    KINEMA_MODEL,
    KINEMA_MOTION,
    MODELSCOPE,
    SD1,
    SVD,
    Conditioning,
    ModelBundle,
    MotionModule,
)
from nodes.diffusion.families import animatediff, family_of
from nodes.diffusion.families.base import VideoSettings
from nodes.diffusion.windows import (
    ContextWindows,
    denoise_animatediff,
    denoise_modelscope,
    denoise_svd,
)
from nodes.imaging import tensor_to_pil
from tests.generation import tiny_video
from tests.generation.workspace import FOLDER as SD_FOLDER
from tests.generation.workspace import GraphRun, Workspace, build_workspace, run_graph
from tests.generation.workspace import registry as workspace_registry

TOLERANCE = 1e-4
PROMPT, NEGATIVE = "a red circle", "blurry"
SIZE = tiny_video.SIZE
MOTION = "tiny-v2"  # tests/generation/workspace.py's diffusers-folder adapter
FOLDERS = {"modelscope": tiny_video.MODELSCOPE_FOLDER, "animatediff": SD_FOLDER,
           "svd": tiny_video.SVD_FOLDER}
OBJECTS: dict[str, Any] = {}  # what the Test* source nodes hand to a graph, by name


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """One models folder: the tiny SD and motion adapters, plus ModelScope and SVD."""
    found = build_workspace(tmp_path_factory.mktemp("tiny-video"))
    tiny_video.build_all(found.models)
    tensor_to_pil(keyframe()[0]).save(found.folders.input / "keyframe.png")
    return found


@pytest.fixture(scope="session")
def tiny(models: Workspace) -> dict[str, Any]:
    """The tiny models as Kinema objects, loaded back from their diffusers folders."""
    def bundle(family: str, folder: str) -> ModelBundle:
        pipe = DiffusionPipeline.from_pretrained(models.models / "diffusers" / folder,
                                                 local_files_only=True)
        pipe.set_progress_bar_config(disable=True)
        return ModelBundle(family, pipe, folder, torch.device("cpu"), torch.float32)

    adapter = MotionAdapter.from_pretrained(models.models / "motion" / MOTION,
                                            local_files_only=True)
    found = {"modelscope": bundle(MODELSCOPE, FOLDERS["modelscope"]),
             "sd": bundle(SD1, SD_FOLDER), "svd": bundle(SVD, FOLDERS["svd"]),
             "motion": MotionModule(adapter, "v2", MOTION), "keyframe": keyframe(),
             "empty_keyframe": torch.zeros(0, SIZE, SIZE, 3),
             "rgba_keyframe": torch.ones(1, SIZE, SIZE, 4)}
    for name in ("modelscope", "sd"):
        pipe = found[name].pipe
        positive, negative = pipe.encode_prompt(PROMPT, torch.device("cpu"), 1, True, NEGATIVE)
        found[f"{name}_cond"] = Conditioning(found[name].family, name, PROMPT, NEGATIVE,
                                             positive, negative)
    return found


@pytest.fixture
def active(models: Workspace, tiny: dict[str, Any]):
    """The tiny models' folders active, and the test objects ready for the source nodes."""
    previous = active_folders()
    use_folders(models.folders)
    OBJECTS.clear()
    OBJECTS.update(tiny)
    yield models
    use_folders(previous)


def keyframe() -> torch.Tensor:
    """A smooth colour ramp, [1,H,W,C] in 0..1."""
    y, x = torch.meshgrid(torch.linspace(0, 1, SIZE), torch.linspace(0, 1, SIZE), indexing="ij")
    return torch.stack([x, y, 1 - x * y], dim=-1)[None]


def _source(socket: str) -> type:
    class Source:
        """Hands a prepared test object (a model built in the test) to the graph."""

        CATEGORY = "testing"
        RETURN_TYPES = (socket,)
        FUNCTION = "get"

        @classmethod
        def INPUT_TYPES(cls) -> dict:
            return {"required": {"name": ("STRING", {"default": ""})}}

        def get(self, name: str) -> tuple[Any]:
            return (OBJECTS[name],)

    return Source


def executor() -> Executor:
    found = workspace_registry()
    for name, socket in (("TestModel", KINEMA_MODEL), ("TestMotion", KINEMA_MOTION),
                         ("TestConditioning", KINEMA_CONDITIONING), ("TestImage", "IMAGE")):
        found.register(name, _source(socket), source="tests")
    return Executor(found, OutputCache(1 << 30))


WIDGETS = dict(frames=8, steps=3, cfg=7.5, min_cfg=1.0, seed=42, scheduler="default",
               width=SIZE, height=SIZE, fps=7, motion_bucket_id=127, noise_aug_strength=0.02,
               context_length=0, context_overlap=2, context_blend="cosine", decode=True,
               decode_chunk_size=3)


def graph(model: str, *, cond: str | None = None, motion: str | None = None,
          image: str | None = None, loaded: bool = False, **widgets: Any) -> dict:
    """Model (+ conditioning, motion, keyframe) → TemporalDenoiser; node 11 captures the
    latent, node 12 the frames. ``loaded`` wires the real loaders (names in models/), text
    encoder (any ``cond`` encodes PROMPT) and LoadImage (a file in input/); otherwise Test*
    nodes hand over the prepared objects named."""
    inputs: dict[str, Any] = {"model": ["1", 0], **WIDGETS, **widgets}
    if loaded:
        prompt: dict[str, Any] = {"1": {"class_type": "KinemaModelLoader",
                                        "inputs": {"model": model}}}
        if cond:
            prompt["2"] = {"class_type": "KinemaTextEncode", "inputs": {
                "model": ["1", 0], "prompt": PROMPT, "negative_prompt": NEGATIVE}}
        if motion:
            prompt["3"] = {"class_type": "MotionAdapterLoader",
                           "inputs": {"motion_adapter": motion}}
        if image:
            prompt["4"] = {"class_type": "LoadImage", "inputs": {"image": image}}
    else:
        prompt = {"1": {"class_type": "TestModel", "inputs": {"name": model}}}
        for nid, kind, name in (("2", "TestConditioning", cond), ("3", "TestMotion", motion),
                                ("4", "TestImage", image)):
            if name:
                prompt[nid] = {"class_type": kind, "inputs": {"name": name}}
    for nid, name, given in (("2", "conditioning", cond), ("3", "motion", motion),
                             ("4", "keyframe", image)):
        if given:
            inputs[name] = [nid, 0]
    prompt["10"] = {"class_type": "TemporalDenoiser", "inputs": inputs}
    prompt["11"] = {"class_type": "CaptureOutputs", "inputs": {"value": ["10", 0]}}
    prompt["12"] = {"class_type": "CaptureOutputs", "inputs": {"value": ["10", 1]}}
    return prompt


def run_ok(prompt: dict, ex: Executor | None = None, **kw: Any) -> GraphRun:
    run = run_graph(prompt, ex or executor(), **kw)
    assert run.result.status == "success", run.result.error
    return run


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a.float() - b.float()).abs().max().item()


def as_image(frames: torch.Tensor) -> torch.Tensor:
    """A pipeline's ``output_type="pt"`` frames [1,F,C,H,W] → IMAGE [F,H,W,C]."""
    return frames[0].permute(0, 2, 3, 1)


def generator(seed: int = 42) -> torch.Generator:
    return torch.Generator("cpu").manual_seed(seed)


# --- the reference pipelines, built by hand from the same weights -------------------------

REFERENCE_SCHEDULERS = {"euler_ancestral": (EulerAncestralDiscreteScheduler, {}),
                        "dpmpp_2m": (DPMSolverMultistepScheduler,
                                     {"algorithm_type": "dpmsolver++", "solver_order": 2})}


def fresh(scheduler: Any, name: str = "default") -> Any:
    cls, overrides = REFERENCE_SCHEDULERS.get(name, (type(scheduler), {}))
    return cls.from_config(scheduler.config, **overrides)


def reference(tiny: dict, family: str, scheduler: str = "default") -> Any:
    if family == "modelscope":
        parts = tiny["modelscope"].pipe.components
        pipe: Any = TextToVideoSDPipeline(**{**parts, "scheduler": fresh(parts["scheduler"],
                                                                        scheduler)})
    elif family == "animatediff":
        parts, adapter = tiny["sd"].pipe.components, tiny["motion"].adapter
        pipe = AnimateDiffPipeline(
            vae=parts["vae"], text_encoder=parts["text_encoder"], tokenizer=parts["tokenizer"],
            unet=UNetMotionModel.from_unet2d(parts["unet"], adapter), motion_adapter=adapter,
            scheduler=fresh(parts["scheduler"], scheduler))
    else:
        parts = tiny["svd"].pipe.components
        pipe = StableVideoDiffusionPipeline(**{**parts, "scheduler": fresh(parts["scheduler"])})
    pipe.set_progress_bar_config(disable=True)
    return pipe


def reference_args(tiny: dict, family: str, frames: int = 8, steps: int = 3, **extra: Any,
                   ) -> dict:
    common = dict(num_frames=frames, height=SIZE, width=SIZE, num_inference_steps=steps,
                  generator=generator(), **extra)
    if family == "svd":
        return dict(image=keyframe_image(keyframe()), min_guidance_scale=1.0,
                    max_guidance_scale=7.5, fps=7, motion_bucket_id=127,
                    noise_aug_strength=0.02, **common)
    cond = tiny["modelscope_cond" if family == "modelscope" else "sd_cond"]
    return dict(prompt_embeds=cond.prompt_embeds,
                negative_prompt_embeds=cond.negative_prompt_embeds, guidance_scale=7.5,
                **common)


def object_graph(family: str, **widgets: Any) -> dict:
    if family == "modelscope":
        return graph("modelscope", cond="modelscope_cond", **widgets)
    if family == "animatediff":
        return graph("sd", cond="sd_cond", motion="motion", **widgets)
    return graph("svd", image="keyframe", **{"frames": 4, **widgets})


# --- parity with the reference pipelines -------------------------------------------------

@pytest.mark.parametrize(("family", "scheduler"), [
    ("modelscope", "default"), ("modelscope", "euler_ancestral"), ("modelscope", "dpmpp_2m"),
    ("animatediff", "default"), ("animatediff", "euler_ancestral"), ("svd", "default")])
def test_graph_gives_the_pipelines_frames_and_latents(active, tiny, family, scheduler):
    run = run_ok(object_graph(family, scheduler=scheduler))
    frames = 4 if family == "svd" else 8
    chunked = {} if family == "modelscope" else {"decode_chunk_size": 3}  # it decodes all at once
    pt = reference(tiny, family, scheduler)(**reference_args(
        tiny, family, frames, output_type="pt", **chunked)).frames
    latents = reference(tiny, family, scheduler)(**reference_args(
        tiny, family, frames, output_type="latent")).frames
    if family == "svd":  # Kinema's LATENT is [B,C,F,H,W]; SVD's pipeline gives [B,F,C,H,W]
        latents = latents.permute(0, 2, 1, 3, 4)
    assert run.captured["12"].shape == (frames, SIZE, SIZE, 3)
    assert max_diff(run.captured["12"], as_image(pt)) <= TOLERANCE
    assert max_diff(run.captured["11"]["samples"], latents) <= TOLERANCE


def pipeline_on_strings(active: Workspace, family: str, motion: str = MOTION) -> torch.Tensor:
    """What a diffusers user gets from the same folders, prompt strings and PNG."""
    folder = active.models / "diffusers" / FOLDERS[family]
    common = dict(height=SIZE, width=SIZE, num_inference_steps=3, generator=generator(),
                  output_type="pt")
    if family == "svd":
        pipe = StableVideoDiffusionPipeline.from_pretrained(folder, local_files_only=True)
        return pipe(image=Image.open(active.folders.input / "keyframe.png"), num_frames=4,
                    min_guidance_scale=1.0, max_guidance_scale=7.5, decode_chunk_size=3,
                    **common).frames
    text = dict(prompt=PROMPT, negative_prompt=NEGATIVE, num_frames=8, guidance_scale=7.5)
    if family == "modelscope":
        return TextToVideoSDPipeline.from_pretrained(folder, local_files_only=True)(
            **text, **common).frames
    adapter = MotionAdapter.from_pretrained(active.models / "motion" / motion,
                                            local_files_only=True)
    pipe = AnimateDiffPipeline.from_pretrained(folder, motion_adapter=adapter,
                                               local_files_only=True)
    return pipe(**text, decode_chunk_size=3, **common).frames


@pytest.mark.parametrize("family", ["modelscope", "animatediff", "svd"])
def test_loaded_graph_gives_the_pipelines_frames_on_the_same_folders(active, family):
    """Loaders, text encoder and LoadImage over models/ and input/, against the pipeline
    called on prompt strings and the PNG, the way a diffusers user would."""
    prompt = graph(FOLDERS[family], loaded=True, cond=None if family == "svd" else "prompt",
                   motion=MOTION if family == "animatediff" else None,
                   image="keyframe.png" if family == "svd" else None,
                   frames=4 if family == "svd" else 8)
    run = run_ok(prompt)
    assert max_diff(run.captured["12"], as_image(pipeline_on_strings(active, family))) \
        <= TOLERANCE


def test_keyframe_then_video_the_emu_video_way(active, tiny):
    """Text → SD keyframe → SVD clip, all loaded from models/: the SVD part is the pipeline's
    video of that keyframe."""
    prompt = graph(FOLDERS["svd"], loaded=True, frames=4)
    prompt.update({
        "5": {"class_type": "KinemaModelLoader", "inputs": {"model": SD_FOLDER}},
        "6": {"class_type": "KinemaTextEncode", "inputs": {
            "model": ["5", 0], "prompt": PROMPT, "negative_prompt": NEGATIVE}},
        "7": {"class_type": "KeyframeGenerator", "inputs": {
            "model": ["5", 0], "conditioning": ["6", 0], "seed": 1, "steps": 2, "cfg": 7.5,
            "width": SIZE, "height": SIZE, "scheduler": "default"}},
        "8": {"class_type": "CaptureOutputs", "inputs": {"value": ["7", 0]}}})
    prompt["10"]["inputs"]["keyframe"] = ["7", 0]
    run = run_ok(prompt)
    args = reference_args(tiny, "svd", 4, output_type="pt", decode_chunk_size=3)
    args["image"] = keyframe_image(run.captured["8"])
    assert max_diff(run.captured["12"], as_image(reference(tiny, "svd")(**args).frames)) \
        <= TOLERANCE


@pytest.mark.parametrize("family", ["modelscope", "animatediff", "svd"])
def test_latent_decode_of_the_latent_gives_the_frames(active, family):
    """LatentDecode on the LATENT output = the frames output; changing only the decoder's
    settings re-runs only the decoder (and what reads it)."""
    prompt = object_graph(family)
    prompt["13"] = {"class_type": "LatentDecode", "inputs": {
        "model": ["1", 0], "latent": ["10", 0], "chunk_size": 3, "tile": False,
        "tile_size": 512, "tile_overlap": 64}}
    prompt["14"] = {"class_type": "CaptureOutputs", "inputs": {"value": ["13", 0]}}
    ex = executor()
    first = run_ok(prompt, ex)
    assert max_diff(first.captured["14"], first.captured["12"]) <= TOLERANCE
    prompt["13"]["inputs"]["chunk_size"] = 2
    again = run_ok(prompt, ex)
    assert again.result.executed == ["13", "14"]
    assert "10" in again.result.cached
    if family != "svd":  # SVD's temporal decoder sees the chunk's frames together
        assert max_diff(again.captured["14"], first.captured["14"]) <= TOLERANCE


def test_changing_an_image_node_after_the_denoiser_reruns_only_it(active):
    prompt = object_graph("svd")
    prompt["20"] = {"class_type": "ImageScaleBy", "inputs": {
        "image": ["10", 1], "upscale_method": "bilinear", "scale_by": 0.5}}
    prompt["21"] = {"class_type": "ImageInvert", "inputs": {"image": ["20", 0]}}
    prompt["12"]["inputs"]["value"] = ["21", 0]
    ex = executor()
    run_ok(prompt, ex)
    prompt["20"]["inputs"]["scale_by"] = 0.25
    again = run_ok(prompt, ex)
    assert again.result.executed == ["20", "21", "12"]
    assert "10" in again.result.cached
    assert again.captured["12"].shape == (4, SIZE // 4, SIZE // 4, 3)


def test_animating_an_sd_model_adds_no_second_copy_of_its_weights(tiny):
    """The motion UNet runs on the SD UNet's and the adapter's own tensors: animating a loaded
    model costs no memory the output cache cannot see."""
    unet, adapter = tiny["sd"].pipe.unet, tiny["motion"].adapter
    owned = {t.data_ptr() for m in (unet, adapter) for t in [*m.parameters(), *m.buffers()]}
    combined = animatediff.motion_unet(unet, adapter)
    weights = list(combined.parameters())
    assert len(weights) == len(list(unet.parameters())) + len(list(adapter.parameters()))
    assert all(w.data_ptr() in owned for w in weights)


def test_motion_unet_is_built_once_per_model_and_adapter(active, monkeypatch):
    built = []
    original = animatediff._shared_motion_unet
    monkeypatch.setattr(animatediff, "_shared_motion_unet",
                        lambda *a: built.append(1) or original(*a))
    animatediff._motion_unets.clear()
    for seed in (1, 2):
        run_ok(object_graph("animatediff", seed=seed, frames=4, steps=1))
    assert len(built) == 1


def test_an_animatediff_pipeline_folder_needs_no_adapter(active, tiny):
    """A saved AnimateDiffPipeline loads as an 'animatediff' model carrying its motion UNet."""
    OBJECTS["animatediff"] = ModelBundle(ANIMATEDIFF, reference(tiny, "animatediff"), "ad",
                                         torch.device("cpu"), torch.float32)
    run = run_ok(graph("animatediff", cond="sd_cond", frames=4, steps=2))
    latents = reference(tiny, "animatediff")(**reference_args(
        tiny, "animatediff", frames=4, steps=2, output_type="latent")).frames
    assert max_diff(run.captured["11"]["samples"], latents) <= TOLERANCE


# --- progress, interrupt, clear errors ---------------------------------------------------

@pytest.mark.parametrize(("family", "scheduler"), [
    ("modelscope", "default"), ("modelscope", "euler"), ("animatediff", "default"),
    ("svd", "default")])
def test_progress_arrives_once_per_step_with_previews(active, family, scheduler):
    # The tiny SD's default is PNDM (4 timesteps for 3 steps): the total says so.
    run = run_ok(object_graph(family, scheduler=scheduler))
    ticks = run.progress("10")
    total = ticks[-1][1]
    assert ticks == [(i, total) for i in range(1, total + 1)]
    assert total >= 3
    previews = [e for t, e in run.events if t == "preview" and e["node"] == "10"]
    assert len(previews) == total


def test_an_interrupt_stops_between_steps(active):
    def interrupt(ex: Executor, kind: str, data: dict) -> None:
        if kind == "progress":
            ex.interrupt()

    run = run_graph(object_graph("modelscope", steps=3), executor(), on_event=interrupt)
    assert run.result.status == "interrupted"
    assert run.progress("10") == [(1, 3)]
    assert "12" not in run.captured


def test_decode_off_gives_an_empty_frame_batch(active):
    run = run_ok(object_graph("modelscope", decode=False, steps=1, frames=4))
    assert run.captured["12"].shape == (0, SIZE, SIZE, 3)
    assert run.captured["11"]["samples"].shape == (1, 4, 4, SIZE // 2, SIZE // 2)


@pytest.mark.parametrize(("model", "kwargs", "message"), [
    ("svd", {}, "connect a keyframe"),
    ("sd", {"cond": "sd_cond"}, "motion adapter"),
    ("modelscope", {}, "text conditioning"),
    ("modelscope", {"cond": "modelscope_cond", "image": "empty_keyframe"}, "empty image batch"),
    ("svd", {"image": "empty_keyframe"}, "empty image batch"),
    ("modelscope", {"cond": "modelscope_cond", "image": "rgba_keyframe"}, "RGB image"),
    ("svd", {"image": "keyframe", "motion": "motion"}, "disconnect the motion"),
    ("svd", {"image": "keyframe", "cond": "sd_cond"}, "keyframe alone"),
    ("modelscope", {"cond": "sd_cond"}, "encode the prompt with this model"),
    ("sd", {"cond": "sd_cond", "motion": "motion", "frames": 40, "context_length": 40},
     "limit"),
    ("modelscope", {"cond": "modelscope_cond", "frames": 9, "context_length": 4,
                    "context_overlap": 4}, "overlap"),
])
def test_wrong_wiring_fails_with_a_clear_error(active, model, kwargs, message):
    run = run_graph(graph(model, steps=1, **kwargs), executor())
    assert run.result.status == "error"
    assert run.result.error["node_id"] == "10"
    assert message in run.result.error["exception_message"]


# --- sliding context windows -------------------------------------------------------------

@pytest.mark.parametrize("family", ["modelscope", "animatediff", "svd"])
def test_one_window_loops_are_the_pipelines_steps(tiny, family):
    """The windowed loops follow the pipelines step for step: one window, same latents."""
    frames = 4 if family == "svd" else 8
    args = reference_args(tiny, family, frames)
    del args["num_frames"]
    one = ContextWindows(frames, frames, 2)
    if family == "modelscope":
        ours = denoise_modelscope(reference(tiny, family), one, callback=lambda *a: None,
                                  **args)
    elif family == "animatediff":
        ours = denoise_animatediff(reference(tiny, family), one,
                                   callback_on_step_end=lambda *a: {}, **args)
    else:
        ours = denoise_svd(reference(tiny, family), one, callback_on_step_end=lambda *a: {},
                           **args)
    theirs = reference(tiny, family)(**reference_args(tiny, family, frames,
                                                      output_type="latent")).frames
    assert max_diff(ours, theirs) <= 1e-6


def test_frames_equal_to_the_window_call_the_plain_pipeline(active):
    windowed = run_ok(object_graph("modelscope", context_length=8)).captured["11"]["samples"]
    plain = run_ok(object_graph("modelscope")).captured["11"]["samples"]
    assert max_diff(windowed, plain) == 0.0


def seam_jumps(latents: torch.Tensor, windows: ContextWindows) -> list[tuple[float, float]]:
    """Per seam: the largest frame-to-frame change across it, and the largest inside the two
    windows it joins away from any overlap (local: SVD's guidance, and motion, grows along the
    clip, so a clip-wide maximum would hide nothing)."""
    jumps = (latents[:, :, 1:] - latents[:, :, :-1]).abs().mean(dim=(0, 1, 3, 4)).tolist()
    seams = [set(range(after.start - 1, before.stop))  # pairs (f, f+1) touching the overlap
             for before, after in zip(windows.slices, windows.slices[1:], strict=False)]
    touched = set().union(*seams)
    found = []
    for seam, before, after in zip(seams, windows.slices, windows.slices[1:], strict=False):
        inside = [f for f in range(before.start, after.stop - 1) if f not in touched]
        found.append((max(jumps[f] for f in seam), max(jumps[f] for f in inside)))
    return found


@pytest.mark.parametrize("family", ["modelscope", "animatediff", "svd"])
def test_long_clips_slide_blended_windows(active, family):
    frames, length, overlap = 14, 6, 2  # 2.3 windows' worth: windows at 0, 4 and 8
    run = run_ok(object_graph(family, frames=frames, context_length=length,
                              context_overlap=overlap))
    latents = run.captured["11"]["samples"]
    assert latents.shape[2] == frames
    assert run.captured["12"].shape == (frames, SIZE, SIZE, 3)
    assert torch.isfinite(latents).all()
    windows = ContextWindows(frames, length, overlap)
    assert len(windows.slices) == 3
    for seam, inside in seam_jumps(latents, windows):
        assert seam <= inside * 1.05, (seam, inside)
    total = run.progress("10")[-1][1]
    assert run.progress("10") == [(i, total) for i in range(1, total + 1)]  # per step


def test_context_length_zero_is_the_models_window(tiny):
    def windows(model, motion, frames, **settings):
        family = family_of(model)
        pipe = family.video_pipeline(model, motion, "default")
        return family.context_windows(pipe, VideoSettings(frames=frames, **settings))

    found = windows(tiny["svd"], None, 10, context_overlap=1)
    assert found is not None and found.length == tiny_video.SVD_WINDOW
    assert windows(tiny["svd"], None, 4) is None
    assert windows(tiny["modelscope"], None, 64) is None
    found = windows(tiny["sd"], tiny["motion"], 24)
    assert found is not None and found.length == animatediff.ANIMATEDIFF_WINDOW


def test_window_weights_blend_seams_smoothly():
    windows = ContextWindows(10, 4, 2, "linear")
    assert [(s.start, s.stop) for s in windows.slices] == [(0, 4), (2, 6), (4, 8), (6, 10)]
    # Each window predicts its own constant: across a seam the blend moves in even steps.
    blended = windows.predict(lambda sl: torch.full((1, 1, 4), float(sl.start)), 2)[0, 0]
    assert blended.tolist() == pytest.approx([0, 0, 2 / 3, 4 / 3, 8 / 3, 10 / 3, 14 / 3,
                                              16 / 3, 6, 6])
    cosine = ContextWindows(10, 4, 2, "cosine")
    for up, down in zip(cosine.weights[1][:2], cosine.weights[0][2:], strict=True):
        assert up + down == pytest.approx(1.0)
    shifted = ContextWindows(11, 4, 2)  # the last window ends on the last frame
    assert [(s.start, s.stop) for s in shifted.slices][-2:] == [(6, 10), (7, 11)]


# --- keyframe-anchored text-to-video -----------------------------------------------------

def keyframe_latent(tiny: dict, image: torch.Tensor, model: str = "modelscope") -> torch.Tensor:
    """What the model's VAE makes of an image [1,H,W,C]: the mean latent, scaled, [1,C,h,w]."""
    vae = tiny[model].pipe.vae
    with torch.no_grad():
        mean = vae.encode(image.movedim(-1, 1).contiguous() * 2 - 1).latent_dist.mean
    return mean * vae.config.scaling_factor


class UNetInputs:
    """Frame 0 of every UNet input during a run (both halves of a guided batch)."""

    def __init__(self, unet: torch.nn.Module) -> None:
        self.unet, self.frame0 = unet, []

    def __enter__(self) -> list[torch.Tensor]:
        self.hook = self.unet.register_forward_pre_hook(
            lambda _module, args: self.frame0.append(args[0][:, :, 0].clone()))
        return self.frame0

    def __exit__(self, *exc: object) -> None:
        self.hook.remove()


def test_a_keyframe_is_frame_0_of_a_modelscope_clip(active, tiny):
    run = run_ok(object_graph("modelscope", image="keyframe"))
    latents = run.captured["11"]["samples"]
    key = keyframe_latent(tiny, keyframe())
    assert torch.equal(latents[:, :, 0], key)
    # Decoded, frame 0 is the keyframe after the VAE's round trip: its latent decoded alone.
    pipe = reference(tiny, "modelscope")
    alone = pipe.video_processor.postprocess_video(pipe.decode_latents(key[:, :, None]),
                                                   output_type="pt")
    assert max_diff(run.captured["12"][:1], as_image(alone)) <= TOLERANCE
    assert run.captured["12"].shape == (8, SIZE, SIZE, 3)


@pytest.mark.parametrize("scheduler", ["default", "euler_ancestral", "dpmpp_2m"])
def test_the_model_sees_the_clean_keyframe_at_every_step(active, tiny, scheduler):
    """Whatever the scheduler (Euler scales its model input), frame 0 of every UNet input is
    the clean keyframe latent, as in training; progress still ticks once per step."""
    with UNetInputs(tiny["modelscope"].pipe.unet) as frame0:
        run = run_ok(object_graph("modelscope", image="keyframe", scheduler=scheduler))
    key = keyframe_latent(tiny, keyframe())
    assert len(frame0) >= 3
    assert all(torch.equal(seen, key.expand_as(seen)) for seen in frame0)
    total = run.progress("10")[-1][1]
    assert run.progress("10") == [(i, total) for i in range(1, total + 1)]


def test_different_keyframes_give_different_clips(active):
    OBJECTS["mirrored"] = keyframe().flip(2)
    first = run_ok(object_graph("modelscope", image="keyframe")).captured["11"]["samples"]
    other = run_ok(object_graph("modelscope", image="mirrored")).captured["11"]["samples"]
    assert max_diff(first[:, :, 1:], other[:, :, 1:]) > 1e-3


def test_the_same_seed_and_keyframe_give_the_same_clip(active):
    """Euler ancestral draws noise at every step, from the seeded generator."""
    prompt = object_graph("modelscope", image="keyframe", scheduler="euler_ancestral")
    first = run_ok(prompt, executor()).captured["11"]["samples"]
    again = run_ok(prompt, executor()).captured["11"]["samples"]
    assert torch.equal(first, again)
    reseeded = run_ok(object_graph("modelscope", image="keyframe", scheduler="euler_ancestral",
                                   seed=7)).captured["11"]["samples"]
    assert torch.equal(reseeded[:, :, 0], first[:, :, 0])
    assert max_diff(reseeded[:, :, 1:], first[:, :, 1:]) > 1e-3


def test_a_keyframe_of_another_size_is_cut_and_resized_to_the_clip(active):
    """Width/height 0: the model's own size; the keyframe becomes what ImageScale (Lanczos,
    center crop) makes of it at that size."""
    y, x = torch.meshgrid(torch.linspace(0, 1, 40), torch.linspace(0, 1, 56), indexing="ij")
    OBJECTS["wide"] = torch.stack([x, y, x * y], dim=-1)[None]
    direct = run_ok(object_graph("modelscope", image="wide", width=0, height=0))
    prompt = object_graph("modelscope", image="wide", width=0, height=0)
    prompt["5"] = {"class_type": "ImageScale", "inputs": {
        "image": ["4", 0], "upscale_method": "lanczos", "width": SIZE, "height": SIZE,
        "crop": "center"}}
    prompt["10"]["inputs"]["keyframe"] = ["5", 0]
    scaled = run_ok(prompt)
    assert direct.captured["12"].shape == (8, SIZE, SIZE, 3)
    assert torch.equal(direct.captured["11"]["samples"], scaled.captured["11"]["samples"])


def test_windowed_clips_anchor_frame_0_of_the_whole_clip(active, tiny):
    frames, length, overlap = 9, 4, 2
    windows = ContextWindows(frames, length, overlap)
    with UNetInputs(tiny["modelscope"].pipe.unet) as frame0:
        run = run_ok(object_graph("modelscope", image="keyframe", frames=frames,
                                  context_length=length, context_overlap=overlap))
    key = keyframe_latent(tiny, keyframe())
    latents = run.captured["11"]["samples"]
    assert latents.shape[2] == frames
    assert torch.equal(latents[:, :, 0], key)
    # One UNet call per window and step; the first window of each step holds frame 0.
    assert len(frame0) == 3 * len(windows.slices)
    firsts = frame0[::len(windows.slices)]
    assert all(torch.equal(seen, key.expand_as(seen)) for seen in firsts)


def test_a_keyframe_anchors_frame_0_of_an_animatediff_clip(active, tiny):
    run = run_ok(graph("sd", cond="sd_cond", motion="motion", image="keyframe", frames=4))
    assert torch.equal(run.captured["11"]["samples"][:, :, 0],
                       keyframe_latent(tiny, keyframe(), "sd"))
