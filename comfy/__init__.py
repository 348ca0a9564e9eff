"""ComfyUI's ``comfy`` package, as far as Kinema supports it: ``comfy.utils`` and
``comfy.model_management``, mapped onto Kinema's engine.

Any other ``comfy.<name>`` (``comfy.sd``, ``comfy.samplers`` ...) fails at import with a clear
error instead of half-working; plugins that need those modules do not run on Kinema.
"""

from __future__ import annotations

import sys
from importlib.abc import MetaPathFinder
from importlib.machinery import ModuleSpec
from types import ModuleType

SUPPORTED_MODULES = frozenset({"comfy.utils", "comfy.model_management"})


class UnsupportedComfyModuleError(ImportError):
    """A plugin imported a ComfyUI module Kinema does not provide.

    An ImportError rather than ModuleNotFoundError, so ``from comfy import sd`` shows this
    message instead of Python's generic "cannot import name".
    """


class UnsupportedComfyModules(MetaPathFinder):
    """Refuses every ``comfy.*`` module outside ``SUPPORTED_MODULES`` with a clear message."""

    def find_spec(self, fullname: str, path: object = None,
                  target: ModuleType | None = None) -> ModuleSpec | None:
        if fullname.startswith("comfy.") and fullname not in SUPPORTED_MODULES:
            raise UnsupportedComfyModuleError(
                f"Kinema does not support the ComfyUI module {fullname!r}: it provides only "
                f"{', '.join(sorted(SUPPORTED_MODULES))} (plus folder_paths and nodes). "
                "A plugin that needs it cannot run on Kinema.", name=fullname)
        return None


def _install_finder() -> None:
    if not any(type(f).__name__ == UnsupportedComfyModules.__name__ for f in sys.meta_path):
        sys.meta_path.insert(0, UnsupportedComfyModules())


_install_finder()
