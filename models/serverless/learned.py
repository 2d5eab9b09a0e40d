"""The learned keep-alive policy: a per-function idle-time predictor and a decision rule.

The predictor (LightGBM quantile regression on log idle time) sees, when an invocation ends, its
function's recent idle times and context (``policies.FEATURES``) and predicts quantiles of how
long the pod that served it then idles (in a reference run that never evicts: with concurrency
the function's next invocation often lands on another pod, so the app-level idle time is the
wrong target for a pod's window). A rule turns them into windows: either like the hybrid histogram turns its
percentiles into windows (pre-warm at a low quantile minus a margin, keep alive to a high
quantile plus a margin), or the keep-alive that minimises the expected cold starts plus weighted
idle memory under the predicted distribution. Which rule is chosen on the training functions' last
training day (validation), never on test: the fewest cold starts among the rules that waste no
more idle memory than the hybrid-histogram policy there (the comparison at equal memory).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import lightgbm as lgb
import numpy as np

from infragym.datasets.serverless import InvocationTrace
from infragym.envs.serverless.policies import FEATURES, pod_idle_times, trace_features

LEVELS = (0.05, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99)
MIN_PREWARM_S = 60.0  # a pre-warm shorter than a histogram bin (1 min) only risks cold starts
MAX_WINDOW_S = 4 * 3600.0  # the hybrid histogram's range (Shahrad et al. Sec. 4.2)


class PredictorError(ValueError):
    """A predictor state or input that is not valid."""


class IdleTimePredictor:
    """Quantiles of the idle time after an invocation (seconds), one LightGBM model per level."""

    def __init__(
        self,
        *,
        levels: Sequence[float] = LEVELS,
        n_estimators: int = 80,
        learning_rate: float = 0.1,
        num_leaves: int = 31,
        max_rows: int = 200_000,
        seed: int = 0,
    ) -> None:
        if not levels or any(not 0 < lv < 1 for lv in levels) or list(levels) != sorted(levels):
            raise PredictorError(f"levels must be increasing in (0, 1), got {levels}")
        self.levels = tuple(float(lv) for lv in levels)
        self.params = {
            "n_estimators": n_estimators,
            "learning_rate": learning_rate,
            "num_leaves": num_leaves,
            "min_child_samples": 50,
            "verbose": -1,
            "n_jobs": 1,
            "random_state": seed,
        }
        self.max_rows = max_rows
        self.seed = seed
        self.boosters: list[lgb.Booster] = []

    def fit(self, features: np.ndarray, idle_after_s: np.ndarray) -> IdleTimePredictor:
        """Fit on rows with a known following idle time (a function's last invocation has none)."""
        known = np.isfinite(idle_after_s)
        x, y = features[known], np.log1p(idle_after_s[known])
        if len(y) < 100:
            raise PredictorError(f"need at least 100 invocations with a following idle time, got {len(y)}")
        if len(y) > self.max_rows:
            pick = np.random.default_rng(self.seed).choice(len(y), self.max_rows, replace=False)
            x, y = x[pick], y[pick]
        self.boosters = [
            lgb.LGBMRegressor(objective="quantile", alpha=level, **self.params).fit(x, y).booster_
            for level in self.levels
        ]
        return self

    def quantiles(self, features: np.ndarray) -> np.ndarray:
        """(n, levels) predicted idle-time quantiles in seconds, non-decreasing across levels."""
        if not self.boosters:
            raise PredictorError("the predictor is not fitted")
        if features.ndim != 2 or features.shape[1] != len(FEATURES):
            raise PredictorError(f"features must be (n, {len(FEATURES)}), got {features.shape}")
        logs = np.column_stack([b.predict(features) for b in self.boosters])
        return np.expm1(np.maximum.accumulate(logs, axis=1)).clip(min=0.0)

    def state(self) -> tuple[dict[str, Any], dict[str, bytes]]:
        """JSON-able description and the LightGBM text models (no pickle)."""
        files = {
            f"idle_q{lv:g}.txt": b.model_to_string().encode() for lv, b in zip(self.levels, self.boosters, strict=True)
        }
        return {"levels": list(self.levels), "features": list(FEATURES), "model_files": list(files)}, files

    @classmethod
    def from_state(cls, state: dict[str, Any], read: Callable[[str], bytes]) -> IdleTimePredictor:
        if list(state.get("features", [])) != list(FEATURES):
            raise PredictorError("the export's feature list differs from this version's")
        predictor = cls(levels=state["levels"])
        if len(state["model_files"]) != len(predictor.levels):
            raise PredictorError("one model file per level expected")
        predictor.boosters = [lgb.Booster(model_str=read(name).decode()) for name in state["model_files"]]
        return predictor


@dataclass(frozen=True)
class WindowRule:
    """Pre-warm at quantile ``low`` x (1 - margin) (none when below a minute or when ``low`` is
    None), keep alive to quantile ``high`` x (1 + margin), capped at 4 hours."""

    low: float | None
    high: float
    margin: float = 0.1

    def windows(
        self, quantiles: np.ndarray, levels: Sequence[float], memory_gb: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        levels = list(levels)
        until = np.minimum(quantiles[:, levels.index(self.high)] * (1 + self.margin), MAX_WINDOW_S)
        if self.low is None:
            prewarm = np.zeros(len(quantiles))
        else:
            prewarm = quantiles[:, levels.index(self.low)] * (1 - self.margin)
            prewarm = np.where(prewarm < MIN_PREWARM_S, 0.0, np.minimum(prewarm, until))
        return prewarm, np.maximum(until - prewarm, 0.0)

    def as_dict(self) -> dict[str, Any]:
        return {"kind": "quantile_window", "low": self.low, "high": self.high, "margin": self.margin}


@dataclass(frozen=True)
class CostRule:
    """Keep alive for the window that minimises the expected cost under the predicted idle-time
    distribution: P(idle > tau) cold starts + ``weight`` x memory (GB) x E[min(idle, tau)]
    (ski rental with a forecast), over tau in {0} and the predicted quantiles; never pre-warms.
    ``weight`` is cold starts per idle GB-second: one parameter sweeps the frontier."""

    weight: float

    def windows(
        self, quantiles: np.ndarray, levels: Sequence[float], memory_gb: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        n = len(quantiles)
        memory = np.full(n, 0.125) if memory_gb is None else np.asarray(memory_gb, dtype=np.float64)
        lv = np.r_[0.0, np.asarray(levels, dtype=np.float64)]
        q = np.column_stack([np.zeros(n), np.minimum(quantiles, MAX_WINDOW_S)])
        # E[min(idle, q_j)]: the mass between levels at the mid-point, the rest at q_j
        slab = np.diff(lv)[None, :] * (q[:, 1:] + q[:, :-1]) / 2
        expected = np.column_stack([np.zeros(n), np.cumsum(slab, axis=1)]) + (1 - lv)[None, :] * q
        cost = (1 - lv)[None, :] + self.weight * memory[:, None] * expected
        best = np.argmin(cost, axis=1)
        return np.zeros(n), q[np.arange(n), best]

    def as_dict(self) -> dict[str, Any]:
        return {"kind": "expected_cost", "weight": self.weight}


COST_WEIGHTS = tuple(float(w) for w in np.logspace(-5, -1, 9))


def candidate_rules(levels: Sequence[float]) -> list[WindowRule | CostRule]:
    """The rules the validation search compares: quantile windows and expected-cost rules."""
    highs = [lv for lv in levels if lv >= 0.75]
    lows: list[float | None] = [None, *[lv for lv in levels if lv <= 0.05]]
    windows = [WindowRule(lo, hi, m) for lo in lows for hi in highs for m in (0.1, 1.0)]
    return [*windows, *(CostRule(w) for w in COST_WEIGHTS)]


def rule_from_dict(spec: dict[str, Any], levels: Sequence[float]) -> WindowRule | CostRule:
    """A rule from its ``as_dict`` (an export's ``policy.json``), checked against the levels."""
    kind = spec.get("kind", "quantile_window")
    if kind == "expected_cost":
        weight = float(spec["weight"])
        if not weight >= 0:
            raise PredictorError(f"expected-cost rule: weight must be >= 0, got {weight}")
        return CostRule(weight)
    if kind != "quantile_window":
        raise PredictorError(f"unknown rule kind {kind!r}")
    low = None if spec["low"] is None else float(spec["low"])
    rule = WindowRule(low, float(spec["high"]), float(spec["margin"]))
    for level in (rule.low, rule.high):
        if level is not None and level not in levels:
            raise PredictorError(f"rule level {level} is not a predicted level")
    return rule


@dataclass
class LearnedKeepAlive:
    """The learned policy: predictor quantiles through the selected rule."""

    predictor: IdleTimePredictor
    rule: WindowRule | CostRule
    name: str = "learned"
    oracle: bool = False

    def windows(self, trace: InvocationTrace) -> tuple[np.ndarray, np.ndarray]:
        quantiles = self.predictor.quantiles(trace_features(trace))
        return self.rule.windows(quantiles, self.predictor.levels, trace.memory_mb[trace.function] / 1024.0)


CENSORED_IDLE_S = 2 * MAX_WINDOW_S  # a pod never used again: beyond any window


def training_rows(
    trace: InvocationTrace, cold_start_s: np.ndarray, *, concurrency: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Features of every invocation of ``trace`` and the target: how long its pod then idles
    (``policies.pod_idle_times``; a pod never used again counts as ``CENSORED_IDLE_S``)."""
    after = pod_idle_times(trace, cold_start_s, concurrency=concurrency)
    return trace_features(trace), np.where(np.isfinite(after), after, CENSORED_IDLE_S)


__all__ = [
    "LEVELS",
    "CostRule",
    "IdleTimePredictor",
    "LearnedKeepAlive",
    "PredictorError",
    "WindowRule",
    "candidate_rules",
    "rule_from_dict",
    "training_rows",
]
