"""Evaluation of mitigation policies: with ground truth, and off-policy from logs alone."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.model_selection import KFold

from infragym.envs.health.features import encode_features, validate_features
from infragym.envs.health.objective import MitigationObjective
from infragym.envs.health.simulator import ACTIONS, OUTCOMES

N_ACTIONS = len(ACTIONS)
# The headline numbers of the deployed system (Deoxys, SoCC'24, arXiv 2410.17709, abstract):
# relative to the legacy policy, -53% average VM downtime and -49.5% VM interruption rate.
PAPER_DOWNTIME_CHANGE_PCT = -53.0
PAPER_INTERRUPTION_CHANGE_PCT = -49.5


def policy_outcomes(
    actions: np.ndarray, potential: Mapping[str, np.ndarray], objective: MitigationObjective
) -> dict[str, float]:
    """Mean outcomes of a policy from the potential outcomes of every event (ground truth)."""
    rows = np.arange(len(actions))
    chosen = {k: potential[k][rows, actions] for k in OUTCOMES}
    return {
        "downtime_min": float(chosen["downtime_min"].mean()),
        "interruption_rate": float(chosen["interrupted"].mean()),
        "cost_node_hours": float(chosen["cost_node_hours"].mean()),
        "objective": float(objective(chosen).mean()),
    }


def gap_closed(legacy: float, policy: float, oracle: float) -> float:
    """Share of the legacy-to-oracle gap that a policy removes (1 = as good as the oracle)."""
    gap = legacy - oracle
    return float((legacy - policy) / gap) if abs(gap) > 1e-12 else float("nan")


class DoublyRobustEvaluator:
    """Cross-fitted doubly robust (AIPW) estimates of policy values from logged data only.

    V(pi) = mean[ mu(x, pi(x)) + 1{a = pi(x)} / e(a | x) * (y - mu(x, a)) ], with the outcome
    model mu (gradient boosting on features + one-hot action) and the propensity e (gradient
    boosting classifier) fitted on the other folds. Propensities are clipped at ``min_propensity``.
    """

    def __init__(self, *, n_folds: int = 2, min_propensity: float = 0.01, random_state: int = 0) -> None:
        self.n_folds = n_folds
        self.min_propensity = min_propensity
        self.random_state = random_state

    def fit(
        self, features: pd.DataFrame, actions: np.ndarray, outcomes: Mapping[str, np.ndarray]
    ) -> DoublyRobustEvaluator:
        """Fit the nuisances on a held-out log; ``outcomes`` maps a name to observed values."""
        x = encode_features(validate_features(features))
        n = len(x)
        self.actions_ = np.asarray(actions, dtype=np.int64)
        self.propensity_ = np.zeros((n, N_ACTIONS))
        self.mu_ = {name: np.zeros((n, N_ACTIONS)) for name in outcomes}
        self.outcomes_ = {name: np.asarray(v, dtype=np.float64) for name, v in outcomes.items()}
        folds = KFold(self.n_folds, shuffle=True, random_state=self.random_state).split(x)
        one_hot = np.eye(N_ACTIONS)
        for train, test in folds:
            # Early stopping keeps the propensities calibrated (an overfitted classifier pushes
            # them towards 0/1 and blows up the importance weights).
            clf = HistGradientBoostingClassifier(max_iter=300, early_stopping=True, random_state=self.random_state)
            clf.fit(x[train], self.actions_[train])
            proba = np.zeros((len(test), N_ACTIONS))
            proba[:, clf.classes_] = clf.predict_proba(x[test])
            self.propensity_[test] = proba
            for name, y in self.outcomes_.items():
                reg = HistGradientBoostingRegressor(
                    max_iter=300, early_stopping=True, random_state=self.random_state
                ).fit(np.column_stack([x[train], one_hot[self.actions_[train]]]), y[train])
                for a in range(N_ACTIONS):
                    design = np.column_stack([x[test], np.tile(one_hot[a], (len(test), 1))])
                    self.mu_[name][test, a] = reg.predict(design)
        return self

    def value(self, policy_actions: np.ndarray, name: str) -> tuple[float, float]:
        """(estimate, standard error) of the mean of outcome ``name`` under the policy."""
        rows = np.arange(len(policy_actions))
        mu = self.mu_[name]
        propensity = np.clip(self.propensity_[rows, self.actions_], self.min_propensity, None)
        match = (self.actions_ == policy_actions).astype(np.float64)
        scores = mu[rows, policy_actions] + match / propensity * (self.outcomes_[name] - mu[rows, self.actions_])
        return float(scores.mean()), float(scores.std(ddof=1) / np.sqrt(len(scores)))
