"""Tool-call duration predictors for multi-turn agents (Continuum).

Every predictor gives a predictive distribution as quantiles at ``LEVELS`` plus a mean, for a
frame of tool calls (``AgentPrograms.tool_calls()`` columns: ``tool``, ``arguments``,
``tool_key``, ``turn``, ``context_tokens``, and the history columns ``prev_duration_s``,
``prog_mean_duration_s``, ``prev_same_tool_s``).

- ``global_mean``: one distribution for every call (the training durations' quantiles; the
  point estimate is their mean).
- ``running_mean``: the Continuum preview code: a running mean per tool key (the first word of
  a shell command), read as an exponential distribution with that mean.
- ``empirical``: the paper's approach: per-tool empirical quantiles once a tool has more than
  ``min_samples`` (100) observations, else the global empirical distribution, and an Exp(1 s)
  prior until 100 calls in all have been seen.
- ``quantile_gbm``: gradient boosting (LightGBM) with the pinball loss, one model per level, on
  the tool key, argument features, turn index and the program's recent durations; fitted on
  log durations (quantiles are invariant to monotone transforms), sorted to avoid crossing.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from infragym.datasets.agent_programs import pair_tool_key, tool_key
from infragym.models.continuum import single_row

LEVELS: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99)
PRIOR_MEAN_S = 1.0  # the paper's Exp(1 s) prior
MIN_SAMPLES = 100  # the paper: global CDF after 100 samples, per tool after > 100
_LOG_FLOOR = 1e-5  # durations are logged as log(d + 10 us)

REQUIRED_COLUMNS = ("tool", "arguments")


class PredictorError(ValueError):
    """Tool calls a predictor cannot read."""


def exp_quantiles(mean: np.ndarray, levels: Sequence[float] = LEVELS) -> np.ndarray:
    """Quantiles of exponential distributions with the given means, shape (n, levels)."""
    return -np.outer(np.asarray(mean, dtype=np.float64), np.log1p(-np.asarray(levels)))


# Optional numeric columns and the value a call without one gets.
_DEFAULTS: dict[str, float] = {
    "turn": 0,
    "context_tokens": 0,
    "prev_duration_s": np.nan,
    "prog_mean_duration_s": np.nan,
    "prev_same_tool_s": np.nan,
}
_RECORD_KEYS = frozenset(REQUIRED_COLUMNS) | frozenset(_DEFAULTS)
# Records up to this many take the plain-Python path (a decision at a time: pandas' per-call
# overhead dominates); larger batches are cheaper vectorised.
FAST_MAX_CALLS = 2_000
_EXACT_INT = 2**53  # ints beyond this could round differently on their way into pandas


@dataclass(frozen=True, slots=True)
class _Calls:
    """Tool calls as ``prepare_calls`` would leave them, without the DataFrame: the tool key
    and argument text per call, and each numeric column (defaults filled) as float64."""

    n: int
    tool_key: list[str]
    arguments: list[str]
    numeric: dict[str, np.ndarray]


def _utf8(text: str) -> bool:
    # pandas stores text as Arrow strings and raises on what UTF-8 cannot encode (lone surrogates)
    if text.isascii():
        return True
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _fast_calls(calls: Any) -> _Calls | None:
    """The records as ``prepare_calls`` + the predictors would read them, in plain Python; None
    for anything off the plain path (DataFrames, large batches, missing or non-str tools,
    other keys or value types, invalid text), which then takes the pandas path: that keeps its
    semantics and its errors, which this path never raises."""
    if not isinstance(calls, list | tuple) or not 0 < len(calls) <= FAST_MAX_CALLS:
        return None
    keys, arguments = [], []
    has_arguments = False
    present = set()
    for record in calls:
        if type(record) is not dict or not record.keys() <= _RECORD_KEYS:
            return None
        tool = record.get("tool")
        if type(tool) is not str or not _utf8(tool):
            return None
        if "arguments" in record:
            has_arguments = True
            text = record["arguments"]
            if text is None:  # pandas: None -> fillna("")
                text = ""
            elif type(text) is not str or not _utf8(text):
                return None
        else:
            text = ""  # a key other records have: NaN -> fillna("")
        keys.append(pair_tool_key(tool + "\x00" + text))
        arguments.append(text)
        present.update(record.keys())
    if not has_arguments:
        return None  # prepare_calls names the missing column
    numeric = {}
    for column, default in _DEFAULTS.items():
        if column not in present:
            numeric[column] = np.full(len(calls), default, dtype=np.float64)
            continue
        values = []
        for record in calls:
            value = record.get(column)
            if value is None:
                value = default
            elif type(value) is int:
                if not 0 <= value <= _EXACT_INT:
                    return None  # negative: the pandas path refuses it, naming the column
                value = float(value)
            elif type(value) is float:
                if value != value:  # NaN, like a missing value
                    value = default
                elif not 0.0 <= value < math.inf:
                    return None  # negative or infinite: refused on the pandas path
            else:
                return None  # strings, bools, numpy scalars: pandas coerces (or refuses) them
            values.append(value)
        numeric[column] = np.array(values, dtype=np.float64)
    return _Calls(len(calls), keys, arguments, numeric)


def prepare_calls(calls: pd.DataFrame | Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Validate tool calls and fill the derived columns a predictor may use."""
    frame = pd.DataFrame(list(calls)) if not isinstance(calls, pd.DataFrame) else calls.copy()
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise PredictorError(f"tool calls miss column(s) {missing}; expected at least {list(REQUIRED_COLUMNS)}")
    frame["tool"] = frame["tool"].astype(str)
    frame["arguments"] = frame["arguments"].fillna("").astype(str)
    if "tool_key" not in frame.columns:
        frame["tool_key"] = tool_key(frame["tool"], frame["arguments"])
    for column, default in _DEFAULTS.items():
        if column not in frame.columns:
            frame[column] = default
            continue
        values = pd.to_numeric(frame[column], errors="coerce")
        bad = values.isna() & frame[column].notna()
        if bad.any():
            row = frame.index[bad.to_numpy()][0]
            raise PredictorError(f"tool calls column {column!r}, row {row}: {frame[column][row]!r} is not a number")
        invalid = (values < 0) | np.isinf(values)
        if invalid.any():
            row = frame.index[invalid.to_numpy()][0]
            raise PredictorError(
                f"tool calls column {column!r}, row {row}: {frame[column][row]!r} must be a finite number >= 0"
            )
        frame[column] = values.fillna(default)
    return frame


