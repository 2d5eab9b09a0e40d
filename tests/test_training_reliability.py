"""Training-cluster reliability: calibration, failure process, checkpoint tiers, kernel
invariants, CheckFree schedules, AcmeTrace cross-check, the env and the experiment end to end."""

from __future__ import annotations

import json
import math
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infragym.config import default_data_dir
from infragym.envs.training import calibration as cal
from infragym.envs.training.acmetrace import AcmeTraceFormatError, cross_check, load_cluster_summary
from infragym.envs.training.calibration import JobSpec, daly_interval, young_interval
from infragym.envs.training.checkfree import (
    FailureSchedule,
    ScheduleFormatError,
    compare_strategies,
    generate_schedule,
    load_failure_schedule,
    time_to_target,
)
from infragym.envs.training.env import TrainingReliabilityEnv
from infragym.envs.training.failures import SCENARIOS, FailureSpec, NodeFailures
from infragym.envs.training.simulator import LOSSES, REMOTE, Infrastructure, TrainingJobSimulator
from infragym.envs.training.strategies import make_simulator, run_strategy, strategies
from infragym.envs.training.tiers import HOST, PEER, build_tiers, survives
from tests.conftest import compose_config, smoke

# The shared samples (INFRAGYM_DATA, else ../shared/data); tests that need them skip without.
CLUSTERS = Path(default_data_dir()) / "training_clusters"
SMALL = JobSpec(n_gpus=1024)


# ---------------------------------------------------------------- calibration
def test_llama3_job_and_young_daly_match_the_published_figures() -> None:
    job = JobSpec()
    assert job.data_parallel == 128
    assert 5.0 < job.step_s < 7.0  # 16M tokens at 38-43% MFU on 16,384 H100
    assert job.mtbi_s / cal.HOUR == pytest.approx(3.09, abs=0.01)  # PAPERS.md: job MTBI 3.09 h
    # PAPERS.md: C = 30 s with M = 3.09 h gives T* ~ 13.6 min and ~7.3% waste (C/T + T/2M).
    t_star = young_interval(30.0, job.mtbi_s)
    assert t_star / 60 == pytest.approx(13.6, abs=0.1)
    assert 30 / t_star + t_star / (2 * job.mtbi_s) == pytest.approx(0.073, abs=0.001)
    # Daly's correction: shorter by about C for small C/M, and M when C >= 2M.
    assert daly_interval(30.0, job.mtbi_s) == pytest.approx(
        t_star - 30 + t_star * math.sqrt(30 / (2 * job.mtbi_s)) / 3 + t_star * 30 / (18 * job.mtbi_s), rel=1e-9
    )
    assert daly_interval(100.0, 40.0) == 40.0


@pytest.mark.parametrize("scenario", ["llama3", "weibull_hetero"])
def test_node_failure_rate_matches_llama3(scenario: str) -> None:
    """Renewing every failing node, 54 days of 16,384 GPUs see Llama 3's 419 interruptions."""
    job = JobSpec()
    counts = []
    for seed in range(4):
        nodes = NodeFailures(job, SCENARIOS[scenario], np.random.default_rng(seed))
        n = 0
        while (peek := nodes.peek())[0] < cal.LLAMA3_DAYS * cal.DAY:
            nodes.renew(peek[1], peek[0])
            n += 1
        counts.append(n)
    assert np.mean(counts) == pytest.approx(419, rel=0.12)


def test_bad_nodes_fail_more_often() -> None:
    spec = FailureSpec(bad_node_fraction=0.15)
    nodes = NodeFailures(JobSpec(), spec, np.random.default_rng(0))
    assert nodes.bad_rate == pytest.approx(cal.BAD_NODE_MULTIPLIER * nodes.good_rate)
    mean = (1 - 0.15) * nodes.good_rate + 0.15 * nodes.bad_rate
    assert mean == pytest.approx(JobSpec().failure_rate_s / JobSpec().n_nodes)


# ---------------------------------------------------------------- tiers
def test_tier_stalls_and_erasure_coding_survival() -> None:
    tiers = {t.name: t for t in build_tiers(JobSpec())}
    # sync: 6.5 TB over 2 TB/s; DataStates' lazy copy hides behind forward/backward.
    assert tiers["sync"].stall_s == pytest.approx(16 * 405e9 / 2e12 + 0.05)
    assert tiers["sync"].stall_s > 10 * tiers["two_stage"].stall_s
    assert tiers["lazy"].stall_s <= tiers["two_stage"].stall_s
    m = cal.EC_PARITY_SHARDS
    assert survives(PEER, loses_nodes=m, max_group_losses=m)
    assert not survives(PEER, loses_nodes=m + 1, max_group_losses=m + 1)
    assert not survives(HOST, loses_nodes=1, max_group_losses=1)
    assert survives(HOST, loses_nodes=0, max_group_losses=0)
    assert survives(REMOTE, loses_nodes=5, max_group_losses=5)


