"""Keep-alive policies: what windows each invocation leaves its pod, and the idle-time features.

A policy maps a trace to two arrays, one value per invocation: ``prewarm_s`` (how long after the
pod goes idle it is re-loaded; 0: it stays loaded) and ``keep_alive_s`` (how long it then stays
warm). Policies are causal (they see an invocation's past only), except the oracle, which the
simulator runs with future knowledge. Registered by name in ``POLICIES``.

Baselines (Shahrad et al. ATC'20 Sec. 4; Joosen et al. EuroSys'25 Sec. 2):
- ``fixed_1min`` (Huawei's default keep-alive), ``fixed_10min`` and ``fixed_20min`` (AWS/Azure-
  style fixed windows);
- ``hybrid_histogram``: per-app histogram of idle times, 1-minute bins over 4 hours; pre-warm at
  the 5th percentile minus 10%, keep alive to the 99th plus 10%; when the histogram is not
  representative (coefficient of variation of its bin counts below 2, or too few idle times) or
  most idle times fall beyond its range, a fixed 4-hour keep-alive. The paper predicts the
  out-of-range case with ARIMA; here it falls back to the fixed window (a simplification, named).
- ``oracle``: future knowledge (``simulate(..., oracle=True)``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from infragym.datasets.serverless import InvocationTrace
from infragym.envs.serverless.simulator import SimulationResult, function_segments, simulate

# ------------------------------------------------------------------ idle times and features
N_LAGS = 8  # the last idle times a feature row sees
TRIGGERS = ("http", "timer", "queue", "event", "orchestration", "storage", "other", "unknown")
FEATURES = (
    *(f"log_idle_lag{k}" for k in range(1, N_LAGS + 1)),
    "log_idle_mean",
    "log_idle_std",
    "log_idle_min",
    "log_idle_max",
    "share_idle_below_1min",
    "share_idle_below_10min",
    "log_invocations_so_far",
    "hour_sin",
    "hour_cos",
    "trigger",
    "log_memory_mb",
    "log_duration_s",
)


def idle_times(trace: InvocationTrace) -> tuple[np.ndarray, np.ndarray]:
    """Per invocation, the idle time before it (its arrival minus the end of the function's
    previous invocation, >= 0; NaN for a function's first) and after it (NaN for its last):
    the app-level idle times of Shahrad et al. Sec. 4, independent of any policy."""
    order, bounds = function_segments(trace)
    arrival = trace.arrival_s[order]
    end = arrival + trace.duration_s[order]
    gap = np.full(len(trace), np.nan)
    gap[1:] = np.maximum(arrival[1:] - end[:-1], 0.0)
    gap[bounds[:-1][bounds[:-1] < len(trace)]] = np.nan  # first of each function
    before = np.empty(len(trace))
    before[order] = gap
    after_sorted = np.full(len(trace), np.nan)
    after_sorted[:-1] = gap[1:]
    after = np.empty(len(trace))
    after[order] = after_sorted
    return before, after


def pod_idle_times(trace: InvocationTrace, cold_start_s: np.ndarray, *, concurrency: int = 1) -> np.ndarray:
    """Per invocation, how long the pod that served it then idles until it serves again (NaN:
    never), in the reference run where pods are never evicted (``simulate(oracle=True)``: every
    pod a function ever needed stays available, the most recently idle one first). With
    concurrency, the next invocation of a function often lands on another pod: this, not the
    app-level idle time, is what a pod's keep-alive window has to cover."""
    result = simulate(trace, cold_start_s, oracle=True, concurrency=concurrency)
    end = result.start_s + trace.duration_s
    order = np.lexsort((trace.arrival_s, result.pod))
    idle = np.full(len(trace), np.nan)
    same_pod = result.pod[order][1:] == result.pod[order][:-1]
    gaps = np.maximum(trace.arrival_s[order][1:] - end[order][:-1], 0.0)
    idle[order[:-1][same_pod]] = gaps[same_pod]
    return idle


def lagged_idle_times(trace: InvocationTrace) -> tuple[np.ndarray, np.ndarray]:
    """(n, N_LAGS) idle times seen at each invocation's end, most recent first (the one that
    ended at this invocation's arrival is lag 1), NaN where there is no history; and how many
    invocations of its function came before."""
    order, bounds = function_segments(trace)
    before, _ = idle_times(trace)
    seq = before[order]
    function_sorted = trace.function[order]
    lags = np.full((len(trace), N_LAGS), np.nan)
    for k in range(N_LAGS):
        shifted = np.full(len(trace), np.nan)
        if k == 0:
            shifted = seq
        else:
            shifted[k:] = seq[:-k]
            same = np.zeros(len(trace), dtype=bool)
            same[k:] = function_sorted[k:] == function_sorted[:-k]
            shifted = np.where(same, shifted, np.nan)
        lags[order, k] = shifted
    position = np.arange(len(trace)) - np.repeat(bounds[:-1], np.diff(bounds))
    count = np.empty(len(trace))
    count[order] = position
    return lags, count


def feature_matrix(
    lags_s: np.ndarray,
    count: np.ndarray,
    end_time_s: np.ndarray,
    trigger: np.ndarray,
    memory_mb: np.ndarray,
    duration_s: np.ndarray,
) -> np.ndarray:
    """The predictor's features (``FEATURES``) from idle-time lags (s, NaN: none) and context;
    the same function builds them from a trace and from a served request."""
    logs = np.log1p(np.asarray(lags_s, dtype=np.float64))
    n = logs.shape[0]
    seen = np.isfinite(logs)
    k = seen.sum(axis=1)
    safe = np.where(seen, logs, 0.0)
    mean = np.where(k > 0, safe.sum(axis=1) / np.maximum(k, 1), np.nan)
    var = np.where(k > 0, (np.where(seen, (logs - mean[:, None]) ** 2, 0.0)).sum(axis=1) / np.maximum(k, 1), np.nan)
    lo = np.where(k > 0, np.where(seen, logs, np.inf).min(axis=1), np.nan)
    hi = np.where(k > 0, np.where(seen, logs, -np.inf).max(axis=1), np.nan)
    raw = np.asarray(lags_s, dtype=np.float64)
    below1 = np.where(k > 0, (seen & (raw < 60.0)).sum(axis=1) / np.maximum(k, 1), np.nan)
    below10 = np.where(k > 0, (seen & (raw < 600.0)).sum(axis=1) / np.maximum(k, 1), np.nan)
    hour = 2 * np.pi * (np.asarray(end_time_s) % 86_400.0) / 86_400.0
    return np.column_stack(
        [
            logs,
            mean,
            np.sqrt(var),
            lo,
            hi,
            below1,
            below10,
            np.log1p(np.asarray(count, dtype=np.float64)),
            np.sin(hour),
            np.cos(hour),
            np.asarray(trigger, dtype=np.float64),
            np.log(np.asarray(memory_mb, dtype=np.float64)),
            np.log1p(np.asarray(duration_s, dtype=np.float64)),
        ]
    ).reshape(n, len(FEATURES))


def trigger_codes(triggers: tuple[str, ...]) -> np.ndarray:
    """Index of each function's trigger in ``TRIGGERS`` (unknown names map to "other")."""
    lookup = {name: i for i, name in enumerate(TRIGGERS)}
    return np.array([lookup.get(t.lower(), lookup["other"]) for t in triggers], dtype=np.int64)


def trace_features(trace: InvocationTrace) -> np.ndarray:
    """``feature_matrix`` for every invocation of ``trace`` (what a policy sees when it ends)."""
    lags, count = lagged_idle_times(trace)
    codes = trigger_codes(trace.trigger)
    return feature_matrix(
        lags,
        count,
        trace.arrival_s + trace.duration_s,
        codes[trace.function],
        trace.memory_mb[trace.function],
        trace.duration_s,
    )


# ------------------------------------------------------------------ policies
@dataclass(frozen=True)
class FixedKeepAlive:
    """Keep an idle pod warm for a fixed window, never pre-warm."""

    keep_alive_s: float
    name: str = "fixed"
    oracle: bool = False

    def windows(self, trace: InvocationTrace) -> tuple[np.ndarray, np.ndarray]:
        n = len(trace)
        return np.zeros(n), np.full(n, float(self.keep_alive_s))


HISTOGRAM_BIN_S = 60.0  # Shahrad et al. Sec. 4.2: 1-minute bins
HISTOGRAM_RANGE_S = 4 * 3600.0  # ... over 4 hours
HEAD_PERCENTILE, TAIL_PERCENTILE = 0.05, 0.99  # pre-warm at the 5th, keep alive to the 99th
MARGIN = 0.10  # 10% margins on both
CV_THRESHOLD = 2.0  # representative histogram: CV of bin counts >= 2 (Sec. 4.2)
OOB_SHARE_LIMIT = 0.5  # most idle times beyond the range: the paper's ARIMA case (here: fallback)
MIN_IDLE_TIMES = 5  # fewer idle times: not representative (assumption; the paper gives no count)


@numba.njit(cache=True)
def _hybrid_windows(
    idle_before: np.ndarray,
    order: np.ndarray,
    bounds: np.ndarray,
    n_bins: int,
    bin_s: float,
    fallback_s: float,
) -> tuple[np.ndarray, np.ndarray]:
    n = idle_before.size
    prewarm = np.zeros(n)
    keep = np.full(n, fallback_s)
    counts = np.zeros(n_bins, dtype=np.int64)
    for f in range(bounds.size - 1):
        counts[:] = 0
        total, oob, sum_sq = 0, 0, 0.0
        for r in range(bounds[f], bounds[f + 1]):
            i = order[r]
            it = idle_before[i]
            if it == it:  # not NaN: a new idle time
                b = int(it // bin_s)
                if b >= n_bins:
                    oob += 1
                else:
                    sum_sq += 2 * counts[b] + 1  # (c + 1)^2 - c^2
                    counts[b] += 1
                    total += 1
            if total < MIN_IDLE_TIMES or oob > OOB_SHARE_LIMIT * (total + oob):
                continue
            mean = total / n_bins
            var = sum_sq / n_bins - mean * mean
            if np.sqrt(max(var, 0.0)) / mean < CV_THRESHOLD:
                continue
            head, tail, cum = -1, -1, 0
            for b in range(n_bins):
                cum += counts[b]
                if head < 0 and cum >= HEAD_PERCENTILE * total:
                    head = b
                if cum >= TAIL_PERCENTILE * total:
                    tail = b + 1
                    break
            pre = head * bin_s * (1.0 - MARGIN)
            prewarm[i] = pre
            keep[i] = tail * bin_s * (1.0 + MARGIN) - pre
    return prewarm, keep


@dataclass(frozen=True)
class HybridHistogram:
    """Shahrad et al.'s hybrid histogram policy (see the module docstring)."""

    name: str = "hybrid_histogram"
    oracle: bool = False
    bin_s: float = HISTOGRAM_BIN_S
    range_s: float = HISTOGRAM_RANGE_S

    def windows(self, trace: InvocationTrace) -> tuple[np.ndarray, np.ndarray]:
        before, _ = idle_times(trace)
        order, bounds = function_segments(trace)
        n_bins = round(self.range_s / self.bin_s)
        return _hybrid_windows(before, order, bounds, n_bins, float(self.bin_s), float(self.range_s))


@dataclass(frozen=True)
class Oracle:
    """Pre-warms a pod exactly when a request next reuses it (future knowledge; a bound)."""

    name: str = "oracle"
    oracle: bool = True

    def windows(self, trace: InvocationTrace) -> tuple[np.ndarray, np.ndarray]:
        n = len(trace)
        return np.zeros(n), np.zeros(n)  # unused: the simulator decides with the future


POLICIES = {
    "fixed_1min": FixedKeepAlive(60.0, name="fixed_1min"),  # Huawei's default (EuroSys'25 Sec. 2)
    "fixed_10min": FixedKeepAlive(600.0, name="fixed_10min"),
    "fixed_20min": FixedKeepAlive(1200.0, name="fixed_20min"),
    "hybrid_histogram": HybridHistogram(),
    "oracle": Oracle(),
}


def run_policy(
    policy: object,
    trace: InvocationTrace,
    cold_start_s: np.ndarray,
    *,
    concurrency: int = 1,
    measure_from_s: float = -np.inf,
    record: bool = False,
) -> SimulationResult:
    """Simulate ``trace`` under a policy (anything with ``windows(trace)`` and ``oracle``)."""
    prewarm, keep = policy.windows(trace)
    return simulate(
        trace,
        cold_start_s,
        prewarm_s=prewarm,
        keep_alive_s=keep,
        concurrency=concurrency,
        oracle=bool(getattr(policy, "oracle", False)),
        measure_from_s=measure_from_s,
        record=record,
    )


__all__ = [
    "FEATURES",
    "POLICIES",
    "FixedKeepAlive",
    "HybridHistogram",
    "Oracle",
    "feature_matrix",
    "idle_times",
    "lagged_idle_times",
    "pod_idle_times",
    "run_policy",
    "trace_features",
    "trigger_codes",
]
