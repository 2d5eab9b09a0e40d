"""The benchmark suite: one folder per component, ``bench/<component>/``.

A component folder holds its benchmark scripts (each declares its suite entries in a
module-level ``BENCHMARKS`` tuple of ``bench._common.Benchmark``) and, optionally, ``page.py``
(``TITLE`` and ``render() -> str``: its results page). ``bench/suite.py`` and ``bench/report.py``
find both by scanning the folders; nothing lists a component by hand.

Component folders kept outside the checkout join through ``INFRAGYM_BENCH_PATH`` (folders that
hold component folders, separated by ``os.pathsep``): they become part of this package, so
``bench.<component>.<module>`` names a module wherever its folder lives.
"""

from __future__ import annotations

import os
from pathlib import Path

PAGE_MODULE = "page"
SEARCH_PATH_VARIABLE = "INFRAGYM_BENCH_PATH"


def search_path() -> list[Path]:
    """This package's folder, then the folders of ``INFRAGYM_BENCH_PATH``, which join the package
    (read on every call, so a folder named after import is found too)."""
    for entry in os.environ.get(SEARCH_PATH_VARIABLE, "").split(os.pathsep):
        if entry and entry not in __path__:
            __path__.append(entry)
    return [Path(entry) for entry in __path__]


def component_folders() -> dict[str, Path]:
    """Every component folder on the search path, by name (sorted): a folder whose name is a
    Python identifier not starting with ``_`` and that holds Python files."""
    found: dict[str, Path] = {}
    for base in search_path():
        if not base.is_dir():
            continue
        for folder in sorted(base.iterdir()):
            if not folder.is_dir() or not folder.name.isidentifier() or folder.name.startswith("_"):
                continue
            if not any(folder.glob("*.py")):
                continue
            if folder.name in found:
                raise RuntimeError(f"two folders for component {folder.name!r}: {found[folder.name]}, {folder}")
            found[folder.name] = folder
    return dict(sorted(found.items()))


def benchmark_scripts(folder: Path) -> list[Path]:
    """A component folder's benchmark scripts: its Python files except the page and private
    helpers (``_name.py``)."""
    return [path for path in sorted(folder.glob("*.py")) if not path.name.startswith("_") and path.stem != PAGE_MODULE]
