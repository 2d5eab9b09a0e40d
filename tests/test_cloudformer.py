"""CloudFormer end to end at a tiny scale: networks, the Lightning task (checkpoints, resume, DDP
with two CPU processes), metrics.json, plots, and the ONNX export loaded without Lightning."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from omegaconf.errors import ConfigKeyError

import infragym
from infragym import components
from infragym.datasets.cloudperf import load_cloudperf, make_windows
from infragym.export import ExportError
from infragym.logging import RunLogger
from infragym.models.cloudformer.module import predict_windows
from infragym.models.cloudformer.networks import ARCHITECTURES, NetworkSpec, build_network
from infragym.models.cloudformer.task import CloudFormerTask
from infragym.runner import build_task, evaluation_options, write_report

from .conftest import compose_config, smoke

GROUPS = [4, 5, 3, 4, 5, 3]
MODELS = ["cloudformer", "lstm", "temporal_transformer", "metric_transformer"]
MODELS += ["mean", "persistence", "ridge", "hist_gradient_boosting"]
# CloudFormer at its smoke scale (conf/debug/cloudformer.yaml: seconds per network).
SMALL_CLOUDFORMER = smoke("cloudformer", "logger=none")


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_networks_map_windows_to_p(arch: str) -> None:
    torch.manual_seed(0)
    net = build_network(NetworkSpec(arch=arch, d_model=16, n_heads=2, n_layers=1), GROUPS, 10)
    x = torch.randn(5, 10, sum(GROUPS))
    p = net(x)
    assert p.shape == (5,) and ((p > 0) & (p < 1)).all()
    p.sum().backward()
    grads = {n for n, q in net.named_parameters() if q.grad is not None and q.grad.abs().sum() > 0}
    if arch == "cloudformer":  # both branches feed the fused head
        assert any(n.startswith("temporal.") for n in grads) and any(n.startswith("system.") for n in grads)
    # one window's prediction does not depend on the rest of the batch (eval mode)
    net.eval()
    np.testing.assert_allclose(net(x)[:1].detach().numpy(), net(x[:1]).detach().numpy(), atol=1e-5)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_linear_skip_path_starts_at_zero_and_adds_recent_statistics(arch: str) -> None:
    spec = {"arch": arch, "d_model": 16, "n_heads": 2, "n_layers": 1}
    torch.manual_seed(0)
    plain = build_network(NetworkSpec(**spec), GROUPS, 10).eval()
    torch.manual_seed(0)
    wide = build_network(NetworkSpec(**spec, skip_tail=4), GROUPS, 10).eval()
    wide.load_state_dict(plain.state_dict(), strict=False)  # the same deep part
    x = torch.randn(6, 10, sum(GROUPS))
    torch.testing.assert_close(wide(x), plain(x))  # zero-initialised: the plain network at first
    skip = wide.head.skip
    assert skip is not None and skip.tail == 4
    with torch.no_grad():
        skip.linear.weight.normal_()
        skip.linear.bias.fill_(0.3)
        w = skip.linear.weight[0]
        n = sum(GROUPS)
        expected = x[:, -4:].mean(1) @ w[:n] + x[:, -1] @ w[n:] + 0.3
        torch.testing.assert_close(wide(x), torch.sigmoid(torch.logit(plain(x)) + expected), atol=1e-5, rtol=1e-4)


def test_bad_spec_is_refused() -> None:
    with pytest.raises(ValueError, match=r"model\.arch"):
        NetworkSpec(arch="gru")
    with pytest.raises(ValueError, match="divisible"):
        NetworkSpec(d_model=30, n_heads=4)
    with pytest.raises(ValueError, match=r"model\.skip_tail"):
        NetworkSpec(skip_tail=-1)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    run_dir = tmp_path_factory.mktemp("cloudformer_run")
    cfg = compose_config("train", SMALL_CLOUDFORMER, run_dir)
    task = build_task(cfg)
    assert isinstance(task, CloudFormerTask)
    logger = RunLogger()
    logger.start(run_dir, {}, "test")
    task.fit(logger)
    report = task.evaluate()
    write_report(report, run_dir, logger)
    export_dir = task.export(run_dir / "export", metrics=report.metrics, config={"seed": 0})
    return {"task": task, "report": report, "run_dir": run_dir, "export": export_dir, "cfg": cfg}


def test_metrics_tables_and_plots(trained: dict[str, Any]) -> None:
    run_dir: Path = trained["run_dir"]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for model in MODELS:
        for split in ("test_unseen", "test_seen"):
            for key in ("mae", "p95_abs_error"):
                assert 0 <= metrics[f"{split}/{model}/{key}"] <= 100
                for scenario in ("static", "dynamic"):
                    assert f"{split}_{scenario}/{model}/{key}" in metrics
        assert (run_dir / "plots" / f"pred_vs_actual_{model}.png").stat().st_size > 1000
        assert metrics[f"test_unseen/{model}/mae"] <= metrics[f"test_unseen/{model}/p95_abs_error"]
    # the values are what they claim: recompute CloudFormer's unseen MAE from its predictions
    task: CloudFormerTask = trained["task"]
    windows = task.prepare_data().test_unseen
    pred = predict_windows(task.nets["cloudformer"], windows)
    assert metrics["test_unseen/cloudformer/mae"] == pytest.approx(100 * np.abs(pred - windows.labels).mean(), 1e-5)
    # each network's blend with ridge is the mean of the two predictions (reported, not a baseline)
    blend = 0.5 * (pred + task.predict("ridge", windows))
    assert metrics["test_unseen/cloudformer+ridge/mae"] == pytest.approx(100 * np.abs(blend - windows.labels).mean())
    assert {f"test_seen_static/{n}+ridge/mae" for n in task.neural_specs} <= set(metrics)
    assert "cloudformer+ridge" not in task.model_names
    # a trained model beats a constant on the seen applications, even at this size
    assert metrics["test_seen/hist_gradient_boosting/mae"] < metrics["test_seen/mean/mae"]
    assert "test_unseen/cloudformer/margin_vs_best_baseline_pct" in metrics
    # what the tabular baselines chose on validation is recorded: a statistics span in the window
    for name in ("ridge", "hist_gradient_boosting"):
        assert metrics[f"chosen/{name}/tail_s"] in (10.0, 12.0)  # the last 10 s or the whole 12 s window
    assert metrics["chosen/ridge/alpha"] > 0
    text = (run_dir / "results.txt").read_text()
    assert "paper: CloudFormer" in text and "hist_gradient_boosting" in text


def test_checkpoints_best_and_last_then_resume(trained: dict[str, Any]) -> None:
    task: CloudFormerTask = trained["task"]
    for name in ("cloudformer", "lstm", "temporal_transformer", "metric_transformer"):
        folder = task.checkpoint_dir(name)
        assert (folder / "last.ckpt").is_file()
        assert Path(task.best_checkpoints[name]).parent == folder
    # A new run in the same folder with one more epoch continues from last.ckpt.
    first = torch.load(task.checkpoint_dir("cloudformer") / "last.ckpt", map_location="cpu", weights_only=False)
    cfg = trained["cfg"].copy()
    cfg.trainer.max_epochs = 3
    resumed = build_task(cfg)
    resumed.fit_network("cloudformer")
    trainer = resumed.trainers["cloudformer"]
    assert trainer.ckpt_path == str(task.checkpoint_dir("cloudformer") / "last.ckpt")
    # it continued: two epochs restored, one more trained, and last.ckpt moved on
    steps_per_epoch = first["global_step"] // 2
    assert first["epoch"] == 1 and trainer.current_epoch == 3
    assert trainer.global_step == 3 * steps_per_epoch
    again = torch.load(task.checkpoint_dir("cloudformer") / "last.ckpt", map_location="cpu", weights_only=False)
    assert again["global_step"] == 3 * steps_per_epoch


def test_onnx_export_matches_torch_and_loads_without_lightning(trained: dict[str, Any]) -> None:
    task: CloudFormerTask = trained["task"]
    predictor = infragym.load(trained["export"])
    assert predictor.manifest["component"] == "cloudformer"
    # raw telemetry from the run's own Parquet data, as a service would collect it
    traces = load_cloudperf(trained["run_dir"] / "data" / "parquet_ds")
    splits = task.prepare_data()
    unseen = np.flatnonzero(np.isin(traces.workload, splits.unseen_workloads))
    raw = make_windows(traces, unseen, window=12, horizon=0, stride=8, normaliser=None)
    x_raw, _ = raw.gather(np.arange(len(raw)))
    onnx_p = predictor.predict(x_raw)
    torch_p = predict_windows(task.nets["cloudformer"], splits.test_unseen)
    assert onnx_p.shape == (len(raw),)
    np.testing.assert_allclose(onnx_p, torch_p, atol=1e-4)
    # one window, and batch sizes other than the example's (the batch axis is dynamic)
    assert predictor.predict(x_raw[0]).shape == (1,)
    np.testing.assert_allclose(predictor.predict(x_raw[:7]), torch_p[:7], atol=1e-4)


def test_predict_refuses_bad_windows(trained: dict[str, Any]) -> None:
    predictor = infragym.load(trained["export"])
    with pytest.raises(ExportError, match=r"expected telemetry of shape \(batch, 12, 48\)"):
        predictor.predict(np.zeros((2, 12, 47), np.float32))
    bad = np.zeros((2, 12, 48), np.float32)
    bad[1, 3, 5] = np.inf
    with pytest.raises(ExportError, match=r"metric 'tr_self\.\w+' is inf in window 1, second 3"):
        predictor.predict(bad)


def test_tampered_onnx_is_refused(trained: dict[str, Any], tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "export"
    shutil.copytree(trained["export"], copy)
    with (copy / "cloudformer.onnx").open("ab") as handle:
        handle.write(b"\0")
    with pytest.raises(ExportError, match="sha256"):
        infragym.load(copy)


def test_ddp_spawn_with_two_cpu_processes(tmp_path: Path) -> None:
    overrides = [*SMALL_CLOUDFORMER, "trainer=ddp", "trainer.strategy=ddp_spawn", "trainer.accelerator=cpu"]
    overrides += ["trainer.max_epochs=1", "trainer.sync_batchnorm=false"]
    cfg = compose_config("train", overrides, tmp_path)
    task = build_task(cfg)
    net = task.fit_network("cloudformer")
    trainer = task.trainers["cloudformer"]
    assert trainer.world_size == 2 and trainer.strategy.__class__.__name__ == "DDPStrategy"
    last = torch.load(task.checkpoint_dir("cloudformer") / "last.ckpt", map_location="cpu", weights_only=False)
    n_train, batch = len(task.prepare_data().train), cfg.dataset.batch_size
    # each process saw half the windows (DistributedSampler), so one epoch is half the steps
    assert last["global_step"] == int(np.ceil(np.ceil(n_train / 2) / batch))
    pred = predict_windows(net, task.prepare_data().val)
    assert np.isfinite(pred).all() and ((pred > 0) & (pred < 1)).all()


def test_evaluate_export_reproduces_the_run(trained: dict[str, Any]) -> None:
    run = trained["report"].metrics
    fresh = build_task(trained["cfg"])  # as evaluate.py does, from the run's config and seed
    report = fresh.evaluate_export(infragym.load(trained["export"]), refit_baselines=True)
    for split in ("test_unseen", "test_seen"):
        # the export on raw telemetry regenerated in memory = the trained network on the run's data
        assert report.metrics[f"{split}/cloudformer_export/mae"] == pytest.approx(
            run[f"{split}/cloudformer/mae"], abs=1e-3
        )
        for name in ("ridge", "hist_gradient_boosting", "mean"):
            assert report.metrics[f"{split}/{name}/mae"] == pytest.approx(run[f"{split}/{name}/mae"], rel=1e-6)
    # Deoxys' option does not exist for CloudFormer: refused by its evaluation dataclass, by name.
    with pytest.raises(ConfigKeyError, match="n_test_events"):
        evaluation_options(components.get("cloudformer"), {"n_test_events": 100})
    assert evaluation_options(components.get("cloudformer"), {}) == {"refit_baselines": True}


def test_blend_with_must_be_a_tabular_baseline(tmp_path: Path) -> None:
    cfg = compose_config("train", [*SMALL_CLOUDFORMER, "task.blend_with=lstm"], tmp_path)
    with pytest.raises(Exception, match=r"task\.blend_with: 'lstm' is not a tabular baseline"):
        build_task(cfg)
