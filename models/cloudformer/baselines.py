"""Non-neural baselines: training mean, delayed persistence, ridge and histogram gradient
boosting on window summary statistics (per-metric mean, std, min, max, last value).

The tabular models are tuned in good faith on the validation split (never on a test split):
ridge's penalty by efficient leave-one-out over a log grid (``RidgeCV``), gradient boosting's
tree size and learning rate over a small grid, with early stopping on an internal split. Both
also choose on the validation split the span the statistics are taken over: the whole window
or only its last seconds (``tails``). The label is P at the window's last second, and on
held-out applications ridge on the last 10 s of a 30 s window was 14 % better than on all of
it (``studies/cloudformer_appval.py``), so a baseline without that choice would be a weak one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import RidgeCV
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from infragym.datasets.cloudperf import WindowSet


class WindowRegressor(Protocol):
    """A baseline: fitted on training windows (and val for tuning), predicts P per window."""

    def fit(self, train: WindowSet, val: WindowSet, rng: np.random.Generator) -> WindowRegressor: ...

    def predict(self, windows: WindowSet) -> np.ndarray: ...


class MeanBaseline:
    """P = the training windows' mean label, whatever the telemetry."""

    def __init__(self) -> None:
        self.mean_ = 1.0

    def fit(self, train: WindowSet, val: WindowSet, rng: np.random.Generator) -> MeanBaseline:
        self.mean_ = float(train.labels.mean())
        return self

    def predict(self, windows: WindowSet) -> np.ndarray:
        return np.full(len(windows), self.mean_, dtype=np.float32)


class PersistenceBaseline:
    """P = the VM's own P at the window's first second (a report ``window + horizon - 1`` s old).

    Not black-box: it reads the application's own performance, which CloudFormer's setting
    does not have; reported as a reference and left out of the "best baseline" comparison.
    """

    black_box = False

    def fit(self, train: WindowSet, val: WindowSet, rng: np.random.Generator) -> PersistenceBaseline:
        return self

    def predict(self, windows: WindowSet) -> np.ndarray:
        return windows.perf[windows.starts].astype(np.float32)


def _subsample(n: int, limit: int, rng: np.random.Generator) -> np.ndarray:
    return np.sort(rng.choice(n, size=limit, replace=False)) if n > limit else np.arange(n)


def _tails(tails: Sequence[int | None], window: int) -> list[int | None]:
    """The candidate statistic spans that fit in the window (None = the whole window)."""
    return [t for t in tails if t is None or t < window] or [None]


def _clip_p(values: np.ndarray) -> np.ndarray:
    return np.clip(values, 1e-3, 1.0).astype(np.float32)


class _StatisticsModel:
    """A fitted regressor on window statistics over the chosen span (``tail``; None = window)."""

    model: Any = None
    tail: int | None = None

    def predict(self, windows: WindowSet) -> np.ndarray:
        assert self.model is not None, "fit first"
        return _clip_p(self.model.predict(windows.summary_features(tail=self.tail)))


class RidgeBaseline(_StatisticsModel):
    """Ridge regression on standardised window statistics; penalty by leave-one-out CV, the
    statistics' span (whole window or its last ``t`` seconds) by validation MAE."""

    def __init__(
        self,
        *,
        alphas: tuple[float, ...] = tuple(10.0 ** np.arange(-2, 5)),
        tails: Sequence[int | None] = (None, 10),
        max_windows: int = 20000,
    ):
        self.alphas, self.tails, self.max_windows = alphas, tuple(tails), max_windows
        self.model: Pipeline | None = None
        self.chosen: dict[str, float | None] = {}

    def fit(self, train: WindowSet, val: WindowSet, rng: np.random.Generator) -> RidgeBaseline:
        rows = _subsample(len(train), self.max_windows, rng)
        best = np.inf
        for tail in _tails(self.tails, train.window):
            model = make_pipeline(StandardScaler(), RidgeCV(alphas=self.alphas))
            model.fit(train.summary_features(rows, tail=tail), train.labels[rows])
            mae = float(np.abs(_clip_p(model.predict(val.summary_features(tail=tail))) - val.labels).mean())
            if mae < best:
                best, self.model, self.tail = mae, model, tail
                self.chosen = {"tail_s": tail, "alpha": float(model[-1].alpha_)}
        return self


class HistGradientBoostingBaseline(_StatisticsModel):
    """Histogram gradient boosting on window statistics; grid-tuned on the validation split."""

    def __init__(
        self,
        *,
        max_leaf_nodes: tuple[int, ...] = (15, 63),
        learning_rates: tuple[float, ...] = (0.1,),
        max_iter: int = 400,
        max_bins: int = 63,
        tails: Sequence[int | None] = (None, 10),
        max_windows: int = 20000,
        random_state: int = 0,
    ) -> None:
        self.grid = [(leaves, lr) for leaves in max_leaf_nodes for lr in learning_rates]
        self.tails = tuple(tails)
        self.max_iter, self.max_bins = max_iter, max_bins
        self.max_windows, self.random_state = max_windows, random_state
        self.model: HistGradientBoostingRegressor | None = None
        self.chosen: dict[str, float | None] = {}

    def fit(self, train: WindowSet, val: WindowSet, rng: np.random.Generator) -> HistGradientBoostingBaseline:
        rows = _subsample(len(train), self.max_windows, rng)
        y, y_val = train.labels[rows], val.labels
        best = np.inf
        for tail in _tails(self.tails, train.window):
            x, x_val = train.summary_features(rows, tail=tail), val.summary_features(tail=tail)
            for leaves, lr in self.grid:
                mae, model = self._fit_one(x, y, x_val, y_val, leaves, lr)
                if mae < best:
                    best, self.model, self.tail = mae, model, tail
                    self.chosen = {
                        "tail_s": tail,
                        "max_leaf_nodes": leaves,
                        "learning_rate": lr,
                        "n_iter": model.n_iter_,
                    }
        return self

    def _fit_one(
        self, x: np.ndarray, y: np.ndarray, x_val: np.ndarray, y_val: np.ndarray, leaves: int, lr: float
    ) -> tuple[float, HistGradientBoostingRegressor]:
        model = HistGradientBoostingRegressor(
            loss="absolute_error",
            max_iter=self.max_iter,
            learning_rate=lr,
            max_leaf_nodes=leaves,
            max_bins=self.max_bins,
            l2_regularization=1.0,
            early_stopping=True,
            validation_fraction=0.15,
            n_iter_no_change=15,
            random_state=self.random_state,
        ).fit(x, y)
        return float(np.abs(model.predict(x_val) - y_val).mean()), model


TABULAR_BASELINES = {
    "mean": MeanBaseline,
    "persistence": PersistenceBaseline,
    "ridge": RidgeBaseline,
    "hist_gradient_boosting": HistGradientBoostingBaseline,
}
