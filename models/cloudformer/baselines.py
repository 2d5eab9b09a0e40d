"""Non-neural baselines: training mean, delayed persistence, ridge and histogram gradient
boosting on window summary statistics (per-metric mean, std, min, max, last value).

The tabular models are tuned in good faith on the validation split (never on a test split):
ridge's penalty by efficient leave-one-out over a log grid (``RidgeCV``), gradient boosting's
tree size and learning rate over a small grid, with early stopping on an internal split.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import RidgeCV
from sklearn.pipeline import make_pipeline
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


class RidgeBaseline:
    """Ridge regression on standardised window statistics; penalty by leave-one-out CV."""

    def __init__(self, *, alphas: tuple[float, ...] = tuple(10.0 ** np.arange(-2, 5)), max_windows: int = 20000):
        self.alphas, self.max_windows = alphas, max_windows
        self.model = make_pipeline(StandardScaler(), RidgeCV(alphas=alphas))

    def fit(self, train: WindowSet, val: WindowSet, rng: np.random.Generator) -> RidgeBaseline:
        rows = _subsample(len(train), self.max_windows, rng)
        self.model.fit(train.summary_features(rows), train.labels[rows])
        return self

    def predict(self, windows: WindowSet) -> np.ndarray:
        return np.clip(self.model.predict(windows.summary_features()), 1e-3, 1.0).astype(np.float32)


class HistGradientBoostingBaseline:
    """Histogram gradient boosting on window statistics; grid-tuned on the validation split."""

    def __init__(
        self,
        *,
        max_leaf_nodes: tuple[int, ...] = (15, 63),
        learning_rates: tuple[float, ...] = (0.1,),
        max_iter: int = 400,
        max_bins: int = 63,
        max_windows: int = 20000,
        random_state: int = 0,
    ) -> None:
        self.grid = [(leaves, lr) for leaves in max_leaf_nodes for lr in learning_rates]
        self.max_iter, self.max_bins = max_iter, max_bins
        self.max_windows, self.random_state = max_windows, random_state
        self.model: HistGradientBoostingRegressor | None = None
        self.chosen: dict[str, float] = {}

    def fit(self, train: WindowSet, val: WindowSet, rng: np.random.Generator) -> HistGradientBoostingBaseline:
        rows = _subsample(len(train), self.max_windows, rng)
        x, y = train.summary_features(rows), train.labels[rows]
        x_val, y_val = val.summary_features(), val.labels
        best = np.inf
        for leaves, lr in self.grid:
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
            mae = float(np.abs(model.predict(x_val) - y_val).mean())
            if mae < best:
                best, self.model = mae, model
                self.chosen = {"max_leaf_nodes": leaves, "learning_rate": lr, "n_iter": model.n_iter_}
        return self

    def predict(self, windows: WindowSet) -> np.ndarray:
        assert self.model is not None, "fit first"
        return np.clip(self.model.predict(windows.summary_features()), 1e-3, 1.0).astype(np.float32)


TABULAR_BASELINES = {
    "mean": MeanBaseline,
    "persistence": PersistenceBaseline,
    "ridge": RidgeBaseline,
    "hist_gradient_boosting": HistGradientBoostingBaseline,
}
