"""What every Task's evaluation shares: comparing methods and summarising over seeds.

A Task compares its learned model with baselines and, where the simulator can compute one, an
oracle. Each method's metrics go into one flat mapping under ``split/method/metric`` keys (the
names ``metrics.json``, W&B and the export's manifest use); the helpers below run the methods,
build those keys, lay them out as a results table, pick the best method on a split, measure a
model's margin over the best baseline and plot metric-vs-parameter curves per method.

Results that span several seeds (repeated evaluation workloads, benchmarks) are reported as the
mean with a percentile-bootstrap confidence interval (``scipy.stats.bootstrap``), never as the
best seed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from scipy import stats

from infragym.results import ResultsTable

CI_LOW, CI_HIGH = "ci_low", "ci_high"


# ---------------------------------------------------------------------- seeds
@dataclass(frozen=True)
class SeedSummary:
    """Mean of one metric over seeds, with its bootstrap confidence interval."""

    mean: float
    low: float
    high: float
    n: int

    def as_dict(self) -> dict[str, float]:
        return {"mean": self.mean, CI_LOW: self.low, CI_HIGH: self.high, "n": float(self.n)}

    def __str__(self) -> str:
        return f"{self.mean:.4g} [{self.low:.4g}, {self.high:.4g}]"


def bootstrap_ci(
    values: Sequence[float], *, confidence: float = 0.95, n_resamples: int = 2000, seed: int = 0
) -> SeedSummary:
    """Mean of ``values`` and its percentile-bootstrap interval (one value: the interval is the value)."""
    data = np.asarray(values, dtype=float)
    if data.ndim != 1 or data.size == 0:
        raise ValueError(f"bootstrap_ci needs a non-empty 1-d sequence of values, got shape {data.shape}")
    if not np.all(np.isfinite(data)):
        raise ValueError(f"bootstrap_ci: values must be finite, got {data.tolist()}")
    mean = float(data.mean())
    if data.size == 1 or np.all(data == data[0]):
        return SeedSummary(mean, mean, mean, int(data.size))
    result = stats.bootstrap(
        (data,),
        np.mean,
        confidence_level=confidence,
        n_resamples=n_resamples,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    low, high = result.confidence_interval
    return SeedSummary(mean, float(low), float(high), int(data.size))


def summarize_over_seeds(
    per_seed: Mapping[object, Mapping[str, float]], *, confidence: float = 0.95, seed: int = 0
) -> dict[str, SeedSummary]:
    """For each metric present in every seed's results, its mean and bootstrap interval over seeds."""
    if not per_seed:
        raise ValueError("summarize_over_seeds: no seeds")
    runs = list(per_seed.values())
    shared = set(runs[0]).intersection(*runs[1:])
    return {
        key: bootstrap_ci([float(run[key]) for run in runs], confidence=confidence, seed=seed) for key in sorted(shared)
    }


def average_over_seeds(
    runs: Sequence[Mapping[str, float]],
    *,
    ci_for: Collection[str] | None = None,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, float]:
    """Mean of each metric over runs (seeds, repeated workloads), with ``<metric>/ci_low`` and
    ``<metric>/ci_high`` from a percentile bootstrap.

    Every run must report the same metrics; the means keep the first run's order. Intervals are
    added for the metrics in ``ci_for`` (None: all) when there are at least two runs and the
    values are finite: one run has no spread to bootstrap, and a zero-width interval would
    claim a certainty the evaluation does not have.
    """
    if not runs:
        raise ValueError("average_over_seeds: no runs to average")
    names = list(runs[0])
    for i, run in enumerate(runs[1:], start=1):
        if set(run) != set(names):
            diff = sorted(set(run).symmetric_difference(names))
            raise ValueError(f"average_over_seeds: run {i} reports different metrics than run 0: {diff}")
    out: dict[str, float] = {}
    for name in names:
        values = [float(run[name]) for run in runs]
        out[name] = float(np.mean(values))
        if len(values) >= 2 and (ci_for is None or name in ci_for) and all(map(math.isfinite, values)):
            summary = bootstrap_ci(values, confidence=confidence, seed=seed)
            out[f"{name}/{CI_LOW}"], out[f"{name}/{CI_HIGH}"] = summary.low, summary.high
    return out


# ---------------------------------------------------------------------- metric keys
def metric_key(split: str, method: str, name: str, *, condition: str | None = None) -> str:
    """``split/method/name``, or ``split/method/condition/name`` for a method run under a
    condition (a workload at a load, a test snapshot). A split may itself be scoped, e.g.
    ``test/swe_like@0.3``."""
    parts = [split, method, *([] if condition is None else [condition]), name]
    if not all(isinstance(p, str) and p for p in parts):
        raise ValueError(f"metric_key: split, method, condition and name must be non-empty strings, got {parts}")
    return "/".join(parts)


def method_metrics(
    split: str, method: str, values: Mapping[str, float], *, condition: str | None = None
) -> dict[str, float]:
    """One method's ``{metric: value}`` under its ``split/method/metric`` keys."""
    return {metric_key(split, method, k, condition=condition): float(v) for k, v in values.items()}


def compare_methods(split: str, methods: Mapping[str, Callable[[], Mapping[str, float]]]) -> dict[str, float]:
    """Run each method's evaluation (model, baselines, oracle, in the given order) and collect
    its metrics under ``split/method/metric`` keys."""
    metrics: dict[str, float] = {}
    for method, evaluate in methods.items():
        metrics.update(method_metrics(split, method, evaluate()))
    return metrics


