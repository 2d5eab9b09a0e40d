"""train.py / evaluate.py end to end on a small Deoxys experiment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from infragym.export import verify_export
from infragym.runner import run_evaluate, run_train

from .conftest import ROOT, compose_config, smoke

POLICIES = ("legacy", "deoxys", "deoxys_no_fallback", "s_learner", "t_learner", "dr_policy_forest", "oracle")


def _train(tmp: Path, *overrides: str) -> tuple[float | None, dict[str, float]]:
    cfg = compose_config("train", smoke("deoxys", "logger=none", *overrides), tmp)
    value = run_train(cfg)
    return value, json.loads((tmp / "metrics.json").read_text())


@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float | None, dict[str, float]]:
    run_dir = tmp_path_factory.mktemp("run")
    value, metrics = _train(run_dir, "seed=7")
    return run_dir, value, metrics


def test_run_writes_metrics_table_plots_and_export(small_run: tuple[Path, float | None, dict[str, float]]) -> None:
    run_dir, value, metrics = small_run
    assert all(k.count("/") >= 1 for k in metrics)
    for policy in POLICIES:
        for name in ("downtime_min", "interruption_rate", "cost_node_hours", "objective"):
            assert f"test/{policy}/{name}" in metrics
    assert metrics["test/oracle/downtime_gap_closed"] == pytest.approx(1.0)
    assert metrics["test/legacy/downtime_gap_closed"] == pytest.approx(0.0)
    assert 0.0 <= metrics["test/deoxys/fallback_rate"] <= 1.0
    assert value == metrics["val/deoxys/dr_objective"]  # the sweep metric is returned
    results = (run_dir / "results.txt").read_text()
    assert "deoxys_no_fallback" in results and "paper: Deoxys deployed" in results and "-53.000" in results
    for plot in ("tradeoff", "policies_vs_legacy"):
        png = run_dir / "plots" / f"{plot}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    manifest = verify_export(run_dir / "export")
    assert manifest["component"] == "deoxys"
    assert manifest["config"]["seed"] == 7
    assert manifest["metrics"]["test/deoxys/objective"] == metrics["test/deoxys/objective"]
    assert (run_dir / "data" / "health_log.parquet").is_file()


def test_same_seed_same_metrics(small_run: tuple[Path, float | None, dict[str, float]], tmp_path: Path) -> None:
    _, _, first = small_run
    _, again = _train(tmp_path / "again", "seed=7")
    _, other = _train(tmp_path / "other", "seed=8")

    def strip(m: dict[str, float]) -> dict[str, float]:
        return {k: v for k, v in m.items() if not k.startswith("time/")}

    assert strip(again) == strip(first)
    assert strip(other) != strip(first)


def test_evaluate_reproduces_the_exported_numbers(
    small_run: tuple[Path, float | None, dict[str, float]], tmp_path: Path
) -> None:
    run_dir, _, train_metrics = small_run
    cfg = compose_config("evaluate", [f"checkpoint={run_dir / 'export'}", "logger=none"], tmp_path)
    metrics = run_evaluate(cfg)
    # Deoxys comes from the export; the trained baselines are refitted on the regenerated log.
    for policy in ("legacy", "deoxys", "deoxys_no_fallback", "s_learner", "t_learner", "dr_policy_forest", "oracle"):
        for name in ("downtime_min", "interruption_rate", "objective"):
            key = f"test/{policy}/{name}"
            assert metrics[key] == pytest.approx(train_metrics[key], rel=1e-12), key
    assert json.loads((tmp_path / "metrics.json").read_text()) == pytest.approx(metrics)


def test_wandb_offline_run_logs_everything(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    cfg = compose_config("train", smoke("deoxys", "logger=wandb", "dataset.n_events=1000", "seed=1"), tmp_path)
    run_train(cfg)
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    files = {p.name for p in runs[0].rglob("*") if p.is_file()}
    assert any(name.endswith(".wandb") for name in files)
    assert any(name.endswith(".png") for name in files), files  # plots logged as images
    assert any(name.endswith(".table.json") for name in files), files  # results as wandb.Table


def test_two_job_sweep_with_the_joblib_launcher(tmp_path: Path) -> None:
    command = [
        sys.executable,
        "train.py",
        "-m",
        "launcher=local",
        "logger=none",
        "export=false",
        "seed=0,1",
        *smoke("deoxys"),
        "dataset.n_events=1000",
        f"hydra.sweep.dir={tmp_path}",
    ]
    env = {**os.environ, "WANDB_MODE": "disabled"}
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = [json.loads((tmp_path / str(job) / "metrics.json").read_text()) for job in (0, 1)]
    assert metrics[0]["test/deoxys/objective"] != metrics[1]["test/deoxys/objective"]
    assert "joblib" in (tmp_path / "multirun.yaml").read_text()
