"""The component registry: how the core finds learning components without naming any.

A component declares itself once, next to its code, with a :class:`Component` record:

- InfraGym's own components in ``infragym/models/<package>/component.py`` (``COMPONENT = Component(...)``),
  found by scanning the ``infragym.models`` sub-packages;
- any other installed package through the entry-point group ``infragym.components``
  (``[project.entry-points."infragym.components"] name = "pkg.component:COMPONENT"``).

``train``, ``evaluate``, ``load`` and ``list`` look components up here. A record holds import paths
as strings, so reading the registry imports no training stack.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
import threading
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from typing import Any

ENTRY_POINT_GROUP = "infragym.components"
_BUILTIN_PACKAGE = "infragym.models"


class ComponentError(ValueError):
    """A component declaration that is malformed, duplicated or missing."""


@dataclass(frozen=True)
class Component:
    """One learning component, as the core needs to know it.

    Attributes:
        name: registry key, also the ``component`` field of its exports.
        summary: one line for ``infragym list``.
        task: dotted path of its Task class (``pkg.module.Class``); an experiment belongs to the
            component whose ``task`` equals its ``task._target_``.
        experiments: its experiment configs (``experiment/<name>.yaml``); ``evaluate`` rebuilds an
            export from the first one (or from the one the export was trained with).
        loader: ``"module:callable"``; ``callable(directory, manifest)`` returns the predictor of
            a verified export. ``None``: the component exports nothing.
        code_bearing: its export files run code when loaded (pickles), so loading needs a valid
            signature or ``trust=True`` whatever the manifest says.
        evaluation: a dataclass of its ``evaluation.<key>`` options, passed as keywords to
            ``Task.evaluate_export``; ``None``: it takes none.
        uses_trainer: its Task takes Lightning ``trainer`` and ``callbacks`` configs.
        envs: the gymnasium ids it trains or evaluates in.
        config_module: a package holding Hydra configs of its own (third-party components),
            added to Hydra's search path as ``pkg://<config_module>``.
        serving: ``"module:callable"``; ``callable(predictor, manifest)`` returns the export's
            HTTP operations (``infragym.serve.Operation``). ``None``: not served.
    """

    name: str
    summary: str
    task: str
    experiments: tuple[str, ...]
    loader: str | None = None
    code_bearing: bool = False
    evaluation: type | None = None
    uses_trainer: bool = False
    envs: tuple[str, ...] = ()
    config_module: str | None = None
    serving: str | None = None

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise ComponentError(f"component name {self.name!r} must be a Python identifier")
        if "." not in self.task:
            raise ComponentError(f"component {self.name!r}: task must be a dotted class path, got {self.task!r}")
        if not self.experiments:
            raise ComponentError(f"component {self.name!r}: list at least one experiment config")
        if self.loader is not None and ":" not in self.loader:
            raise ComponentError(f"component {self.name!r}: loader must look like 'module:callable'")
        if self.serving is not None and (":" not in self.serving or self.loader is None):
            raise ComponentError(
                f"component {self.name!r}: serving must look like 'module:callable' and needs a loader"
            )
        if self.evaluation is not None and not dataclasses.is_dataclass(self.evaluation):
            raise ComponentError(f"component {self.name!r}: evaluation must be a dataclass type")

    def resolve_loader(self) -> Callable[..., Any]:
        """Import the export loader (only the component's own module, never a manifest's)."""
        if self.loader is None:
            raise ComponentError(f"component {self.name!r} has no export loader")
        return import_target(self.loader)


_registry: dict[str, Component] = {}
_discovered = False
_lock = threading.RLock()


def register(component: Component) -> Component:
    """Add a component (idempotent for the same record; a different record under a taken name is refused)."""
    if not isinstance(component, Component):
        raise ComponentError(f"expected a Component record, got {type(component).__name__}")
    with _lock:
        existing = _registry.get(component.name)
        if existing is not None and existing != component:
            raise ComponentError(f"component {component.name!r} is declared twice, differently")
        _registry[component.name] = component
    return component


def unregister(name: str) -> None:
    """Remove a component (tests and interactive sessions)."""
    with _lock:
        _registry.pop(name, None)


def import_target(target: str) -> Any:
    """The object named ``module:attribute.path`` (only targets declared by registered components)."""
    module_name, _, attr_path = target.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in attr_path.split("."):
        obj = getattr(obj, part)
    return obj


def _discover() -> None:
    global _discovered
    with _lock:
        if _discovered:
            return
        _discovered = True
        package = importlib.import_module(_BUILTIN_PACKAGE)
        for info in pkgutil.iter_modules(package.__path__, prefix=f"{_BUILTIN_PACKAGE}."):
            if not info.ispkg:
                continue
            try:
                module = importlib.import_module(f"{info.name}.component")
            except ModuleNotFoundError as err:
                if err.name == f"{info.name}.component":
                    continue  # a package without a component (shared helpers)
                raise
            record = getattr(module, "COMPONENT", None)
            if not isinstance(record, Component):
                raise ComponentError(f"{module.__name__}: COMPONENT must be a Component record")
            register(record)
        for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
            loaded = entry.load()
            if not isinstance(loaded, Component):
                raise ComponentError(
                    f"entry point {entry.name!r} = {entry.value!r} (group {ENTRY_POINT_GROUP}) must point at a "
                    f"Component record, got {type(loaded).__name__}"
                )
            register(loaded)


def registry() -> dict[str, Component]:
    """Every known component, by name (discovered on first use)."""
    _discover()
    with _lock:
        return dict(sorted(_registry.items()))


def get(name: str) -> Component:
    """The component called ``name``; the error lists the known ones."""
    components = registry()
    if name not in components:
        raise ComponentError(f"unknown component {name!r} (known: {', '.join(components) or 'none'})")
    return components[name]


def for_task(target: str) -> Component:
    """The component whose Task class is ``target`` (an experiment's ``task._target_``)."""
    matches = [c for c in registry().values() if c.task == target]
    if not matches:
        known = ", ".join(f"{c.name} ({c.task})" for c in registry().values())
        raise ComponentError(f"no registered component has the task {target!r}; known: {known}")
    return matches[0]


def config_search_path() -> list[str]:
    """``pkg://`` config sources of components that ship their own configs."""
    return [f"pkg://{c.config_module}" for c in registry().values() if c.config_module]