class DurationPredictor:
    """Base: ``fit(calls)`` on calls with ``duration_s``; ``predict(calls)`` -> quantiles."""

    name = "base"
    levels: tuple[float, ...] = LEVELS
    _columns: dict[tuple[float, ...], pd.Index] = {}  # shared cache: output labels per level set

    def fit(self, calls: pd.DataFrame) -> DurationPredictor:
        raise NotImplementedError

    def predict_distribution(self, calls: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """(quantiles (n, levels), mean (n,)) in seconds."""
        raise NotImplementedError

    def _distribution_fast(self, calls: _Calls) -> tuple[np.ndarray, np.ndarray] | None:
        """``predict_distribution`` of records on the plain path, bit for bit; None where a
        predictor has no such version (the pandas path runs)."""
        return None

    def distribution(
        self, calls: pd.DataFrame | Sequence[Mapping[str, Any]]
    ) -> tuple[np.ndarray, np.ndarray, pd.Index]:
        """(quantiles (n, levels), mean (n,), the calls' index) for raw tool calls: a few
        records skip pandas (the same numbers), anything else goes through ``prepare_calls``."""
        fast = _fast_calls(calls)
        if fast is not None:
            out = self._distribution_fast(fast)
            if out is not None:
                return out[0], out[1], pd.RangeIndex(fast.n)  # pd.DataFrame(records)'s index
        frame = prepare_calls(calls)
        q, mean = self.predict_distribution(frame)
        return q, mean, frame.index

    def predict(self, calls: pd.DataFrame | Sequence[Mapping[str, Any]]) -> pd.DataFrame:
        """A frame with one column per quantile level (``q0.5``, ...) and ``mean``."""
        q, mean, index = self.distribution(calls)
        columns = self._columns.get(self.levels)
        if columns is None:  # an Index of text labels costs more than a small prediction: build it once
            columns = self._columns[self.levels] = pd.Index([f"q{lv:g}" for lv in self.levels] + ["mean"])
        # one float64 block in one step (a column inserted afterwards rebuilds the labels)
        return pd.DataFrame(np.column_stack([q, mean]).astype(np.float64, copy=False), columns=columns, index=index)

    @staticmethod
    def _durations(calls: pd.DataFrame) -> np.ndarray:
        if "duration_s" not in calls.columns:
            raise PredictorError("training tool calls need a 'duration_s' column")
        d = calls["duration_s"].to_numpy(dtype=np.float64)
        if np.any(~np.isfinite(d)) or np.any(d < 0):
            raise PredictorError("'duration_s' must be finite and >= 0")
        return d


class GlobalMean(DurationPredictor):
    """Every call: the training durations' distribution; point estimate their mean."""

    name = "global_mean"

    def fit(self, calls: pd.DataFrame) -> GlobalMean:
        d = self._durations(calls)
        self.quantiles_ = np.quantile(d, self.levels)
        self.mean_ = float(d.mean())
        return self

    def predict_distribution(self, calls: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        n = len(calls)
        return np.tile(self.quantiles_, (n, 1)), np.full(n, self.mean_)

    def _distribution_fast(self, calls: _Calls) -> tuple[np.ndarray, np.ndarray]:
        return np.tile(self.quantiles_, (calls.n, 1)), np.full(calls.n, self.mean_)


class RunningMean(DurationPredictor):
    """The preview code: a running mean per tool key, read as Exp(mean); unseen tools get
    the mean over all calls seen (or the Exp(1 s) prior before any call)."""

    name = "running_mean"

    def fit(self, calls: pd.DataFrame) -> RunningMean:
        d = self._durations(calls)
        self.sums_: dict[str, float] = {}
        self.counts_: dict[str, int] = {}
        self.total_, self.n_ = 0.0, 0
        self.update(calls["tool_key"].astype(str).to_numpy(), d)
        return self

    def update(self, keys: Sequence[str], durations: np.ndarray) -> None:
        """Fold finished calls into the running means."""
        durations = np.asarray(durations, dtype=np.float64)
        per_tool = pd.Series(durations).groupby(np.asarray(keys, dtype=object)).agg(["sum", "count"])
        for key, total, count in zip(per_tool.index, per_tool["sum"], per_tool["count"], strict=True):
            self.sums_[key] = self.sums_.get(key, 0.0) + float(total)
            self.counts_[key] = self.counts_.get(key, 0) + int(count)
        self.total_ += float(durations.sum())
        self.n_ += len(durations)

    def predict_distribution(self, calls: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        fallback = self.total_ / self.n_ if self.n_ else PRIOR_MEAN_S
        means = {k: self.sums_[k] / self.counts_[k] for k in self.sums_}
        mean = calls["tool_key"].astype(str).map(means).fillna(fallback).to_numpy(dtype=np.float64)
        return exp_quantiles(mean, self.levels), mean

    def _distribution_fast(self, calls: _Calls) -> tuple[np.ndarray, np.ndarray]:
        fallback = self.total_ / self.n_ if self.n_ else PRIOR_MEAN_S
        means = {k: self.sums_[k] / self.counts_[k] for k in self.sums_}
        found = [means.get(k) for k in calls.tool_key]
        # map + fillna: unseen keys and NaN means both take the fallback
        mean = np.array([fallback if m is None or m != m else m for m in found], dtype=np.float64)
        return exp_quantiles(mean, self.levels), mean


class EmpiricalPerTool(DurationPredictor):
    """The paper's predictor: per-tool empirical quantiles for tools with more than
    ``min_samples`` calls, the global empirical distribution otherwise, Exp(1 s) before
    ``min_samples`` calls in all."""

    name = "empirical"

    def __init__(self, min_samples: int = MIN_SAMPLES) -> None:
        if min_samples < 1:
            raise ValueError("min_samples must be >= 1")
        self.min_samples = min_samples

    def fit(self, calls: pd.DataFrame) -> EmpiricalPerTool:
        d = self._durations(calls)
        keys = calls["tool_key"].astype(str).to_numpy()
        if len(d) >= self.min_samples:
            self.global_ = (np.quantile(d, self.levels), float(d.mean()))
        else:
            self.global_ = (exp_quantiles(np.array([PRIOR_MEAN_S]), self.levels)[0], PRIOR_MEAN_S)
        self.per_tool_: dict[str, tuple[np.ndarray, float]] = {}
        for key in np.unique(keys):
            values = d[keys == key]
            if len(values) > self.min_samples:
                self.per_tool_[str(key)] = (np.quantile(values, self.levels), float(values.mean()))
        return self

    def predict_distribution(self, calls: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        return self._by_key(calls["tool_key"].astype(str).to_numpy())

    def _distribution_fast(self, calls: _Calls) -> tuple[np.ndarray, np.ndarray]:
        return self._by_key(np.array(calls.tool_key, dtype=object))

    def _by_key(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        q = np.tile(self.global_[0], (len(keys), 1))
        mean = np.full(len(keys), self.global_[1])
        for key, (quantiles, m) in self.per_tool_.items():
            rows = keys == key
            q[rows] = quantiles
            mean[rows] = m
        return q, mean


_ARG_PATTERNS = ("::", " -x", "-k ", "/tests", "tests/", "-c ", "install", "view", "-rn", ".py")


# QuantileGBM -> its single-row predictor (ctypes state: kept out of the predictor itself)
_SINGLE_ROW: weakref.WeakKeyDictionary[QuantileGBM, single_row.SingleRowPredictor] = weakref.WeakKeyDictionary()


class QuantileGBM(DurationPredictor):
    """Gradient boosting (LightGBM, one thread) with the pinball loss per quantile level.

    Features: tool key (categorical), argument features (length, word count, and the presence
    of scope markers such as ``::``, ``-x``, ``/tests``, ``install``), turn index, context
    size, and the program's history (previous duration, mean of its earlier durations, the
    previous duration of the same tool), all on log scales.
    """

    name = "quantile_gbm"

    def __init__(self, n_estimators: int = 40, learning_rate: float = 0.2, num_leaves: int = 15) -> None:
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves

    def _features(self, calls: pd.DataFrame) -> np.ndarray:
        # String features are computed once per distinct argument text (calls repeat them).
        codes, uniques = pd.factorize(calls["arguments"].astype(str))
        args = pd.Series(uniques, dtype=object)
        text = np.column_stack(
            [
                np.log1p(args.str.len().to_numpy(dtype=np.float64)),
                args.str.split().str.len().fillna(0).to_numpy(dtype=np.float64),
                *[args.str.contains(p, regex=False).to_numpy(dtype=np.float64) for p in _ARG_PATTERNS],
            ]
        )[codes]
        # unseen tools map to NaN: LightGBM's missing-value branch
        keys = calls["tool_key"].astype(str).map(self.key_codes_).to_numpy(dtype=np.float64, na_value=np.nan)
        columns = [
            keys,
            *text.T,
            calls["turn"].to_numpy(dtype=np.float64),
            np.log1p(calls["context_tokens"].to_numpy(dtype=np.float64)),
            *[
                np.log(calls[c].to_numpy(dtype=np.float64) + _LOG_FLOOR)
                for c in ("prev_duration_s", "prog_mean_duration_s", "prev_same_tool_s")
            ],
        ]
        return np.column_stack(columns)

    def _features_fast(self, calls: _Calls) -> np.ndarray:
        """``_features`` of records on the plain path: the same numpy operations on the same
        float64 values, so the matrix is bit for bit the same."""
        first: dict[str, int] = {}
        codes = [first.setdefault(a, len(first)) for a in calls.arguments]
        args = list(first)
        text = np.column_stack(
            [
                np.log1p(np.array([len(a) for a in args], dtype=np.float64)),
                np.array([len(a.split()) for a in args], dtype=np.float64),
                *[np.array([p in a for a in args], dtype=np.float64) for p in _ARG_PATTERNS],
            ]
        )[codes]
        known = self.key_codes_
        keys = np.array([known.get(k, np.nan) for k in calls.tool_key], dtype=np.float64)
        numeric = calls.numeric
        columns = [
            keys,
            *text.T,
            numeric["turn"],
            np.log1p(numeric["context_tokens"]),
            *[np.log(numeric[c] + _LOG_FLOOR) for c in ("prev_duration_s", "prog_mean_duration_s", "prev_same_tool_s")],
        ]
        return np.column_stack(columns)

    def fit(self, calls: pd.DataFrame) -> QuantileGBM:
        d = self._durations(calls)
        keys = sorted(calls["tool_key"].astype(str).unique())
        self.key_codes_ = {k: i for i, k in enumerate(keys)}
        x = self._features(calls)
        y = np.log(d + _LOG_FLOOR)
        self.models_ = []
        for level in self.levels:
            model = lgb.LGBMRegressor(
                objective="quantile",
                alpha=level,
                n_estimators=self.n_estimators,
                learning_rate=self.learning_rate,
                num_leaves=self.num_leaves,
                min_child_samples=20,
                n_jobs=1,  # deterministic, and no OpenMP spinning on a shared machine
                random_state=0,
                verbose=-1,
            )
            model.fit(x, y, categorical_feature=[0])
            self.models_.append(model.booster_)
        return self

    def predict_distribution(self, calls: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        return self._from_features(self._features(calls))

    def _distribution_fast(self, calls: _Calls) -> tuple[np.ndarray, np.ndarray]:
        return self._from_features(self._features_fast(calls))

    def _from_features(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if len(x) == 1 and single_row.available():
            # a service's one decision: LightGBM's single-row path (same numbers, a third of the time)
            fast = _SINGLE_ROW.get(self)
            if fast is None or fast.boosters != self.models_:
                fast = _SINGLE_ROW[self] = single_row.SingleRowPredictor(self.models_)
            logq = fast.predict(x[0])[None, :]
        else:
            # Large batches use every core; small ones stay on one thread.
            threads = 0 if len(x) >= 20_000 else 1
            logq = np.column_stack([m.predict(x, num_threads=threads) for m in self.models_])
        q = np.maximum(np.exp(np.sort(logq, axis=1)) - _LOG_FLOOR, 0.0)
        return q, quantile_mean(q, self.levels)


def predictor_state(predictor: DurationPredictor) -> tuple[dict[str, Any], dict[str, bytes]]:
    """A fitted predictor as JSON-able state plus data files (LightGBM models as text): no
    pickle, so loading an export runs no code from it."""
    state: dict[str, Any] = {"name": predictor.name, "levels": list(predictor.levels)}
    files: dict[str, bytes] = {}
    if isinstance(predictor, GlobalMean):
        state.update(quantiles=predictor.quantiles_.tolist(), mean=predictor.mean_)
    elif isinstance(predictor, RunningMean):
        state.update(sums=predictor.sums_, counts=predictor.counts_, total=predictor.total_, n=predictor.n_)
    elif isinstance(predictor, EmpiricalPerTool):
        state.update(
            min_samples=predictor.min_samples,
            global_quantiles=predictor.global_[0].tolist(),
            global_mean=predictor.global_[1],
            per_tool={k: [q.tolist(), m] for k, (q, m) in predictor.per_tool_.items()},
        )
    elif isinstance(predictor, QuantileGBM):
        state.update(
            key_codes=predictor.key_codes_,
            params={"n_estimators": predictor.n_estimators, "learning_rate": predictor.learning_rate},
        )
        state["params"]["num_leaves"] = predictor.num_leaves
        for level, booster in zip(predictor.levels, predictor.models_, strict=True):
            files[f"gbm_q{level:g}.txt"] = booster.model_to_string().encode()
        state["model_files"] = list(files)
    else:
        raise PredictorError(f"cannot serialise predictor {predictor.name!r}")
    return state, files


def predictor_from_state(state: Mapping[str, Any], read: Any) -> DurationPredictor:
    """Rebuild a predictor from ``predictor_state``; ``read(name) -> bytes`` reads its files."""
    name = state.get("name")
    if name not in PREDICTORS:
        raise PredictorError(f"predictor state: unknown 'name' {name!r} (known: {sorted(PREDICTORS)})")
    levels = tuple(float(x) for x in state["levels"])
    predictor: DurationPredictor
    if name == "global_mean":
        predictor = GlobalMean()
        predictor.quantiles_ = np.asarray(state["quantiles"], dtype=np.float64)
        predictor.mean_ = float(state["mean"])
    elif name == "running_mean":
        predictor = RunningMean()
        predictor.sums_ = {str(k): float(v) for k, v in state["sums"].items()}
        predictor.counts_ = {str(k): int(v) for k, v in state["counts"].items()}
        predictor.total_, predictor.n_ = float(state["total"]), int(state["n"])
    elif name == "empirical":
        predictor = EmpiricalPerTool(int(state["min_samples"]))
        predictor.global_ = (np.asarray(state["global_quantiles"], dtype=np.float64), float(state["global_mean"]))
        predictor.per_tool_ = {
            str(k): (np.asarray(q, dtype=np.float64), float(m)) for k, (q, m) in state["per_tool"].items()
        }
    else:
        predictor = QuantileGBM(**state["params"])
        predictor.key_codes_ = {str(k): int(v) for k, v in state["key_codes"].items()}
        predictor.models_ = [lgb.Booster(model_str=read(f).decode()) for f in state["model_files"]]
    predictor.levels = levels
    return predictor


def continuum_ttl(q: np.ndarray, levels: Sequence[float], benefit: np.ndarray, pin_cost: float) -> np.ndarray:
    """Continuum's rule per row: tau* = argmax over the quantiles q[j] of levels[j] * benefit -
    pin_cost * q[j], or 0 when no candidate gains. ``q`` is (n, len(levels)), ``benefit`` (n,)."""
    q = np.atleast_2d(q)
    values = np.asarray(levels)[None, :] * np.asarray(benefit, dtype=np.float64).reshape(-1, 1) - pin_cost * q
    best = values.argmax(axis=1)
    rows = np.arange(len(q))
    return np.where(values[rows, best] > 0, q[rows, best], 0.0)


def quantile_mean(q: np.ndarray, levels: Sequence[float]) -> np.ndarray:
    """Mean of a distribution known by its quantiles (piecewise-constant between levels)."""
    lv = np.asarray(levels)
    edges = np.concatenate([[0.0], (lv[1:] + lv[:-1]) / 2.0, [1.0]])
    return q @ np.diff(edges)


PREDICTORS: dict[str, type[DurationPredictor]] = {
    cls.name: cls for cls in (GlobalMean, RunningMean, EmpiricalPerTool, QuantileGBM)
}


def evaluate_predictor(predictor: DurationPredictor, calls: pd.DataFrame) -> dict[str, float]:
    """Held-out metrics: MAE of the median and of the mean, pinball loss per level and its
    average, coverage per level and the mean calibration error |coverage - level|."""
    y = DurationPredictor._durations(calls)
    q, mean = predictor.predict_distribution(calls)
    metrics: dict[str, float] = {
        "mae_s": float(np.mean(np.abs(q[:, predictor.levels.index(0.5)] - y))),
        "mae_mean_s": float(np.mean(np.abs(mean - y))),
    }
    losses, errors = [], []
    for j, level in enumerate(predictor.levels):
        diff = y - q[:, j]
        loss = float(np.mean(np.maximum(level * diff, (level - 1) * diff)))
        coverage = float(np.mean(y <= q[:, j]))
        metrics[f"pinball_q{level:g}"] = loss
        metrics[f"coverage_q{level:g}"] = coverage
        losses.append(loss)
        errors.append(abs(coverage - level))
    metrics["pinball"] = float(np.mean(losses))
    metrics["calibration_error"] = float(np.mean(errors))
    return metrics


__all__ = [
    "LEVELS",
    "PREDICTORS",
    "DurationPredictor",
    "EmpiricalPerTool",
    "GlobalMean",
    "PredictorError",
    "QuantileGBM",
    "RunningMean",
    "evaluate_predictor",
    "exp_quantiles",
    "prepare_calls",
    "quantile_mean",
]
