"""CloudPerfTrace, the CloudFormer data set (CC-BY-4.0, arXiv 2509.03394): reader and writer.

The layout, as published (``../shared/data/README.md``, the paper's artifact appendix)::

    parquet_ds/tasks=<id>/<any name>.parquet     hive-partitioned by application

One row per *execution* (one application run under one co-location and one request-rate
trace). Columns:

- ``perf_ori``: the execution's P = PM_ideal / PM_actual in (0, 1] (numeric);
- ``workload``: a numeric workload-level id (integer, float or string);
- six metric groups, ``tr_self``, ``lin_self``, ``td_self`` (the target VM: 53 libvirt, 38 perf,
  12 top-down metrics) and ``tr_oth``, ``lin_oth``, ``td_oth`` (the mean over its co-located
  VMs). Each is a flat list (``list``, ``large_list`` or ``fixed_size_list`` of float, double or
  integers) of T_i x (1 + n) values: for each second a Unix timestamp, then the group's n metrics.
- the partition ``tasks`` is the application (its value a string in the folder name: 4 Data
  Serving, 5 Redis, 6 Web Search, 7 Graph Analytics, 9 Data Analytics, 10 MLPerf, 11 HBase,
  13 Alluxio, 14 Minio, 15 TPC-C, 16 Flink); other ids are kept as ``task<id>``.

Anything else the real files may hold is accepted: extra columns (ignored; a ``scenario``
string column is kept when present, as this project's simulator writes it), a ``tasks``
column inside the files, Spark's ``_SUCCESS`` / ``.crc`` files, any number of part files and
row groups. The per-group metric count n is not stored in the published rows: it is the paper's
53 / 38 / 12, or the file's ``infragym.cloudperf`` schema metadata (our simulator writes it), or
``group_sizes`` given to the loader. A wrong n shows as a length that is not a multiple of the
stride or as timestamps that do not increase.

Refused, with the file, row and column named (``CloudPerfError``, a ``ValueError``): a missing
column, a null or empty group, a length that is not a multiple of 1 + n, NaN / inf values,
groups that disagree on T_i or on their timestamps (by more than 1 s: the collectors sample
independently), timestamps that do not increase (float32 lists cannot tell consecutive Unix
seconds apart, ~128 s resolution, so for them equal timestamps are allowed), and ``perf_ori``
that is null, non-finite or <= 0.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from infragym.io import atomic_write_bytes

GROUPS: tuple[str, ...] = ("tr_self", "lin_self", "td_self", "tr_oth", "lin_oth", "td_oth")
# Paper (Sec. 5): metrics per VM in each collector.
PAPER_GROUP_SIZES: dict[str, int] = {"tr": 53, "lin": 38, "td": 12}
# The ``tasks`` partition values of the real data set (data README, paper Table III).
TASK_NAMES: dict[int, str] = {
    4: "data_serving",
    5: "redis",
    6: "web_search",
    7: "graph_analytics",
    9: "data_analytics",
    10: "mlperf",
    11: "hbase",
    13: "alluxio",
    14: "minio",
    15: "tpcc",
    16: "flink",
}
METADATA_KEY = b"infragym.cloudperf"
TIMESTAMP_TOLERANCE_S = 1.0
_TASK_DIR = re.compile(r"^tasks=(.+)$")


class CloudPerfError(ValueError):
    """Data that does not match the CloudPerfTrace layout."""


@dataclass
class ExecutionSet:
    """Executions, each a (T_i, n_metrics) float32 matrix of its metrics in ``GROUPS`` order."""

    metrics: list[np.ndarray]
    perf: np.ndarray  # (n,) float32
    application: np.ndarray  # (n,) str
    workload: np.ndarray  # (n,) str
    scenario: np.ndarray  # (n,) str; "unknown" when the files do not say
    start: np.ndarray  # (n,) float64, first timestamp
    group_sizes: dict[str, int]
    metric_names: list[str]
    source: list[str] = field(default_factory=list)  # "file#row" of each execution

    def __len__(self) -> int:
        return len(self.perf)

    @property
    def n_metrics(self) -> int:
        return int(sum(self.group_sizes.values()))

    @property
    def lengths(self) -> np.ndarray:
        return np.array([len(m) for m in self.metrics], dtype=np.int64)

    def subset(self, index: Sequence[int] | np.ndarray) -> ExecutionSet:
        index = np.asarray(index, dtype=np.int64)
        return ExecutionSet(
            metrics=[self.metrics[i] for i in index],
            perf=self.perf[index],
            application=self.application[index],
            workload=self.workload[index],
            scenario=self.scenario[index],
            start=self.start[index],
            group_sizes=dict(self.group_sizes),
            metric_names=list(self.metric_names),
            source=[self.source[i] for i in index] if self.source else [],
        )


def per_vm_sizes(group_sizes: Mapping[str, int] | None) -> dict[str, int]:
    """``{"tr": n, "lin": n, "td": n}`` from per-collector or per-group sizes (default: the paper's)."""
    if not group_sizes:
        return dict(PAPER_GROUP_SIZES)
    sizes = {k.split("_")[0]: int(v) for k, v in dict(group_sizes).items()}
    if set(sizes) != {"tr", "lin", "td"} or min(sizes.values()) < 1:
        raise CloudPerfError(f"group_sizes must give tr, lin and td metric counts >= 1, got {dict(group_sizes)}")
    return sizes


def application_name(task: str) -> str:
    """The application of a ``tasks=<id>`` partition value (a string in the folder name)."""
    try:
        number = int(float(task))
    except ValueError:
        return task
    return TASK_NAMES.get(number, f"task{number}")


# --------------------------------------------------------------------------- writing
def write_cloudperf(
    root: str | os.PathLike[str],
    *,
    metrics: Sequence[np.ndarray],
    timestamps: Sequence[np.ndarray],
    perf: np.ndarray,
    application: np.ndarray,
    workload: np.ndarray,
    group_sizes: Mapping[str, int],
    task_ids: Mapping[str, int],
    scenario: np.ndarray | None = None,
    metric_names: Sequence[str] = (),
) -> Path:
    """Write executions as ``root/tasks=<id>/part-0.parquet``, one row per execution, each
    group a flat list<double> of T_i x (1 + n): the real layout (atomic per file)."""
    root = Path(root)
    sizes = {g: int(group_sizes[g]) for g in GROUPS}
    offsets = np.cumsum([0, *sizes.values()])
    meta = json.dumps({"group_sizes": sizes, "metric_names": list(metric_names)}).encode()
    for app in sorted(set(np.asarray(application).tolist())):
        rows = np.flatnonzero(np.asarray(application) == app)
        columns: dict[str, Any] = {
            "perf_ori": pa.array(np.asarray(perf, np.float64)[rows]),
            "workload": pa.array(np.asarray(workload)[rows].astype(np.int64)),
        }
        if scenario is not None:
            columns["scenario"] = pa.array(np.asarray(scenario)[rows].astype(str))
        for g, group in enumerate(GROUPS):
            flat = [
                np.concatenate([timestamps[i][:, None], metrics[i][:, offsets[g] : offsets[g + 1]]], axis=1).ravel()
                for i in rows
            ]
            lengths = np.fromiter((len(f) for f in flat), np.int64, len(flat))
            columns[group] = pa.ListArray.from_arrays(
                pa.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)),
                pa.array(np.concatenate(flat).astype(np.float64)),
            )
        table = pa.table(columns).replace_schema_metadata({METADATA_KEY: meta})
        buffer = io.BytesIO()
        pq.write_table(table, buffer)
        atomic_write_bytes(root / f"tasks={task_ids[app]}" / "part-0.parquet", buffer.getvalue())
    return root


