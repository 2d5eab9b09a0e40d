"""experiment=serving_schedulers end to end (smoke preset), the admission env, the vector-env
adapter and the ONNX export checked against the PyTorch policy."""

from __future__ import annotations

import json
import os
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

import infragym
from infragym.envs.serving_schedulers.env import LLMAdmissionEnv
from infragym.models.serving_schedulers.admission_features import N_ACTIONS, OBS_SIZE, WINDOW
from infragym.models.serving_schedulers.export import AdmissionPolicy, export_onnx
from infragym.models.serving_schedulers.vector_env import GymnasiumVecEnv
from infragym.runner import run_train

from .conftest import SHARED_DATA, compose_config, smoke

TRACES = Path(os.environ.get("INFRAGYM_DATA", SHARED_DATA)) / "llm_traces"
SCHEDULERS = ("fcfs", "conservative", "past_future", "edf", "sjf", "jitserve", "learned")


def test_admission_env_passes_the_checkers_and_masks_what_does_not_fit() -> None:
    from gymnasium.utils.env_checker import check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    env = gym.make("infragym/LLMAdmission-v0", n_requests=30, rate_range=(20.0, 40.0)).unwrapped
    check_env(env)
    sb3_check_env(env)
    obs, info = env.reset(seed=3)
    assert obs.shape == (OBS_SIZE,) and obs.dtype == np.float32
    steps, total, done = 0, 0.0, False
    while not done:
        mask = info["action_mask"]
        assert mask[WINDOW] and np.array_equal(mask, env.action_masks())
        replica = env.run.replica
        for slot, rid in enumerate(env.features.candidates()):
            assert mask[slot] == replica.admissible(rid)
        # admit the last allowed request (not FCFS), so the queue is reordered
        action = int(np.flatnonzero(mask)[-2]) if mask[:WINDOW].any() and steps % 2 else WINDOW
        obs, reward, done, _, info = env.step(action)
        assert env.observation_space.contains(obs)
        total += reward
        steps += 1
    # every request ends met (+1) or missed (-1): the return counts both
    assert abs(total) <= 30 and total == info["score"]


def test_vector_env_adapter_runs_maskable_ppo_rollouts() -> None:
    from sb3_contrib import MaskablePPO

    def make() -> LLMAdmissionEnv:
        return LLMAdmissionEnv(n_requests=20, rate_range=(10.0, 20.0))

    vec = GymnasiumVecEnv([make, make], asynchronous=True)
    vec.seed(0)
    model = MaskablePPO("MlpPolicy", vec, n_steps=64, batch_size=64, n_epochs=1, seed=0, device="cpu")
    model.learn(total_timesteps=128)
    masks = np.stack(vec.env_method("action_masks"))
    assert masks.shape == (2, N_ACTIONS) and masks[:, WINDOW].all()
    vec.close()
    # the export reproduces the PyTorch policy's logits and respects masks
    policy = AdmissionPolicy(export_onnx(model.policy))
    obs = np.random.default_rng(0).uniform(-1, 1, (5, OBS_SIZE)).astype(np.float32)
    with torch.no_grad():
        dist = model.policy.get_distribution(torch.as_tensor(obs))
        expected = dist.distribution.logits.numpy()
    got = policy.logits(obs)
    np.testing.assert_allclose(
        got - got.max(axis=1, keepdims=True), expected - expected.max(axis=1, keepdims=True), atol=1e-4
    )
    mask = np.zeros((5, N_ACTIONS), bool)
    mask[:, 3] = True
    assert np.all(policy.act(obs, mask) == 3)
    with pytest.raises(ValueError, match="obs must have shape"):
        policy.act(np.zeros(7, np.float32))


@pytest.mark.skipif(not TRACES.is_dir(), reason="shared llm_traces samples absent (set INFRAGYM_DATA)")
def test_serving_schedulers_experiment(tmp_path: Path) -> None:
    cfg = compose_config("train", smoke("serving_schedulers", "logger=none"), tmp_path)
    run_train(cfg)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    cells = {
        "azure_conv": 9,
        "azure_code": 3,
        "pf_long_output": 0.3,
        "pf_long_both": 0.15,
        "pf_long_prompt": 0.4,
        "arxiv": 1,
    }
    for workload, load in cells.items():
        for scheduler in SCHEDULERS:
            assert metrics[f"test/{workload}@{load:g}/{scheduler}/goodput_rps"] >= 0.0
            assert 0.0 <= metrics[f"test/{workload}@{load:g}/{scheduler}/slo_attainment"] <= 1.0
    for scheduler in (*SCHEDULERS, "jitserve_static_length", "jitserve_no_grouping", "jitserve_no_batch_composition"):
        assert metrics[f"test/{scheduler}/goodput_rps"] == metrics[f"test/azure_conv@9/{scheduler}/goodput_rps"]
    # conservative admission never evicts; at this load JITServe beats FCFS on the Azure trace
    assert metrics["test/pf_long_both@0.15/conservative/evictions"] == 0
    assert metrics["test/jitserve/goodput_rps"] > metrics["test/fcfs/goodput_rps"]
    assert (tmp_path / "plots" / "goodput_vs_load.png").stat().st_size > 1000
    assert (tmp_path / "checkpoints" / "best" / "best_model.zip").is_file()
    policy = infragym.load(tmp_path / "export")
    obs = np.zeros(OBS_SIZE, np.float32)
    mask = np.zeros(N_ACTIONS, bool)
    mask[[1, WINDOW]] = True
    assert policy.act(obs, mask) in (1, WINDOW)


def test_teacher_rule_and_behaviour_cloning() -> None:
    from sb3_contrib import MaskablePPO

    from infragym.models.serving_schedulers import warm_start
    from infragym.models.serving_schedulers.admission_features import GLOBAL_NAMES, SLOT_NAMES

    obs = np.zeros(OBS_SIZE, np.float32)
    mask = np.zeros(N_ACTIONS, bool)
    mask[[1, 2, WINDOW]] = True
    within = len(GLOBAL_NAMES) + SLOT_NAMES.index("iteration_within_stream_slack")
    assert warm_start.batch_composition_rule(obs, mask) == WINDOW  # nothing keeps the streams on pace
    obs[within + 2 * len(SLOT_NAMES)] = 1.0
    obs[within + 0 * len(SLOT_NAMES)] = 1.0  # slot 0 would, but it does not fit
    assert warm_start.batch_composition_rule(obs, mask) == 2

    def make() -> LLMAdmissionEnv:
        return LLMAdmissionEnv(n_requests=40, rate_range=(15.0, 25.0))

    data = warm_start.collect(make, 2, 0, warm_start.batch_composition_rule)
    assert len(data[2]) > 20 and set(np.unique(data[2])) > {WINDOW}
    model = MaskablePPO("MlpPolicy", make(), seed=0, device="cpu")
    accuracy = warm_start.clone(model.policy, *data, epochs=300)
    assert accuracy > 0.9  # the rule is a function of the observation: the actor can fit it