# ---------------------------------------------------------------- kernel invariants
def _run_checked(sim: TrainingJobSimulator, rule) -> None:  # type: ignore[no-untyped-def]
    last_t = 0.0
    while (decision := sim.advance()) is not None:
        assert sim.t >= last_t  # time never goes backwards
        last_t = sim.t
        assert sim.progress_s >= 0
        interval, tier, recovery = rule(sim, decision)
        sim.decide(interval_s=interval, tier=tier, recovery=recovery)
    assert sim.t == pytest.approx(sim.horizon_s)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    name=st.sampled_from(["sync_watchdog", "megascale", "c4", "datastates", "inmemory_ec", "checkfree", "oracle"]),
    scenario=st.sampled_from(["llama3", "weibull_hetero"]),
    rate=st.sampled_from([1.0, 20.0]),
    multi=st.sampled_from([0.0, 0.5]),
)
def test_invariants(seed: int, name: str, scenario: str, rate: float, multi: float) -> None:
    """Time is monotone; every second is productive or lost to one category (nothing counted
    twice); a rollback restores a copy that was usable then, never older than the newest
    remote copy (lost work <= work since the last surviving checkpoint)."""
    base = SCENARIOS[scenario]
    spec = FailureSpec(
        distribution=base.distribution,
        bad_node_fraction=base.bad_node_fraction,
        rate_scale=rate,
        multi_node_fraction=multi,
    )
    strategy = strategies(SMALL)[name]
    sim = make_simulator(SMALL, spec, strategy, horizon_s=4 * cal.DAY, seed=seed)
    _run_checked(sim, strategy.rule)
    assert sim.t == pytest.approx(sim.progress_s + sum(sim.lost.values()), rel=1e-9)
    assert all(v >= -1e-9 for v in sim.lost.values())
    copies = sim.log.copies
    for t, before, restored in sim.log.rollbacks:
        assert 0 <= restored <= before
        rebuilt = max((r for r in sim.log.rebuilds if r <= t), default=0.0)
        remote = [p for (ready, p, level) in copies if level == REMOTE and rebuilt <= ready <= t]
        assert restored >= max(remote, default=0.0) - 1e-6
        usable = {p for (ready, p, _) in copies if ready <= t} | {0.0}
        assert any(abs(restored - p) < 1e-6 for p in usable)
    assert sim.log.rollbacks or rate == 1.0 or name in ("checkfree", "oracle")


def test_results_and_mechanisms_at_llama3_scale() -> None:
    """One 54-day run per strategy: ETTR near Llama 3's ~90% for the synchronous baseline, and
    each paper's mechanism moves the loss it targets (same seed: common random numbers)."""
    job = JobSpec()
    named = strategies(job)
    r = {
        n: run_strategy(job, SCENARIOS["llama3"], named[n], horizon_s=54 * cal.DAY, seed=11)
        for n in named
        if n in ("sync_watchdog", "young_daly", "c4", "megascale", "oracle", "sync_watchdog_slow_init")
    }
    assert 0.85 < r["sync_watchdog"]["ettr"] < 0.93
    assert r["sync_watchdog"]["failures"] == pytest.approx(419, rel=0.2)
    assert r["c4"]["lost_hours_detection"] < 0.1 * r["young_daly"]["lost_hours_detection"]
    assert r["sync_watchdog_slow_init"]["lost_hours_restart"] > 10 * r["sync_watchdog"]["lost_hours_restart"]
    assert r["megascale"]["lost_hours_straggler"] < r["sync_watchdog"]["lost_hours_straggler"]
    assert r["oracle"]["lost_hours_rollback"] < 0.05 * r["young_daly"]["lost_hours_rollback"]
    assert r["oracle"]["ettr"] >= max(v["ettr"] for v in r.values())
    assert r["sync_watchdog"]["goodput"] == pytest.approx(r["sync_watchdog"]["ettr"] * 16e6 / job.step_s, rel=1e-6)


def test_interval_and_tier_decisions_reach_the_kernel() -> None:
    job = SMALL
    infra = Infrastructure()
    sim = TrainingJobSimulator(job, FailureSpec(rate_scale=10), infra, horizon_s=cal.DAY, seed=0, interval_s=600)
    with pytest.raises(ValueError, match="interval_s"):
        sim.decide(interval_s=0, tier=0)
    with pytest.raises(ValueError, match="tier"):
        sim.decide(interval_s=60, tier=9)
    decision = sim.advance()
    while decision is not None and decision.failure is None:
        sim.decide(interval_s=600, tier=0)
        decision = sim.advance()
    assert decision is not None
    with pytest.raises(RuntimeError, match="decide"):
        sim.advance()


