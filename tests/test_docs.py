"""The docs site builds with `mkdocs build --strict`, and its results pages are generated from
bench/results/*.json rather than typed by hand."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mkdocs", reason="mkdocs is not installed (pip install -e '.[dev]')")

ROOT = Path(__file__).resolve().parents[1]
COMPONENTS = ("deoxys", "cloudformer", "vm2rl", "serving", "continuum", "serverless", "training_reliability")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    site_dir = tmp_path_factory.mktemp("site")
    # The mkdocs-material banner about MkDocs 2 is noise in the test log.
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "DISABLE_MKDOCS_2_WARNING": "true"}
    build = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site_dir)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, f"mkdocs build --strict failed:\n{build.stdout}\n{build.stderr}"
    return site_dir


@pytest.mark.parametrize("component", COMPONENTS)
def test_component_and_results_pages_are_built(site: Path, component: str) -> None:
    assert (site / "components" / component / "index.html").is_file()
    assert (site / "results" / component / "index.html").is_file()


def test_core_pages_are_built(site: Path) -> None:
    for page in ("index.html", "configuration/index.html", "export/index.html", "write-a-component/index.html"):
        assert (site / page).is_file(), page
    assert "infragym.export.load" in (site / "api" / "index.html").read_text()


def test_results_table_is_generated_from_bench_results(site: Path) -> None:
    """Deoxys' mean downtime over the benchmark's seeds, computed here from the JSON, appears in
    the generated page: the table was rendered from the file at build time."""
    result = json.loads((ROOT / "bench" / "results" / "deoxys_quality.json").read_text())
    downtime = statistics.fmean(run["deoxys/downtime_min"] for run in result["per_seed"].values())
    page = (site / "results" / "deoxys" / "index.html").read_text()
    assert f"{downtime:.2f}" in page
