"""Issue 21's late failures made early, and runs that cannot be confused: bad config values are
refused when the experiment is built (naming the key), an ``optimized_metric`` the experiment
will not produce is refused before training, a run folder admits one run at a time, and an
export records the run it belongs to; killed exports' staging folders are cleaned."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from infragym.export import clean_stale_staging, export_run_mismatch, write_export
from infragym.runner import RunConfigError, build_task, run_folder_lock, run_train

from .conftest import SERVED_RUN_OVERRIDES, compose_config, smoke


def _build(tmp_path: Path, experiment: str, *overrides: str):
    return build_task(compose_config("train", smoke(experiment, "logger=none", *overrides), tmp_path))


@pytest.mark.parametrize(
    ("experiment", "override", "message"),
    [
        ("cloudformer", "model.dropout=1.0", r"model\.dropout must be in \[0, 1\), got 1\.0"),
        ("cloudformer", "model.dropout=-0.1", r"model\.dropout must be in \[0, 1\)"),
        ("cloudformer", "model.lr=0", r"model\.lr must be a positive number"),
        ("cloudformer", "dataset.batch_size=0", r"dataset\.batch_size must be a whole number >= 1, got 0"),
        ("cloudformer", "trainer.max_epochs=0", r"trainer\.max_epochs must be >= 1, got 0"),
        ("cloudformer", "trainer.max_epochs=-3", r"trainer\.max_epochs must be >= 1, got -3"),
        ("cloudformer", "+trainer.max_steps=0", r"trainer\.max_steps is 0"),
        ("cloudformer", "+trainer.limit_train_batches=0", r"trainer\.limit_train_batches is 0"),
        ("deoxys", "dataset.n_events=1500.5", r"dataset\.n_events must be a whole number of events, got 1500\.5"),
        ("serving_baselines", "task.rate_factors=[]", r"task\.rate_factors is empty"),
        ("serving_baselines", "task.routers=[]", r"task\.routers is empty"),
        ("serving_baselines", "task.rate_factors=[1.0,-2.0]", r"task\.rate_factors must be positive numbers"),
        ("serving_baselines", "env.ttft_slo_s=-1.0", r"SLO ttft_s \(env\.ttft_slo_s\) must be a positive number"),
        ("serving_baselines", "env.tbt_slo_s=0", r"SLO tbt_s \(env\.tbt_slo_s\) must be a positive number"),
        ("serving_baselines", "env.gpu=a200", r"gpu: unknown GPU 'a200'; known: \['a100_80gb'"),
        ("continuum", "task.policies=[]", r"task\.policies is empty"),
        ("continuum", "task.loads={swe_like:[]}", r"task\.loads\.swe_like must be a non-empty list"),
        ("vm2rl", "task.k_samples=0", r"task\.k_samples must be a whole number of trajectories >= 1, got 0"),
        ("vm2rl", "task.ppo.total_steps=0", r"task\.ppo\.total_steps must be at least 1, got 0"),
        ("vm2rl", "task.mnl_grid=[]", r"task\.mnl_grid must list migration budgets >= 1"),
    ],
)
def test_bad_values_are_refused_when_the_experiment_is_built(
    tmp_path: Path, experiment: str, override: str, message: str
) -> None:
    with pytest.raises(Exception, match=message) as caught:
        _build(tmp_path, experiment, override)
    error = caught.value.__cause__ or caught.value  # Hydra wraps a constructor's error
    assert isinstance(error, ValueError)


def test_an_empty_loads_mapping_is_refused(tmp_path: Path) -> None:
    task = _build(tmp_path, "continuum")  # Hydra merges a {} override into the preset's mapping
    with pytest.raises(ValueError, match=r"task\.loads is empty"):
        type(task)(env=task.env, dataset=task.dataset, model=task.model, loads={})


def test_an_optimized_metric_the_run_will_not_produce_fails_before_training(tmp_path: Path) -> None:
    cfg = compose_config("train", smoke("cloudformer", "logger=none", "optimized_metric=val/cloudformer/mea"), tmp_path)
    started = time.perf_counter()
    with pytest.raises(
        RunConfigError,
        match=r"'val/cloudformer/mea' is not a metric this experiment produces \(did you mean .*'val/cloudformer/mae'",
    ):
        run_train(cfg)
    assert time.perf_counter() - started < 30  # nothing was simulated or trained
    assert not (tmp_path / "checkpoints").exists() and not (tmp_path / "metrics.json").exists()
    record = json.loads((tmp_path / "run.json").read_text())
    assert record["status"] == "failed" and "RunConfigError" in record["error"]


@pytest.mark.parametrize(
    ("experiment", "metric"),
    [
        ("cloudformer", "val/cloudformer/mae"),
        ("cloudformer", "test_unseen_dynamic/lstm/p95_abs_error"),
        ("deoxys", "val/deoxys/dr_objective"),
        ("continuum", "test/swe_like@0.3/continuum/mean_jct_s"),
        ("serving_baselines", "test/fcfs_round_robin/azure_conv@1x/goodput_rps"),
        ("vm2rl", "test/vm2rl_best_of_k/fragment_rate"),
    ],
)
def test_the_metrics_the_experiments_optimise_are_known_before_training(
    tmp_path: Path, experiment: str, metric: str
) -> None:
    from infragym.runner import check_optimized_metric

    cfg = compose_config("train", smoke(experiment, "logger=none", f"optimized_metric={metric}"), tmp_path)
    check_optimized_metric(cfg, build_task(cfg))  # no error


def test_a_run_folder_admits_one_run_at_a_time(tmp_path: Path) -> None:
    with run_folder_lock(tmp_path):
        with pytest.raises(RunConfigError, match=rf"{tmp_path} is in use by a running experiment \(pid {os.getpid()}"):
            with run_folder_lock(tmp_path):
                pass
    with run_folder_lock(tmp_path):  # released when the run ends
        pass


def test_a_killed_runs_lock_is_released(tmp_path: Path) -> None:
    code = (
        "import sys, time; from pathlib import Path; from infragym.runner import run_folder_lock\n"
        f"with run_folder_lock(Path({str(tmp_path)!r})):\n    print('locked', flush=True); time.sleep(60)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "locked"
        with pytest.raises(RunConfigError, match=rf"pid {child.pid}"):
            with run_folder_lock(tmp_path):
                pass
    finally:
        child.kill()
        child.wait()
    with run_folder_lock(tmp_path):  # the OS released the dead run's lock
        pass


def test_an_export_records_its_run_and_a_failed_export_says_so(tmp_path: Path, monkeypatch, caplog) -> None:
    overrides = ["logger=none", "export=true", *SERVED_RUN_OVERRIDES["deoxys"]]
    cfg = compose_config("train", smoke("deoxys", *overrides), tmp_path)
    run_train(cfg)
    record = json.loads((tmp_path / "run.json").read_text())
    manifest = json.loads((tmp_path / "export" / "manifest.json").read_text())
    assert record["status"] == "exported" and manifest["run_id"] == record["run_id"]
    assert export_run_mismatch(tmp_path / "export") is None

    from infragym.models.deoxys.task import DeoxysTask

    def disk_full(self, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(DeoxysTask, "export", disk_full)
    with pytest.raises(OSError, match="No space left"):
        run_train(compose_config("train", smoke("deoxys", *overrides, "seed=3"), tmp_path))
    second = json.loads((tmp_path / "run.json").read_text())
    assert second["status"] == "export_failed" and second["run_id"] != record["run_id"]
    message = export_run_mismatch(tmp_path / "export")
    assert message is not None and record["run_id"] in message and second["run_id"] in message
    assert "metrics do not describe this export" in message
    # evaluating that export says so too
    from infragym.runner import run_evaluate

    evaluate_cfg = compose_config("evaluate", [f"checkpoint={tmp_path / 'export'}", "logger=none"], tmp_path / "eval")
    with caplog.at_level(logging.WARNING, logger="infragym"):
        run_evaluate(evaluate_cfg)
    assert any("metrics do not describe this export" in r.getMessage() for r in caplog.records)


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_stale_staging_folders_of_killed_exports_are_cleaned(tmp_path: Path) -> None:
    from infragym import export as export_module

    target = tmp_path / "export"
    host = export_module._HOST
    dead = tmp_path / f".export.tmp-{host}-{_dead_pid()}-0123abcd"
    alive = tmp_path / f".export.tmp-{host}-1-89abcdef"  # pid 1 is alive: a concurrent writer
    old_unnamed = tmp_path / ".export.tmp-deadbeef"
    young_unnamed = tmp_path / ".export.old-feedface"
    other_export = tmp_path / f".model.tmp-{host}-{_dead_pid()}-0123abcd"
    for folder in (dead, alive, old_unnamed, young_unnamed, other_export):
        folder.mkdir()
        (folder / "model.bin").write_bytes(b"x" * 1000)
    a_day_ago = time.time() - export_module.STALE_AFTER_S - 60
    os.utime(old_unnamed, (a_day_ago, a_day_ago))
    write_export(
        target,
        component="continuum",
        files={"predictors.json": b"{}"},
        input_schema={},
        output_schema={},
        metrics={},
        config={},
    )
    assert not dead.exists() and not old_unnamed.exists()
    assert alive.exists() and young_unnamed.exists() and other_export.exists()
    assert (target / "manifest.json").is_file()
    assert clean_stale_staging(target) == []
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".export.")) == sorted(
        [alive.name, young_unnamed.name]
    )
