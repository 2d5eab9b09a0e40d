"""CloudPerfTrace-layout telemetry: Parquet writer and validating loader, windows, splits, DataModule.

Layout (as the CloudPerfTrace data set, CC-BY-4.0, is published)::

    parquet_ds/tasks=<id>/part-0.parquet     one file (or more) per task, one row per second

Columns: ``perf_ori`` (P of the target VM in (0, 1]), ``workload`` (its application) and the
six metric groups ``tr_self``, ``lin_self``, ``td_self``, ``tr_oth``, ``lin_oth``, ``td_oth``.
A group is either one list column (fixed length per row; this writer's form) or flat numeric
columns whose names start with ``<group>.``/``<group>_``/``<group>/``. Optional: ``t``
(seconds, rows are sorted by it) and ``scenario`` (``static``/``dynamic``). The loader refuses
NaN/inf metrics, missing groups and metric counts that differ between rows or tasks, naming
the file and the column.

Windows: a window is ``window`` consecutive seconds of all metrics of one task; its label is P
at the window's last second plus ``horizon``. Windows never cross tasks. Splits are by task:
the ``unseen_workloads`` form ``test_unseen`` and never appear in training; the other tasks are
split into train / val / ``test_seen``. Normalisation (signed log, then z-score fitted on the
training split only, clipped) is part of the models' input pipeline and of the export.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from infragym.envs.colocation.simulator import GROUPS, ColocationSimulator, Traces
from infragym.io import atomic_write_bytes

CLIP = 5.0  # normalised values beyond +-5 std (wrapped counters) are clipped
_TASK_DIR = re.compile(r"^tasks=(.+)$")


class CloudPerfError(ValueError):
    """Telemetry that does not match the CloudPerfTrace layout or cannot be windowed."""


# --------------------------------------------------------------------------- writing
def write_cloudperf(traces: Traces, root: str | os.PathLike[str]) -> Path:
    """Write simulated traces as ``root/tasks=<id>/part-0.parquet`` (atomic per file)."""
    root = Path(root)
    n_tasks, n_seconds = traces.perf.shape
    names = json.dumps(traces.metric_names)
    for task in range(n_tasks):
        columns: dict[str, pa.Array] = {
            "t": pa.array(np.arange(n_seconds, dtype=np.int32)),
            "perf_ori": pa.array(traces.perf[task]),
            "workload": pa.array([str(traces.workload[task])] * n_seconds),
            "scenario": pa.array([str(traces.scenario[task])] * n_seconds),
        }
        for group in GROUPS:
            values = traces.metrics[group][task]
            columns[group] = pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), values.shape[1])
        table = pa.table(columns).replace_schema_metadata({"infragym.metric_names": names})
        buffer = io.BytesIO()
        pq.write_table(table, buffer)
        atomic_write_bytes(root / f"tasks={task:05d}" / "part-0.parquet", buffer.getvalue())
    return root


# --------------------------------------------------------------------------- loading
@dataclass
class TraceSet:
    """Loaded tasks: per-task arrays, all with the same metrics in group order."""

    metrics: list[np.ndarray]  # per task (seconds, n_metrics) float32
    perf: list[np.ndarray]  # per task (seconds,) float32
    workload: np.ndarray  # (tasks,) str
    scenario: np.ndarray  # (tasks,) str
    task_ids: list[str]
    group_sizes: dict[str, int]
    metric_names: list[str]

    @property
    def n_metrics(self) -> int:
        return sum(self.group_sizes.values())


def _group_block(table: pa.Table, group: str, path: Path) -> tuple[np.ndarray, list[str]]:
    if group in table.column_names:
        column = table.column(group).combine_chunks()
        if not (pa.types.is_list(column.type) or pa.types.is_fixed_size_list(column.type)) or not (
            pa.types.is_integer(column.type.value_type) or pa.types.is_floating(column.type.value_type)
        ):
            raise CloudPerfError(f"{path}: column {group!r} must be a list of numbers per row, got {column.type}")
        if column.null_count:
            raise CloudPerfError(f"{path}: column {group!r} has {column.null_count} null row(s)")
        lengths = np.asarray(pc.list_value_length(column))
        if len(lengths) and (lengths != lengths[0]).any():
            row = int(np.flatnonzero(lengths != lengths[0])[0])
            raise CloudPerfError(
                f"{path}: column {group!r} has {lengths[row]} metrics in row {row} but {lengths[0]} in row 0 "
                "(every row must hold the same metrics)"
            )
        width = int(lengths[0]) if len(lengths) else 0
        flat = column.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
        return flat.reshape(len(column), width), [f"{group}[{i}]" for i in range(width)]
    prefixed = [c for c in table.column_names if re.match(rf"^{group}[._/]", c)]
    if not prefixed:
        raise CloudPerfError(
            f"{path}: metric group {group!r} is missing (expected a list column {group!r} or columns "
            f"named '{group}.<metric>'); columns present: {table.column_names[:12]}..."
        )
    block = np.empty((table.num_rows, len(prefixed)), dtype=np.float32)
    for j, name in enumerate(prefixed):
        column = table.column(name)
        if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)):
            raise CloudPerfError(f"{path}: column {name!r} must be numeric, got {column.type}")
        if column.null_count:
            raise CloudPerfError(f"{path}: column {name!r} has {column.null_count} null row(s)")
        block[:, j] = column.to_numpy().astype(np.float32)
    return block, prefixed


def _check_finite(block: np.ndarray, names: list[str], path: Path) -> None:
    bad = ~np.isfinite(block)
    if bad.any():
        row, col = (int(i[0]) for i in np.nonzero(bad))
        raise CloudPerfError(
            f"{path}: metric {names[col]!r} is {block[row, col]} in row {row} "
            f"({int(bad.sum())} non-finite value(s) in all); clean or drop them before training"
        )


SCENARIOS = ("static", "dynamic")  # co-location kept fixed, or changing during the execution


def _check_part_files(folder: Path) -> None:
    """A task folder holds one or more distinct Parquet part files (the same part written twice
    would double every second)."""
    parts = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith((".", "_")))
    if not parts:
        raise CloudPerfError(f"{folder}: no Parquet part files in this task folder")
    sizes: dict[int, list[Path]] = {}
    for part in parts:
        sizes.setdefault(part.stat().st_size, []).append(part)
    seen: dict[str, Path] = {}
    for same_size in (group for group in sizes.values() if len(group) > 1):  # only these can be copies
        for part in same_size:
            digest = hashlib.sha256(part.read_bytes()).hexdigest()
            if digest in seen:
                raise CloudPerfError(f"{part}: the same content as {seen[digest].name} (a part file written twice)")
            seen[digest] = part


def _check_seconds(column: pa.ChunkedArray, path: Path) -> None:
    """``t`` (sorted): whole, non-null seconds, each once, none missing (windows are consecutive seconds)."""
    if not pa.types.is_integer(column.type) and not pa.types.is_floating(column.type):
        raise CloudPerfError(f"{path}: column 't' must hold seconds as numbers, got {column.type}")
    if column.null_count:
        raise CloudPerfError(f"{path}: column 't' has {column.null_count} null row(s)")
    t = column.to_numpy().astype(np.float64)
    if not np.isfinite(t).all() or (t != np.round(t)).any():
        row = int(np.flatnonzero(~np.isfinite(t) | (t != np.round(t)))[0])
        raise CloudPerfError(f"{path}: column 't' = {t[row]} (sorted row {row}) is not a whole second")
    step = np.diff(t)
    if (step == 0).any():
        row = int(np.flatnonzero(step == 0)[0]) + 1
        raise CloudPerfError(f"{path}: column 't': second {t[row]:g} appears more than once (one row per second)")
    if (step > 1).any():
        row = int(np.flatnonzero(step > 1)[0])
        raise CloudPerfError(
            f"{path}: column 't': seconds {t[row]:g} to {t[row + 1]:g} are missing (windows need consecutive seconds)"
        )


def _one_value(table: pa.Table, column: str, path: Path) -> str:
    """The single non-null value of a per-task column (``workload``: a name or a numeric id)."""
    values = table.column(column)
    if pa.types.is_dictionary(values.type):  # pandas categoricals are written dictionary-encoded
        values = values.cast(values.type.value_type)
    if values.null_count:
        raise CloudPerfError(f"{path}: column {column!r} has {values.null_count} null row(s)")
    kind = values.type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_integer(kind)):
        raise CloudPerfError(f"{path}: column {column!r} must hold a name or an integer id, got {values.type}")
    unique = values.unique().to_pylist()
    if len(unique) != 1:
        raise CloudPerfError(f"{path}: column {column!r} must hold one value per task, got {unique[:5]}")
    text = str(unique[0])
    if not text.strip():
        raise CloudPerfError(f"{path}: column {column!r} is empty")
    return text


def load_task(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray, str, str, dict[str, int], list[str]]:
    """Read one task folder (or file): metrics (seconds, n), P, workload, scenario, sizes, names."""
    path = Path(path)
    if path.is_dir():
        _check_part_files(path)
    try:
        table = pq.read_table(path, partitioning=None)
    except (pa.ArrowException, OSError, ValueError) as err:
        raise CloudPerfError(f"{path}: not readable as Parquet ({err})") from err
    for column in ("perf_ori", "workload"):
        if column not in table.column_names:
            raise CloudPerfError(f"{path}: required column {column!r} is missing")
    if table.num_rows == 0:
        raise CloudPerfError(f"{path}: no rows")
    if "t" in table.column_names:
        table = table.sort_by("t")
        _check_seconds(table.column("t"), path)
    perf_column = table.column("perf_ori")
    if not (pa.types.is_floating(perf_column.type) or pa.types.is_integer(perf_column.type)):
        raise CloudPerfError(f"{path}: column 'perf_ori' must be numeric, got {perf_column.type}")
    perf = perf_column.to_numpy(zero_copy_only=False).astype(np.float32)
    if not np.isfinite(perf).all() or (perf <= 0).any() or (perf > 1.0 + 1e-6).any():
        row = int(np.flatnonzero(~(np.isfinite(perf) & (perf > 0) & (perf <= 1.0 + 1e-6)))[0])
        raise CloudPerfError(f"{path}: column 'perf_ori' must be in (0, 1], row {row} is {perf[row]}")
    workload = _one_value(table, "workload", path)
    scenario = _one_value(table, "scenario", path) if "scenario" in table.column_names else "static"
    if scenario not in SCENARIOS:
        raise CloudPerfError(f"{path}: column 'scenario' is {scenario!r}; expected one of {list(SCENARIOS)}")
    blocks, names, sizes = [], [], {}
    for group in GROUPS:
        block, group_names = _group_block(table, group, path)
        _check_finite(block, group_names, path)
        blocks.append(block)
        names += group_names
        sizes[group] = block.shape[1]
    meta = table.schema.metadata or {}
    if b"infragym.metric_names" in meta:
        stored = json.loads(meta[b"infragym.metric_names"])
        if all(len(stored.get(g, [])) == sizes[g] for g in GROUPS):
            names = [f"{g}.{n}" for g in GROUPS for n in stored[g]]
    return np.concatenate(blocks, axis=1), perf, workload, scenario, sizes, names


def load_cloudperf(root: str | os.PathLike[str]) -> TraceSet:
    """Load a ``parquet_ds`` folder of ``tasks=<id>`` partitions, validating every task."""
    root = Path(root)
    if not root.is_dir():
        raise CloudPerfError(f"{root}: no such folder (expected a CloudPerfTrace 'parquet_ds' folder)")
    task_dirs = sorted(p for p in root.iterdir() if _TASK_DIR.match(p.name))
    if not task_dirs:
        raise CloudPerfError(f"{root}: no 'tasks=<id>' partitions found")
    out = TraceSet([], [], np.array([]), np.array([]), [], {}, [])
    workloads, scenarios = [], []
    for task_dir in task_dirs:
        metrics, perf, workload, scenario, sizes, names = load_task(task_dir)
        if not out.group_sizes:
            out.group_sizes, out.metric_names, first = sizes, names, task_dir
        elif sizes != out.group_sizes:
            group = next(g for g in GROUPS if sizes[g] != out.group_sizes[g])
            raise CloudPerfError(
                f"{task_dir}: column {group!r} has {sizes[group]} metrics but {first} has "
                f"{out.group_sizes[group]} (all tasks must have the same metrics)"
            )
        out.metrics.append(metrics)
        out.perf.append(perf)
        out.task_ids.append(_TASK_DIR.match(task_dir.name).group(1))  # type: ignore[union-attr]
        workloads.append(workload)
        scenarios.append(scenario)
    out.workload, out.scenario = np.array(workloads), np.array(scenarios)
    return out


def trace_set(traces: Traces) -> TraceSet:
    """Simulated traces as the loader returns them (without a round trip through Parquet)."""
    return TraceSet(
        metrics=[np.concatenate([traces.metrics[g][i] for g in GROUPS], axis=1) for i in range(traces.n_tasks)],
        perf=list(traces.perf),
        workload=np.asarray(traces.workload),
        scenario=np.asarray(traces.scenario),
        task_ids=[f"{i:05d}" for i in range(traces.n_tasks)],
        group_sizes={g: traces.metrics[g].shape[2] for g in GROUPS},
        metric_names=[f"{g}.{n}" for g in GROUPS for n in traces.metric_names[g]],
    )


# --------------------------------------------------------------------------- normalisation
def symlog(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.log1p(np.abs(x))


@dataclass
class Normaliser:
    """Signed log, then per-metric z-score (fitted on the training split), clipped to +-CLIP."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, metrics: np.ndarray) -> Normaliser:
        logged = symlog(metrics.astype(np.float64))
        std = logged.std(axis=0)
        return cls(logged.mean(axis=0).astype(np.float32), np.where(std > 1e-6, std, 1.0).astype(np.float32))

    def __call__(self, metrics: np.ndarray) -> np.ndarray:
        return np.clip((symlog(metrics) - self.mean) / self.std, -CLIP, CLIP).astype(np.float32)


