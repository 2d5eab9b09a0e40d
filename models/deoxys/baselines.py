"""Baselines for mitigation recommendation, all choosing the action that minimises the
same mitigation objective as Deoxys.

- ``LegacyPolicy``: the rule-based runbook that produced the log.
- ``SLearner``: one gradient-boosting model on (features, one-hot action).
- ``TLearner``: one gradient-boosting model per action.
- ``DRPolicyForestBaseline``: econml's doubly robust policy forest (maximises -objective).
- ``OraclePolicy``: the best action by the simulator's expected potential outcomes (ground
  truth; evaluation only).

Nuisance and outcome models are scikit-learn HistGradientBoosting with early stopping on a
validation split (tuned in good faith: the same family and budget as Deoxys' nuisances).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import pandas as pd
from econml.policy import DRPolicyForest
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

from infragym.envs.health.features import encode_features, validate_features
from infragym.envs.health.simulator import ACTIONS, legacy_rule

N_ACTIONS = len(ACTIONS)


class MitigationPolicy(Protocol):
    name: str

    def fit(self, features: pd.DataFrame, actions: np.ndarray, objective: np.ndarray) -> MitigationPolicy: ...

    def choose(self, features: pd.DataFrame) -> np.ndarray: ...


def _regressor(random_state: int, max_iter: int = 300) -> HistGradientBoostingRegressor:
    return HistGradientBoostingRegressor(
        max_iter=max_iter,
        learning_rate=0.1,
        early_stopping=True,
        validation_fraction=0.1,
        n_iter_no_change=20,
        random_state=random_state,
    )


class LegacyPolicy:
    name = "legacy"

    def fit(self, features: pd.DataFrame, actions: np.ndarray, objective: np.ndarray) -> LegacyPolicy:
        return self

    def choose(self, features: pd.DataFrame) -> np.ndarray:
        return legacy_rule(validate_features(features))


class SLearner:
    """One regressor of the objective on features plus the one-hot action."""

    name = "s_learner"

    def __init__(self, *, random_state: int = 0, max_iter: int = 300) -> None:
        self.random_state = random_state
        self.max_iter = max_iter
        self.model_: HistGradientBoostingRegressor | None = None

    def fit(self, features: pd.DataFrame, actions: np.ndarray, objective: np.ndarray) -> SLearner:
        x = encode_features(validate_features(features))
        self.model_ = _regressor(self.random_state, self.max_iter).fit(
            np.column_stack([x, np.eye(N_ACTIONS)[actions]]), objective
        )
        return self

    def predict_all(self, features: pd.DataFrame) -> np.ndarray:
        assert self.model_ is not None, "fit first"
        x = encode_features(validate_features(features))
        columns = [
            self.model_.predict(np.column_stack([x, np.tile(np.eye(N_ACTIONS)[a], (len(x), 1))]))
            for a in range(N_ACTIONS)
        ]
        return np.column_stack(columns)

    def choose(self, features: pd.DataFrame) -> np.ndarray:
        return self.predict_all(features).argmin(axis=1)


class TLearner:
    """One regressor of the objective per action, fitted on the events that took it."""

    name = "t_learner"

    def __init__(self, *, random_state: int = 0, max_iter: int = 300) -> None:
        self.random_state = random_state
        self.max_iter = max_iter
        self.models_: list[HistGradientBoostingRegressor] = []

    def fit(self, features: pd.DataFrame, actions: np.ndarray, objective: np.ndarray) -> TLearner:
        x = encode_features(validate_features(features))
        self.models_ = []
        for a in range(N_ACTIONS):
            rows = actions == a
            if rows.sum() < 20:
                raise ValueError(f"t_learner: only {rows.sum()} logged events took action {ACTIONS[a]!r}")
            self.models_.append(_regressor(self.random_state, self.max_iter).fit(x[rows], objective[rows]))
        return self

    def choose(self, features: pd.DataFrame) -> np.ndarray:
        x = encode_features(validate_features(features))
        return np.column_stack([m.predict(x) for m in self.models_]).argmin(axis=1)


class DRPolicyForestBaseline:
    """econml ``DRPolicyForest``: a forest that maximises doubly robust policy value."""

    name = "dr_policy_forest"

    def __init__(
        self,
        *,
        n_estimators: int = 100,
        min_samples_leaf: int = 5,
        max_depth: int | None = None,
        honest: bool = False,
        random_state: int = 0,
    ) -> None:
        self.n_estimators = n_estimators
        self.honest = honest
        self.min_samples_leaf = min_samples_leaf
        self.max_depth = max_depth
        self.random_state = random_state
        self.model_: DRPolicyForest | None = None

    def fit(self, features: pd.DataFrame, actions: np.ndarray, objective: np.ndarray) -> DRPolicyForestBaseline:
        x = encode_features(validate_features(features))
        self.model_ = DRPolicyForest(
            model_regression=_regressor(self.random_state),
            model_propensity=HistGradientBoostingClassifier(max_iter=150, random_state=self.random_state),
            categories=list(range(N_ACTIONS)),
            cv=2,
            n_estimators=self.n_estimators,
            min_samples_leaf=self.min_samples_leaf,
            max_depth=self.max_depth,
            honest=self.honest,
            random_state=self.random_state,
            n_jobs=-1,
        )
        # econml's policy learners maximise Y: pass minus the objective.
        self.model_.fit(-objective, actions, X=x)
        return self

    def choose(self, features: pd.DataFrame) -> np.ndarray:
        assert self.model_ is not None, "fit first"
        return np.asarray(self.model_.predict(encode_features(validate_features(features))), dtype=np.int64)


BASELINES = {cls.name: cls for cls in (LegacyPolicy, SLearner, TLearner, DRPolicyForestBaseline)}
