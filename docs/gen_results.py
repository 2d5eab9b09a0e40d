"""Write the results pages at build time from bench/results/*.json.

mkdocs-gen-files runs this script; every page comes from ``bench/report.py:render_pages()``
(page path such as ``results/deoxys.md`` -> markdown), so no number on the site is typed by hand.
A missing ``render_pages`` or an empty result fails the build: a site without its results pages
must not look complete.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import mkdocs_gen_files

BENCH = Path(__file__).resolve().parents[1] / "bench"


def results_pages() -> dict[str, str]:
    # bench/ is a folder of scripts, not a package: report.py imports its siblings by name.
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    report = importlib.import_module("report")
    render_pages = getattr(report, "render_pages", None)
    if render_pages is None:
        raise RuntimeError(f"{BENCH / 'report.py'} has no render_pages(): the results pages cannot be generated")
    pages = render_pages()
    if not pages:
        raise RuntimeError("bench/report.py:render_pages() returned no pages")
    for path in pages:
        if not path.startswith("results/") or not path.endswith(".md"):
            raise RuntimeError(f"render_pages() returned {path!r}; results pages are results/<name>.md")
    return pages


for page, markdown in results_pages().items():
    with mkdocs_gen_files.open(page, "w") as handle:
        handle.write(markdown)
    mkdocs_gen_files.set_edit_path(page, "../bench/report.py")
