"""The samplers a user picks by name, built from the loaded model's own scheduler config.

A light module (see ``nodes/diffusion/__init__.py``): the widget lists these names, so the
diffusers classes are named as strings and looked up when a scheduler is made.
"""

from __future__ import annotations

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
