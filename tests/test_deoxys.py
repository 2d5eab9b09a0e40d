"""Deoxys: confounding handled, fallback and overriding rules, export round-trip."""

from __future__ import annotations

import copy
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from threadpoolctl import threadpool_limits

import infragym
from infragym.datasets.health_log import HealthLogDataset, LoggedEvents, generate_health_log
from infragym.envs.health import ACTIONS, MitigationObjective, UnhealthyNodeMitigationEnv, UnhealthyNodeSimulator
from infragym.export import ExportError
from infragym.logging import RunLogger
from infragym.models.deoxys import ActionOverride, Deoxys
from infragym.models.deoxys.evaluation import DoublyRobustEvaluator, gap_closed, policy_outcomes
from infragym.models.deoxys.recommender import EFFECT_OUTCOMES, Decisions, action_indices
from infragym.models.deoxys.task import DeoxysTask

N_ACTIONS = len(ACTIONS)


@pytest.fixture(scope="module")
def logged() -> LoggedEvents:
    return generate_health_log(UnhealthyNodeSimulator(), 12_000, np.random.default_rng(0))


@pytest.fixture(scope="module")
def deoxys(logged: LoggedEvents) -> Deoxys:
    return Deoxys(n_estimators=40, nuisance_max_iter=60, random_state=0).fit(
        logged.log, logged.log["action"], logged.log, MitigationObjective()
    )


def test_confounding_misleads_the_naive_comparison_but_not_deoxys(logged: LoggedEvents, deoxys: Deoxys) -> None:
    """Per stratum (fault signal x heartbeat), pick the action with the best mean outcome."""
    objective = MitigationObjective()
    log = logged.log
    actions = action_indices(log["action"])
    observed = objective(log)
    expected = objective(logged.expected_outcomes)
    predicted = deoxys.predict_effects(log)[:, 0, :]
    naive_wrong_deoxys_right = []
    for signal in log["fault_signal"].cat.categories:
        for heartbeat in (0, 1):
            rows = ((log["fault_signal"] == signal) & (log["heartbeat_lost"] == heartbeat)).to_numpy()
            truth = expected[rows].mean(axis=0)
            naive = np.array(
                [
                    observed[rows & (actions == a)].mean() if (rows & (actions == a)).sum() >= 30 else np.inf
                    for a in range(N_ACTIONS)
                ]
            )
            best, naive_pick, deoxys_pick = truth.argmin(), naive.argmin(), predicted[rows].mean(axis=0).argmin()
            if naive_pick != best and deoxys_pick == best:
                naive_wrong_deoxys_right.append((signal, heartbeat, truth[naive_pick] - truth[best]))
    assert naive_wrong_deoxys_right, "no stratum where the confounded comparison misleads"
    # ... and the naive mistake is costly there (minutes of downtime-equivalent per event).
    assert max(regret for *_, regret in naive_wrong_deoxys_right) > 5.0


def test_fallback_keeps_legacy_unless_confident(logged: LoggedEvents, deoxys: Deoxys) -> None:
    fresh = UnhealthyNodeSimulator().sample_events(3000, np.random.default_rng(9)).features
    decision = deoxys.decide(fresh)
    changed = decision.action != decision.legacy_action
    assert changed.any() and decision.fallback.any()
    assert (decision.objective_change_upper[changed] < 0).all()  # clear of zero
    assert (decision.action[decision.fallback] == decision.legacy_action[decision.fallback]).all()
    no_fallback = deoxys.decide(fresh, fallback=False)
    assert not no_fallback.fallback.any()
    np.testing.assert_array_equal(no_fallback.action, no_fallback.model_action)
    # A wider interval (smaller alpha) can only make the fallback fire more often.
    strict = Deoxys(fallback_alpha=0.01)
    strict.__dict__.update({k: v for k, v in deoxys.__dict__.items() if k != "fallback_alpha"})
    assert strict.decide(fresh).fallback.sum() >= decision.fallback.sum()


def test_deoxys_beats_legacy_on_fresh_events(deoxys: Deoxys) -> None:
    sim = UnhealthyNodeSimulator()
    rng = np.random.default_rng(11)
    batch = sim.sample_events(5000, rng)
    realised = sim.outcome_table(batch, rng)
    objective = MitigationObjective()
    legacy = policy_outcomes(sim.legacy_rule(batch.features), realised, objective)
    oracle = policy_outcomes(objective(sim.outcome_table(batch)).argmin(axis=1), realised, objective)
    ours = policy_outcomes(deoxys.decide(batch.features).action, realised, objective)
    assert gap_closed(legacy["downtime_min"], ours["downtime_min"], oracle["downtime_min"]) > 0.5
    assert ours["objective"] < legacy["objective"]


