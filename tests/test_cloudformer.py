"""CloudFormer on the paper's terms at a tiny scale: networks over variable-length executions
(padding never changes a prediction), the Lightning task over partitions, metrics.json in the
paper's form, the ONNX export over dynamic batch and time axes, the served `executions` form,
and training from a folder in the real layout with `dataset.path` alone."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import infragym
from infragym.datasets.cloudperf import load_cloudperf
from infragym.export import ExportError
from infragym.logging import RunLogger
from infragym.models.cloudformer.data import ExecutionDataset, crop
from infragym.models.cloudformer.module import log_cosh, predict_executions
from infragym.models.cloudformer.networks import ARCHITECTURES, NetworkSpec, build_network, count_parameters
from infragym.models.cloudformer.serving import operations
from infragym.models.cloudformer.task import CloudFormerTask
from infragym.runner import build_task, write_report

from .conftest import compose_config, smoke

MODELS = [
    "cloudformer",
    "cloudformer_temporal",
    "cloudformer_system",
    "linear_regression",
    "gamma_glm",
    "decision_tree",
    "random_forest",
    "lstm",
    "ridge",
]
SMALL_CLOUDFORMER = smoke("cloudformer", "logger=none")


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_padding_never_changes_an_executions_prediction(arch: str) -> None:
    torch.manual_seed(0)
    net = build_network(NetworkSpec(arch=arch, d_model=16, n_heads=2, n_layers=1, ff=32), 10).eval()
    x = torch.randn(3, 12, 10)
    lengths = torch.tensor([12, 7, 3])
    together = net(x, lengths)
    assert together.shape == (3,) and ((together > 0) & (together < 1)).all()
    for b in range(3):  # alone, at its own length: the same P
        alone = net(x[b : b + 1, : lengths[b]], lengths[b : b + 1])
        torch.testing.assert_close(alone, together[b : b + 1], atol=1e-5, rtol=1e-5)
    garbage = x.clone()
    garbage[1, 7:] = 1e3  # whatever fills the padding
    torch.testing.assert_close(net(garbage, lengths), together, atol=1e-5, rtol=1e-5)
    if arch == "cloudformer":  # both branches feed the head
        net.train()
        net(x, lengths).sum().backward()
        grads = {n.split(".")[0] for n, p in net.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
        assert {"temporal", "system", "head"} <= grads


def test_the_paper_sized_network() -> None:
    paper = NetworkSpec()  # d 64, 4 heads, 4 blocks per branch, FFN 256, head dropout 0.4, Adam 1e-5
    assert (paper.d_model, paper.n_heads, paper.n_layers, paper.ff, paper.lr) == (64, 4, 4, 256, 1e-5)
    full = count_parameters(build_network(paper, 206))
    temporal = count_parameters(build_network(NetworkSpec(arch="temporal"), 206))
    assert 400_000 < full < 500_000 and 200_000 < temporal < 240_000  # paper: ~228k (see the docs page)


def test_log_cosh_is_half_squared_error_near_zero_and_linear_far() -> None:
    small = torch.tensor([0.01, -0.02])
    assert log_cosh(small, torch.zeros(2)).item() == pytest.approx(float((small**2 / 2).mean()), rel=1e-3)
    assert log_cosh(torch.tensor([30.0]), torch.tensor([0.0])).item() == pytest.approx(30 - np.log(2), rel=1e-6)


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


def test_metrics_in_the_papers_form(trained: dict[str, Any]) -> None:
    metrics = json.loads((trained["run_dir"] / "metrics.json").read_text())
    task: CloudFormerTask = trained["task"]
    assert len(task.partitions) == 2 and all(len(p) == 4 for p in task.partitions)
    for model in MODELS:
        for m in ("mae", "mse"):
            key = f"test_unseen/{model}/{m}"
            per = [metrics[f"partition{k}/{key}"] for k in range(2)]
            assert metrics[key] == pytest.approx(np.mean(per)) and metrics[f"{key}_std"] == pytest.approx(
                np.std(per, ddof=1)
            )
        assert 0 <= metrics[f"test_unseen/{model}/mae"] <= 100
        assert metrics[f"test_unseen/{model}/mse"] >= metrics[f"test_unseen/{model}/mae"] ** 2 / 1.0001 - 1e-6
    # recompute CloudFormer's partition-1 numbers from its predictions
    splits = task.splits(1)
    pred = predict_executions(task.partition_nets[1]["cloudformer"], task.executions(1, "test_unseen"))
    err = 100 * (pred - splits.test_unseen.perf)
    assert metrics["partition1/test_unseen/cloudformer/mae"] == pytest.approx(np.abs(err).mean(), rel=1e-5)
    assert metrics["partition1/test_unseen/cloudformer/mse"] == pytest.approx((err**2).mean(), rel=1e-5)
    assert set(splits.test_unseen.application) == set(task.partitions[1])
    assert not set(splits.train.application) & set(task.partitions[1])
    assert metrics["test_unseen/random_forest/mae"] < 50  # tuned, not a constant gone wrong
    assert any(k.startswith("chosen/random_forest/partition0/") for k in metrics)
    text = (trained["run_dir"] / "results.txt").read_text()
    assert "paper: random_forest" in text and "paper: cloudformer_temporal" in text
    assert (trained["run_dir"] / "plots" / "pred_vs_actual_cloudformer.png").stat().st_size > 1000


def test_onnx_export_takes_variable_length_executions(trained: dict[str, Any]) -> None:
    task: CloudFormerTask = trained["task"]
    predictor = infragym.load(trained["export"])
    assert predictor.manifest["component"] == "cloudformer"
    # raw executions from the run's own Parquet data, as a collector would give them
    data = load_cloudperf(trained["run_dir"] / "data")
    unseen = task.splits(0).test_unseen
    rows = [int(np.flatnonzero([s == src for s in data.source])[0]) for src in unseen.source] if unseen.source else []
    raw = [data.metrics[i] for i in rows] if rows else unseen.metrics
    assert len({len(r) for r in raw}) > 1  # different T_i in one batch
    onnx_p = predictor.predict(raw)
    torch_p = predict_executions(task.nets["cloudformer"], task.executions(0, "test_unseen"))
    np.testing.assert_allclose(onnx_p, torch_p, atol=1e-4)
    assert predictor.predict(raw[0]).shape == (1,)  # one execution
    np.testing.assert_allclose(predictor.predict(raw[0]), torch_p[:1], atol=1e-4)
    longest = max(raw, key=len)
    tiled = np.concatenate([longest] * 3)  # longer than any training execution: the time axis is dynamic
    assert np.isfinite(predictor.predict(tiled)).all()
    with pytest.raises(ExportError, match=r"execution 1 has shape \(5, 3\), expected \(T, 36\)"):
        predictor.predict([raw[0], np.zeros((5, 3))])
    bad = raw[0].copy()
    bad[2, 4] = np.nan
    with pytest.raises(ExportError, match=r"metric 'tr_self\.\w+' is nan in execution 0, second 2"):
        predictor.predict(bad)


def test_served_predict_takes_windows_or_executions(trained: dict[str, Any]) -> None:
    predictor = infragym.load(trained["export"])
    (op,) = operations(predictor, predictor.manifest)
    rng = np.random.default_rng(0)
    executions = [rng.gamma(2.0, 5.0, size=(t, 36)).tolist() for t in (3, 17, 9)]
    body = op.request.model_validate({"executions": executions})
    p = op.handle(body).p
    assert p == pytest.approx(predictor.predict([np.asarray(e, np.float32) for e in executions]).tolist(), rel=1e-6)
    window = predictor.manifest["input_schema"]["window"]
    assert op.handle(op.request.model_validate(op.example())).p[0] > 0
    for bad, message in (
        ({}, "exactly one of"),
        ({"windows": [[[1.0] * 36] * window], "executions": executions}, "exactly one of"),
        ({"executions": [[[1.0] * 35]]}, "execution 0, second 0 has 35 metrics, the model takes 36"),
        ({"executions": [[]]}, "execution 0 has no seconds"),
        ({"windows": [[[1.0] * 36] * (window + 1)]}, f"the model takes {window}"),
    ):
        with pytest.raises(ValueError, match=message):
            op.request.model_validate(bad)


def test_evaluate_export_reproduces_partition_zero(trained: dict[str, Any]) -> None:
    run = trained["report"].metrics
    fresh = build_task(trained["cfg"])  # as evaluate.py does, from the run's config and seed
    report = fresh.evaluate_export(infragym.load(trained["export"]), refit_baselines=False)
    assert report.metrics["test_unseen/cloudformer_export/mae"] == pytest.approx(
        run["partition0/test_unseen/cloudformer/mae"], abs=1e-3
    )


def test_the_full_experiment_trains_on_a_real_layout_folder(trained: dict[str, Any], tmp_path: Path) -> None:
    """experiment=cloudformer_full at toy size on CPU, from a folder holding parquet_ds/ (the
    smoke run's simulated executions, in the real layout) with dataset.path alone."""
    from infragym.runner import run_train

    folder = trained["run_dir"] / "data"
    overrides = smoke("cloudformer_full", "logger=none", "trainer=cpu", f"dataset.path={folder}")
    overrides += ["task.baselines=[lstm,ridge]", "trainer.max_epochs=1", "dataset.n_partitions=1"]
    run_train(compose_config("train", overrides, tmp_path))
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    for model in ("cloudformer", "lstm", "ridge"):
        assert 0 <= metrics[f"test_unseen/{model}/mae"] <= 100
    assert not (tmp_path / "data").exists()  # nothing simulated
    # the paper's network shape at toy width: 4 blocks per branch
    net = torch.load(next((tmp_path / "checkpoints" / "cloudformer").glob("epoch_*.ckpt")), weights_only=False)
    assert any("temporal.blocks.3." in k for k in net["state_dict"])


def test_long_executions_are_read_at_evenly_spaced_seconds() -> None:
    metrics = np.arange(50, dtype=np.float32)[:, None] * np.ones((1, 3), np.float32)
    assert crop(metrics, 100) is metrics
    cropped = crop(metrics, 5)
    np.testing.assert_array_equal(cropped[:, 0], [0, 12, 24, 37, 49])


def test_dataset_batches_are_padded_with_lengths(trained: dict[str, Any]) -> None:
    task: CloudFormerTask = trained["task"]
    data: ExecutionDataset = task.executions(0, "train")
    x, lengths, _ = data.__getitems__([0, 1, 2])
    assert (
        x.shape[0] == 3 and x.shape[1] == int(lengths.max()) and torch.equal(lengths, torch.as_tensor(data.lengths[:3]))
    )
    assert (x[torch.arange(x.shape[1])[None, :].expand(3, -1) >= lengths[:, None]] == 0).all()
