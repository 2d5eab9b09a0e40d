"""The paper's feature-based baselines (arXiv 2509.03394, Table IV) and two extras.

A variable-length execution becomes one feature row: each metric's mean, standard deviation,
minimum and maximum over the whole run, on the same normalised metrics the networks see
(``data.summary_features``; ridge adds each metric's mean over the last 10 s). Predictions are
clipped to [0, 1], P's range (the paper's gamma GLM at 477 pp MAE was evidently not clipped).

Tuning in good faith, as the paper did ("Bayesian search with cross-validation"): Optuna's TPE
sampler over each model's hyper-parameters, scored by the mean absolute error of a grouped
K-fold cross-validation on the training executions whose folds are *applications* (what the
test asks: unseen applications). Linear regression has nothing to tune; ridge picks its penalty
by efficient leave-one-out (``RidgeCV``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import optuna
from sklearn.base import RegressorMixin, clone
from sklearn.ensemble import RandomForestRegressor
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import GammaRegressor, LinearRegression, RidgeCV
from sklearn.model_selection import GroupKFold
from sklearn.tree import DecisionTreeRegressor

optuna.logging.set_verbosity(optuna.logging.WARNING)


def clip_p(values: np.ndarray) -> np.ndarray:
    return np.clip(np.nan_to_num(values, nan=1.0, posinf=1.0, neginf=0.0), 0.0, 1.0).astype(np.float32)


def grouped_cv_mae(model: RegressorMixin, x: np.ndarray, y: np.ndarray, groups: np.ndarray, folds: int) -> float:
    """MAE of ``model`` over folds that hold out whole applications."""
    n_folds = min(folds, len(set(groups.tolist())))
    errors = []
    for train, test in GroupKFold(n_splits=n_folds).split(x, y, groups):
        fitted = clone(model).fit(x[train], y[train])
        errors.append(np.abs(clip_p(fitted.predict(x[test])) - y[test]).mean())
    return float(np.mean(errors))


class FeatureBaseline:
    """A regressor on execution summary features, optionally tuned by Optuna with grouped CV."""

    tail: int | None = None
    space: Callable[[optuna.Trial], RegressorMixin] | None = None

    def __init__(self, *, n_trials: int = 20, cv_folds: int = 3, random_state: int = 0, **fixed: Any) -> None:
        self.n_trials, self.cv_folds, self.random_state, self.fixed = n_trials, cv_folds, random_state, fixed
        self.model: RegressorMixin | None = None
        self.chosen: dict[str, float] = {}

    def default(self) -> RegressorMixin:
        raise NotImplementedError

    def suggest(self, trial: optuna.Trial) -> RegressorMixin:
        raise NotImplementedError

    def fit(self, x: np.ndarray, y: np.ndarray, groups: np.ndarray) -> FeatureBaseline:
        with warnings.catch_warnings():
            # lbfgs iteration limits (the GLM's) and Optuna's deprecation notices: noise per trial
            warnings.simplefilter("ignore", ConvergenceWarning)
            warnings.simplefilter("ignore", FutureWarning)
            return self._fit(x, y, groups)

    def _fit(self, x: np.ndarray, y: np.ndarray, groups: np.ndarray) -> FeatureBaseline:
        if type(self).suggest is FeatureBaseline.suggest or self.n_trials < 1 or len(set(groups.tolist())) < 2:
            self.model = self.default().fit(x, y)
            return self
        study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=self.random_state))
        study.optimize(lambda t: grouped_cv_mae(self.suggest(t), x, y, groups, self.cv_folds), n_trials=self.n_trials)
        self.chosen = {k: float(v) for k, v in study.best_params.items() if isinstance(v, int | float)}
        self.chosen["cv_mae"] = float(study.best_value)
        self.model = self.suggest(optuna.trial.FixedTrial(study.best_params)).fit(x, y)
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        assert self.model is not None, "fit first"
        return clip_p(self.model.predict(x))


class MeanBaseline(FeatureBaseline):
    """P = the training executions' mean, whatever the telemetry (a floor)."""

    def default(self) -> RegressorMixin:
        from sklearn.dummy import DummyRegressor

        return DummyRegressor()


class LinearRegressionBaseline(FeatureBaseline):
    """Ordinary least squares (paper: linear regression; nothing to tune)."""

    def default(self) -> RegressorMixin:
        return LinearRegression()


class GammaGLMBaseline(FeatureBaseline):
    """Gamma GLM with a log link (paper: gamma GLM); its L2 penalty tuned."""

    def default(self) -> RegressorMixin:
        return GammaRegressor(alpha=1.0, max_iter=500)

    def suggest(self, trial: optuna.Trial) -> RegressorMixin:
        return GammaRegressor(alpha=trial.suggest_float("alpha", 1e-4, 1e2, log=True), max_iter=500)


class DecisionTreeBaseline(FeatureBaseline):
    """CART regression tree; depth, leaf size and feature share tuned."""

    def default(self) -> RegressorMixin:
        return DecisionTreeRegressor(random_state=self.random_state)

    def suggest(self, trial: optuna.Trial) -> RegressorMixin:
        return DecisionTreeRegressor(
            max_depth=trial.suggest_int("max_depth", 2, 24),
            min_samples_leaf=trial.suggest_int("min_samples_leaf", 1, 40, log=True),
            max_features=trial.suggest_float("max_features", 0.05, 1.0),
            random_state=self.random_state,
        )


class RandomForestBaseline(FeatureBaseline):
    """Random forest; trees, depth, leaf size and feature share tuned."""

    def default(self) -> RegressorMixin:
        return RandomForestRegressor(n_estimators=100, random_state=self.random_state, n_jobs=1)

    def suggest(self, trial: optuna.Trial) -> RegressorMixin:
        return RandomForestRegressor(
            n_estimators=trial.suggest_int("n_estimators", 20, int(self.fixed.get("max_estimators", 300)), log=True),
            max_depth=trial.suggest_int("max_depth", 3, 30, log=True),
            min_samples_leaf=trial.suggest_int("min_samples_leaf", 1, 20, log=True),
            max_features=trial.suggest_float("max_features", 0.05, 1.0),
            random_state=self.random_state,
            n_jobs=1,
        )


class RidgeBaseline(FeatureBaseline):
    """Ridge on the run statistics plus each metric's mean over the last 10 s (an extra
    baseline, from this project's windowed task); penalty by leave-one-out over a log grid."""

    tail = 10

    def default(self) -> RegressorMixin:
        return RidgeCV(alphas=tuple(10.0 ** np.arange(-2, 6)))

    def _fit(self, x: np.ndarray, y: np.ndarray, groups: np.ndarray) -> RidgeBaseline:
        super()._fit(x, y, groups)
        self.chosen = {"alpha": float(self.model.alpha_)}  # type: ignore[union-attr]
        return self


TABULAR_BASELINES: Mapping[str, type[FeatureBaseline]] = {
    "mean": MeanBaseline,
    "linear_regression": LinearRegressionBaseline,
    "gamma_glm": GammaGLMBaseline,
    "decision_tree": DecisionTreeBaseline,
    "random_forest": RandomForestBaseline,
    "ridge": RidgeBaseline,
}