# ---------------------------------------------------------------- CheckFree
def test_checkfree_schedules_load(tmp_path: Path) -> None:
    path = CLUSTERS / "checkfree_failure_schedules" / "10.json"
    if not path.is_file():
        pytest.skip(f"shared data absent: {path}")
    schedule = load_failure_schedule(path)
    assert schedule.n_stages == 7 and schedule.end == 501
    assert [list(s) for s in schedule.stage_failures] == [[], [], [], [], [395], [], []]
    s33 = load_failure_schedule(CLUSTERS / "checkfree_failure_schedules" / "33.json")
    assert sum(len(s) for s in s33.stage_failures) > sum(len(s) for s in schedule.stage_failures)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ('{"0": [5, 3, 501], "1": [501], "2": [501]}', r"node 0: iterations must be strictly increasing"),
        ('{"0": [501], "2": [501], "1": [501], "4": [501]}', r"missing \[3\]"),
        ('{"0": [501], "1": [501]}', r"not a multiple of 3"),
        ('{"0": [501], "1": [400], "2": [501]}', r"same sentinel"),
        ('{"0": [1.5, 501], "1": [501], "2": [501]}', r"node 0, position 0"),
        ('{"a": [501]}', r"key 'a'"),
        ("[1, 2]", r"non-empty JSON object"),
        ("{not json", r"not a readable JSON"),
    ],
)
def test_checkfree_schedule_errors_name_file_and_field(tmp_path: Path, content: str, match: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ScheduleFormatError, match=match) as err:
        load_failure_schedule(path)
    assert str(path) in str(err.value)
    assert isinstance(err.value, ValueError)


def test_checkfree_time_to_target() -> None:
    none = FailureSchedule(tuple(np.empty(0, dtype=np.int64) for _ in range(7)), 500, "none")
    assert time_to_target(none, "checkfree_plus") == pytest.approx(500 * (1 + cal.CHECKFREE_PLUS_OVERHEAD))
    assert time_to_target(none, "redundant") == pytest.approx(500 * (1 + cal.REDUNDANT_COMPUTE_OVERHEAD))
    # One middle-stage failure late in the run: CheckFree pays a few iterations, checkpointing
    # rolls back to its last checkpoint and restarts.
    middle = FailureSchedule(
        tuple(np.array([399]) if s == 3 else np.empty(0, dtype=np.int64) for s in range(7)), 500, "m"
    )
    plain = time_to_target(none, "checkfree", checkpoint_every=50)
    assert plain == pytest.approx(500)
    assert time_to_target(middle, "checkfree", checkpoint_every=50) == pytest.approx(
        plain + cal.CHECKFREE_PENALTY_ITERATIONS
    )
    # checkpoints at 350: the 49 iterations since are redone
    assert time_to_target(middle, "checkpointing", checkpoint_every=50) == pytest.approx(500 + 49)
    result = compare_strategies([middle, none])
    assert set(result) == {"checkpointing", "redundant", "checkfree", "checkfree_plus"}
    # The paper's generator: never stage 0, never at iteration 1 mod 100, about p per iteration.
    generated = generate_schedule(7, 0.01, 500, np.random.default_rng(0), horizon_factor=20)
    assert generated.stage_failures[0].size == 0
    every = np.concatenate(generated.stage_failures)
    assert not np.any(every % 100 == 1)
    assert every.size == pytest.approx(0.01 * 0.99 * 10_000, rel=0.25)


# ---------------------------------------------------------------- AcmeTrace
def test_acmetrace_cross_check() -> None:
    path = CLUSTERS / "acmetrace_cluster_summary.csv"
    if not path.is_file():
        pytest.skip(f"shared data absent: {path}")
    summary = load_cluster_summary(path)
    assert {"Seren", "Kalos", "PAI"} <= set(summary)
    assert math.isnan(summary["PAI"]["fail_rate_gpu"])
    checks = cross_check(summary)
    assert "PAI" not in checks
    for name in ("Seren", "Kalos"):
        c = checks[name]
        assert c["predicted_share_avg_jobs_hit"] <= c["observed_fail_rate_by_count"]
        assert c["expected_failures_largest_job"] > 1  # a 1,024-GPU week-long job does meet failures


