"""Results pages, generated from the stored results: ``bench/results/*.json`` (the benchmark
suite) and ``studies/results/*`` (the research studies). Nothing here runs a benchmark.

    python bench/report.py                      # every page, as one markdown document
    python bench/report.py --out outputs/results # one file per page

Each component's page is rendered by its own ``bench/<component>/page.py`` (``TITLE`` and
``render() -> str``), found by scanning the component folders (``bench.component_folders``);
this file adds the index (links to every page, the goals table, the result files).
``render_pages()`` returns them all, keyed ``results/<component>.md`` and ``results/index.md``;
the docs build (mkdocs-gen-files) writes them under ``results/``.
"""

from __future__ import annotations

import datetime
import importlib
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

# Run as a script, only bench/ is on sys.path: the checkout makes ``bench.*`` importable.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import PAGE_MODULE, component_folders
from bench._common import RESULTS, ROOT, STUDIES

INDEX = "results/index.md"


def component_pages() -> dict[str, ModuleType]:
    """Page path (``results/<component>.md``) -> the page module of every component folder that
    has one, by component name."""
    return {
        f"results/{name}.md": importlib.import_module(f"bench.{name}.{PAGE_MODULE}")
        for name, folder in component_folders().items()
        if (folder / f"{PAGE_MODULE}.py").is_file()
    }


def _result_date(path: Path, payload: dict | None) -> str:
    """When a result was produced: its own ``date`` field, else the date of the commit that last
    changed the file, else the file's modification time."""
    if payload and payload.get("date"):
        return str(payload["date"])[:10]
    try:
        out = subprocess.run(
            ["git", "log", "-1", "--format=%cs", "--", str(path)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        out = ""
    return out or datetime.date.fromtimestamp(path.stat().st_mtime).isoformat()


def _files_table() -> str:
    lines = ["| result file | machine | date |", "|---|---|---|"]
    files = sorted(RESULTS.glob("*.json")) + sorted(p for p in STUDIES.glob("*") if p.is_file())
    for path in files:
        payload = json.loads(path.read_text()) if path.suffix == ".json" else None
        machine = (payload or {}).get("machine")
        where = f"{machine['cpus']} cores, Python {machine['python']}" if machine else ""
        lines.append(f"| `{path.relative_to(ROOT)}` | {where} | {_result_date(path, payload)} |")
    return "\n".join(lines)


def _goals_table() -> str:
    from bench.suite import check_stored, format_rows

    return format_rows(check_stored(), markdown=True)


def index_page(pages: dict[str, ModuleType]) -> str:
    links = "\n".join(f"- [{module.TITLE}]({Path(page).name})" for page, module in pages.items())
    return "\n\n".join(
        [
            "# Results",
            "Every table here is generated from the stored results of the benchmark suite (`bench/results/`) "
            "and of the research studies (`studies/results/`) when the docs are built; `make bench` re-runs "
            "the suite and `python bench/suite.py --check-only` re-checks the stored results against the goals.",
            links,
            "## Goals\n\nStatus of every benchmark's goal on the stored results (seconds: -, nothing was re-run).\n\n"
            + _goals_table(),
            "## Result files\n\n" + _files_table(),
        ]
    )


def render_pages() -> dict[str, str]:
    """One markdown page per component plus ``results/index.md``, each starting with an H1."""
    modules = component_pages()
    pages = {INDEX: index_page(modules) + "\n"}
    for page, module in modules.items():
        body = module.render() or "No stored results yet: run `make bench`."
        pages[page] = f"# {module.TITLE}\n\n{body}\n"
    return pages


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, help="write one file per page under this folder instead of printing")
    args = parser.parse_args(argv)
    pages = render_pages()
    if args.out is None:
        print("\n\n".join(pages[p].rstrip() for p in [*(p for p in pages if p != INDEX), INDEX]))
        return
    for page, text in pages.items():
        path = args.out / Path(page).name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    print(f"wrote {len(pages)} results pages under {args.out}/")


if __name__ == "__main__":
    main()
