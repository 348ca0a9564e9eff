"""The samplers a user picks by name, built from the loaded model's own scheduler config.

A light module (see ``nodes/diffusion/__init__.py``): the widget lists these names, so the
diffusers classes are named as strings and looked up when a scheduler is made.
"""

from __future__ import annotations

import inspect
from typing import Any

# Name in the widget → (diffusers scheduler class name, config overrides).
SCHEDULERS: dict[str, tuple[str, dict[str, Any]]] = {
    "ddim": ("DDIMScheduler", {}),
    "euler": ("EulerDiscreteScheduler", {}),
    "euler_ancestral": ("EulerAncestralDiscreteScheduler", {}),
    "dpmpp_2m": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++",
                                                 "solver_order": 2}),
    "unipc": ("UniPCMultistepScheduler", {}),
}
# Flow-matching models (Wan, LTX-Video, HunyuanVideo) take these; ``shift`` bends the sigmas
# towards noise (sigma' = shift*sigma / (1 + (shift-1)*sigma)), as their samplers do.
FLOW_SCHEDULERS: dict[str, tuple[str, dict[str, Any]]] = {
    "euler": ("FlowMatchEulerDiscreteScheduler", {}),
    "unipc": ("UniPCMultistepScheduler", {"prediction_type": "flow_prediction",
                                          "use_flow_sigmas": True}),
    "dpmpp_2m": ("DPMSolverMultistepScheduler", {"prediction_type": "flow_prediction",
                                                 "use_flow_sigmas": True,
                                                 "algorithm_type": "dpmsolver++",
                                                 "solver_order": 2}),
}
DEFAULT = "default"
SCHEDULER_NAMES = (DEFAULT, *SCHEDULERS)


def make_scheduler(name: str, base: Any) -> Any:
    """A fresh scheduler named ``name`` (``default``: the model's own) from ``base``'s config.

    Always a new object: schedulers keep per-run state, and a cached model is shared by runs.
    """
    if name == DEFAULT:
        return type(base).from_config(base.config)
    if name not in SCHEDULERS:
        raise ValueError(f"unknown scheduler {name!r}; choose one of {', '.join(SCHEDULER_NAMES)}")
    import diffusers  # heavy: loaded with the model already, never by listing the widget

    class_name, overrides = SCHEDULERS[name]
    return getattr(diffusers, class_name).from_config(base.config, **overrides)


def make_flow_scheduler(name: str, base: Any, shift: float) -> Any:
    """A fresh flow-matching scheduler named ``name`` (``default``: the model's own) with the
    model's shift, or ``shift`` when it is above 0."""
    config = dict(base.config)
    shift = shift or config.get("flow_shift") or config.get("shift") or 1.0
    if name == DEFAULT:
        class_name, overrides = type(base).__name__, {}
    elif name in FLOW_SCHEDULERS:
        class_name, overrides = FLOW_SCHEDULERS[name]
    else:
        raise ValueError(f"{name} is not a flow-matching sampler; this model takes "
                         f"{', '.join((DEFAULT, *FLOW_SCHEDULERS))}")
    import diffusers  # heavy: loaded with the model already, never by listing the widget

    cls = getattr(diffusers, class_name)
    # UniPC and DPM-Solver read "flow_shift", flow-match Euler "shift".
    key = "shift" if "shift" in inspect.signature(cls.__init__).parameters else "flow_shift"
    return cls.from_config({**config, **overrides, key: shift})
