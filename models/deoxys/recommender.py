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
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
from econml.dml import CausalForestDML
from econml.grf import CausalForest
from scipy.special import erfc, ndtri
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.multioutput import MultiOutputRegressor
from tqdm.auto import tqdm

from infragym.envs.health.features import encode_features, validate_features
from infragym.envs.health.objective import MitigationObjective
from infragym.envs.health.simulator import ACTIONS, OUTCOMES, legacy_rule

# Column order of the fitted outcome matrix: the objective first (its interval drives the
# fallback), then the raw outcomes.
EFFECT_OUTCOMES: tuple[str, ...] = ("objective", *OUTCOMES)
_ACTION_DTYPE = pd.CategoricalDtype(list(ACTIONS))  # built once: building one validates the categories


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


# The columns of a decision table that hold actions.
ACTION_COLUMNS = ("action", "model_action", "legacy_action")


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

    def outputs(self) -> dict[str, np.ndarray]:
        """The decision table's columns as arrays (actions as indices into ``ACTIONS``): what
        :meth:`to_frame` holds, for callers that need no data frame."""
        rows = np.arange(len(self.action))
        columns = {
            "action": self.action,
            "model_action": self.model_action,
            "legacy_action": self.legacy_action,
            "fallback": self.fallback,
            "overridden": self.overridden,
        }
        for k, name in enumerate(EFFECT_OUTCOMES):
            # predicted change of the final action vs the legacy action
            columns[f"effect_{name}"] = self.effects[rows, k, self.action] - self.effects[rows, k, self.legacy_action]
        columns["objective_change_lower"] = self.objective_change_lower
        columns["objective_change_upper"] = self.objective_change_upper
        return columns

    def to_frame(self) -> pd.DataFrame:
        # Columns collected first and the frame built once (inserting columns one by one costs
        # more than the rest of a one-event decision).
        columns: dict[str, object] = self.outputs()
        for name in ACTION_COLUMNS:
            columns[name] = pd.Categorical.from_codes(columns[name], dtype=_ACTION_DTYPE)
        return pd.DataFrame(columns)


# Rows per block of the fast forest prediction: a block's gathered leaf statistics take
# n_trees * rows * (n_outputs + n_outputs**2) doubles per forest (100 trees, 6 outputs, 512
# rows: 17 MB), whatever the batch size.
_BLOCK_ROWS = 512
_ARRAYS_LOCK = threading.Lock()
_UNSUPPORTED = object()  # cached: the estimator's layout is not one _ForestArrays covers


