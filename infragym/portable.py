"""The experiment config that travels inside an export, and how ``evaluate`` reads it back.

Written: the run's resolved config without its ``paths`` node, with every string that lies under
one of the run's path roots rewritten as ``${paths.<root>}/...``, so a manifest holds no absolute
path of the machine that trained it and the paths resolve on the machine that evaluates it.

Read back: never instantiated as it is. ``evaluate`` composes the registered component's own
experiment config and takes from the export only plain values (numbers, strings, booleans, null
and lists of them) at keys that config has; a ``_target_`` (or any other instantiation key) must
equal the registered one, and interpolations other than ``${paths.<root>}`` are refused. An edited
manifest can change hyper-parameters, never which code runs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, open_dict

# Hydra's instantiation keys: they choose code, so they only ever come from the registered config.
INSTANTIATION_KEYS = frozenset({"_target_", "_partial_", "_recursive_", "_convert_", "_args_"})
PATH_ROOTS = ("output_dir", "log_dir", "data_dir", "work_dir", "root_dir")
_PATH_REFERENCE = re.compile(r"^\$\{paths\.(" + "|".join(PATH_ROOTS) + r")\}(/[^$]*)?$")


class ExportConfigError(ValueError):
    """An export's config that cannot be taken over by ``evaluate``."""


def portable_config(resolved: Mapping[str, Any], paths: Mapping[str, Any]) -> dict[str, Any]:
    """``resolved`` without ``paths`` and with machine paths rewritten as ``${paths.<root>}``."""
    roots = sorted(
        ((key, str(paths[key]).rstrip("/")) for key in PATH_ROOTS if isinstance(paths.get(key), str) and paths[key]),
        key=lambda item: len(item[1]),
        reverse=True,  # the most specific root first: output_dir lies inside log_dir inside root_dir
    )

    def rewrite(value: Any) -> Any:
        if isinstance(value, Mapping):
            return {k: rewrite(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [rewrite(v) for v in value]
        if isinstance(value, str):
            for key, root in roots:
                if value == root or value.startswith(root + "/"):
                    return "${paths." + key + "}" + value[len(root) :]
        return value

    return {key: rewrite(value) for key, value in resolved.items() if key != "paths"}


def _is_plain(value: Any, where: str) -> bool:
    if value is None or isinstance(value, bool | int | float):
        return True
    if isinstance(value, str):
        if "${" in value and not _PATH_REFERENCE.match(value):
            raise ExportConfigError(
                f"{where}: interpolation {value!r} is not allowed in an export's config "
                "(only ${paths.<root>}/... paths are)"
            )
        return True
    if isinstance(value, list):
        return all(_is_plain(item, f"{where}[{i}]") for i, item in enumerate(value))
    return False


def merge_plain_values(base: DictConfig, exported: Mapping[str, Any], *, source: str, prefix: str = "") -> None:
    """Set ``exported``'s plain values into ``base`` (in place), refusing anything else.

    Raises:
        ExportConfigError: naming ``source`` and the key, for an unknown key, a different
            instantiation key, a disallowed interpolation or a value that is not plain.
    """
    for key, value in exported.items():
        where = f"{source}: config key {prefix}{key}"
        if not isinstance(key, str):
            raise ExportConfigError(f"{where}: keys must be strings")
        if key not in base:
            raise ExportConfigError(f"{where} is not in the component's config")
        current = base._get_node(key)._value() if isinstance(base, DictConfig) else None
        if key in INSTANTIATION_KEYS:
            if value != current:
                raise ExportConfigError(
                    f"{where} is {value!r}, the registered component's config has {current!r}: evaluate never "
                    "instantiates code named by an export"
                )
            continue
        node = base[key] if isinstance(base.get(key), DictConfig) else None
        if isinstance(value, Mapping):
            if node is None:
                raise ExportConfigError(f"{where}: a mapping where the component's config has {current!r}")
            merge_plain_values(node, value, source=source, prefix=f"{prefix}{key}.")
            continue
        if node is not None and value is not None and not isinstance(value, Mapping):
            raise ExportConfigError(f"{where}: {value!r} where the component's config has a mapping")
        if not _is_plain(value, where):
            raise ExportConfigError(f"{where}: {type(value).__name__} is not a plain value")
        with open_dict(base):
            base[key] = value
