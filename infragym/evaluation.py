"""What every Task's evaluation shares: summaries over seeds with bootstrap confidence intervals.

Results that span several seeds (benchmarks, repeated evaluation workloads) are reported as the
mean with a percentile-bootstrap confidence interval (``scipy.stats.bootstrap``), never as the
best seed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class SeedSummary:
    """Mean of one metric over seeds, with its bootstrap confidence interval."""

    mean: float
    low: float
    high: float
    n: int

    def as_dict(self) -> dict[str, float]:
        return {"mean": self.mean, "ci_low": self.low, "ci_high": self.high, "n": float(self.n)}

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
