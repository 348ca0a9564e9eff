"""Node types: the one node contract (ComfyUI's classic class attributes) and where they come from.

Built-in nodes come from the ``nodes`` package, plugins from ``custom_nodes/`` (single files and
packages exporting ``NODE_CLASS_MAPPINGS``) and from the ``kinema.nodes`` entry-point group.
A plugin that fails to import is recorded with its error and the rest still load; a plugin can
never replace a node type that is already registered.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "kinema.nodes"
INPUT_SECTIONS = ("required", "optional", "hidden")


class NodeContractError(TypeError):
    """A class offered as a node does not satisfy the node contract."""


@dataclass(frozen=True)
class InputSpec:
    """One declared input: its socket type (or combo choices) and its options."""

    name: str
    type: str
    section: str
    options: Mapping[str, Any]
    choices: tuple[Any, ...] | None = None

    @property
    def is_combo(self) -> bool:
        return self.choices is not None

    @property
    def is_widget(self) -> bool:
        """Whether the canvas shows this input as a widget (a value) rather than a socket."""
        if self.options.get("forceInput"):
            return False
        return self.is_combo or self.type in WIDGET_TYPES


WIDGET_TYPES = frozenset({"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"})


def parse_input_spec(name: str, section: str, raw: Any) -> InputSpec:
    """Read one INPUT_TYPES entry: ``("INT", {...})``, ``(["a", "b"], {...})`` or ``("IMAGE",)``."""
    if isinstance(raw, str):
        raw = (raw,)
    if not isinstance(raw, (tuple, list)) or not raw:
        raise NodeContractError(f"input {name!r}: expected a (type, options) tuple, got {raw!r}")
    kind = raw[0]
    options = raw[1] if len(raw) > 1 and isinstance(raw[1], Mapping) else {}
    if isinstance(kind, (list, tuple)):
        return InputSpec(name, "COMBO", section, options, tuple(kind))
    if kind == "COMBO" and isinstance(options.get("options"), (list, tuple)):
        return InputSpec(name, "COMBO", section, options, tuple(options["options"]))
    if not isinstance(kind, str):
        raise NodeContractError(f"input {name!r}: type must be a string or list, got {kind!r}")
    # A plugin's "any" type is often a str subclass that equals everything and cannot be
    # hashed; its plain name is what matching and the canvas need.
    return InputSpec(name, str.__str__(kind), section, options)


@dataclass
class NodeType:
    """A registered node class with the facts the engine, the server and the canvas need."""

    name: str
    cls: type
    display_name: str
    source: str = "builtin"

    @property
    def category(self) -> str:
        return str(getattr(self.cls, "CATEGORY", "sd"))

    @property
    def description(self) -> str:
        return str(getattr(self.cls, "DESCRIPTION", "") or "")

    @property
    def function(self) -> str:
        return str(self.cls.FUNCTION)

    # The output facts are read for every node run; a class's declaration does not change.
    @cached_property
    def return_types(self) -> tuple[str, ...]:
        return tuple(_type_name(t) for t in self.cls.RETURN_TYPES)

    @cached_property
    def return_names(self) -> tuple[str, ...]:
        """Output names; missing, empty or short RETURN_NAMES fall back to the type names."""
        return _per_output(getattr(self.cls, "RETURN_NAMES", None), self.return_types, str)

    @cached_property
    def output_is_list(self) -> tuple[bool, ...]:
        """Which outputs are lists; missing or short OUTPUT_IS_LIST means "not a list"."""
        outputs = len(self.cls.RETURN_TYPES)
        return _per_output(getattr(self.cls, "OUTPUT_IS_LIST", None), (False,) * outputs, bool)

    @cached_property
    def output_tooltips(self) -> tuple[str, ...]:
        return _per_output(getattr(self.cls, "OUTPUT_TOOLTIPS", None),
                           ("",) * len(self.cls.RETURN_TYPES), str)

    @property
    def output_node(self) -> bool:
        return bool(getattr(self.cls, "OUTPUT_NODE", False))

    @property
    def input_is_list(self) -> bool:
        return bool(getattr(self.cls, "INPUT_IS_LIST", False))

    def raw_input_types(self) -> dict[str, Any]:
        """INPUT_TYPES as the class declares it (called each time: combos may list files)."""
        raw = self.cls.INPUT_TYPES()
        if not isinstance(raw, Mapping):
            raise NodeContractError(f"{self.name}.INPUT_TYPES() must return a dict")
        # Other keys are ignored, as ComfyUI ignores them.
        return {section: dict(raw.get(section) or {}) for section in INPUT_SECTIONS}

    def inputs(self) -> dict[str, InputSpec]:
        """Every declared input by name, in declaration order (required, optional, hidden)."""
        specs: dict[str, InputSpec] = {}
        for section, entries in self.raw_input_types().items():
            for name, raw in entries.items():
                if section == "hidden":
                    # "PROMPT", or ("PROMPT",) as some plugins write it
                    kind = raw[0] if isinstance(raw, (tuple, list)) and raw else raw
                    specs[name] = InputSpec(name, str(kind), section, {})
                else:
                    specs[name] = parse_input_spec(name, section, raw)
        return specs

    def input_order(self) -> list[str]:
        """Names of the required then optional inputs: the order of a canvas node's widgets."""
        return [n for n, s in self.inputs().items() if s.section != "hidden"]


