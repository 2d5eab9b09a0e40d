"""Deoxys: causal-forest DML recommendations of mitigation actions (Deoxys, SoCC'24).

One ``econml.dml.CausalForestDML`` with a discrete multi-arm treatment (the action; "observe"
is the reference arm) and four outcome columns fitted together: the mitigation objective,
downtime, interruption and resource cost. Gradient-boosting nuisance models (scikit-learn
HistGradientBoosting) remove the confounding through the features; the forest estimates
heterogeneous effects with confidence intervals (bootstrap of little bags).

A decision has three steps, the last two cheap and re-runnable without refitting:
1. recommend: the action with the lowest predicted objective;
2. fallback: keep the legacy action unless the interval of the recommendation's objective
   change vs the legacy action lies wholly below zero (alpha configurable);
3. action overriding (``ActionOverride``): trade downtime for resource use.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
from econml.dml import CausalForestDML
from econml.grf import CausalForest
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.multioutput import MultiOutputRegressor
from tqdm.auto import tqdm

from infragym.envs.health.features import encode_features, validate_features
from infragym.envs.health.objective import MitigationObjective
from infragym.envs.health.simulator import ACTIONS, OUTCOMES, legacy_rule

# Column order of the fitted outcome matrix: the objective first (its interval drives the
# fallback), then the raw outcomes.
EFFECT_OUTCOMES: tuple[str, ...] = ("objective", *OUTCOMES)


def action_indices(actions: np.ndarray | pd.Series | list) -> np.ndarray:
    """Action names or indices -> int indices into ACTIONS (errors name the bad label)."""
    array = np.asarray(actions)
    if array.dtype.kind in "iu":
        if array.size and (array.min() < 0 or array.max() >= len(ACTIONS)):
            raise ValueError(f"action index out of range [0, {len(ACTIONS)})")
        return array.astype(np.int64)
    codes = pd.Categorical(array.astype(str), categories=ACTIONS).codes.astype(np.int64)
    unknown = np.flatnonzero(codes < 0)
    if unknown.size:
        row = int(unknown[0])
        raise ValueError(f"unknown action {array[row]!r} at row {row}; expected one of {list(ACTIONS)}")
    return codes


@contextlib.contextmanager
def _fit_progress(n_forests: int) -> Iterator[None]:
    """A progress bar over the stages of ``CausalForestDML.fit``: the nuisance cross-fitting,
    then one causal forest per outcome column. econml has no callback, so the forest's ``fit``
    is wrapped for the duration of this fit only."""
    original = CausalForest.fit
    bar = tqdm(total=n_forests + 1, desc="fitting Deoxys", unit="stage", leave=False)
    bar.set_postfix_str("nuisance models")
    started = 0

    def fit_with_progress(self: CausalForest, *args: object, **kwargs: object) -> CausalForest:
        nonlocal started
        if started == 0:
            bar.update()  # the nuisances are done when the first forest starts
        started += 1
        bar.set_postfix_str(f"causal forest {started}/{n_forests}")
        result = original(self, *args, **kwargs)
        bar.update()
        return result

    CausalForest.fit = fit_with_progress
    try:
        yield
    finally:
        CausalForest.fit = original
        bar.close()


@dataclass(frozen=True)
class ActionOverride:
    """Rules that trade predicted downtime against resource cost (node-hours out of service).

    Args:
        downtime_tolerance_min: among actions whose predicted downtime is within this many
            minutes of the chosen action's, take the one with the lowest predicted cost.
        cost_budget_node_hours: cap on the mean predicted extra node-hours per event over the
            legacy action; when exceeded, events are switched to cheaper actions in order of
            the least objective lost per node-hour saved until the mean fits. None: no cap.
    """

    downtime_tolerance_min: float = 0.0
    cost_budget_node_hours: float | None = None

    def __post_init__(self) -> None:
        if self.downtime_tolerance_min < 0:
            raise ValueError(f"downtime_tolerance_min must be >= 0, got {self.downtime_tolerance_min}")

    def apply(self, effects: np.ndarray, chosen: np.ndarray, legacy: np.ndarray) -> np.ndarray:
        """``effects``: (n, len(EFFECT_OUTCOMES), n_actions) predicted outcomes vs a common reference."""
        rows = np.arange(len(chosen))
        objective = effects[:, 0, :]
        downtime = effects[:, EFFECT_OUTCOMES.index("downtime_min"), :]
        cost = effects[:, EFFECT_OUTCOMES.index("cost_node_hours"), :]
        result = chosen.copy()
        if self.downtime_tolerance_min > 0:
            eligible = downtime <= downtime[rows, result][:, None] + self.downtime_tolerance_min
            masked_cost = np.where(eligible, cost, np.inf)
            cheaper = masked_cost.argmin(axis=1)
            result = np.where(masked_cost[rows, cheaper] < cost[rows, result], cheaper, result)
        if self.cost_budget_node_hours is not None:
            extra = cost[rows, result] - cost[rows, legacy]
            excess = extra.sum() - self.cost_budget_node_hours * len(result)
            if excess > 0:
                cheapest = cost.argmin(axis=1)
                saving = cost[rows, result] - cost[rows, cheapest]
                loss = objective[rows, cheapest] - objective[rows, result]
                candidates = np.flatnonzero(saving > 1e-9)
                # least objective lost per node-hour saved first
                order = candidates[np.argsort(loss[candidates] / saving[candidates], kind="stable")]
                cumulative = np.cumsum(saving[order])
                n_switch = int(np.searchsorted(cumulative, excess) + 1)
                switch = order[:n_switch]
                result[switch] = cheapest[switch]
        return result


@dataclass
class Decisions:
    """The decisions for a batch of events, with what produced them."""

    action: np.ndarray  # final action index
    model_action: np.ndarray  # argmin of the predicted objective
    legacy_action: np.ndarray
    fallback: np.ndarray  # bool: the legacy action was kept for lack of confidence
    overridden: np.ndarray  # bool: action overriding changed the action
    effects: np.ndarray  # (n, len(EFFECT_OUTCOMES), n_actions), vs the "observe" arm
    objective_change_lower: np.ndarray  # interval of the objective change, model vs legacy
    objective_change_upper: np.ndarray

    def to_frame(self) -> pd.DataFrame:
        rows = np.arange(len(self.action))
        frame = pd.DataFrame(
            {
                "action": pd.Categorical.from_codes(self.action, ACTIONS),
                "model_action": pd.Categorical.from_codes(self.model_action, ACTIONS),
                "legacy_action": pd.Categorical.from_codes(self.legacy_action, ACTIONS),
                "fallback": self.fallback,
                "overridden": self.overridden,
            }
        )
        for k, name in enumerate(EFFECT_OUTCOMES):
            # predicted change of the final action vs the legacy action
            frame[f"effect_{name}"] = self.effects[rows, k, self.action] - self.effects[rows, k, self.legacy_action]
        frame["objective_change_lower"] = self.objective_change_lower
        frame["objective_change_upper"] = self.objective_change_upper
        return frame


class Deoxys:
    """Causal-forest DML mitigation recommender with fallback and action overriding.

    Args:
        n_estimators: trees per outcome forest (econml needs a multiple of 4 with inference).
        min_samples_leaf, max_depth, max_samples: forest shape.
        nuisance_max_iter, nuisance_learning_rate, nuisance_early_stopping: the
            HistGradientBoosting nuisance models (early stopping on a 10% validation split
            keeps the propensities calibrated; max_iter is then a cap).
        cv: cross-fitting folds of the nuisance models.
        fallback: keep the legacy action where the model is not confident.
        fallback_alpha: the interval is (1 - alpha); larger alpha, narrower interval, fewer fallbacks.
        downtime_tolerance_min, cost_budget_node_hours: see ``ActionOverride``.
        n_jobs: parallel jobs of the forest; random_state: seed of every random part.
    """

    def __init__(
        self,
        *,
        n_estimators: int = 100,
        min_samples_leaf: int = 10,
        max_depth: int | None = None,
        max_samples: float = 0.45,
        nuisance_max_iter: int = 300,
        nuisance_learning_rate: float = 0.1,
        nuisance_early_stopping: bool = True,
        cv: int = 2,
        fallback: bool = True,
        fallback_alpha: float = 0.1,
        downtime_tolerance_min: float = 0.0,
        cost_budget_node_hours: float | None = None,
        n_jobs: int = -1,
        random_state: int = 0,
    ) -> None:
        if n_estimators < 4 or n_estimators % 4:
            raise ValueError(f"model.n_estimators must be a positive multiple of 4, got {n_estimators}")
        if not 0.0 < fallback_alpha < 1.0:
            raise ValueError(f"model.fallback_alpha must be in (0, 1), got {fallback_alpha}")
        if not 0.0 < max_samples <= 0.5:
            raise ValueError(f"model.max_samples must be in (0, 0.5] for honest inference, got {max_samples}")
        self.n_estimators = n_estimators
        self.min_samples_leaf = min_samples_leaf
        self.max_depth = max_depth
        self.max_samples = max_samples
        self.nuisance_max_iter = nuisance_max_iter
        self.nuisance_learning_rate = nuisance_learning_rate
        self.nuisance_early_stopping = nuisance_early_stopping
        self.cv = cv
        self.fallback = fallback
        self.fallback_alpha = fallback_alpha
        self.override = ActionOverride(downtime_tolerance_min, cost_budget_node_hours)
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.objective: MitigationObjective | None = None
        self.estimator_: CausalForestDML | None = None

    def _build(self) -> CausalForestDML:
        regressor = HistGradientBoostingRegressor(
            max_iter=self.nuisance_max_iter,
            learning_rate=self.nuisance_learning_rate,
            early_stopping=self.nuisance_early_stopping,
            random_state=self.random_state,
        )
        classifier = HistGradientBoostingClassifier(
            max_iter=self.nuisance_max_iter,
            learning_rate=self.nuisance_learning_rate,
            early_stopping=self.nuisance_early_stopping,
            random_state=self.random_state,
        )
        return CausalForestDML(
            model_y=MultiOutputRegressor(regressor),
            model_t=classifier,
            discrete_treatment=True,
            categories=list(ACTIONS),
            cv=self.cv,
            n_estimators=self.n_estimators,
            min_samples_leaf=self.min_samples_leaf,
            max_depth=self.max_depth,
            max_samples=self.max_samples,
            inference=True,
            n_jobs=self.n_jobs,
            random_state=self.random_state,
        )

    def fit(
        self,
        features: pd.DataFrame,
        actions: np.ndarray | pd.Series,
        outcomes: pd.DataFrame,
        objective: MitigationObjective,
    ) -> Deoxys:
        """Fit on logged events: features, the logged action, the observed outcomes.

        The objective's weights are fixed here: its combined outcome is fitted as its own
        column so that the fallback has an interval for it. Changing the weights means
        refitting (overriding knobs, in contrast, apply at decision time).
        """
        features = validate_features(features, source="fit features")
        missing = [k for k in OUTCOMES if k not in outcomes.columns]
        if missing:
            raise ValueError(f"outcomes: missing column(s) {missing}")
        y = outcomes[list(OUTCOMES)].to_numpy(dtype=np.float64)
        target = np.column_stack([objective({k: y[:, i] for i, k in enumerate(OUTCOMES)}), y])
        treatment = np.asarray(ACTIONS, dtype=object)[action_indices(actions)]
        x = encode_features(features)
        estimator = self._build()
        with _fit_progress(target.shape[1]):
            estimator.fit(target, treatment, X=x)
        self.estimator_ = estimator
        self.objective = objective
        return self

    def set_prediction_jobs(self, n_jobs: int) -> None:
        """Parallel jobs of the fitted forests when predicting. A service answering a few events
        per request wants 1: joblib's dispatch to many workers costs more than the trees
        (hundreds of ms per single-event call at n_jobs=-1 on 2 cores)."""
        estimator = self._require_fitted()
        estimator.n_jobs = n_jobs
        # econml keeps one causal forest per outcome column inside a multi-output wrapper
        multi = estimator._ortho_learner_model_final._model_final._model
        for forest in [multi.estimator, *getattr(multi, "estimators_", [])]:
            forest.n_jobs = n_jobs

    def _require_fitted(self) -> CausalForestDML:
        if self.estimator_ is None:
            raise RuntimeError("Deoxys is not fitted; call fit() first")
        return self.estimator_

    def predict_effects(self, features: pd.DataFrame) -> np.ndarray:
        """Predicted outcomes of every action vs "observe": (n, len(EFFECT_OUTCOMES), n_actions)."""
        estimator = self._require_fitted()
        x = encode_features(validate_features(features))
        tau = estimator.const_marginal_effect(x)  # (n, d_y, n_actions - 1)
        return np.concatenate([np.zeros((*tau.shape[:2], 1)), tau], axis=2)

    def decide(
        self,
        features: pd.DataFrame,
        legacy_actions: np.ndarray | None = None,
        *,
        fallback: bool | None = None,
        override: ActionOverride | None = None,
        effects: np.ndarray | None = None,
        intervals: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> Decisions:
        """Recommend, fall back, override. ``effects``/``intervals`` reuse earlier predictions."""
        self._require_fitted()
        features = validate_features(features)
        legacy = legacy_rule(features) if legacy_actions is None else action_indices(legacy_actions)
        if len(legacy) != len(features):
            raise ValueError(f"legacy_actions has {len(legacy)} entries for {len(features)} events")
        effects = self.predict_effects(features) if effects is None else effects
        model_action = effects[:, 0, :].argmin(axis=1)
        if intervals is None:
            intervals = self.objective_change_interval(features, legacy, model_action)
        lower, upper = intervals
        use_fallback = self.fallback if fallback is None else fallback
        changed = model_action != legacy
        fell_back = changed & (upper >= 0.0) if use_fallback else np.zeros(len(legacy), dtype=bool)
        action = np.where(fell_back, legacy, model_action)
        rule = self.override if override is None else override
        final = rule.apply(effects, action, legacy)
        return Decisions(
            action=final,
            model_action=model_action,
            legacy_action=legacy,
            fallback=fell_back,
            overridden=final != action,
            effects=effects,
            objective_change_lower=lower,
            objective_change_upper=upper,
        )

    def objective_change_interval(
        self, features: pd.DataFrame, legacy: np.ndarray, candidate: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(1 - alpha) interval of the objective change from ``legacy`` to ``candidate``."""
        estimator = self._require_fitted()
        x = encode_features(validate_features(features))
        lower = np.zeros(len(x))
        upper = np.zeros(len(x))
        changed = np.flatnonzero(candidate != legacy)
        names = np.asarray(ACTIONS, dtype=object)
        for t0 in np.unique(legacy[changed]):
            for t1 in np.unique(candidate[changed]):
                rows = changed[(legacy[changed] == t0) & (candidate[changed] == t1)]
                if rows.size == 0:
                    continue
                lo, hi = estimator.effect_interval(x[rows], T0=names[t0], T1=names[t1], alpha=self.fallback_alpha)
                lower[rows] = np.asarray(lo).reshape(len(rows), -1)[:, 0]
                upper[rows] = np.asarray(hi).reshape(len(rows), -1)[:, 0]
        return lower, upper
