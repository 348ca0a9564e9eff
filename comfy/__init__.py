"""ComfyUI's ``comfy`` package, as far as Kinema supports it: ``comfy.utils`` and
``comfy.model_management`` mapped onto Kinema's engine, ``comfy.comfy_types`` (names) and
``comfy.k_diffusion.utils.FolderOfImages``.

Any other ``comfy.<name>`` (``comfy.sd``, ``comfy.samplers`` ...) and ComfyUI's other internal
top-level modules (``execution``, ``comfy_extras``, ``comfy_api`` ...) fail at import with a
clear error instead of half-working; plugins that need them do not run on Kinema. The finder
that says so is installed when this package is imported, which the runtime does before it
loads plugins.
"""

from __future__ import annotations

import sys
from importlib.abc import MetaPathFinder
from importlib.machinery import ModuleSpec, PathFinder
from types import ModuleType

SUPPORTED_MODULES = frozenset({"comfy.utils", "comfy.model_management", "comfy.comfy_types",
                               "comfy.comfy_types.node_typing", "comfy.k_diffusion",
                               "comfy.k_diffusion.utils"})

# ComfyUI's other top-level modules, which plugins import for its internals; each is refused
# at import with what it is, rather than Python's bare "No module named".
REFUSED_TOP_LEVEL = {
    "comfy_api": "ComfyUI's V3 node API",
    "comfy_api_nodes": "ComfyUI's paid API nodes",
    "comfy_extras": "ComfyUI's extra node implementations",
    "comfy_execution": "ComfyUI's execution internals (graph, caching, lazy inputs)",
    "execution": "ComfyUI's executor",
}


class UnsupportedComfyModuleError(ImportError):
    """A plugin imported a ComfyUI module Kinema does not provide.

    An ImportError rather than ModuleNotFoundError, so ``from comfy import sd`` shows this
    message instead of Python's generic "cannot import name".
    """


class UnsupportedComfyModules(MetaPathFinder):
    """Refuses ``comfy.*`` modules outside ``SUPPORTED_MODULES``, and ComfyUI's other internal
    top-level modules, with a clear message."""

    def find_spec(self, fullname: str, path: object = None,
                  target: ModuleType | None = None) -> ModuleSpec | None:
        top = fullname.partition(".")[0]
        if fullname.startswith("comfy.") and fullname not in SUPPORTED_MODULES:
            what = "the ComfyUI module"
        elif top in REFUSED_TOP_LEVEL:
            if PathFinder.find_spec(fullname, path) is not None:
                return None  # a module of that name on sys.path (a pack's own) loads as usual
            what = f"{REFUSED_TOP_LEVEL[top]}, the module"
        else:
            return None
        raise UnsupportedComfyModuleError(
            f"Kinema does not provide {what} {fullname!r}, so a plugin that needs it cannot "
            "run on Kinema (of ComfyUI's modules it has folder_paths, nodes, server, "
            "node_helpers, latent_preview, comfy.utils, comfy.model_management, "
            "comfy.comfy_types and comfy.k_diffusion.utils)",
            name=fullname)


def _install_finder() -> None:
    if not any(type(f).__name__ == UnsupportedComfyModules.__name__ for f in sys.meta_path):
        sys.meta_path.insert(0, UnsupportedComfyModules())


_install_finder()
