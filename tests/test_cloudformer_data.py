"""CloudPerfTrace's real layout (one row per execution, flat per-second lists with a leading
timestamp) read from a fixture written with pyarrow from the published description; the
loader's refusals; the execution simulator's invariants and its round trip through the layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from infragym.datasets.cloudperf import GROUPS, CloudPerfError, load_cloudperf, write_cloudperf
from infragym.envs.colocation import APPLICATIONS, STATIC_APPLICATIONS, ColocationSimulator
from infragym.models.cloudformer.data import BucketBatchSampler, make_partitions, split_executions

SIZES = {"tr": 53, "lin": 38, "td": 12}  # the paper's metrics per VM and collector
T0 = 1_650_000_000.0


def _group_values(execution: int, group: str, seconds: int) -> np.ndarray:
    """Per second: the Unix timestamp, then n metrics whose value encodes (execution, group, second, metric)."""
    n = SIZES[group.split("_")[0]]
    g = GROUPS.index(group)
    metrics = execution * 1e4 + g * 1e3 + np.arange(seconds)[:, None] * 10 + np.arange(n)[None, :] / 100
    return np.column_stack([T0 + 1000 * execution + np.arange(seconds), metrics]).ravel()


def _real_layout_table(executions: list[tuple[int, int]], *, mixed_types: bool = True) -> pa.Table:
    """``(execution id, seconds)`` rows as the published data set stores them: ``perf_ori``
    double, ``workload`` integer, each group a flat list (some ``list<float64>``, some
    ``large_list<float64>``), plus a column the loader does not know."""
    columns: dict[str, pa.Array] = {
        "perf_ori": pa.array([0.3 + 0.1 * e for e, _ in executions], pa.float64()),
        "workload": pa.array([e % 4 for e, _ in executions], pa.int64()),
        "vm_name": pa.array([f"vm{e}" for e, _ in executions]),
    }
    for i, group in enumerate(GROUPS):
        kind = pa.large_list(pa.float64()) if mixed_types and i % 2 else pa.list_(pa.float64())
        columns[group] = pa.array([_group_values(e, group, t) for e, t in executions], kind)
    return pa.table(columns)


def _write(root: Path, task: str, table: pa.Table, name: str = "part-0.parquet") -> None:
    (root / f"tasks={task}").mkdir(parents=True, exist_ok=True)
    pq.write_table(table, root / f"tasks={task}" / name)


@pytest.fixture
def real_layout(tmp_path: Path) -> Path:
    root = tmp_path / "CloudPerfTrace" / "parquet_ds"
    _write(root, "5", _real_layout_table([(0, 5), (1, 8)]))  # Redis: two executions, 5 s and 8 s
    _write(root, "14", _real_layout_table([(2, 3)]), name="c000.snappy.parquet")  # Minio, Spark-style name
    (root / "tasks=14" / "_SUCCESS").write_text("")
    return root.parent


def test_the_real_layout_loads_one_execution_per_row(real_layout: Path) -> None:
    data = load_cloudperf(real_layout)  # the folder holding parquet_ds/
    assert len(data) == 3 and data.n_metrics == 2 * (53 + 38 + 12) == 206
    by_app = {a: np.flatnonzero(data.application == a) for a in ("redis", "minio")}
    assert len(by_app["redis"]) == 2 and len(by_app["minio"]) == 1  # tasks=5 Redis, tasks=14 Minio
    lengths = sorted(data.lengths.tolist())
    assert lengths == [3, 5, 8]  # T_i seconds, the timestamps stripped
    row = by_app["redis"][1]
    metrics = data.metrics[row]
    # second 4, metric 7 of lin_oth (the 5th group): the value written there
    col = 53 + 38 + 12 + 53 + 7
    assert metrics[4, col] == pytest.approx(1 * 1e4 + 4 * 1e3 + 40 + 0.07)
    assert data.perf[row] == pytest.approx(0.4) and data.workload[row] == "1"
    assert data.start[row] == T0 + 1000 and data.scenario[row] == "unknown"
    assert data.source[row].endswith("tasks=5/part-0.parquet#1")
    capped = load_cloudperf(real_layout, max_executions_per_application=1, seed=0)  # rows chosen before decoding
    assert sorted(capped.application.tolist()) == ["minio", "redis"]


def test_float32_lists_allow_equal_timestamps(tmp_path: Path) -> None:
    table = _real_layout_table([(0, 4)], mixed_types=False)
    table = table.set_column(
        table.schema.get_field_index("td_self"), "td_self", table.column("td_self").cast(pa.list_(pa.float32()))
    )
    _write(tmp_path / "parquet_ds", "7", table)
    data = load_cloudperf(tmp_path / "parquet_ds")  # float32 cannot tell consecutive Unix seconds apart
    assert data.application.tolist() == ["graph_analytics"] and data.lengths.tolist() == [4]


def _broken(tmp_path: Path, edit) -> Path:
    table = _real_layout_table([(0, 5), (1, 6)])
    columns = {name: table.column(name).to_pylist() for name in table.column_names}
    edit(columns)
    fixed = pa.table({k: pa.array(v, table.schema.field(k).type) for k, v in columns.items() if v is not None})
    _write(tmp_path / "parquet_ds", "9", fixed)
    return tmp_path / "parquet_ds"


def _set(columns: dict, group: str, row: int, index: int, value: float) -> None:
    values = list(columns[group][row])
    values[index] = value
    columns[group][row] = values


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda c: _set(c, "lin_self", 1, 39 + 3, float("nan")),
            r"row 1, column 'lin_self': metric 2 of second 1 is nan",
        ),
        (lambda c: _set(c, "td_oth", 0, 13, float("inf")), r"row 0, column 'td_oth': timestamp of second 1 is inf"),
        (lambda c: c.update(tr_oth=None), r"required column\(s\) \['tr_oth'\] missing"),
        (lambda c: c["td_self"].__setitem__(1, None), r"row 1, column 'td_self': null"),
        (
            lambda c: c["tr_self"].__setitem__(0, c["tr_self"][0][:-3]),
            r"row 0, column 'tr_self': 267 values is not a multiple of the stride 54",
        ),
        (
            lambda c: c["lin_oth"].__setitem__(1, c["lin_oth"][1][:-39]),
            r"row 1: column 'lin_oth' has 5 seconds but 'tr_self' has 6",
        ),
        (
            lambda c: _set(c, "td_self", 0, 13 * 4, T0 + 7),
            r"row 0: column 'td_self' timestamp of second 4 is 1650000007",
        ),
        (
            lambda c: _set(c, "tr_self", 1, 54 * 3, T0 + 1000),
            r"row 1, column 'tr_self': timestamps not increasing at second 3",
        ),
        (lambda c: c["perf_ori"].__setitem__(1, 0.0), r"row 1, column 'perf_ori': 0.0"),
    ],
    ids=[
        "nan",
        "inf_timestamp",
        "missing_group",
        "null_group",
        "stride",
        "t_disagree",
        "ts_disagree",
        "ts_order",
        "perf",
    ],
)
def test_bad_rows_are_refused_naming_file_row_and_column(tmp_path: Path, edit, message: str) -> None:
    root = _broken(tmp_path, edit)
    with pytest.raises(CloudPerfError, match=r"tasks=9/part-0\.parquet.*" + message):
        load_cloudperf(root)


def test_group_sizes_come_from_the_loader_when_the_collector_differs(tmp_path: Path) -> None:
    sim = ColocationSimulator(n_executions=11, min_seconds=4, max_seconds=6, group_sizes={"tr": 5, "lin": 4, "td": 3})
    ex = sim.simulate(np.random.default_rng(0))
    table = pa.table(
        {
            "perf_ori": pa.array(ex.perf[:2].astype(float)),
            "workload": pa.array([1, 2]),
            **{
                g: pa.array(
                    [
                        np.column_stack(
                            [ex.timestamps[i], ex.metrics[i][:, k * 0 : k * 0 + sim.group_sizes[g]]]
                        ).ravel()
                        for i in range(2)
                    ]
                )
                for k, g in enumerate(GROUPS)
            },
        }
    )
    _write(tmp_path / "parquet_ds", "4", table)  # no metadata: the paper's 53 / 38 / 12 do not fit
    with pytest.raises(CloudPerfError, match="not a multiple of the stride 54"):
        load_cloudperf(tmp_path)
    data = load_cloudperf(tmp_path, group_sizes={"tr": 5, "lin": 4, "td": 3})
    assert data.n_metrics == 24 and len(data) == 2


# ------------------------------------------------------------------------ the simulator
@pytest.fixture(scope="module")
def simulated() -> tuple[ColocationSimulator, object]:
    sim = ColocationSimulator(
        n_executions=110, min_seconds=20, max_seconds=40, group_sizes={"tr": 8, "lin": 6, "td": 4}
    )
    return sim, sim.simulate(np.random.default_rng(3))


def test_simulated_executions_round_trip_through_the_real_layout(simulated, tmp_path: Path) -> None:
    _, ex = simulated
    write_cloudperf(
        tmp_path / "parquet_ds",
        metrics=ex.metrics,
        timestamps=ex.timestamps,
        perf=ex.perf,
        application=ex.application,
        workload=ex.workload,
        group_sizes=ex.group_sizes,
        task_ids={a: APPLICATIONS[a].task_id for a in APPLICATIONS},
        scenario=ex.scenario,
        metric_names=ex.metric_names,
    )
    assert sorted(p.name for p in (tmp_path / "parquet_ds").iterdir()) == sorted(
        f"tasks={APPLICATIONS[a].task_id}" for a in APPLICATIONS
    )
    data = load_cloudperf(tmp_path)
    assert len(data) == len(ex.perf) and data.metric_names == ex.metric_names
    for app in APPLICATIONS:
        ours, theirs = np.flatnonzero(ex.application == app), np.flatnonzero(data.application == app)
        for i, j in zip(ours, theirs, strict=True):
            np.testing.assert_array_equal(ex.metrics[i], data.metrics[j])
            assert ex.perf[i] == data.perf[j] and ex.scenario[i] == data.scenario[j]


def test_simulator_invariants(simulated) -> None:
    sim, ex = simulated
    assert ((ex.perf > 0) & (ex.perf <= 1)).all() and ex.perf.std() > 0.05
    lengths = np.array([len(m) for m in ex.metrics])
    jobs = np.isin(ex.application, ["graph_analytics", "data_analytics"])
    assert (lengths[~jobs] <= 40).all() and (lengths >= 20).all()
    # an execution-time job runs T_alone / P seconds co-located
    assert (lengths[jobs] >= 20).all() and lengths[jobs].max() > 20
    for m, t in zip(ex.metrics, ex.timestamps, strict=True):
        assert m.shape == (len(t), 36) and np.isfinite(m).all() and (np.diff(t) == 1).all()
    assert set(ex.scenario) <= {"static", "monotonic", "periodic", "random"}
    assert set(ex.scenario[np.isin(ex.application, STATIC_APPLICATIONS)]) == {"static"}  # Table III: 100 %
    again = sim.simulate(np.random.default_rng(3))
    np.testing.assert_array_equal(again.perf, ex.perf)


def test_more_neighbours_mean_more_interference() -> None:
    few = ColocationSimulator(n_executions=440, max_neighbours=1).simulate(np.random.default_rng(0), telemetry=False)
    many = ColocationSimulator(n_executions=440, max_neighbours=8).simulate(np.random.default_rng(0), telemetry=False)
    assert many.perf.mean() < few.perf.mean() - 0.03
    # the paper's P ranges differ by application: Redis reaches far lower P than Data Analytics
    assert (
        np.quantile(many.perf[many.application == "redis"], 0.1) < many.perf[many.application == "data_analytics"].min()
    )


def test_partitions_are_fixed_distinct_and_two_static_two_dynamic() -> None:
    apps = list(APPLICATIONS)
    partitions = make_partitions(apps)
    assert partitions == make_partitions(list(reversed(apps)))  # fixed in advance, not by the data's order
    assert len(partitions) == 6 and len({tuple(p) for p in partitions}) == 6
    for unseen in partitions:
        assert len(unseen) == 4 and sum(a in STATIC_APPLICATIONS for a in unseen) == 2


def test_splits_keep_unseen_applications_out_of_training(simulated) -> None:
    from infragym.models.cloudformer.data import CloudPerfDataset

    sim, _ = simulated
    data = CloudPerfDataset().executions(sim, np.random.default_rng(3), save=False)
    splits = split_executions(data, ["redis", "minio"], 0.15, 0.15, np.random.default_rng(0))
    assert set(splits.test_unseen.application) == {"redis", "minio"}
    for part in (splits.train, splits.val, splits.test_seen):
        assert not set(part.application) & {"redis", "minio"}
    assert len(splits.train) + len(splits.val) + len(splits.test_seen) + len(splits.test_unseen) == len(data)


def test_bucketed_batches_cover_every_execution_once_with_similar_lengths() -> None:
    lengths = np.random.default_rng(0).integers(5, 300, 103)
    sampler = BucketBatchSampler(lengths, 16, shuffle=True, seed=1)
    batches = list(sampler)
    assert sorted(i for b in batches for i in b) == list(range(103)) and len(batches) == len(sampler) == 7
    spread = np.mean([lengths[b].max() - lengths[b].min() for b in batches])
    assert spread < 0.3 * (lengths.max() - lengths.min())  # padding stays small
    assert [b for b in sampler] != batches  # another order next epoch
