"""ElasticMoE: MoE iteration costs, scale-step latencies per method, the autoscaling env and its
invariants (devices conserved, no request lost during a scale step), and the experiment end to
end with its export."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from infragym.config import default_data_dir
from infragym.envs.elastic.env import DOWN, HOLD, UP, ElasticServingEnv
from infragym.envs.elastic.moe_cost import kv_capacity_tokens, min_devices, moe_timing
from infragym.envs.elastic.scaling import METHODS, scale_step

from .conftest import compose_config, smoke

CODE_TRACE = Path(default_data_dir()) / "llm_traces" / "azure_code_splitwise.csv"


def test_moe_costs_scale_with_devices_and_refuse_too_few() -> None:
    assert min_devices("mixtral-8x7b", "a100_80gb") == 2  # 93 GB of weights
    assert min_devices("deepseek-moe-16b", "a100_80gb") == 1
    per_token = [moe_timing("mixtral-8x7b", "a100_80gb", d).prefill_per_token_s for d in (2, 4, 8)]
    assert per_token[0] > per_token[1] > per_token[2]
    assert kv_capacity_tokens("mixtral-8x7b", "a100_80gb", 4) > kv_capacity_tokens("mixtral-8x7b", "a100_80gb", 2)
    timing = moe_timing("mixtral-8x7b", "a100_80gb", 4)
    assert np.all(np.diff(timing.decode_s[1:]) >= 0)  # a bigger batch never iterates faster
    with pytest.raises(ValueError, match="at least 2"):
        moe_timing("mixtral-8x7b", "a100_80gb", 1)
    with pytest.raises(ValueError, match="not an MoE model"):
        moe_timing("llama2-70b", "a100_80gb", 4)


def test_scale_up_latency_ratio_lands_near_the_papers() -> None:
    steps = {m: scale_step(m, "mixtral-8x7b", "a100_80gb", 4, 8 if m == "replica" else 6) for m in METHODS}
    ratio = steps["restart"].latency_s / steps["elastic"].latency_s
    assert 5.0 <= ratio <= 12.0  # ElasticMoE: up to ~9x lower scale-up latency
    assert steps["replica"].latency_s > steps["restart"].latency_s > steps["elastic"].latency_s
    assert steps["restart"].downtime and not steps["elastic"].downtime and not steps["replica"].downtime
    assert steps["elastic"].serving_share > 0.5 and steps["elastic"].bytes_moved < steps["restart"].bytes_moved
    with pytest.raises(ValueError):
        scale_step("teleport", "mixtral-8x7b", "a100_80gb", 4, 6)


def need_trace() -> None:
    if not CODE_TRACE.is_file():
        pytest.skip(f"the shared Azure code trace is absent ({CODE_TRACE})")


@pytest.mark.parametrize("workload", ["azure_code", "burstgpt"])
def test_env_passes_checkers(workload: str) -> None:
    if workload == "azure_code":
        need_trace()
    from gymnasium.utils.env_checker import check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    check_env(ElasticServingEnv(workload=workload, horizon_s=60.0), skip_render_check=True)
    sb3_check_env(ElasticServingEnv(workload=workload, horizon_s=60.0), warn=False)


@pytest.mark.parametrize("method", METHODS)
def test_devices_conserved_and_no_request_lost_during_scale_steps(method: str) -> None:
    env = ElasticServingEnv(workload="burstgpt", method=method, horizon_s=240.0, burst_rate=20.0)
    _, info = env.reset(seed=3)
    rng = np.random.default_rng(0)
    low_seconds = high_seconds = 0.0
    scaled = 0
    done = False
    while not done:
        mask = env.action_masks()
        assert np.array_equal(mask, info["action_mask"])
        action = int(rng.choice(np.flatnonzero(mask), p=None))
        if mask[UP] and rng.random() < 0.5:
            action = UP
        before = env.devices
        _, _, terminated, truncated, info = env.step(action)
        done = terminated or truncated
        scaled += action != HOLD
        assert env.levels[0] <= env.devices <= env.pool and env.devices in env.levels
        if env.pending is not None:  # a step in flight: no other one may start
            assert not mask[UP] or action != UP or env.devices == before
            assert not env.action_masks()[UP] and not env.action_masks()[DOWN]
        assert env.servers.conserved()  # every arrived request is waiting, running or done
        held = max(env.devices, env.pending.to_devices if env.pending else 0)
        low_seconds += min(before, held) * env.decision_s
        high_seconds += max(before, held) * env.decision_s
    assert scaled > 0
    metrics = env.metrics()
    # devices are held from the step's start (those being added included) to its end
    assert low_seconds - 1e-6 <= metrics["device_hours"] * 3600 <= high_seconds + 1e-6
    # drained after the episode: every request completes, none is lost
    while env.servers.now < env.horizon_s + 600:
        env.servers.tick(1.0)
    assert np.isfinite(env.servers.completion).all()
    if method == "restart":
        assert metrics["throughput_during_scaling_rps"] == 0.0  # nothing served during a restart


def test_masked_action_holds() -> None:
    env = ElasticServingEnv(workload="burstgpt", horizon_s=60.0, initial_devices=16)
    env.reset(seed=0)
    assert not env.action_masks()[UP]
    env.step(UP)
    assert env.devices == 16 and env.pending is None
    with pytest.raises(ValueError):
        env.step(7)


def test_experiment_end_to_end_and_export(tmp_path: Path) -> None:
    need_trace()
    from infragym import load
    from infragym.runner import run_train

    run_train(compose_config("train", smoke("elastic_moe", "logger=none"), tmp_path / "run"))
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    for policy in ("static_peak", "reactive", "predictive", "learned", "reactive_restart", "reactive_replica"):
        assert 0.0 <= metrics[f"test/{policy}/slo_attainment"] <= 1.0
        assert metrics[f"test/{policy}/device_hours"] > 0
        assert f"test_burstgpt/{policy}/slo_attainment" in metrics
    assert 5 <= metrics["test/scaling/restart_over_elastic"] <= 12
    policy = load(tmp_path / "run" / "export")
    assert policy.act(np.zeros(11, dtype=np.float32)) in (HOLD, UP, DOWN)
    assert policy.act(np.zeros((4, 11), dtype=np.float32)).shape == (4,)
