"""Serverless invocation traces: one entry per invocation, and loaders of the three public formats.

An ``InvocationTrace`` is a struct of arrays sorted by arrival time: arrival (s), the function's
index, the execution time (s); per function its name, memory (MB), trigger and runtime; for
cold-start tables the cold-start time and its four parts. Loaders refuse malformed files with
the file, line and column named (``ServerlessTraceError``, a ``ValueError``).

Formats (../shared/data/README.md):
- Azure Functions 2019 ("Serverless in the Wild", Shahrad et al. ATC'20; Azure/AzurePublicDataset):
  per day ``invocations_per_function_md.anon.d<NN>.csv`` (``HashOwner,HashApp,HashFunction,
  Trigger`` and columns ``1``..``1440``: invocations in each minute of the day),
  ``function_durations_percentiles.anon.d<NN>.csv`` (``HashOwner,HashApp,HashFunction,Average,
  Count,Minimum,Maximum,percentile_Average_0,_1,_25,_50,_75,_99,_100``; ms) and
  ``app_memory_percentiles.anon.d<NN>.csv`` (``HashOwner,HashApp,SampleCount,AverageAllocatedMb,
  AverageAllocatedMb_pct1,...``). The trace gives counts per minute: arrivals are spread
  uniformly within their minute (seeded), durations drawn from the function's percentiles.
- Azure Functions 2021 (Zhang et al. SOSP'21): ``app,func,end_timestamp,duration`` (s); the
  arrival is ``end_timestamp - duration``.
- Huawei 2025 cold starts (Joosen et al. EuroSys'25, sir-lab/data-release): ``day,time,
  clusterName,funcName,userID,requestID,podID,totalCost_cold_start,podAllocationCost,
  deployCodeCost,deployDependencyCost,schedulingCost`` (s); ``podID`` holds the pool name
  ``pool<N>-<cpu millicores>-<memory MB>`` then the pod number; a function is
  ``funcName---userID---poolName`` (the release's ``funcID``).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

# The four parts of a cold start, in the Huawei table's order (EuroSys'25 Sec. 3).
COLD_START_PARTS = ("pod_allocation", "deploy_code", "deploy_dependency", "scheduling")
SECONDS_PER_DAY = 86_400.0
MINUTES_PER_DAY = 1440
# Memory when a format does not give it: the smallest pool of the Huawei trace (pool22-300-128).
DEFAULT_MEMORY_MB = 128.0


class ServerlessTraceError(ValueError):
    """A trace file or array that is not a valid serverless invocation trace."""


@dataclass(frozen=True)
class InvocationTrace:
    """Invocations sorted by arrival; per-function attributes indexed by ``function``."""

    arrival_s: np.ndarray  # float64, non-decreasing
    function: np.ndarray  # int64 index into ``functions``
    duration_s: np.ndarray  # float64 >= 0: execution time, cold start excluded
    functions: tuple[str, ...]
    memory_mb: np.ndarray  # float64 > 0, one per function
    trigger: tuple[str, ...] = ()  # one per function ("unknown" when the format has none)
    runtime: tuple[str, ...] = ()  # one per function
    cold_start_s: np.ndarray | None = None  # float64 per invocation (cold-start tables only)
    cold_start_parts_s: np.ndarray | None = None  # (n, 4) in COLD_START_PARTS order
    source: str = ""

    def __post_init__(self) -> None:
        n, m = len(self.arrival_s), len(self.functions)
        for name in ("function", "duration_s"):
            if len(getattr(self, name)) != n:
                raise ServerlessTraceError(f"{name} has {len(getattr(self, name))} entries, arrival_s has {n}")
        if len(self.memory_mb) != m:
            raise ServerlessTraceError(f"memory_mb has {len(self.memory_mb)} entries for {m} functions")
        for name in ("trigger", "runtime"):
            values = getattr(self, name)
            if not values:
                object.__setattr__(self, name, ("unknown",) * m)
            elif len(values) != m:
                raise ServerlessTraceError(f"{name} has {len(values)} entries for {m} functions")
        if n and np.any(np.diff(self.arrival_s) < 0):
            raise ServerlessTraceError("arrival_s must be non-decreasing")
        if n and (self.function.min() < 0 or self.function.max() >= m):
            raise ServerlessTraceError("function indices must lie in [0, number of functions)")
        if n and np.any(~np.isfinite(self.duration_s) | (self.duration_s < 0)):
            raise ServerlessTraceError("duration_s must be finite and >= 0")
        if m and np.any(~(self.memory_mb > 0)):
            raise ServerlessTraceError("memory_mb must be > 0")

    def __len__(self) -> int:
        return len(self.arrival_s)

    @property
    def n_functions(self) -> int:
        return len(self.functions)

    @property
    def horizon_s(self) -> float:
        """End of the trace: the last arrival or completion."""
        return float(np.max(self.arrival_s + self.duration_s)) if len(self) else 0.0

    def invocations_per_function(self) -> np.ndarray:
        return np.bincount(self.function, minlength=self.n_functions)

    def select(self, rows: np.ndarray) -> InvocationTrace:
        """The invocations at ``rows`` (a boolean mask or sorted indices), same function table."""
        return InvocationTrace(
            arrival_s=self.arrival_s[rows],
            function=self.function[rows],
            duration_s=self.duration_s[rows],
            functions=self.functions,
            memory_mb=self.memory_mb,
            trigger=self.trigger,
            runtime=self.runtime,
            cold_start_s=None if self.cold_start_s is None else self.cold_start_s[rows],
            cold_start_parts_s=None if self.cold_start_parts_s is None else self.cold_start_parts_s[rows],
            source=self.source,
        )

    def window(self, start_s: float, end_s: float) -> InvocationTrace:
        """The invocations arriving in ``[start_s, end_s)`` (times unchanged)."""
        lo, hi = np.searchsorted(self.arrival_s, [start_s, end_s], side="left")
        return self.select(np.arange(lo, hi))

    def of_functions(self, functions: np.ndarray) -> InvocationTrace:
        """The invocations of the given function indices (the function table is kept)."""
        keep = np.zeros(self.n_functions, dtype=bool)
        keep[np.asarray(functions, dtype=np.int64)] = True
        return self.select(keep[self.function])


def _sorted_trace(
    arrival: np.ndarray,
    function: np.ndarray,
    duration: np.ndarray,
    functions: tuple[str, ...],
    memory_mb: np.ndarray,
    **kwargs: object,
) -> InvocationTrace:
    order = np.argsort(arrival, kind="stable")
    extra = {k: (v[order] if isinstance(v, np.ndarray) else v) for k, v in kwargs.items()}
    return InvocationTrace(arrival[order], function[order], duration[order], functions, memory_mb, **extra)


# ---------------------------------------------------------------------- CSV helpers
def _read_csv(path: str | os.PathLike[str], required: tuple[str, ...]) -> tuple[pd.DataFrame, Path]:
    path = Path(path)
    if not path.is_file():
        raise ServerlessTraceError(f"{path}: no such file")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise ServerlessTraceError(f"{path}: not a readable CSV file ({err})") from err
    frame.columns = [str(c).strip() for c in frame.columns]
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise ServerlessTraceError(f"{path}: missing column(s) {missing} (found {list(frame.columns)[:12]})")
    return frame, path


def _numbers(
    frame: pd.DataFrame, columns: list[str], path: Path, *, integer: bool = False, minimum: float = 0.0
) -> np.ndarray:
    """The columns as a (rows, columns) float array; the first bad cell is named by line and column."""
    values = frame[columns].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values) | (values < minimum)
    if integer:
        bad |= values != np.round(values)
    if bad.any():
        row, col = (int(x[0]) for x in np.nonzero(bad))
        what = "a whole number" if integer else "a number"
        raise ServerlessTraceError(
            f"{path}: line {row + 2}, column {columns[col]!r}: {frame[columns[col]].iloc[row]!r} "
            f"is not {what} >= {minimum:g}"
        )
    return values


def _names(frame: pd.DataFrame, columns: tuple[str, ...], path: Path) -> pd.Series:
    for column in columns:
        empty = frame[column].str.strip() == ""
        if empty.any():
            row = int(np.flatnonzero(empty.to_numpy())[0])
            raise ServerlessTraceError(f"{path}: line {row + 2}, column {column!r}: empty identifier")
    key = frame[columns[0]].str.strip()
    for column in columns[1:]:
        key = key + "/" + frame[column].str.strip()
    return key


def _day_offset(path: Path) -> float:
    """Day NN of an Azure 2019 file name (``...d<NN>.csv``) as seconds from day 1; 0 otherwise."""
    match = re.search(r"\.d(\d+)\.csv$", path.name)
    return (int(match.group(1)) - 1) * SECONDS_PER_DAY if match and int(match.group(1)) >= 1 else 0.0


# ---------------------------------------------------------------------- Azure Functions 2019
AZURE_2019_KEYS = ("HashOwner", "HashApp", "HashFunction")
AZURE_2019_PERCENTILES = (0, 1, 25, 50, 75, 99, 100)


def load_azure_functions_2019(
    invocations_csv: str | os.PathLike[str],
    durations_csv: str | os.PathLike[str] | None = None,
    memory_csv: str | os.PathLike[str] | None = None,
    *,
    seed: int = 0,
) -> InvocationTrace:
    """One day of the Azure Functions 2019 trace as one entry per invocation.

    Each minute's count becomes that many arrivals spread uniformly within the minute (seeded by
    ``seed``), offset by the file's day (``d<NN>``). A function's invocations draw their
    execution time from its duration percentiles (piecewise-linear between the published
    percentiles 0/1/25/50/75/99/100, ms); without a durations file, or for a function missing
    from it, the median over the file's functions (1 s without a file). Memory is the app's
    ``AverageAllocatedMb`` (an app's functions share its memory, as in the trace); apps missing
    from the memory file get the file's median, and 128 MB without a file. Rows of the same
    function (owner, app, function) are merged.
    """
    minutes = [str(m) for m in range(1, MINUTES_PER_DAY + 1)]
    frame, path = _read_csv(invocations_csv, (*AZURE_2019_KEYS, "Trigger", *minutes))
    key = _names(frame, AZURE_2019_KEYS, path)
    counts = _numbers(frame, minutes, path, integer=True).astype(np.int64)
    names, row_function = np.unique(key.to_numpy(), return_inverse=True)
    triggers = dict(zip(key, frame["Trigger"].str.strip().replace("", "unknown"), strict=True))
    apps = dict(zip(key, frame["HashOwner"].str.strip() + "/" + frame["HashApp"].str.strip(), strict=True))
    rng = np.random.default_rng(seed)
    per_row_minute = counts.ravel()
    total = int(per_row_minute.sum())
    cell = np.repeat(np.arange(per_row_minute.size), per_row_minute)
    row, minute = np.divmod(cell, MINUTES_PER_DAY)
    arrival = _day_offset(path) + 60.0 * (minute + rng.random(total))
    function = row_function[row].astype(np.int64)

    # durations: inverse CDF through the published percentiles
    levels = np.array(AZURE_2019_PERCENTILES, dtype=np.float64) / 100.0
    quantiles = np.full((len(names), len(levels)), np.nan)
    if durations_csv is not None:
        pct_cols = [f"percentile_Average_{p}" for p in AZURE_2019_PERCENTILES]
        dframe, dpath = _read_csv(durations_csv, (*AZURE_2019_KEYS, "Average", "Count", *pct_cols))
        dkey = _names(dframe, AZURE_2019_KEYS, dpath)
        values = _numbers(dframe, pct_cols, dpath)
        decreasing = np.flatnonzero(np.any(np.diff(values, axis=1) < 0, axis=1))
        if decreasing.size:
            raise ServerlessTraceError(
                f"{dpath}: line {int(decreasing[0]) + 2}: duration percentiles must be non-decreasing"
            )
        index = {k: i for i, k in enumerate(names)}
        for k, q in zip(dkey, values, strict=True):
            if k in index:
                quantiles[index[k]] = q / 1000.0  # ms -> s
    known = ~np.isnan(quantiles[:, 0])
    fallback = np.nanmedian(quantiles[known], axis=0) if known.any() else np.ones(len(levels))
    quantiles[~known] = fallback
    u = rng.random(total)
    q = quantiles[function]
    position = np.interp(u, levels, np.arange(len(levels)))
    lo = np.floor(position).astype(np.int64).clip(0, len(levels) - 2)
    frac = position - lo
    rows = np.arange(total)
    duration = q[rows, lo] + frac * (q[rows, lo + 1] - q[rows, lo])

    memory = np.full(len(names), np.nan)
    if memory_csv is not None:
        mframe, mpath = _read_csv(memory_csv, ("HashOwner", "HashApp", "AverageAllocatedMb"))
        mkey = _names(mframe, ("HashOwner", "HashApp"), mpath)
        mb = _numbers(mframe, ["AverageAllocatedMb"], mpath)[:, 0]
        if np.any(mb <= 0):
            row = int(np.flatnonzero(mb <= 0)[0])
            raise ServerlessTraceError(f"{mpath}: line {row + 2}, column 'AverageAllocatedMb': must be > 0")
        by_app = dict(zip(mkey, mb, strict=True))
        memory = np.array([by_app.get(apps[k], np.nan) for k in names])
    memory[np.isnan(memory)] = np.nanmedian(memory) if np.isfinite(memory).any() else DEFAULT_MEMORY_MB
    return _sorted_trace(
        arrival,
        function,
        duration,
        tuple(names.tolist()),
        memory,
        trigger=tuple(triggers[k] for k in names),
        source=str(path),
    )


# ---------------------------------------------------------------------- Azure Functions 2021
def load_azure_functions_2021(path: str | os.PathLike[str], *, memory_mb: float = DEFAULT_MEMORY_MB) -> InvocationTrace:
    """The Azure Functions 2021 invocation trace: one row per invocation; arrival = end - duration.

    The format has no memory column: every function gets ``memory_mb``.
    """
    frame, path = _read_csv(path, ("app", "func", "end_timestamp", "duration"))
    key = _names(frame, ("app", "func"), path)
    end = _numbers(frame, ["end_timestamp"], path, minimum=-np.inf)[:, 0]
    duration = _numbers(frame, ["duration"], path)[:, 0]
    names, function = np.unique(key.to_numpy(), return_inverse=True)
    return _sorted_trace(
        end - duration,
        function.astype(np.int64),
        duration,
        tuple(names.tolist()),
        np.full(len(names), float(memory_mb)),
        source=str(path),
    )


# ---------------------------------------------------------------------- Huawei 2025 cold starts
HUAWEI_COLUMNS = (
    "day",
    "time",
    "clusterName",
    "funcName",
    "userID",
    "requestID",
    "podID",
    "totalCost_cold_start",
    "podAllocationCost",
    "deployCodeCost",
    "deployDependencyCost",
    "schedulingCost",
)
HUAWEI_PARTS = ("podAllocationCost", "deployCodeCost", "deployDependencyCost", "schedulingCost")
POOL_PATTERN = re.compile(r"^(pool\d+)-(\d+)-(\d+)(?:-|$)")


def parse_pool(pod_id: str) -> tuple[str, int, int]:
    """``pool22-300-128-0000618412`` -> (``pool22-300-128``, 300 millicores, 128 MB)."""
    match = POOL_PATTERN.match(pod_id.strip())
    if match is None:
        raise ValueError(f"{pod_id!r} does not start with a pool name pool<N>-<cpu millicores>-<memory MB>")
    name, cpu, mem = match.groups()
    return f"{name}-{cpu}-{mem}", int(cpu), int(mem)


def load_huawei_cold_starts(path: str | os.PathLike[str]) -> InvocationTrace:
    """One region's Huawei 2025 cold-start table: one entry per cold start.

    The arrival is the cold start's timestamp: ``time`` when it counts from the start of day 0
    (the release normalises timestamps so), else ``day * 86400 + time`` for a time within its
    day. The execution time is not in this table (0); the cold-start time and its four parts are
    kept. Memory and CPU come from the pool name in ``podID``. The parts need not add up to the
    total exactly (the release's total includes other overheads), so they are not checked
    against it.
    """
    frame, path = _read_csv(path, HUAWEI_COLUMNS)
    day = _numbers(frame, ["day"], path, integer=True)[:, 0]
    time = _numbers(frame, ["time"], path)[:, 0]
    costs = _numbers(frame, ["totalCost_cold_start", *HUAWEI_PARTS], path)
    pools: list[str] = []
    memory: list[float] = []
    for row, pod in enumerate(frame["podID"]):
        try:
            pool, _, mem = parse_pool(pod)
        except ValueError as err:
            raise ServerlessTraceError(f"{path}: line {row + 2}, column 'podID': {err}") from None
        pools.append(pool)
        memory.append(float(mem))
    key = _names(frame, ("funcName", "userID"), path).str.replace("/", "---", regex=False)
    key = key + "---" + pd.Series(pools, index=frame.index)
    names, function = np.unique(key.to_numpy(), return_inverse=True)
    mem_by_name = dict(zip(key, memory, strict=True))
    arrival = np.where(time >= day * SECONDS_PER_DAY, time, day * SECONDS_PER_DAY + time)
    return _sorted_trace(
        arrival,
        function.astype(np.int64),
        np.zeros(len(frame)),
        tuple(names.tolist()),
        np.array([mem_by_name[k] for k in names]),
        cold_start_s=costs[:, 0],
        cold_start_parts_s=costs[:, 1:],
        source=str(path),
    )


__all__ = [
    "COLD_START_PARTS",
    "InvocationTrace",
    "ServerlessTraceError",
    "load_azure_functions_2019",
    "load_azure_functions_2021",
    "load_huawei_cold_starts",
    "parse_pool",
]
