"""Small node classes that exercise the engine without any real image or model work."""

from __future__ import annotations

import threading

import torch

from engine.context import current_context
from engine.registry import NodeRegistry

CALLS: list[str] = []


class Number:
    """An INT constant."""

    RETURN_TYPES = ("INT",)
    FUNCTION = "run"
    CATEGORY = "test"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("INT", {"default": 0, "min": -100, "max": 100})}}

    def run(self, value):
        CALLS.append("Number")
        return (value,)


class Add:
    """a + b, with an optional offset."""

    RETURN_TYPES = ("INT",)
    RETURN_NAMES = ("sum",)
    FUNCTION = "run"
    CATEGORY = "test"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"a": ("INT", {"default": 0}), "b": ("INT", {"default": 0})},
                "optional": {"offset": ("INT", {"default": 0})}}

    def run(self, a, b, offset=0):
        CALLS.append("Add")
        return (a + b + offset,)


class Mode:
    """Picks one of a few modes (a combo) and a strength (a bounded FLOAT)."""

    RETURN_TYPES = ("STRING",)
    FUNCTION = "run"
    CATEGORY = "test"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"mode": (["fast", "slow"],),
                             "strength": ("FLOAT", {"default": 0.5, "min": 0.0, "max": 1.0})}}

    def run(self, mode, strength):
        return (f"{mode}:{strength}",)


class Tensor:
    """A float32 tensor of ``size`` elements filled with ``value``: outputs of known bytes."""

    RETURN_TYPES = ("TENSOR",)
    FUNCTION = "run"
    CATEGORY = "test"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"size": ("INT", {"default": 256, "min": 1, "max": 1 << 24}),
                             "value": ("FLOAT", {"default": 0.0})}}

    def run(self, size, value):
        CALLS.append("Tensor")
        return (torch.full((size,), float(value)),)


class Scale:
    """Multiplies a TENSOR by a factor."""

    RETURN_TYPES = ("TENSOR",)
    FUNCTION = "run"
    CATEGORY = "test"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"tensor": ("TENSOR",), "factor": ("FLOAT", {"default": 1.0})}}

    def run(self, tensor, factor):
        CALLS.append("Scale")
        return (tensor * factor,)


class Show:
    """Output node: reports what it received in its UI output."""

    RETURN_TYPES = ()
    FUNCTION = "run"
    OUTPUT_NODE = True
    CATEGORY = "test"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("*",)}}

    def run(self, value):
        CALLS.append("Show")
        if isinstance(value, torch.Tensor):
            value = float(value.sum())
        return {"ui": {"values": [value]}}


class Steps:
    """Reports progress for ``steps`` ticks; can wait on an event between ticks."""

    RETURN_TYPES = ("INT",)
    FUNCTION = "run"
    CATEGORY = "test"
    started = threading.Event()
    release = threading.Event()

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"steps": ("INT", {"default": 3, "min": 1, "max": 1000}),
                             "wait": ("BOOLEAN", {"default": False})}}

    def run(self, steps, wait):
        ctx = current_context()
        for i in range(steps):
            if wait:
                Steps.started.set()
                Steps.release.wait(5)
            ctx.progress(i + 1, steps)
        return (steps,)


class Boom:
    """Raises the error it is told to."""

    RETURN_TYPES = ("INT",)
    FUNCTION = "run"
    CATEGORY = "test"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("INT", {"default": 0}),
                             "kind": (["value", "memory"],)}}

    def run(self, value, kind):
        if kind == "memory":
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        raise ValueError(f"boom on {value}")


class Volatile:
    """IS_CHANGED returns NaN: never cached (ComfyUI's idiom for "always re-run")."""

    RETURN_TYPES = ("INT",)
    FUNCTION = "run"
    CATEGORY = "test"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("INT", {"default": 0})}}

    @classmethod
    def IS_CHANGED(cls, value):
        return float("nan")

    def run(self, value):
        CALLS.append("Volatile")
        return (value,)


class Even:
    """VALIDATE_INPUTS accepts even numbers only."""

    RETURN_TYPES = ("INT",)
    FUNCTION = "run"
    CATEGORY = "test"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("INT", {"default": 0})}}

    @classmethod
    def VALIDATE_INPUTS(cls, value):
        return True if value % 2 == 0 else f"{value} is odd"

    def run(self, value):
        return (value,)


class Split:
    """OUTPUT_IS_LIST: one INT per element of range(count)."""

    RETURN_TYPES = ("INT",)
    OUTPUT_IS_LIST = (True,)
    FUNCTION = "run"
    CATEGORY = "test"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"count": ("INT", {"default": 3, "min": 0, "max": 100})}}

    def run(self, count):
        return (list(range(count)),)


class Total:
    """INPUT_IS_LIST: sums every value it is given."""

    RETURN_TYPES = ("INT",)
    INPUT_IS_LIST = True
    FUNCTION = "run"
    CATEGORY = "test"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"values": ("INT", {"forceInput": True})}}

    def run(self, values):
        return (sum(values),)


TOY_NODES = {cls.__name__: cls for cls in
             (Number, Add, Mode, Tensor, Scale, Show, Steps, Boom, Volatile, Even, Split, Total)}


def toy_registry() -> NodeRegistry:
    registry = NodeRegistry()
    registry.register_mappings(TOY_NODES, source="toys")
    return registry


def chain_prompt(length: int, value: int = 1) -> dict:
    """Number → Add → Add → ... → Show: ``length`` nodes in all."""
    prompt = {"1": {"class_type": "Number", "inputs": {"value": value}}}
    for i in range(2, length):
        prompt[str(i)] = {"class_type": "Add", "inputs": {"a": [str(i - 1), 0], "b": 1}}
    prompt[str(length)] = {"class_type": "Show", "inputs": {"value": [str(length - 1), 0]}}
    return prompt
