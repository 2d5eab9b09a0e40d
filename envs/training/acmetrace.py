"""AcmeTrace's per-cluster job statistics (InternLM/AcmeTrace, NSDI'24) and a cross-check of
the simulator's per-GPU failure rate against them.

The summary CSV has one row per cluster (``id``: Seren, Kalos, Philly, Helios, PAI) and numeric
columns (``avg_run_time_gpu`` seconds, ``avg_gpu_num``, ``fail_rate_gpu`` by count,
``fail_rate_gpu_time`` by GPU time, ...); a cell may be empty where the trace lacks the figure.

Cross-check: at Llama 3's per-GPU interruption rate, how many infrastructure failures does the
average GPU job of a cluster, and its largest job, expect? Failed jobs are a superset of jobs
hit by infrastructure (AcmeTrace attributes most failures by count to user code), so the
predicted share of average jobs hit must not exceed the observed failure rate by count.
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

from infragym.envs.training import calibration as cal

REQUIRED = (
    "id",
    "avg_run_time_gpu",
    "avg_gpu_num",
    "max_run_time_gpu",
    "max_gpu",
    "fail_rate_gpu",
    "fail_rate_gpu_time",
)


class AcmeTraceFormatError(ValueError):
    """An AcmeTrace summary file that does not follow the format."""


def load_cluster_summary(path: str | os.PathLike[str]) -> dict[str, dict[str, float]]:
    """Cluster id -> {column: value} (NaN for an empty cell)."""
    path = Path(path)
    try:
        with path.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise AcmeTraceFormatError(f"{path}: cannot read the CSV ({err})") from err
    if not rows:
        raise AcmeTraceFormatError(f"{path}: no data rows")
    missing = [c for c in REQUIRED if c not in rows[0]]
    if missing:
        raise AcmeTraceFormatError(f"{path}: missing column(s) {missing}")
    out: dict[str, dict[str, float]] = {}
    for line, row in enumerate(rows, start=2):
        name = (row.get("id") or "").strip()
        if not name:
            raise AcmeTraceFormatError(f"{path}: line {line}, field 'id': empty cluster id")
        values: dict[str, float] = {}
        for key, cell in row.items():
            if key == "id" or key is None:
                continue
            text = (cell or "").strip()
            try:
                values[key] = float(text) if text else math.nan
            except ValueError as err:
                raise AcmeTraceFormatError(f"{path}: line {line}, field {key!r}: {text!r} is not a number") from err
        out[name] = values
    return out


def cross_check(summary: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """Per cluster with failure rates: Llama-3-rate infrastructure failures expected by its
    average and its largest GPU job, and the share of average jobs hit, beside the observed rates."""
    out: dict[str, dict[str, float]] = {}
    for name, row in summary.items():
        if math.isnan(row["fail_rate_gpu"]):
            continue
        mean_failures = cal.FAILURES_PER_GPU_S * row["avg_gpu_num"] * row["avg_run_time_gpu"]
        out[name] = {
            "expected_failures_avg_job": mean_failures,
            "predicted_share_avg_jobs_hit": 1 - math.exp(-mean_failures),
            "expected_failures_largest_job": cal.FAILURES_PER_GPU_S * row["max_gpu"] * row["max_run_time_gpu"],
            "observed_fail_rate_by_count": row["fail_rate_gpu"],
            "observed_fail_rate_by_gpu_time": row["fail_rate_gpu_time"],
        }
    return out