def _value(metrics: Mapping[str, float], split: str, method: str, name: str) -> float:
    key = metric_key(split, method, name)
    if key not in metrics:
        raise KeyError(f"no metric {key!r} for method {method!r}")
    return metrics[key]


# ---------------------------------------------------------------------- tables
Columns = Sequence[str] | Mapping[str, tuple[str, str]]


def add_method_rows(
    table: ResultsTable,
    metrics: Mapping[str, float],
    methods: Sequence[str],
    *,
    split: str | None = None,
    columns: Mapping[str, tuple[str, str]] | None = None,
    label: Callable[[str], str] | None = None,
) -> ResultsTable:
    """Add one row per method to ``table``, read from flat metrics.

    By default column ``c`` of method ``m`` is ``split/m/c``; ``columns`` maps a column to its
    ``(split, metric)`` instead, for tables that span splits. A metric the method lacks is left
    empty ("-"). ``label`` names a row (default: the method).
    """
    if columns is None:
        if split is None:
            raise ValueError("add_method_rows: give the split the columns are read from, or a columns mapping")
        columns = {c: (split, c) for c in table.columns}
    for method in methods:
        row: dict[str, float | str] = {}
        for column, (column_split, name) in columns.items():
            key = metric_key(column_split, method, name)
            if key in metrics:
                row[column] = metrics[key]
        table.add_row(label(method) if label else method, row)
    return table


def results_table(
    title: str,
    metrics: Mapping[str, float],
    methods: Sequence[str],
    columns: Columns,
    *,
    split: str | None = None,
    label: Callable[[str], str] | None = None,
) -> ResultsTable:
    """A side-by-side table of ``methods`` (rows) and metrics (columns) from flat metrics.

    ``columns`` is a list of metric names read under ``split``, or a mapping from a column to
    its ``(split, metric)`` for a table across splits.
    """
    table = ResultsTable(title, list(columns))
    if isinstance(columns, Mapping):
        return add_method_rows(table, metrics, methods, columns=columns, label=label)
    return add_method_rows(table, metrics, methods, split=split, label=label)


# ---------------------------------------------------------------------- choosing and margins
def best_method(
    metrics: Mapping[str, float],
    split: str,
    name: str,
    *,
    among: Sequence[str],
    lower_is_better: bool = True,
) -> str:
    """The method of ``among`` with the best ``split/<method>/name``.

    Ties go to the first in ``among``'s order; methods whose value is NaN are passed over
    (NaN compares false with everything, so ``min`` would pick by position).
    """
    if not among:
        raise ValueError(f"best_method: no methods to choose from on {split}/{name}")
    values = {m: _value(metrics, split, m, name) for m in among}
    finite = [m for m in among if not math.isnan(values[m])]
    if not finite:
        raise ValueError(f"best_method: every method's {split}/<method>/{name} is NaN: {list(among)}")
    choose = min if lower_is_better else max
    return choose(finite, key=values.__getitem__)


def relative_change(value: float, reference: float) -> float:
    """Signed change of ``value`` relative to ``reference`` (-0.5: half the reference)."""
    return value / reference - 1.0


def improvement(value: float, reference: float, *, lower_is_better: bool = True) -> float:
    """How much better ``value`` is than ``reference``, as a fraction of it (positive: better)."""
    return 1.0 - value / reference if lower_is_better else value / reference - 1.0


def margin_vs_best(
    metrics: Mapping[str, float],
    split: str,
    model: str,
    baselines: Sequence[str],
    name: str,
    *,
    lower_is_better: bool = True,
) -> tuple[str, float]:
    """The best baseline on ``split/<baseline>/name`` and the model's ``improvement`` over it."""
    best = best_method(metrics, split, name, among=baselines, lower_is_better=lower_is_better)
    margin = improvement(
        _value(metrics, split, model, name), _value(metrics, split, best, name), lower_is_better=lower_is_better
    )
    return best, margin


# ---------------------------------------------------------------------- figures
def plot_curves(
    curves: Mapping[str, Mapping[str, Sequence[tuple[float, float]]]],
    *,
    xlabel: str,
    ylabel: str,
    styles: Mapping[str, str] | None = None,
    xscale: str = "linear",
    yscale: str = "linear",
    panel_size: tuple[float, float] = (5.5, 4.0),
) -> Any:
    """One panel per condition (workload, snapshot), one line per method: a metric against a
    swept parameter (load, migration budget). ``curves[panel][label]`` is a list of ``(x, y)``;
    ``styles`` gives a line's matplotlib format (default ``"o-"``). Returns the Figure."""
    panels = list(curves) or [""]
    width, height = panel_size
    fig, axes = plt.subplots(1, len(panels), figsize=(width * len(panels), height), squeeze=False)
    for ax, panel in zip(axes[0], panels, strict=True):
        for line, points in curves.get(panel, {}).items():
            ax.plot([p[0] for p in points], [p[1] for p in points], (styles or {}).get(line, "o-"), label=line)
        ax.set_xscale(xscale)
        ax.set_yscale(yscale)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(panel)
        ax.grid(alpha=0.3)
        if curves.get(panel):
            ax.legend(fontsize=7)
    return fig


__all__ = [
    "CI_HIGH",
    "CI_LOW",
    "SeedSummary",
    "add_method_rows",
    "average_over_seeds",
    "best_method",
    "bootstrap_ci",
    "compare_methods",
    "improvement",
    "margin_vs_best",
    "method_metrics",
    "metric_key",
    "plot_curves",
    "relative_change",
    "results_table",
    "summarize_over_seeds",
]
