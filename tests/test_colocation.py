"""The co-location simulator and the CloudPerfTrace-layout data: invariants, round trips, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infragym.datasets.cloudperf import (
    CloudPerfDataModule,
    CloudPerfDataset,
    CloudPerfError,
    Normaliser,
    WindowSet,
    load_cloudperf,
    make_windows,
    split_tasks,
    write_cloudperf,
)
from infragym.envs.colocation import FAMILIES, GROUPS, ColocationSimulator, contention, group_sizes
from infragym.models.cloudformer.baselines import HistGradientBoostingBaseline, RidgeBaseline


@pytest.fixture(scope="module")
def sim() -> ColocationSimulator:
    return ColocationSimulator(tasks_per_workload=3, trace_seconds=120)


@pytest.fixture(scope="module")
def traces(sim: ColocationSimulator):
    return sim.simulate(np.random.default_rng(7))


@pytest.fixture(scope="module")
def dataset_root(traces, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_cloudperf(traces, tmp_path_factory.mktemp("cloudperf") / "parquet_ds")


# --------------------------------------------------------------------------- simulator
def test_traces_have_the_paper_shape(traces) -> None:
    assert len(FAMILIES) >= 10
    sizes = group_sizes(206)
    assert sum(sizes.values()) == 206 and set(sizes) == set(GROUPS)
    assert traces.n_tasks == 3 * len(FAMILIES)
    for group in GROUPS:
        assert traces.metrics[group].shape == (traces.n_tasks, 120, sizes[group])
        assert traces.metrics[group].dtype == np.float32
        assert np.isfinite(traces.metrics[group]).all()
    assert ((traces.perf > 0) & (traces.perf <= 1)).all()
    # contention really degrades: a spread of P, and some strongly degraded seconds
    assert traces.perf.std() > 0.08 and (traces.perf < 0.6).mean() > 0.02
    assert set(traces.scenario) == {"static", "dynamic"}


def test_static_neighbours_are_fixed_dynamic_ones_come_and_go(traces) -> None:
    changes = (np.diff(traces.n_neighbours, axis=1) != 0).sum(axis=1)
    static = traces.scenario == "static"
    assert (changes[static] == 0).all()
    assert (changes[~static] > 0).mean() > 0.5
    assert (traces.n_neighbours[static] >= 1).all()


def test_same_seed_same_traces(sim: ColocationSimulator) -> None:
    a = sim.simulate(np.random.default_rng(3), ["redis"])
    b = sim.simulate(np.random.default_rng(3), ["redis"])
    c = sim.simulate(np.random.default_rng(4), ["redis"])
    np.testing.assert_array_equal(a.perf, b.perf)
    np.testing.assert_array_equal(a.metrics["lin_oth"], b.metrics["lin_oth"])
    assert not np.array_equal(a.perf, c.perf)


def test_collector_artefacts(traces, sim: ColocationSimulator) -> None:
    cat = sim.catalogue
    lin = traces.metrics["lin_self"]
    counters = cat.kind["lin_self"] == 2
    assert counters.any()
    # 32-bit counters differenced without wrap handling: negative spikes of about -2^32
    assert (lin[..., counters] < -1e9).any()
    gauges = cat.kind["tr_self"] == 0
    assert traces.metrics["tr_self"][..., gauges].max() <= 100.0
    assert (traces.metrics["tr_self"][..., gauges] == 100.0).any()  # saturation
    assert any((cat.kind[g] == 3).any() for g in GROUPS)  # uninformative metrics


def test_telemetry_carries_the_contention_signal(traces) -> None:
    # Neighbours' LLC/memory counters rise when the target slows down: the signal is learnable.
    x = np.log1p(np.abs(traces.metrics["td_oth"])).mean(axis=2).reshape(-1)
    assert np.corrcoef(x, traces.perf.reshape(-1))[0, 1] < -0.2


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(0.0, 0.8), min_size=6, max_size=6),
    st.lists(st.floats(0.0, 0.8), min_size=6, max_size=6),
    st.floats(0.0, 0.5),
    st.integers(0, 5),
)
def test_contention_is_monotone(own: list[float], other: list[float], extra: float, resource: int) -> None:
    sens = np.array([f.sensitivity for f in FAMILIES.values()])[[0, 1]][:, None, :]
    capacity = np.ones((1, 1, 6))
    demand = np.array([own, other])[:, None, :]
    slowdown, served, unsatisfied, _ = contention(demand, capacity, sens)
    assert (slowdown >= 1.0).all() and (served <= demand + 1e-12).all()
    assert (unsatisfied >= 0).all() and (unsatisfied < 1).all()
    # a neighbour that demands more never makes the target faster
    more = demand.copy()
    more[1, 0, resource] += extra
    assert contention(more, capacity, sens)[0][0, 0] >= slowdown[0, 0] - 1e-12
    # alone and within capacity: no slowdown at all (P = 1)
    alone = contention(demand[:1], capacity, sens[:1])[0]
    if max(own) <= 1.0:
        np.testing.assert_allclose(alone, 1.0)


# --------------------------------------------------------------------------- Parquet layout
def test_parquet_round_trip(traces, dataset_root: Path) -> None:
    parts = sorted(p.name for p in dataset_root.iterdir())
    assert parts[0] == "tasks=00000" and len(parts) == traces.n_tasks
    table = pq.read_table(dataset_root / "tasks=00001" / "part-0.parquet")
    assert {"perf_ori", "workload", *GROUPS} <= set(table.column_names)
    loaded = load_cloudperf(dataset_root)
    assert loaded.n_metrics == 206 and loaded.metric_names[0] == "tr_self.cpu_util"
    np.testing.assert_array_equal(loaded.perf[1], traces.perf[1])
    expected = np.concatenate([traces.metrics[g][1] for g in GROUPS], axis=1)
    np.testing.assert_array_equal(loaded.metrics[1], expected)
    assert list(loaded.workload) == list(traces.workload)
    assert list(loaded.scenario) == list(traces.scenario)


def _rewrite(root: Path, task: str, change) -> Path:
    path = root / f"tasks={task}" / "part-0.parquet"
    table = change(pq.read_table(path))
    pq.write_table(table, path)
    return path


def _copy(dataset_root: Path, tmp_path: Path, n: int = 3) -> Path:
    import shutil

    root = tmp_path / "parquet_ds"
    for part in sorted(dataset_root.iterdir())[:n]:
        shutil.copytree(part, root / part.name)
    return root


def test_flat_metric_columns_are_accepted(dataset_root: Path, tmp_path: Path) -> None:
    root = _copy(dataset_root, tmp_path, 1)
    path = root / "tasks=00000" / "part-0.parquet"
    table = pq.read_table(path)
    columns = {c: table.column(c) for c in ("t", "perf_ori", "workload")}
    for group in GROUPS:
        block = np.asarray(table.column(group).to_pylist(), dtype=np.float32)
        columns.update({f"{group}.m{j:03d}": pa.array(block[:, j]) for j in range(block.shape[1])})
    pq.write_table(pa.table(columns), path)
    flat = load_cloudperf(root)
    assert flat.n_metrics == 206 and flat.metric_names[0] == "tr_self.m000"
    np.testing.assert_array_equal(flat.metrics[0], load_cloudperf(_copy(dataset_root, tmp_path / "b", 1)).metrics[0])


def test_nan_metric_is_refused_naming_file_and_column(dataset_root: Path, tmp_path: Path) -> None:
    root = _copy(dataset_root, tmp_path)

    def poison(table: pa.Table) -> pa.Table:
        block = np.asarray(table.column("lin_oth").to_pylist(), dtype=np.float32)
        block[5, 2] = np.nan
        column = pa.FixedSizeListArray.from_arrays(pa.array(block.reshape(-1)), block.shape[1])
        return table.set_column(table.column_names.index("lin_oth"), "lin_oth", column)

    path = _rewrite(root, "00001", poison)
    with pytest.raises(CloudPerfError, match=r"tasks=00001.*lin_oth\[2\].*nan.*row 5") as error:
        load_cloudperf(root)
    assert str(path.parent) in str(error.value)


def test_missing_group_and_mismatched_counts_are_refused(dataset_root: Path, tmp_path: Path) -> None:
    root = _copy(dataset_root, tmp_path)
    _rewrite(root, "00002", lambda t: t.drop_columns(["td_oth"]))
    with pytest.raises(CloudPerfError, match=r"tasks=00002.*'td_oth' is missing"):
        load_cloudperf(root)

    root = _copy(dataset_root, tmp_path / "b")

    def shorter(table: pa.Table) -> pa.Table:
        block = np.asarray(table.column("tr_self").to_pylist(), dtype=np.float32)[:, :-1]
        column = pa.FixedSizeListArray.from_arrays(pa.array(block.reshape(-1)), block.shape[1])
        return table.set_column(table.column_names.index("tr_self"), "tr_self", column)

    _rewrite(root, "00002", shorter)
    with pytest.raises(CloudPerfError, match=r"tasks=00002.*'tr_self' has 39 metrics but .*tasks=00000 has 40"):
        load_cloudperf(root)


def test_bad_perf_and_missing_folder(dataset_root: Path, tmp_path: Path) -> None:
    root = _copy(dataset_root, tmp_path)
    _rewrite(root, "00000", lambda t: t.set_column(1, "perf_ori", pa.array(np.full(t.num_rows, 1.5, np.float32))))
    with pytest.raises(CloudPerfError, match=r"perf_ori.*\(0, 1\]"):
        load_cloudperf(root)
    with pytest.raises(CloudPerfError, match="no such folder"):
        load_cloudperf(tmp_path / "nope")


# --------------------------------------------------------------------------- windows and splits
def test_splits_keep_unseen_applications_out_of_training(dataset_root: Path) -> None:
    traces = load_cloudperf(dataset_root)
    dataset = CloudPerfDataset(path=str(dataset_root), window=20, stride=7, eval_stride=10, val_fraction=0.34)
    tasks = split_tasks(traces, dataset.unseen_workloads, 0.34, 0.34, np.random.default_rng(0))
    seen = set(traces.workload[tasks["train"]]) | set(traces.workload[tasks["val"]])
    assert not seen & set(dataset.unseen_workloads)
    assert set(traces.workload[tasks["test_unseen"]]) == set(dataset.unseen_workloads)
    all_tasks = np.concatenate(list(tasks.values()))
    assert len(np.unique(all_tasks)) == len(all_tasks) == len(traces.workload)  # disjoint, complete

    splits = dataset.splits(traces, np.random.default_rng(0))
    # normalisation fitted on the training tasks only
    train_rows = np.concatenate([traces.metrics[i] for i in tasks["train"]])
    np.testing.assert_allclose(splits.normaliser.mean, Normaliser.fit(train_rows).mean, rtol=1e-5)
    assert abs(splits.train.metrics.mean()) < 0.5 and np.abs(splits.train.metrics).max() <= 5.0
    # windows never cross tasks; labels are P at the window's last second
    raw = make_windows(traces, tasks["train"], window=20, horizon=3, stride=7, normaliser=None)
    x, y = raw.gather(np.arange(len(raw)))
    first = traces.metrics[tasks["train"][0]]
    np.testing.assert_array_equal(x[1], first[7:27])
    assert y[1] == traces.perf[tasks["train"][0]][7 + 19 + 3]
    per_task = (120 - 20 - 3) // 7 + 1
    assert len(raw) == per_task * len(tasks["train"])

    module = CloudPerfDataModule(splits, batch_size=16)
    xb, yb = next(iter(module.train_dataloader()))
    assert tuple(xb.shape) == (16, 20, 206) and tuple(yb.shape) == (16,)
    assert len(module.test_dataloader()) == 2


def test_window_and_split_errors(dataset_root: Path) -> None:
    traces = load_cloudperf(dataset_root)
    with pytest.raises(CloudPerfError, match=r"window 200 \+ horizon 0 s is longer than its trace \(120 s\)"):
        make_windows(traces, np.array([0]), window=200, horizon=0, stride=1, normaliser=None)
    with pytest.raises(CloudPerfError, match=r"unseen_workloads \['minio'\] are not in the data"):
        split_tasks(traces, ["minio"], 0.2, 0.2, np.random.default_rng(0))


def _recent_signal_windows(seed: int, n_tasks: int = 12, seconds: int = 80) -> WindowSet:
    """Windows whose label is carried by the metric's last 5 s only: P is constant over blocks
    of 5 s aligned with the windows' ends, metric 0 is P plus noise every second, the others noise."""
    rng = np.random.default_rng(seed)
    perf = np.repeat(rng.uniform(0.4, 1.0, n_tasks * seconds // 5), 5).astype(np.float32)
    metrics = rng.normal(0.0, 1.0, (n_tasks * seconds, 3)).astype(np.float32)
    metrics[:, 0] = perf + rng.normal(0.0, 0.15, len(perf))
    starts = np.concatenate([np.arange(0, seconds - 30 + 1, 5) + t * seconds for t in range(n_tasks)])
    workload, scenario = np.full(len(starts), "redis"), np.full(len(starts), "static")
    return WindowSet(metrics, perf, starts.astype(np.int64), 30, 0, workload, scenario)


def test_summary_features_over_the_window_tail() -> None:
    windows = _recent_signal_windows(0)
    x, _ = windows.gather(np.arange(len(windows)))
    tail = windows.summary_features(tail=10)
    assert tail.shape == (len(windows), 5 * 3)
    np.testing.assert_allclose(tail[:, :3], x[:, -10:].mean(1), rtol=1e-6)
    np.testing.assert_allclose(tail[:, 3:6], x[:, -10:].std(1), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(tail[:, 12:], x[:, -1])
    np.testing.assert_allclose(windows.summary_features(tail=30), windows.summary_features(), rtol=1e-6)
    with pytest.raises(CloudPerfError, match=r"last 31 s of a 30 s window"):
        windows.summary_features(tail=31)


@pytest.mark.parametrize("baseline", [RidgeBaseline, HistGradientBoostingBaseline])
def test_tabular_baselines_choose_the_statistics_span_on_validation(baseline: type) -> None:
    train, val = _recent_signal_windows(1, n_tasks=40), _recent_signal_windows(2)
    model = baseline(tails=(None, 5)).fit(train, val, np.random.default_rng(0))
    # the label is the last block's P: statistics over the last 5 s estimate it, the whole window's dilute it
    assert model.tail == 5 and model.chosen["tail_s"] == 5
    whole = baseline(tails=(None,)).fit(train, val, np.random.default_rng(0))
    mae = [float(np.abs(m.predict(val) - val.labels).mean()) for m in (model, whole)]
    assert mae[0] < 0.75 * mae[1]
    # a span as long as the window is the whole window: only that candidate is left
    assert baseline(tails=(30,)).fit(train, val, np.random.default_rng(0)).tail is None