def _type_name(t: Any) -> str:
    # A combo output (a list of choices) travels as "COMBO"; ComfyUI reads an empty list as
    # "any type". Plugins' own str subclasses (an "any" type) become plain names.
    if isinstance(t, (list, tuple)):
        return "COMBO" if t else "*"
    return str.__str__(t) if isinstance(t, str) else str(t)


def _per_output(declared: Any, fallback: tuple[Any, ...], convert: Callable[[Any], Any],
                ) -> tuple[Any, ...]:
    """One entry per output, as ComfyUI reads them: entries past the outputs are ignored and
    missing ones (an empty, short or absent declaration) take the fallback's."""
    if isinstance(declared, str):  # ("image") is a string, not a 1-tuple
        declared = (declared,)
    if not isinstance(declared, (tuple, list)):
        declared = ()
    return tuple(convert(declared[i]) if i < len(declared) and declared[i] not in (None, "")
                 else fallback[i] for i in range(len(fallback)))


def check_node_class(name: str, cls: Any) -> None:
    """Raise NodeContractError unless ``cls`` is a node ComfyUI could list and run.

    Loose declarations that ComfyUI accepts pass (lists for tuples, empty, short or missing
    RETURN_NAMES / OUTPUT_IS_LIST / OUTPUT_TOOLTIPS, extra INPUT_TYPES keys); ``NodeType``
    reads them as ComfyUI does. What fails is what could never work: no class, no
    INPUT_TYPES / RETURN_TYPES / FUNCTION, a FUNCTION that is not a method, or an
    INPUT_TYPES() that raises or returns something other than a dict of inputs.
    """
    if not isinstance(cls, type):
        raise NodeContractError(f"{name}: expected a class, got {type(cls).__name__}")
    for attr in ("INPUT_TYPES", "RETURN_TYPES", "FUNCTION"):
        if not hasattr(cls, attr):
            raise NodeContractError(f"{name}: missing {attr}")
    if not callable(getattr(cls, str(cls.FUNCTION), None)):
        raise NodeContractError(f"{name}: FUNCTION names {cls.FUNCTION!r}, which is not a method")
    if not isinstance(cls.RETURN_TYPES, (tuple, list)):
        hint = f" (write ({cls.RETURN_TYPES!r},))" if isinstance(cls.RETURN_TYPES, str) else ""
        raise NodeContractError(f"{name}: RETURN_TYPES must be a tuple{hint}")
    try:
        NodeType(name, cls, name).inputs()
    except NodeContractError:
        raise
    except Exception as exc:
        raise NodeContractError(f"{name}: INPUT_TYPES() failed: {_describe(exc)}") from exc