effects_strategy = arrays(
    np.float64,
    st.tuples(st.integers(1, 40), st.just(len(EFFECT_OUTCOMES)), st.just(N_ACTIONS)),
    elements=st.floats(-50, 50, allow_nan=False),
)


@settings(max_examples=60, deadline=None)
@given(effects=effects_strategy, tolerance=st.floats(0, 30), seed=st.integers(0, 1000))
def test_tolerance_override_never_costs_more_nor_exceeds_tolerance(
    effects: np.ndarray, tolerance: float, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    chosen = rng.integers(0, N_ACTIONS, len(effects))
    legacy = rng.integers(0, N_ACTIONS, len(effects))
    rows = np.arange(len(effects))
    result = ActionOverride(tolerance, None).apply(effects, chosen, legacy)
    downtime = effects[:, EFFECT_OUTCOMES.index("downtime_min"), :]
    cost = effects[:, EFFECT_OUTCOMES.index("cost_node_hours"), :]
    assert (cost[rows, result] <= cost[rows, chosen]).all()
    assert (downtime[rows, result] <= downtime[rows, chosen] + tolerance + 1e-9).all()
    np.testing.assert_array_equal(ActionOverride(0.0, None).apply(effects, chosen, legacy), chosen)


@settings(max_examples=60, deadline=None)
@given(effects=effects_strategy, budget=st.floats(-20, 20), seed=st.integers(0, 1000))
def test_budget_override_meets_the_budget_when_it_can(effects: np.ndarray, budget: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    chosen = rng.integers(0, N_ACTIONS, len(effects))
    legacy = rng.integers(0, N_ACTIONS, len(effects))
    rows = np.arange(len(effects))
    cost = effects[:, EFFECT_OUTCOMES.index("cost_node_hours"), :]
    result = ActionOverride(0.0, budget).apply(effects, chosen, legacy)
    extra = (cost[rows, result] - cost[rows, legacy]).mean()
    best_possible = (cost.min(axis=1) - cost[rows, legacy]).mean()
    assert extra <= max(budget, best_possible) + 1e-9
    switched = result != chosen
    assert (result[switched] == cost[switched].argmin(axis=1)).all()


def test_doubly_robust_estimate_is_close_to_truth(logged: LoggedEvents) -> None:
    objective = MitigationObjective()
    log = logged.log
    dr = DoublyRobustEvaluator(random_state=0).fit(log, action_indices(log["action"]), {"objective": objective(log)})
    legacy = UnhealthyNodeSimulator().legacy_rule(log)
    always_observe = np.zeros(len(log), dtype=np.int64)
    for policy in (legacy, always_observe):
        estimate, se = dr.value(policy, "objective")
        truth = policy_outcomes(policy, logged.potential_outcomes, objective)["objective"]
        assert abs(estimate - truth) < 4 * se + 0.5, (estimate, truth, se)


def test_unknown_action_and_unfitted_model_are_refused() -> None:
    with pytest.raises(ValueError, match="reimage"):
        action_indices(np.array(["observe", "reimage"]))
    with pytest.raises(RuntimeError, match="not fitted"):
        Deoxys().predict_effects(pd.DataFrame())
    with pytest.raises(ValueError, match="multiple of 4"):
        Deoxys(n_estimators=10)


def test_export_round_trip_gives_identical_predictions(tmp_path: Path) -> None:
    task = DeoxysTask(
        env=UnhealthyNodeMitigationEnv(),
        dataset=HealthLogDataset(n_events=2000, n_test_events=500),
        model=Deoxys(n_estimators=12, nuisance_max_iter=20),
        baselines=[],
        seed=3,
    )
    task.fit(RunLogger())
    export = task.export(tmp_path / "export", metrics={"test/x": 1.0}, config={"seed": 3})
    predictor = infragym.load(export)
    fresh = UnhealthyNodeSimulator().sample_events(800, np.random.default_rng(5)).features
    expected = task.model.decide(fresh).to_frame()
    got = predictor.predict(fresh)
    pd.testing.assert_frame_equal(got, expected)
    assert {"action", "fallback", "effect_downtime_min", "effect_interrupted"} <= set(got.columns)
    # A legacy_action column is honoured.
    with_legacy = fresh.assign(legacy_action="observe")
    assert (predictor.predict(with_legacy)["legacy_action"] == "observe").all()
    # Invalid input names the column.
    with pytest.raises(ValueError, match="num_vms"):
        predictor.predict(fresh.drop(columns=["num_vms"]))
    # A modified model file is refused.
    with open(export / "deoxys.joblib", "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(ExportError, match=r"deoxys\.joblib"):
        infragym.load(export)


def _assert_same_decisions(fast: Decisions, reference: Decisions) -> None:
    for key in ("action", "model_action", "legacy_action", "fallback", "overridden"):
        np.testing.assert_array_equal(getattr(fast, key), getattr(reference, key), err_msg=key)
    for key in ("effects", "objective_change_lower", "objective_change_upper"):
        np.testing.assert_allclose(getattr(fast, key), getattr(reference, key), rtol=1e-12, atol=1e-12, err_msg=key)


def _econml_reference(model: Deoxys) -> Deoxys:
    reference = copy.copy(model)
    reference.econml_predict = True  # econml's own prediction API, one job (deterministic order)
    reference.set_prediction_jobs(1)
    return reference


def _check_fast_prediction_matches_econml(model: Deoxys, seeds: range) -> None:
    """The numpy prediction (flattened forests) against econml's, on fresh events: decisions,
    effects and intervals, for batches of 1, 7 and 1000 events; and the interval of every
    (legacy, candidate) pair of actions."""
    reference = _econml_reference(model)
    sim = UnhealthyNodeSimulator()
    for seed in seeds:
        rng = np.random.default_rng(seed)
        for n in (1, 7, 1000):
            events = sim.sample_events(n, rng).features
            _assert_same_decisions(model.decide(events), reference.decide(events))
        legacy = rng.integers(0, N_ACTIONS, len(events))
        candidate = rng.integers(0, N_ACTIONS, len(events))
        for fast, ref in zip(
            model.objective_change_interval(events, legacy, candidate),
            reference.objective_change_interval(events, legacy, candidate),
            strict=True,
        ):
            np.testing.assert_allclose(fast, ref, rtol=1e-12, atol=1e-12)
    # Batches above one block of rows (_BLOCK_ROWS) are cut into blocks: the same predictions.
    events = sim.sample_events(1200, np.random.default_rng(99)).features
    np.testing.assert_allclose(model.predict_effects(events), reference.predict_effects(events), rtol=1e-12, atol=1e-12)


def test_fast_prediction_matches_econml(deoxys: Deoxys) -> None:
    assert deoxys._arrays() is not None  # the fast path is the one taken
    _check_fast_prediction_matches_econml(deoxys, range(4))


@pytest.fixture(scope="module")
def deoxys_100_trees() -> Deoxys:
    """The default experiment's forest size (100 trees, 25 bags) on a small log, fitted on one
    thread: the nuisances' OpenMP threads are slow to share on a busy 2-core machine."""
    logged = generate_health_log(UnhealthyNodeSimulator(), 2000, np.random.default_rng(1))
    with threadpool_limits(1):
        return Deoxys(n_estimators=100, nuisance_max_iter=10, random_state=1).fit(
            logged.log, logged.log["action"], logged.log, MitigationObjective()
        )


def test_fast_prediction_matches_econml_with_100_trees(deoxys_100_trees: Deoxys) -> None:
    _check_fast_prediction_matches_econml(deoxys_100_trees, range(3))


def test_flattened_forests_are_a_cache(deoxys_100_trees: Deoxys, tmp_path: Path) -> None:
    """Not pickled (an export holds the estimator once), rebuilt after a refit."""
    events = UnhealthyNodeSimulator().sample_events(50, np.random.default_rng(4)).features
    expected = deoxys_100_trees.decide(events)
    assert "_forest_arrays" in deoxys_100_trees.__dict__
    joblib.dump(deoxys_100_trees, tmp_path / "model.joblib")
    loaded = joblib.load(tmp_path / "model.joblib")
    assert "_forest_arrays" not in loaded.__dict__
    _assert_same_decisions(loaded.decide(events), expected)
    logged = generate_health_log(UnhealthyNodeSimulator(), 1000, np.random.default_rng(2))
    with threadpool_limits(1):
        refit = Deoxys(n_estimators=8, nuisance_max_iter=5).fit(
            logged.log, logged.log["action"], logged.log, MitigationObjective()
        )
    refit.__dict__["_forest_arrays"] = loaded.__dict__["_forest_arrays"]  # stale: another estimator's
    assert refit._arrays().estimator is refit.estimator_
    _assert_same_decisions(refit.decide(events), _econml_reference(refit).decide(events))