# --------------------------------------------------------------------------- windows
@dataclass
class WindowSet:
    """All windows of some tasks: the tasks' seconds concatenated, windows as start offsets."""

    metrics: np.ndarray  # (seconds, n_metrics) float32, normalised or raw
    perf: np.ndarray  # (seconds,)
    starts: np.ndarray  # (windows,) int64 offsets into the concatenation
    window: int
    horizon: int
    workload: np.ndarray  # (windows,) str
    scenario: np.ndarray  # (windows,) str
    _offsets: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._offsets = np.arange(self.window, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.starts)

    @property
    def labels(self) -> np.ndarray:
        return self.perf[self.starts + self.window - 1 + self.horizon]

    def gather(self, index: np.ndarray | Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """Windows ``(batch, window, n_metrics)`` and labels for window indices (one fancy index)."""
        starts = self.starts[np.asarray(index, dtype=np.int64)]
        return self.metrics[starts[:, None] + self._offsets], self.perf[starts + self.window - 1 + self.horizon]

    def summary_features(
        self, index: np.ndarray | None = None, chunk: int = 4096, tail: int | None = None
    ) -> np.ndarray:
        """Per-metric mean, std, min, max and last value of each window (tabular baselines),
        over its last ``tail`` seconds (None: the whole window)."""
        if tail is not None and not 1 <= tail <= self.window:
            raise CloudPerfError(f"summary statistics over the last {tail} s of a {self.window} s window")
        index = np.arange(len(self)) if index is None else np.asarray(index)
        parts = []
        for lo in range(0, len(index), chunk):
            x, _ = self.gather(index[lo : lo + chunk])
            x = x[:, -tail:] if tail is not None else x
            parts.append(np.concatenate([x.mean(1), x.std(1), x.min(1), x.max(1), x[:, -1]], axis=1))
        return np.concatenate(parts) if parts else np.empty((0, 5 * self.metrics.shape[1]), np.float32)

    def subset(self, mask: np.ndarray) -> WindowSet:
        starts, workload, scenario = self.starts[mask], self.workload[mask], self.scenario[mask]
        return WindowSet(self.metrics, self.perf, starts, self.window, self.horizon, workload, scenario)


def make_windows(
    traces: TraceSet, tasks: np.ndarray, *, window: int, horizon: int, stride: int, normaliser: Normaliser | None
) -> WindowSet:
    """Windows of the given tasks (indices into ``traces``), every ``stride`` seconds."""
    if window < 1 or horizon < 0 or stride < 1:
        raise CloudPerfError(f"window (>=1), horizon (>=0) and stride (>=1) are {window}, {horizon}, {stride}")
    metrics, perf, starts, workload, scenario = [], [], [], [], []
    offset = 0
    for task in tasks:
        n = len(traces.perf[task])
        if window + horizon > n:
            raise CloudPerfError(
                f"task {traces.task_ids[task]!r}: window {window} + horizon {horizon} s is longer than its trace "
                f"({n} s); lower dataset.window/dataset.horizon"
            )
        local = np.arange(0, n - window - horizon + 1, stride, dtype=np.int64)
        metrics.append(traces.metrics[task])
        perf.append(traces.perf[task])
        starts.append(local + offset)
        workload.append(np.full(len(local), traces.workload[task]))
        scenario.append(np.full(len(local), traces.scenario[task]))
        offset += n
    if not metrics:
        raise CloudPerfError("no tasks in this split")
    flat = np.concatenate(metrics)
    return WindowSet(
        normaliser(flat) if normaliser is not None else flat,
        np.concatenate(perf),
        np.concatenate(starts),
        window,
        horizon,
        np.concatenate(workload),
        np.concatenate(scenario),
    )


@dataclass
class CloudPerfSplits:
    """Normalised windows per split, the normaliser and the metric layout."""

    train: WindowSet
    val: WindowSet
    test_seen: WindowSet
    test_unseen: WindowSet
    normaliser: Normaliser
    group_sizes: dict[str, int]
    metric_names: list[str]
    unseen_workloads: list[str]
    seen_workloads: list[str]
    tasks: dict[str, np.ndarray] = field(default_factory=dict)  # split -> task indices

    @property
    def n_metrics(self) -> int:
        return sum(self.group_sizes.values())

    @property
    def tests(self) -> dict[str, WindowSet]:
        return {"test_unseen": self.test_unseen, "test_seen": self.test_seen}


def split_tasks(
    traces: TraceSet,
    unseen_workloads: Sequence[str],
    val_fraction: float,
    seen_test_fraction: float,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """Task indices per split: unseen applications apart, the rest split per application."""
    present = sorted(set(traces.workload.tolist()))
    missing = [w for w in unseen_workloads if w not in present]
    if missing:
        raise CloudPerfError(f"dataset.unseen_workloads {missing} are not in the data; workloads present: {present}")
    unseen = np.isin(traces.workload, list(unseen_workloads))
    out: dict[str, list[int]] = {"train": [], "val": [], "test_seen": []}
    for workload in present:
        if workload in unseen_workloads:
            continue
        tasks = rng.permutation(np.flatnonzero(traces.workload == workload))
        n_val = max(1, round(val_fraction * len(tasks)))
        n_test = max(1, round(seen_test_fraction * len(tasks)))
        if len(tasks) < n_val + n_test + 1:
            raise CloudPerfError(
                f"workload {workload!r} has {len(tasks)} task(s): too few for train, val and test_seen splits"
            )
        out["val"] += tasks[:n_val].tolist()
        out["test_seen"] += tasks[n_val : n_val + n_test].tolist()
        out["train"] += tasks[n_val + n_test :].tolist()
    splits = {k: np.array(sorted(v), dtype=np.int64) for k, v in out.items()}
    splits["test_unseen"] = np.flatnonzero(unseen)
    if not len(splits["test_unseen"]):
        raise CloudPerfError("dataset.unseen_workloads is empty: the unseen-application test needs at least one")
    return splits


class CloudPerfDataset:
    """Where the telemetry comes from and how it is windowed and split.

    Args:
        path: a CloudPerfTrace ``parquet_ds`` folder to train on; null simulates traces with the
            env's simulator and writes them to ``save_dir/parquet_ds`` (then reads them back
            through the same validating loader).
        save_dir: where simulated traces are written.
        window: seconds per window; horizon: label offset after the window's last second.
        stride / eval_stride: seconds between training / evaluation windows.
        unseen_workloads: applications held out of training entirely (``test_unseen``).
        val_fraction / seen_test_fraction: share of each training application's tasks held out.
        batch_size / num_workers: the DataLoaders'.
    """

    def __init__(
        self,
        *,
        path: str | None = None,
        save_dir: str | None = None,
        window: int = 30,
        horizon: int = 0,
        stride: int = 5,
        eval_stride: int = 10,
        unseen_workloads: Sequence[str] = ("graph_analytics", "object_storage", "stream_processing"),
        val_fraction: float = 0.15,
        seen_test_fraction: float = 0.15,
        batch_size: int = 256,
        num_workers: int = 0,
    ) -> None:
        for key, value, least in (
            ("window", window, 1),
            ("horizon", horizon, 0),
            ("stride", stride, 1),
            ("eval_stride", eval_stride, 1),
            ("batch_size", batch_size, 1),
            ("num_workers", num_workers, 0),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise CloudPerfError(f"dataset.{key} must be a whole number >= {least}, got {value!r}")
        for key, value in (("val_fraction", val_fraction), ("seen_test_fraction", seen_test_fraction)):
            if not 0.0 < value < 1.0:
                raise CloudPerfError(f"dataset.{key} must be in (0, 1), got {value}")
        if val_fraction + seen_test_fraction >= 1.0:
            raise CloudPerfError("dataset.val_fraction + dataset.seen_test_fraction must leave tasks to train on")
        if not len(unseen_workloads):
            raise CloudPerfError("dataset.unseen_workloads is empty: the unseen-application test needs at least one")
        self.path = path
        self.save_dir = save_dir
        self.window, self.horizon, self.stride, self.eval_stride = window, horizon, stride, eval_stride
        self.unseen_workloads = list(unseen_workloads)
        self.val_fraction, self.seen_test_fraction = val_fraction, seen_test_fraction
        self.batch_size, self.num_workers = batch_size, num_workers

    def traces(self, simulator: ColocationSimulator | None, rng: np.random.Generator, *, save: bool = True) -> TraceSet:
        """The data set's traces: loaded from ``path``, or simulated (written as Parquet and read
        back through the loader, or kept in memory with ``save=False``)."""
        if self.path is not None:
            return load_cloudperf(self.path)
        if simulator is None:
            raise CloudPerfError("dataset.path is null and no simulator was given to generate traces")
        if not save:
            return trace_set(simulator.simulate(rng))
        if self.save_dir is None:
            raise CloudPerfError("dataset.save_dir must be set to write simulated traces")
        root = write_cloudperf(simulator.simulate(rng), Path(self.save_dir) / "parquet_ds")
        return load_cloudperf(root)

    def splits(self, traces: TraceSet, rng: np.random.Generator) -> CloudPerfSplits:
        tasks = split_tasks(traces, self.unseen_workloads, self.val_fraction, self.seen_test_fraction, rng)
        normaliser = Normaliser.fit(np.concatenate([traces.metrics[i] for i in tasks["train"]]))
        kw: dict[str, Any] = {"window": self.window, "horizon": self.horizon, "normaliser": normaliser}
        return CloudPerfSplits(
            train=make_windows(traces, tasks["train"], stride=self.stride, **kw),
            val=make_windows(traces, tasks["val"], stride=self.eval_stride, **kw),
            test_seen=make_windows(traces, tasks["test_seen"], stride=self.eval_stride, **kw),
            test_unseen=make_windows(traces, tasks["test_unseen"], stride=self.eval_stride, **kw),
            normaliser=normaliser,
            group_sizes=traces.group_sizes,
            metric_names=traces.metric_names,
            unseen_workloads=list(self.unseen_workloads),
            seen_workloads=sorted(set(traces.workload.tolist()) - set(self.unseen_workloads)),
            tasks=tasks,
        )


# --------------------------------------------------------------------------- torch
class WindowDataset(Dataset):
    """A map-style dataset whose batched ``__getitems__`` gathers a whole batch in one index."""

    def __init__(self, windows: WindowSet) -> None:
        self.windows = windows

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.windows.gather([index])
        return torch.from_numpy(x[0]), torch.from_numpy(y)[0]

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.windows.gather(indices)
        return torch.from_numpy(x), torch.from_numpy(y)


def _batch_is_ready(batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    return batch  # ``__getitems__`` already returns stacked tensors


class CloudPerfDataModule(pl.LightningDataModule):
    """Train / val / test DataLoaders over prepared splits (Lightning adds DDP samplers)."""

    def __init__(self, splits: CloudPerfSplits, *, batch_size: int = 256, num_workers: int = 0) -> None:
        super().__init__()
        self.data = splits
        self.batch_size, self.num_workers = batch_size, num_workers

    def _loader(self, windows: WindowSet, shuffle: bool) -> DataLoader:
        return DataLoader(
            WindowDataset(windows),
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            collate_fn=_batch_is_ready,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.data.train, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.data.val, shuffle=False)

    def test_dataloader(self) -> list[DataLoader]:
        return [self._loader(w, shuffle=False) for w in self.data.tests.values()]