@dataclass
class NodeRegistry:
    """All node types known to one engine, with the plugins and nodes that failed to load."""

    types: dict[str, NodeType] = field(default_factory=dict)
    import_errors: dict[str, str] = field(default_factory=dict)
    node_errors: dict[str, dict[str, str]] = field(default_factory=dict)
    conflicts: list[str] = field(default_factory=list)
    web_dirs: dict[str, Path] = field(default_factory=dict)
    packs: list[str] = field(default_factory=list)

    def __contains__(self, name: object) -> bool:
        return name in self.types

    def get(self, name: str) -> NodeType | None:
        return self.types.get(name)

    def names(self) -> list[str]:
        return sorted(self.types)

    def register(self, name: str, cls: type, display_name: str | None = None, *,
                 source: str = "builtin") -> bool:
        """Add one node type; returns False (and records why) when the name is already taken."""
        check_node_class(name, cls)
        existing = self.types.get(name)
        if existing is not None:
            if existing.cls is not cls:
                msg = (f"{source}: node type {name!r} is already provided by "
                       f"{existing.source}; the {source} version was not loaded")
                self.conflicts.append(msg)
                log.debug(msg)
            return False
        self.types[name] = NodeType(name, cls, display_name or name, source)
        return True

    def register_mappings(self, mappings: Mapping[str, type],
                          display_names: Mapping[str, str] | None = None, *,
                          source: str = "builtin") -> None:
        """Register a pack's NODE_CLASS_MAPPINGS; a class breaking the contract is skipped
        alone and recorded in ``node_errors[source]``, the rest of the pack loads."""
        display_names = display_names if isinstance(display_names, Mapping) else {}
        for name, cls in mappings.items():
            try:
                self.register(str(name), cls, display_names.get(name), source=source)
            except NodeContractError as exc:
                self.node_errors.setdefault(source, {})[str(name)] = str(exc)
                log.debug("node %s of %s was not loaded: %s", name, source, exc)
        if source not in self.packs:
            self.packs.append(source)

    def register_module(self, module: ModuleType, source: str) -> None:
        mappings = getattr(module, "NODE_CLASS_MAPPINGS", None)
        if not isinstance(mappings, Mapping):
            if hasattr(module, "comfy_entrypoint"):
                raise NodeContractError(
                    f"{source}: uses ComfyUI's V3 node API (comfy_entrypoint), which Kinema "
                    "does not support; only NODE_CLASS_MAPPINGS packs load")
            raise NodeContractError(f"{source}: no NODE_CLASS_MAPPINGS dict")
        self.register_mappings(mappings, getattr(module, "NODE_DISPLAY_NAME_MAPPINGS", None),
                               source=source)
        # A pack may ship only a web extension, with no nodes of its own.
        web_dir = getattr(module, "WEB_DIRECTORY", None)
        if web_dir and getattr(module, "__file__", None):
            self.web_dirs[source] = (Path(module.__file__).parent / web_dir).resolve()

    def plugin_report(self) -> dict[str, dict[str, Any]]:
        """Each plugin pack: whether it loaded, its nodes, and each refusal with its reason."""
        report: dict[str, dict[str, Any]] = {}
        for pack in dict.fromkeys([*self.packs, *self.import_errors]):
            report[pack] = {
                "loaded": pack not in self.import_errors,
                "error": self.import_errors.get(pack),
                "nodes": sorted(n for n, t in self.types.items() if t.source == pack),
                "refused_nodes": dict(self.node_errors.get(pack, {})),
                "conflicts": [c for c in self.conflicts if c.startswith(f"{pack}:")],
            }
        report.pop("builtin", None)
        return report

    def failure_lines(self) -> list[str]:
        """One line per pack and per node that did not load, with the reason (for start-up)."""
        lines = [f"custom node pack {pack} failed to load: {error}"
                 for pack, error in self.import_errors.items()]
        lines += [f"custom node pack {pack}: node {node} skipped: {why}"
                  for pack, nodes in self.node_errors.items() for node, why in nodes.items()]
        return lines + self.conflicts

    def web_directories(self) -> dict[str, Path]:
        """Plugin name → folder of its web extension, for plugins that declare one."""
        return {pack: path for pack, path in self.web_dirs.items() if path.is_dir()}


def plugin_paths(folder: Path) -> list[Path]:
    """The loadable plugins in a custom_nodes folder: ``*.py`` files and packages."""
    if not folder.is_dir():
        return []
    found = []
    for path in sorted(folder.iterdir()):
        if path.name.startswith((".", "_")) or path.name.endswith(".disabled"):
            continue
        if path.suffix == ".py" or (path.is_dir() and (path / "__init__.py").is_file()):
            found.append(path)
    return found


def import_plugin(path: Path) -> ModuleType:
    """Import one plugin file or package under ``custom_nodes.<name>``, relative imports working."""
    module_name = f"custom_nodes.{path.stem if path.is_file() else path.name}"
    if path.is_dir():
        spec = importlib.util.spec_from_file_location(
            module_name, path / "__init__.py", submodule_search_locations=[str(path)])
    else:
        spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    return module


def load_plugins(registry: NodeRegistry, folders: Iterable[Path]) -> None:
    """Load every plugin in the given custom_nodes folders; failures are recorded, not raised."""
    for folder in folders:
        for path in plugin_paths(folder):
            name = path.stem if path.is_file() else path.name
            try:
                registry.register_module(import_plugin(path), source=name)
            except Exception as exc:
                registry.import_errors[name] = _describe(exc)
                log.debug("custom node pack %s failed to load: %s", name, exc)


def load_entry_points(registry: NodeRegistry, group: str = ENTRY_POINT_GROUP) -> None:
    """Load node packs that installed packages declare in the ``kinema.nodes`` group.

    An entry point may name a module with NODE_CLASS_MAPPINGS, or a mapping of node classes.
    """
    for ep in metadata.entry_points(group=group):
        try:
            target = ep.load()
            if isinstance(target, ModuleType):
                registry.register_module(target, source=ep.name)
            elif isinstance(target, Mapping):
                registry.register_mappings(target, source=ep.name)
            else:
                raise NodeContractError(f"entry point {ep.value} is neither a module nor a dict")
        except Exception as exc:
            registry.import_errors[ep.name] = _describe(exc)
            log.debug("node entry point %s failed to load: %s", ep.name, exc)


def _describe(exc: BaseException) -> str:
    return "".join(traceback.format_exception_only(type(exc), exc)).strip()


def build_registry(builtins: ModuleType, custom_node_folders: Iterable[Path] = (), *,
                   entry_points: bool = True) -> NodeRegistry:
    """Built-ins first, so no plugin can take their names; then folders; then entry points.

    ``builtins`` is the built-in node package (``nodes``), passed in so the engine imports no
    node code of its own.
    """
    registry = NodeRegistry()
    for name, cls in builtins.NODE_CLASS_MAPPINGS.items():
        registry.register(name, cls, builtins.NODE_DISPLAY_NAME_MAPPINGS.get(name))
    load_plugins(registry, custom_node_folders)
    if entry_points:
        load_entry_points(registry)
    return registry
