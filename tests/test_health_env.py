"""The unhealthy-node simulator and its gymnasium env."""

from __future__ import annotations

import re

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from infragym.envs.health import (
    ACTIONS,
    FEATURES,
    OUTCOMES,
    MitigationObjective,
    UnhealthyNodeMitigationEnv,
    UnhealthyNodeSimulator,
    encode_features,
    encoded_feature_names,
)


def test_env_passes_gymnasium_and_sb3_checkers() -> None:
    env = gym.make("infragym/UnhealthyNodeMitigation-v0")
    gym_check_env(env.unwrapped, skip_render_check=True)
    sb3_check_env(UnhealthyNodeMitigationEnv(), warn=True)


def test_env_is_a_one_step_bandit_with_full_info() -> None:
    env = gym.make("infragym/UnhealthyNodeMitigation-v0")
    obs, info = env.reset(seed=3)
    assert obs.dtype == np.float32 and env.observation_space.contains(obs)
    assert info["action_mask"].all()
    _, reward, terminated, truncated, info = env.step(1)
    assert terminated and not truncated
    assert set(info["potential_outcomes"]) == set(OUTCOMES)
    assert all(v.shape == (len(ACTIONS),) for v in info["potential_outcomes"].values())
    realised = {k: info["potential_outcomes"][k][1] for k in OUTCOMES}
    assert reward == pytest.approx(-float(MitigationObjective()(realised)))
    assert info["outcome"]["downtime_min"] == pytest.approx(realised["downtime_min"])


def test_env_same_seed_same_episodes() -> None:
    def rollout(seed: int) -> list[float]:
        env = UnhealthyNodeMitigationEnv(batch_size=8)
        env.reset(seed=seed)
        rewards = []
        for i in range(20):  # crosses several event batches
            rewards.append(env.step(i % len(ACTIONS))[1])
            env.reset()
        return rewards

    assert rollout(5) == rollout(5)
    assert rollout(5) != rollout(6)


def test_step_without_reset_is_refused() -> None:
    env = UnhealthyNodeMitigationEnv()
    with pytest.raises(RuntimeError, match="reset"):
        env.step(0)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="action"):
        env.step(len(ACTIONS))


def test_events_have_the_features_and_encode_consistently() -> None:
    sim = UnhealthyNodeSimulator()
    batch = sim.sample_events(2000, np.random.default_rng(0))
    assert len(FEATURES) >= 15
    assert list(batch.features.columns) == list(FEATURES)
    assert not batch.features.isna().any().any()
    x = encode_features(batch.features)
    assert x.shape == (2000, len(encoded_feature_names()))
    assert np.isfinite(x).all()


def test_expected_outcomes_are_the_mean_of_realised_ones() -> None:
    """The analytic expectation (oracle's input) matches Monte Carlo over realisations."""
    sim = UnhealthyNodeSimulator()
    rng = np.random.default_rng(1)
    batch = sim.sample_events(100_000, rng)
    realised = sim.outcome_table(batch, rng)
    expected = sim.outcome_table(batch)
    for k in OUTCOMES:
        assert realised[k].shape == (100_000, len(ACTIONS))
        assert (realised[k] >= 0).all()
        # Same mean per action within Monte Carlo error (a few standard errors).
        se = realised[k].std(axis=0) / np.sqrt(len(batch)) + 1e-9
        gap = np.abs(realised[k].mean(axis=0) - expected[k].mean(axis=0))
        assert (gap < 4 * se + 1e-6).all(), (k, gap, se)
    assert set(np.unique(realised["interrupted"])) <= {0.0, 1.0}


def test_effects_are_heterogeneous() -> None:
    """No single action is best for every event: the best action depends on the features."""
    sim = UnhealthyNodeSimulator()
    batch = sim.sample_events(20_000, np.random.default_rng(2))
    best = MitigationObjective()(sim.outcome_table(batch)).argmin(axis=1)
    shares = np.bincount(best, minlength=len(ACTIONS)) / len(best)
    assert (shares > 0.02).sum() >= 4, shares


def test_legacy_policy_keeps_every_propensity_positive() -> None:
    sim = UnhealthyNodeSimulator(exploration=0.15)
    batch = sim.sample_events(5000, np.random.default_rng(3))
    p = sim.legacy_propensities(batch.features)
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    assert p.min() == pytest.approx(0.15 / len(ACTIONS))
    actions = sim.sample_legacy_actions(batch.features, np.random.default_rng(4))
    agreement = (actions == sim.legacy_rule(batch.features)).mean()
    assert agreement == pytest.approx(1 - 0.15 + 0.15 / len(ACTIONS), abs=0.02)
    assert len(np.unique(actions)) == len(ACTIONS)


def test_records_validate_and_encode_as_the_frame_does() -> None:
    from infragym.envs.health.features import (
        FeatureError,
        encode_feature_columns,
        validate_feature_records,
        validate_features,
    )
    from infragym.envs.health.simulator import CATEGORICAL_FEATURES, legacy_rule, legacy_rule_arrays

    frame = UnhealthyNodeSimulator().sample_events(300, np.random.default_rng(1)).features
    records = frame.astype(object).to_dict("records")
    for record in records:
        for column in CATEGORICAL_FEATURES:
            record[column] = str(record[column])
    columns = validate_feature_records(records)
    assert np.array_equal(encode_feature_columns(columns), encode_features(validate_features(frame)))
    signals = np.asarray(CATEGORICAL_FEATURES["fault_signal"])[columns["fault_signal"]]
    legacy = legacy_rule_arrays(
        signals,
        columns["heartbeat_lost"],
        columns["error_count_1h"],
        columns["error_count_24h"],
        columns["live_migratable_share"],
    )
    assert np.array_equal(legacy, legacy_rule(frame))
    # the same refusals, naming the column and the row
    for change, message in (
        ({"fault_signal": "cosmic_ray"}, "'fault_signal' has unknown value 'cosmic_ray' at row 7"),
        ({"cpu_utilisation": 1.5}, "'cpu_utilisation' = 1.5 at row 7 is outside"),
        ({"num_vms": 2.5}, "'num_vms' must be whole numbers (row 7)"),
        ({"node_age_days": float("nan")}, "'node_age_days' is NaN or infinite at row 7"),
        ({"error_count_1h": "3"}, "'error_count_1h' must be numeric (row 7"),
    ):
        bad = [dict(r) for r in records]
        bad[7].update(change)
        with pytest.raises(FeatureError, match=re.escape(message)):
            validate_feature_records(bad)
    with pytest.raises(FeatureError, match="missing column"):
        validate_feature_records([{k: v for k, v in records[0].items() if k != "num_vms"}])
