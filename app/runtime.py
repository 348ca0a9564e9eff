"""The pieces one Kinema process runs on: folders, node registry, cache and executor.

Shared by the headless runner and the server so both load plugins and folders the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import comfy  # noqa: F401  (first: its finder refuses ComfyUI's internals clearly)
import nodes
from app.extra_model_paths import load_extra_model_paths
from engine.cache import OutputCache
from engine.executor import EventSink, Executor
from engine.folders import PROJECT_ROOT, Folders, use_folders
from engine.frames import remove_orphan_spills
from engine.registry import NodeRegistry, build_registry


@dataclass
class Runtime:
    """Everything needed to validate and run prompts in this process."""

    folders: Folders
    registry: NodeRegistry
    executor: Executor

    @classmethod
    def create(cls, *, base_dir: Path = PROJECT_ROOT, output_dir: Path | None = None,
               custom_nodes: list[Path] | None = None, cache_bytes: int | None = None,
               on_event: EventSink | None = None,
               extra_model_paths: list[Path] | None = None) -> Runtime:
        """Set the process's folders, load built-in and plugin nodes, make an executor.

        ``cache_bytes=None`` sizes the output cache from available RAM; 0 disables it.
        ``extra_model_paths``: ComfyUI ``extra_model_paths.yaml`` files to read; by default the
        one in ``base_dir``, when there is one (as ComfyUI reads the one beside it). Raises
        ExtraModelPathsError for a file that cannot be read.
        """
        folders = use_folders(Folders.under(base_dir, output=output_dir))
        folders.ensure()
        remove_orphan_spills(folders.temp)
        plugin_dirs = custom_nodes if custom_nodes is not None else [base_dir / "custom_nodes"]
        if extra_model_paths is None:
            default = base_dir / "extra_model_paths.yaml"
            extra_model_paths = [default] if default.is_file() else []
        for config in extra_model_paths:
            plugin_dirs = [*plugin_dirs, *load_extra_model_paths(config, folders)]
        registry = build_registry(nodes, plugin_dirs)
        executor = Executor(registry, OutputCache(cache_bytes), on_event)
        return cls(folders, registry, executor)
