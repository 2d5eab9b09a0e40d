"""Write the results pages at build time from bench/results/*.json.

mkdocs-gen-files runs this script; every page comes from ``bench/report.py:render_pages()``
(page path such as ``results/deoxys.md`` -> markdown), so no number on the site is typed by hand.
Each component's page is rendered by its ``bench/<component>/page.py``, found by the report, so a
new component's page is built (and linked from ``results/index.md``, the only results page in the
nav) with no edit here or in mkdocs.yml. A missing ``render_pages`` or an empty result fails the
build: a site without its results pages must not look complete.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import mkdocs_gen_files

ROOT = Path(__file__).resolve().parents[1]


def results_pages() -> tuple[dict[str, str], dict[str, Path]]:
    """The pages, and the file each one is rendered by (the page's "edit" link)."""
    # bench/ imports as the package ``bench`` from the checkout.
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    report = importlib.import_module("bench.report")
    render_pages = getattr(report, "render_pages", None)
    if render_pages is None:
        raise RuntimeError("bench/report.py has no render_pages(): the results pages cannot be generated")
    pages = render_pages()
    if not pages:
        raise RuntimeError("bench/report.py:render_pages() returned no pages")
    for path in pages:
        if not path.startswith("results/") or not path.endswith(".md"):
            raise RuntimeError(f"render_pages() returned {path!r}; results pages are results/<name>.md")
    sources = {page: Path(module.__file__) for page, module in report.component_pages().items()}
    return pages, sources


pages, sources = results_pages()
for page, markdown in pages.items():
    with mkdocs_gen_files.open(page, "w") as handle:
        handle.write(markdown)
    source = sources.get(page, ROOT / "bench" / "report.py")
    if source.is_relative_to(ROOT):
        mkdocs_gen_files.set_edit_path(page, Path("..", source.relative_to(ROOT)).as_posix())