class _ForestArrays:
    """The fitted causal forests of a ``CausalForestDML`` flattened into numpy arrays, to
    predict without econml's per-tree Python loop (econml is kept for fitting).

    econml predicts one tree at a time: a Python call, a ``check_array`` and a joblib dispatch
    per tree, and the whole pass again per bag of trees for the variance; that overhead is most
    of the time of a small batch. Here every tree of every outcome forest is walked at once,
    level by level, and the per-leaf statistics econml's trees return (``tree_.precond``: the
    leaf's alpha, ``tree_.jac``: its flattened jacobian) are gathered. What econml computes from
    them (``BaseGRF.predict_alpha_and_jac``, ``predict_moment_and_var``,
    ``_predict_point_and_var`` with a projector, the normal interval of the effect inference)
    is reproduced step by step, the sums over trees accumulated in econml's order, so the
    results agree with econml's to rounding (tests/test_deoxys.py compares them).
    """

    def __init__(self, estimator: CausalForestDML) -> None:
        wrapper = estimator._ortho_learner_model_final._model_final
        encoder = estimator.transformer
        if wrapper._featurizer is not None or encoder is None or list(encoder.categories_[0]) != list(ACTIONS):
            raise ValueError("unsupported CausalForestDML layout (a featurizer or other treatment encoding)")
        if getattr(encoder, "drop", None) != "first":
            raise ValueError("unsupported treatment encoding: expected one-hot without the first action")
        forests = list(wrapper._model.estimators_)
        self.estimator = estimator  # what these arrays were built from (refits rebuild them)
        self.n_forests = len(forests)
        self.n_trees = len(forests[0].estimators_)
        self.n_outputs = forests[0].n_outputs_
        self.n_relevant = forests[0].n_relevant_outputs_
        self.n_features = forests[0].estimators_[0].n_features_in_
        if any(len(f.estimators_) != self.n_trees or f.n_outputs_ != self.n_outputs for f in forests):
            raise ValueError("unsupported CausalForestDML layout: forests of different shapes")
        # The bags of little trees behind the variance (econml's ``slices_``), one row per bag.
        self.slices = [np.asarray(f.slices_, dtype=np.intp) for f in forests]
        if any(s.ndim != 2 for s in self.slices):
            raise ValueError("unsupported CausalForestDML layout: bags of different sizes")
        trees = [tree.tree_ for forest in forests for tree in forest.estimators_]
        sizes = np.array([t.node_count for t in trees], dtype=np.intp)
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.intp)
        shift = np.repeat(offsets, sizes)
        left = np.concatenate([t.children_left for t in trees]).astype(np.intp)
        right = np.concatenate([t.children_right for t in trees]).astype(np.intp)
        leaf = left < 0
        own = np.arange(len(left), dtype=np.intp)
        # A leaf points to itself (both children) and compares against +inf, so that walking
        # max_depth levels leaves every tree at its leaf whatever its own depth.
        self.children = np.stack([np.where(leaf, own, left + shift), np.where(leaf, own, right + shift)], axis=1)
        self.children = self.children.ravel()  # node 2k: left child of k, 2k + 1: right child
        self.feature = np.where(leaf, 0, np.concatenate([t.feature for t in trees])).astype(np.intp)
        self.threshold = np.where(leaf, np.inf, np.concatenate([t.threshold for t in trees]))
        self.roots = offsets
        self.depth = max(int(t.max_depth) for t in trees)
        self.precond = np.concatenate([t.precond for t in trees])  # (nodes, n_outputs)
        self.jac = np.concatenate([t.jac for t in trees])  # (nodes, n_outputs**2)

    def leaves(self, x: np.ndarray) -> np.ndarray:
        """(n, n_forests * n_trees) leaf of each row in each tree (econml's ``tree_.apply``)."""
        n, d = x.shape
        if d != self.n_features:
            raise ValueError(f"expected {self.n_features} encoded features, got {d}")
        flat = np.ascontiguousarray(x, dtype=np.float64).ravel()
        row = (np.arange(n, dtype=np.intp) * d)[:, None]
        node = np.repeat(self.roots[None, :], n, axis=0)
        for _ in range(self.depth):
            # econml's trees go left when x[feature] <= threshold
            go_right = flat[row + self.feature[node]] > self.threshold[node]
            node = self.children[2 * node + go_right]
        return node

    def point(self, leaves: np.ndarray, forest: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """One outcome forest's per-tree leaf statistics and its estimate at ``leaves``' rows:
        alpha (trees, n, p), jac (trees, n, p * p), pinv of the mean jacobian and theta (n, p)."""
        tree_leaves = leaves[:, forest * self.n_trees : (forest + 1) * self.n_trees].T  # (trees, n)
        alpha_t = self.precond[tree_leaves]
        jac_t = self.jac[tree_leaves]
        # econml adds tree by tree into zeros, then divides; a sum over the leading axis adds in
        # the same order, so these are bit-identical to econml's.
        alpha = alpha_t.sum(axis=0) / self.n_trees
        jac = (jac_t.sum(axis=0) / self.n_trees).reshape((-1, self.n_outputs, self.n_outputs))
        invjac = np.linalg.pinv(jac)
        parameter = np.einsum("ijk,ik->ij", invjac, alpha)
        return alpha_t, jac_t, invjac, parameter

    def projected_point_and_var(
        self,
        forest: int,
        alpha_t: np.ndarray,
        jac_t: np.ndarray,
        invjac: np.ndarray,
        parameter: np.ndarray,
        projector: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """<theta(x), projector> and its variance: econml's ``predict_projection_and_var``
        (``_predict_point_and_var(project=True)`` over the bags of ``predict_moment_and_var``)."""
        n_trees, n, p = alpha_t.shape
        slices = self.slices[forest]
        n_slices, slice_len = slices.shape
        projector = np.hstack([projector, np.zeros((n, p - projector.shape[1]))])
        # the local moment of each tree at theta: alpha_t - J_t theta
        moments = alpha_t - np.einsum("tijk,ik->tij", jac_t.reshape((n_trees, n, p, p)), parameter)
        bags = moments[slices]  # (bags, trees per bag, n, p)
        moment_bags = bags.sum(axis=1) / slice_len
        moment_var_bags = (bags[..., :, None] * bags[..., None, :]).sum(axis=1) / slice_len
        # From here on, econml's formulas as written in _predict_point_and_var.
        moment = np.mean(moment_bags, axis=0)
        trans_moment_bags = np.moveaxis(moment_bags, 0, -1)
        sq_between = np.einsum("tij,tjk->tik", trans_moment_bags, np.transpose(trans_moment_bags, (0, 2, 1))) / n_slices
        moment_sq = moment[:, :, None] * moment[:, None, :]  # econml's einsum of a 1-term sum: the same products
        var_between = sq_between - moment_sq
        invjac_t = np.transpose(invjac, (0, 2, 1))
        pred_cov = np.einsum("ijk,ikm->ijm", invjac, np.einsum("ijk,ikm->ijm", var_between, invjac_t))
        row_projector = projector.reshape((-1, 1, p))
        col_projector = projector.reshape((-1, p, 1))
        pred_var = np.einsum("ijk,ikm->ijm", row_projector, np.einsum("ijk,ikm->ijm", pred_cov, col_projector))[:, 0, 0]
        var_total = np.mean(moment_var_bags, axis=0)
        correction = (var_total - sq_between) / (slice_len - 1)
        pred_cov_correction = np.einsum("ijk,ikm->ijm", invjac, np.einsum("ijk,ikm->ijm", correction, invjac_t))
        pred_var_correction = np.einsum(
            "ijk,ikm->ijm", row_projector, np.einsum("ijk,ikm->ijm", pred_cov_correction, col_projector)
        )[:, 0, 0]
        naive_estimate = pred_var - pred_var_correction
        se = np.maximum(pred_var, pred_var_correction) * np.sqrt(2.0 / n_slices)
        zstat = naive_estimate / np.clip(se, 1e-10, np.inf)
        numerator = np.exp(-(zstat**2) / 2) / np.sqrt(2.0 * np.pi)
        denominator = 0.5 * erfc(-zstat / np.sqrt(2.0))
        pred_var = naive_estimate + se * numerator / denominator
        return np.sum(parameter * projector, axis=1), pred_var

    def projector(self, t0: np.ndarray, t1: np.ndarray) -> np.ndarray:
        """T1 - T0 one-hot encoded as econml's treatment encoder does (no column for "observe")."""
        eye = np.eye(len(ACTIONS))[:, 1:]
        return eye[t1] - eye[t0]


def _normal_interval(point: np.ndarray, var: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """econml's (alpha/2, 1 - alpha/2) normal interval (``_safe_norm_ppf``: the point where the
    standard error is not positive); scipy's norm.ppf is ndtri(q) * scale + loc."""
    with np.errstate(invalid="ignore"):
        stderr = np.sqrt(var)
    positive = stderr > 0
    lower = np.where(positive, ndtri(alpha / 2) * stderr + point, point)
    upper = np.where(positive, ndtri(1 - alpha / 2) * stderr + point, point)
    return lower, upper


class Deoxys:
    """Causal-forest DML mitigation recommender with fallback and action overriding.

    Predictions come from the fitted forests flattened into numpy arrays (``_ForestArrays``:
    a single event in a few ms instead of econml's per-tree loop); ``econml_predict = True``
    (on an instance) predicts through econml's own API instead, the reference the arrays are
    tested against.

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

    econml_predict: bool = False  # a class default, so that exports pickled before it load

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
        """Parallel jobs of the fitted forests when predicting through econml
        (``econml_predict``). A service answering a few events per request wants 1: joblib's
        dispatch to many workers costs more than the trees (hundreds of ms per single-event call
        at n_jobs=-1 on 2 cores). The default numpy prediction is single-threaded either way."""
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

    def __getstate__(self) -> dict:
        # The flattened forests are a cache of the estimator, rebuilt on first use: not pickled
        # (an export holds the estimator once).
        return {k: v for k, v in self.__dict__.items() if k != "_forest_arrays"}

    def _arrays(self) -> _ForestArrays | None:
        """The fitted forests as numpy arrays (built once, thread-safe), or None where econml
        predicts (``econml_predict``, or an estimator layout the arrays do not cover)."""
        estimator = self._require_fitted()
        if self.econml_predict:
            return None
        arrays = self.__dict__.get("_forest_arrays")
        if arrays is None or arrays.estimator is not estimator:
            with _ARRAYS_LOCK:
                arrays = self.__dict__.get("_forest_arrays")
                if arrays is None or arrays.estimator is not estimator:
                    try:
                        arrays = _ForestArrays(estimator)
                    except ValueError:
                        arrays = _UNSUPPORTED
                    self.__dict__["_forest_arrays"] = arrays
        return None if arrays is _UNSUPPORTED else arrays

    def _forest_predict(
        self,
        x: np.ndarray,
        legacy: np.ndarray | None = None,
        candidate: np.ndarray | None = None,
        *,
        effects: bool = True,
        interval: bool = False,
    ) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
        """One pass over the forests: the effects (``predict_effects``) and/or the objective
        change interval from ``legacy`` to ``candidate`` (``objective_change_interval``; the
        candidate defaults to the argmin of the predicted objective, as in ``decide``)."""
        arrays = self._arrays()
        assert arrays is not None
        n = len(x)
        tau = np.zeros((n, len(EFFECT_OUTCOMES), len(ACTIONS))) if effects else None
        lower = np.zeros(n) if interval else None
        upper = np.zeros(n) if interval else None
        forests = range(arrays.n_forests) if effects else range(1)
        for start in range(0, n, _BLOCK_ROWS):
            block = slice(start, min(start + _BLOCK_ROWS, n))
            leaves = arrays.leaves(x[block])
            objective = None
            for k in forests:
                statistics = arrays.point(leaves, k)
                if tau is not None:
                    tau[block, k, 1:] = statistics[3][:, : arrays.n_relevant]
                if k == 0:
                    objective = statistics  # the objective's forest: the interval's
            if not interval:
                continue
            assert objective is not None and legacy is not None
            t1 = tau[block, 0, :].argmin(axis=1) if candidate is None else candidate[block]
            t0 = legacy[block]
            changed = np.flatnonzero(t1 != t0)
            if changed.size == 0:
                continue
            alpha_t, jac_t, invjac, parameter = objective
            point, var = arrays.projected_point_and_var(
                0,
                alpha_t[:, changed],
                jac_t[:, changed],
                invjac[changed],
                parameter[changed],
                arrays.projector(t0[changed], t1[changed]),
            )
            lo, hi = _normal_interval(point, var, self.fallback_alpha)
            lower[block][changed] = lo
            upper[block][changed] = hi
        return tau, lower, upper

    def predict_effects(self, features: pd.DataFrame) -> np.ndarray:
        """Predicted outcomes of every action vs "observe": (n, len(EFFECT_OUTCOMES), n_actions)."""
        self._require_fitted()
        return self._effects(encode_features(validate_features(features)))

    def _effects(self, x: np.ndarray) -> np.ndarray:
        estimator = self._require_fitted()
        if self._arrays() is not None:
            effects, _, _ = self._forest_predict(x)
            return effects
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
        features = validate_features(features)  # once: the features are encoded once below too
        legacy = legacy_rule(features) if legacy_actions is None else action_indices(legacy_actions)
        if len(legacy) != len(features):
            raise ValueError(f"legacy_actions has {len(legacy)} entries for {len(features)} events")
        x = encode_features(features) if effects is None or intervals is None else None
        return self.decide_encoded(
            x, legacy, fallback=fallback, override=override, effects=effects, intervals=intervals
        )

    def decide_encoded(
        self,
        x: np.ndarray | None,
        legacy: np.ndarray,
        *,
        fallback: bool | None = None,
        override: ActionOverride | None = None,
        effects: np.ndarray | None = None,
        intervals: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> Decisions:
        """:meth:`decide` on features already validated and encoded (``encode_features`` or
        ``encode_feature_columns``) and legacy action indices: a service's path, with no data
        frame. ``x`` may be None only when both ``effects`` and ``intervals`` are given."""
        self._require_fitted()
        if not len(legacy):  # no events, no decisions (the forests refuse an empty matrix)
            empty = np.zeros(0, dtype=np.int64)
            flags = np.zeros(0, dtype=bool)
            none = np.zeros(0, dtype=np.float64)
            no_effects = np.zeros((0, len(EFFECT_OUTCOMES), len(ACTIONS)))
            return Decisions(empty, empty, empty, flags, flags, no_effects, none, none)
        if effects is None and intervals is None and self._arrays() is not None:
            # effects and the interval of the recommendation in one pass over the forests
            effects, lower, upper = self._forest_predict(x, legacy, effects=True, interval=True)
            intervals = (lower, upper)
        effects = self._effects(x) if effects is None else effects
        model_action = effects[:, 0, :].argmin(axis=1)
        if intervals is None:
            intervals = self._interval(x, legacy, model_action)
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
        self._require_fitted()
        return self._interval(encode_features(validate_features(features)), legacy, candidate)

    def _interval(self, x: np.ndarray, legacy: np.ndarray, candidate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        estimator = self._require_fitted()
        legacy = np.asarray(legacy)
        candidate = np.asarray(candidate)
        if self._arrays() is not None:
            _, lower, upper = self._forest_predict(x, legacy, candidate, effects=False, interval=True)
            return lower, upper
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