def test_acmetrace_bad_cell(tmp_path: Path) -> None:
    path = tmp_path / "summary.csv"
    path.write_text(
        "id,avg_run_time_gpu,avg_gpu_num,max_run_time_gpu,max_gpu,fail_rate_gpu,fail_rate_gpu_time\nX,1,2,3,4,oops,0.1\n"
    )
    with pytest.raises(AcmeTraceFormatError, match=r"line 2, field 'fail_rate_gpu'"):
        load_cluster_summary(path)
    path.write_text("id,avg_gpu_num\nX,1\n")
    with pytest.raises(AcmeTraceFormatError, match="missing column"):
        load_cluster_summary(path)


# ---------------------------------------------------------------- env
def test_env_passes_checkers_and_return_is_productive_time() -> None:
    from gymnasium.utils.env_checker import check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    env = gym.make("infragym/TrainingReliability-v0", n_gpus=1024, horizon_days=2.0)
    check_env(env.unwrapped, skip_render_check=True)
    sb3_check_env(TrainingReliabilityEnv(n_gpus=1024, horizon_days=2.0), warn=True)
    e = TrainingReliabilityEnv(n_gpus=1024, horizon_days=3.0, scenario="weibull_hetero")
    obs, info = e.reset(seed=3)
    assert e.observation_space.contains(obs) and info["action_mask"].shape == (16,)
    total, done, rng = 0.0, False, np.random.default_rng(0)
    while not done:
        obs, reward, done, truncated, info = e.step(e.action_space.sample())
        assert not truncated and e.observation_space.contains(obs)
        total += reward
        mask = e.action_masks()
        assert mask[:12].all() and mask[12]  # in place always allowed
    assert total * e.decision_period_s == pytest.approx(e.sim.progress_s)  # no progress counted twice
    assert info["ettr"] == pytest.approx(e.sim.progress_s / e.horizon_s)
    with pytest.raises(ValueError):
        e.step([99, 0, 0])
    del rng


def test_decision_cost_reward_adds_back_only_decision_free_losses() -> None:
    from infragym.envs.training.env import DECISION_FREE_LOSSES, DecisionCostReward

    wrapped = DecisionCostReward(TrainingReliabilityEnv(n_gpus=1024, horizon_days=3.0))
    wrapped.reset(seed=5)
    total, done = 0.0, False
    while not done:
        _, reward, done, _, _ = wrapped.step(np.array([2, 0, 1]))
        total += reward
    sim = wrapped.unwrapped.sim
    free = sum(sim.lost[k] for k in DECISION_FREE_LOSSES)
    assert total * sim.decision_period_s == pytest.approx(sim.progress_s + free)
    assert free > 0


# ---------------------------------------------------------------- end to end
def test_experiment_end_to_end(tmp_path: Path) -> None:
    from infragym import load
    from infragym.runner import run_evaluate, run_train

    run_train(compose_config("train", smoke("training_reliability", "logger=none"), tmp_path / "run"))
    tmp_path = tmp_path / "run"
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    for scenario in ("llama3", "weibull_hetero"):
        for policy in (
            "sync_watchdog",
            "young_daly",
            "megascale",
            "c4",
            "datastates",
            "inmemory_ec",
            "checkfree",
            "oracle",
            "learned",
        ):
            for name in ("ettr", "goodput", *(f"lost_hours_{k}" for k in LOSSES)):
                assert f"test/{scenario}/{policy}/{name}" in metrics
            assert 0 < metrics[f"test/{scenario}/{policy}/ettr"] <= 1
    for strategy in ("checkpointing", "redundant", "checkfree", "checkfree_plus"):
        assert metrics[f"test/checkfree_10pct/{strategy}/time_to_target_iterations"] >= 500
    predictor = load(tmp_path / "export")
    obs = np.zeros(20, dtype=np.float32)
    action = predictor.act(obs)
    assert action.shape == (3,) and action.dtype == np.int64
    batch = predictor.act(np.zeros((5, 20), dtype=np.float32))
    assert batch.shape == (5, 3)
    mask = np.ones(16, dtype=bool)
    mask[13:] = False  # only "in place" allowed
    assert predictor.act(obs, mask)[2] == 0
    with pytest.raises(ValueError, match="obs must have shape"):
        predictor.act(np.zeros(3))
    # ``evaluate`` rebuilds the experiment from the export and reproduces the held-out numbers.
    reproduced = run_evaluate(
        compose_config("evaluate", [f"checkpoint={tmp_path / 'export'}", "logger=none"], tmp_path.parent / "eval")
    )
    for key in ("test/weibull_hetero/learned/ettr", "test/llama3/c4/ettr"):
        assert reproduced[key] == pytest.approx(metrics[key], rel=1e-9)