# --------------------------------------------------------------------------- reading
def _list_values(column: pa.ChunkedArray | pa.Array, where: str) -> tuple[np.ndarray, np.ndarray, bool]:
    """Offsets, float64 values and whether the values were float32 (one chunk's worth)."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    kind = array.type
    if not (pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)):
        raise CloudPerfError(f"{where}: must be a list of numbers per row, got {kind}")
    value_type = kind.value_type
    if not (pa.types.is_floating(value_type) or pa.types.is_integer(value_type)):
        raise CloudPerfError(f"{where}: list values must be numbers, got {value_type}")
    if pa.types.is_fixed_size_list(kind):
        size = kind.list_size
        offsets = np.arange(len(array) + 1, dtype=np.int64) * size + array.offset * size
        values = array.values
    else:
        offsets = np.asarray(array.offsets, dtype=np.int64)
        values = array.values
    flat = values.to_numpy(zero_copy_only=False)
    if values.null_count:
        bad = int(np.flatnonzero(np.asarray(values.is_null()))[0])
        row = int(np.searchsorted(offsets, bad, side="right") - 1)
        raise CloudPerfError(f"{where}, row {row}: a null value inside the list (position {bad - offsets[row]})")
    return (
        offsets,
        flat.astype(np.float64, copy=False),
        pa.types.is_float32(value_type) or pa.types.is_float16(value_type),
    )


def _numbers(table: pa.Table, column: str, where: str) -> np.ndarray:
    values = table.column(column)
    if pa.types.is_dictionary(values.type):
        values = values.cast(values.type.value_type)
    if values.null_count:
        row = int(np.flatnonzero(np.asarray(values.is_null()))[0])
        raise CloudPerfError(f"{where}, row {row}, column {column!r}: null")
    return values


def _read_file(
    path: Path, application: str, sizes: Mapping[str, int] | None, keep: np.ndarray | None = None
) -> dict[str, Any]:
    """The executions of one part file (only the rows in ``keep`` when given: the others are not decoded)."""
    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowException, OSError, ValueError) as err:
        raise CloudPerfError(f"{path}: not readable as Parquet ({err})") from err
    names = parquet.schema_arrow.names
    missing = [c for c in ("perf_ori", "workload", *GROUPS) if c not in names]
    if missing:
        raise CloudPerfError(f"{path}: required column(s) {missing} missing; columns present: {names[:16]}")
    meta = parquet.schema_arrow.metadata or {}
    stored = json.loads(meta[METADATA_KEY]).get("group_sizes") if METADATA_KEY in meta else None
    per_group = {g: int((stored or {}).get(g) or per_vm_sizes(sizes)[g.split("_")[0]]) for g in GROUPS}
    wanted = ["perf_ori", "workload", *GROUPS, *(["scenario"] if "scenario" in names else [])]
    out: dict[str, list[Any]] = {k: [] for k in ("metrics", "perf", "workload", "scenario", "start", "source")}
    row0 = 0
    try:
        batches = list(parquet.iter_batches(batch_size=256, columns=wanted))
    except (pa.ArrowException, OSError, ValueError) as err:
        raise CloudPerfError(f"{path}: not readable as Parquet ({err})") from err
    for batch in batches:
        table = pa.Table.from_batches([batch])
        n = table.num_rows
        perf_col = _numbers(table, "perf_ori", f"{path}")
        if not (pa.types.is_floating(perf_col.type) or pa.types.is_integer(perf_col.type)):
            raise CloudPerfError(f"{path}: column 'perf_ori' must be numeric, got {perf_col.type}")
        perf = perf_col.to_numpy().astype(np.float64)
        bad = ~(np.isfinite(perf) & (perf > 0))
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise CloudPerfError(f"{path}, row {row0 + row}, column 'perf_ori': {perf[row]} (P must be > 0 and finite)")
        workload = _numbers(table, "workload", f"{path}").to_pylist()
        scenario = table.column("scenario").to_pylist() if "scenario" in table.column_names else ["unknown"] * n
        groups = {}
        for group in GROUPS:
            column = table.column(group)
            if column.null_count:
                row = int(np.flatnonzero(np.asarray(column.is_null()))[0])
                raise CloudPerfError(f"{path}, row {row0 + row}, column {group!r}: null (the metric group is missing)")
            groups[group] = _list_values(column, f"{path}, column {group!r}")
        for r in range(n):  # one execution per row: the checks are vectorised within it
            if keep is not None and not keep[row0 + r]:
                continue
            where = f"{path}, row {row0 + r}"
            blocks, stamps = [], {}
            for group in GROUPS:
                offsets, flat, single = groups[group]
                values = flat[offsets[r] : offsets[r + 1]]
                stride = 1 + per_group[group]
                if len(values) == 0:
                    raise CloudPerfError(f"{where}, column {group!r}: empty list (no seconds)")
                if len(values) % stride:
                    raise CloudPerfError(
                        f"{where}, column {group!r}: {len(values)} values is not a multiple of the stride {stride} "
                        f"(per second a timestamp then {per_group[group]} metrics; set dataset.group_sizes if "
                        "the collector has another metric count)"
                    )
                matrix = values.reshape(-1, stride)
                finite = np.isfinite(matrix)
                if not finite.all():
                    t, m = (int(i[0]) for i in np.nonzero(~finite))
                    what = "timestamp" if m == 0 else f"metric {m - 1}"
                    raise CloudPerfError(f"{where}, column {group!r}: {what} of second {t} is {matrix[t, m]}")
                step = np.diff(matrix[:, 0])
                bad_step = step < 0 if single else step <= 0
                if bad_step.any():
                    t = int(np.flatnonzero(bad_step)[0]) + 1
                    raise CloudPerfError(
                        f"{where}, column {group!r}: timestamps not increasing at second {t} "
                        f"({matrix[t - 1, 0]:.0f} then {matrix[t, 0]:.0f})"
                    )
                stamps[group] = (matrix[:, 0], single)
                blocks.append(matrix[:, 1:].astype(np.float32))
            first = GROUPS[0]
            for group in GROUPS[1:]:
                if len(stamps[group][0]) != len(stamps[first][0]):
                    raise CloudPerfError(
                        f"{where}: column {group!r} has {len(stamps[group][0])} seconds but {first!r} has "
                        f"{len(stamps[first][0])} (the groups of one execution must cover the same seconds)"
                    )
                ours, theirs = stamps[group][0], stamps[first][0]
                tolerance = TIMESTAMP_TOLERANCE_S
                if stamps[group][1] or stamps[first][1]:  # float32 spacing at Unix times (~128 s)
                    tolerance = max(tolerance, 2.0 * float(np.spacing(np.float32(np.abs(theirs).max()))))
                off = np.abs(ours - theirs)
                if (off > tolerance).any():
                    t = int(np.argmax(off > tolerance))
                    raise CloudPerfError(
                        f"{where}: column {group!r} timestamp of second {t} is {ours[t]:.0f} but {first!r} has "
                        f"{theirs[t]:.0f} (the groups disagree on the execution's seconds)"
                    )
            out["metrics"].append(np.concatenate(blocks, axis=1))
            out["perf"].append(perf[r])
            value = workload[r]
            out["workload"].append(str(int(value)) if isinstance(value, float) and value.is_integer() else str(value))
            out["scenario"].append(str(scenario[r]) if scenario[r] is not None else "unknown")
            out["start"].append(float(stamps[first][0][0]))
            out["source"].append(f"{path}#{row0 + r}")
        row0 += n
    out["group_sizes"] = per_group
    out["metric_names"] = json.loads(meta[METADATA_KEY]).get("metric_names", []) if METADATA_KEY in meta else []
    out["application"] = [application] * len(out["perf"])
    return out


def _part_files(folder: Path) -> list[Path]:
    files = sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and not p.name.startswith((".", "_")) and not p.name.endswith(".crc")
    )
    if not files:
        raise CloudPerfError(f"{folder}: no Parquet part files in this task folder")
    # the same part written twice would count its executions twice; only equal sizes can be copies
    by_size: dict[int, list[Path]] = {}
    for file in files:
        by_size.setdefault(file.stat().st_size, []).append(file)
    seen: dict[str, Path] = {}
    for same in (group for group in by_size.values() if len(group) > 1):
        for file in same:
            digest = hashlib.sha256(file.read_bytes()).hexdigest()
            if digest in seen:
                raise CloudPerfError(f"{file}: the same content as {seen[digest].name} (a part file written twice)")
            seen[digest] = file
    return files


def resolve_root(path: str | os.PathLike[str]) -> Path:
    """The ``parquet_ds`` folder: ``path`` itself or its ``parquet_ds`` child."""
    path = Path(path)
    if (path / "parquet_ds").is_dir():
        return path / "parquet_ds"
    if path.is_dir():
        return path
    raise CloudPerfError(f"{path}: no such folder (expected a folder holding CloudPerfTrace's parquet_ds/)")


def load_cloudperf(
    path: str | os.PathLike[str],
    *,
    group_sizes: Mapping[str, int] | None = None,
    max_executions_per_application: int | None = None,
    seed: int = 0,
) -> ExecutionSet:
    """Read a CloudPerfTrace ``parquet_ds`` folder (or the folder holding it), validating every row.

    Args:
        path: ``.../parquet_ds`` or its parent.
        group_sizes: metrics per collector (``tr``/``lin``/``td``) when the files do not say
            (default: the paper's 53 / 38 / 12).
        max_executions_per_application: keep at most this many executions per application (a
            seeded random choice of rows, made before decoding), e.g. to fit the 18 GB data set in
            memory; the rows not chosen are not validated either.
        seed: the choice's seed.
    """
    root = resolve_root(path)
    task_dirs = sorted((p for p in root.iterdir() if p.is_dir() and _TASK_DIR.match(p.name)), key=lambda p: p.name)
    if not task_dirs:
        raise CloudPerfError(f"{root}: no 'tasks=<id>' partition folders (the CloudPerfTrace layout)")
    parts: list[dict[str, Any]] = []
    rng = np.random.default_rng(seed)
    for folder in task_dirs:
        application = application_name(_TASK_DIR.match(folder.name).group(1))  # type: ignore[union-attr]
        files = _part_files(folder)
        keeps: list[np.ndarray | None] = [None] * len(files)
        if max_executions_per_application:
            # choose the rows first (from the footers' row counts): the others are never decoded
            counts = []
            for file in files:
                try:
                    counts.append(pq.ParquetFile(file).metadata.num_rows)
                except (pa.ArrowException, OSError, ValueError) as err:
                    raise CloudPerfError(f"{file}: not readable as Parquet ({err})") from err
            total = int(sum(counts))
            chosen = np.zeros(total, dtype=bool)
            chosen[rng.choice(total, min(total, max_executions_per_application), replace=False)] = True
            keeps = list(np.split(chosen, np.cumsum(counts)[:-1]))
        for file, keep in zip(files, keeps, strict=True):
            part = _read_file(file, application, group_sizes, keep)
            if parts and part["perf"] and part["group_sizes"] != parts[0]["group_sizes"]:
                raise CloudPerfError(
                    f"{file}: metric counts {part['group_sizes']} differ from {parts[0]['group_sizes']} "
                    "of the files read before"
                )
            if part["perf"]:
                parts.append(part)
    if not parts:
        raise CloudPerfError(f"{root}: no executions (every part file is empty)")
    sizes = parts[0]["group_sizes"]
    names = next((p["metric_names"] for p in parts if len(p["metric_names"]) == sum(sizes.values())), None)
    if names is None:
        names = [f"{g}[{i}]" for g in GROUPS for i in range(sizes[g])]
    joined = {
        k: [v for p in parts for v in p[k]] for k in ("metrics", "perf", "workload", "scenario", "start", "source")
    }
    application = np.array([a for p in parts for a in p["application"]])
    return ExecutionSet(
        metrics=joined["metrics"],
        perf=np.asarray(joined["perf"], dtype=np.float32),
        application=application,
        workload=np.asarray(joined["workload"]),
        scenario=np.asarray(joined["scenario"]),
        start=np.asarray(joined["start"], dtype=np.float64),
        group_sizes=dict(sizes),
        metric_names=list(names),
        source=joined["source"],
    )


# --------------------------------------------------------------------------- normalisation
CLIP = 5.0  # normalised values beyond +-5 std (counter glitches) are clipped


def symlog(x: np.ndarray) -> np.ndarray:
    """sign(x) log(1 + |x|): metrics span orders of magnitude (bytes/s next to fractions)."""
    return np.sign(x) * np.log1p(np.abs(x))


@dataclass
class Normaliser:
    """Signed log, then a per-metric z-score fitted on the training executions' seconds, clipped."""

    mean: np.ndarray  # (n_metrics,) float32
    std: np.ndarray

    @classmethod
    def fit(cls, metrics: Sequence[np.ndarray]) -> Normaliser:
        z = symlog(np.concatenate(list(metrics)).astype(np.float64))
        std = z.std(axis=0)
        return cls(z.mean(axis=0).astype(np.float32), np.where(std > 1e-6, std, 1.0).astype(np.float32))

    def __call__(self, metrics: np.ndarray) -> np.ndarray:
        return np.clip((symlog(metrics) - self.mean) / self.std, -CLIP, CLIP).astype(np.float32)
