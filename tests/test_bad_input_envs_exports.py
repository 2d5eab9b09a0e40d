"""Issue 21's cases for envs and loaded exports: no steps past the end of an episode, no actions
truncated from floats, bools or strings, no raw library error for an empty frame, no negative
durations accepted by a duration predictor."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from gymnasium.error import ResetNeeded

from infragym.datasets.agent_programs import swe_bench_like
from infragym.datasets.health_log import generate_health_log
from infragym.envs.actions import ActionError, discrete_action
from infragym.envs.health.env import UnhealthyNodeMitigationEnv
from infragym.envs.health.objective import MitigationObjective
from infragym.envs.health.simulator import CATEGORICAL_FEATURES, NUMERIC_FEATURES, UnhealthyNodeSimulator
from infragym.envs.serving.env import LLMServingEnv
from infragym.envs.serving.ttl_env import KVCacheTTLEnv
from infragym.models.continuum.predictors import PREDICTORS, PredictorError
from infragym.models.deoxys.export import DeoxysPredictor
from infragym.models.deoxys.recommender import Deoxys

BAD_ACTIONS = [1.0, 1.7, True, np.bool_(True), "1", np.float32(1.0), np.array([1.0]), None, [1]]


def test_llm_serving_refuses_steps_after_termination() -> None:
    env = LLMServingEnv(n_requests=10, rate=5.0)
    env.reset(seed=0)
    for _ in range(1000):
        _, _, terminated, _, _ = env.step(env.window)
        if terminated:
            break
    assert terminated
    with pytest.raises(ResetNeeded, match=r"LLMServing-v0: the episode has terminated"):
        env.step(env.window)
    env.reset(seed=1)
    env.step(env.window)  # a fresh episode steps again


@pytest.mark.parametrize("action", BAD_ACTIONS, ids=repr)
def test_envs_refuse_actions_that_are_not_integers(action: object) -> None:
    serving = LLMServingEnv(n_requests=10, rate=5.0)
    serving.reset(seed=0)
    health = UnhealthyNodeMitigationEnv()
    health.reset(seed=0)
    for env, name in ((serving, "LLMServing-v0"), (health, "UnhealthyNodeMitigation-v0")):
        with pytest.raises(ActionError, match=rf"{name}: an action must be an integer"):
            env.step(action)


def test_kv_ttl_env_refuses_float_actions() -> None:
    env = KVCacheTTLEnv(n_programs=4)
    env.reset(seed=0)
    with pytest.raises(ActionError, match=r"KVCacheTTL-v0: an action must be an integer"):
        env.step(1.9)
    env.step(np.int64(1))  # integers, numpy's included, still step


def test_integer_actions_of_every_form_are_accepted() -> None:
    for action in (2, np.int64(2), np.int32(2), np.uint8(2), np.array(2), np.array([2])):
        assert discrete_action(action, 3, "env") == 2
    with pytest.raises(ActionError, match=r"env: action 3 is outside \[0, 3\)"):
        discrete_action(3, 3, "env")


@pytest.fixture(scope="module")
def deoxys_model() -> Deoxys:
    log = generate_health_log(UnhealthyNodeSimulator(), 1_500, np.random.default_rng(0)).log
    return Deoxys(n_estimators=8, nuisance_max_iter=20, n_jobs=1).fit(log, log["action"], log, MitigationObjective())


def test_deoxys_predict_on_an_empty_frame_returns_no_decisions(deoxys_model: Deoxys) -> None:
    predictor = DeoxysPredictor(deoxys_model, {})
    one = generate_health_log(UnhealthyNodeSimulator(), 3, np.random.default_rng(1)).log
    features = one[[*CATEGORICAL_FEATURES, *NUMERIC_FEATURES]]
    expected = predictor.predict(features)
    empty = predictor.predict(features.iloc[:0])
    assert len(empty) == 0 and list(empty.columns) == list(expected.columns)
    assert (empty.dtypes == expected.dtypes).all()
    with pytest.raises(ValueError, match="missing column"):  # an empty frame still needs its columns
        predictor.predict(pd.DataFrame())


@pytest.mark.parametrize("column", ["prev_duration_s", "prog_mean_duration_s", "prev_same_tool_s", "turn"])
@pytest.mark.parametrize("value", [-1.0, -1, float("inf")])
def test_continuum_predictors_refuse_negative_history(column: str, value: float) -> None:
    calls = swe_bench_like(6, np.random.default_rng(0)).tool_calls()
    for name, kind in PREDICTORS.items():
        predictor = kind().fit(calls)
        record = {"tool": "bash", "arguments": "pytest -x", column: value}
        for given in ([record], pd.DataFrame([record])):  # the plain path and the pandas path
            with pytest.raises(PredictorError, match=rf"column {column!r}, row 0: .* must be a finite number >= 0"):
                predictor.distribution(given)
        ok = predictor.predict([{**record, column: 2}])
        assert len(ok) == 1 and np.isfinite(ok.to_numpy()).all(), name
