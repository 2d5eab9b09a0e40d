"""The LLM-serving simulator: invariants (hypothesis), overload, routers, the gymnasium env."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.error import ResetNeeded
from gymnasium.utils.env_checker import check_env as gym_check_env
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from infragym.datasets.llm_traces import RequestTrace, burstgpt_like, poisson_trace
from infragym.envs.serving.env import LLMServingEnv, fcfs_action
from infragym.envs.serving.schedulers import FCFSScheduler
from infragym.envs.serving.simulator import (
    FAILED,
    FINISHED,
    SLO,
    TIMED_OUT,
    Replica,
    ReplicaConfig,
    RequestTable,
    ServingCluster,
)


class _AuditedFCFS(FCFSScheduler):
    """FCFS that checks the KV ledger and the batch counters after every scheduling point and
    that time never goes backwards."""

    def __init__(self, clocks: list[float]) -> None:
        self.clocks = clocks

    def schedule(self, replica: Replica) -> bool:
        before = replica.clock
        progressed = super().schedule(replica)
        replica.audit()
        assert replica.clock >= before, "time went backwards"
        self.clocks.append(replica.clock)
        return progressed


def _audited_fcfs(clocks: list[float]) -> _AuditedFCFS:
    return _AuditedFCFS(clocks)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(1, 150),
    rate=st.floats(0.5, 400.0),
    seed=st.integers(0, 10_000),
    preemption=st.sampled_from(["recompute", "swap"]),
    chunked=st.booleans(),
    memory=st.floats(0.25, 0.6),
    replicas=st.integers(1, 3),
    router=st.sampled_from(["round_robin", "least_outstanding"]),
)
def test_invariants_hold_on_random_workloads(
    n: int, rate: float, seed: int, preemption: str, chunked: bool, memory: float, replicas: int, router: str
) -> None:
    rng = np.random.default_rng(seed)
    trace = burstgpt_like(n, rng, rate=rate, prompt_cap=6000, output_cap=1500, zipf_a=1.05)
    config = ReplicaConfig(
        preemption=preemption, chunked_prefill=chunked, gpu_memory_utilisation=memory, max_batched_tokens=4096
    )
    clocks: list[float] = []
    result = ServingCluster(replica=config, n_replicas=replicas, router=router, slo=SLO(queue_timeout_s=20.0)).run(
        trace, _audited_fcfs(clocks)
    )
    t = result.table
    for replica in result.replicas:
        replica.audit()
    # The run is drained (an hour after the last arrival, timeouts of 20 s): every request
    # finished, failed or timed out; nothing is lost or left running.
    assert np.isin(t.state, (FINISHED, FAILED, TIMED_OUT)).all()
    # A request fails only if it could never run: a fresh prompt beyond the token budget.
    failed = t.state == FAILED
    assert (t.generated[failed] == 0).all()
    assert ((t.prompt[failed] > config.max_batched_tokens) | t.trace_failed[failed]).all()
    finished = t.state == FINISHED
    np.testing.assert_array_equal(t.generated[finished], t.target[finished])
    assert (t.first_token[finished] >= t.arrival[finished]).all()
    assert (t.completion[finished] >= t.first_token[finished]).all()
    # Drained: the KV cache is empty again.
    assert all(r.free_blocks == r.total_blocks and r.swapped_blocks == 0 for r in result.replicas)


def test_overload_never_crashes_and_counts_timeouts() -> None:
    trace = poisson_trace(3000, np.random.default_rng(0), rate=2000.0, prompt_mean=3000, output_mean=500)
    result = ServingCluster(replica=ReplicaConfig(gpu_memory_utilisation=0.4), slo=SLO(queue_timeout_s=5.0)).run(trace)
    m = result.metrics
    assert m["timed_out"] > 0 and m["finished"] > 0
    assert m["finished"] + m["timed_out"] + m["failed"] + m["unfinished"] == 3000
    assert m["goodput_rps"] <= m["throughput_rps"]


def test_preemption_happens_when_memory_runs_out_and_swap_costs_time() -> None:
    trace = poisson_trace(400, np.random.default_rng(1), rate=200.0, prompt_mean=2000, output_mean=800, sigma=0.3)
    tight = {"gpu_memory_utilisation": 0.26, "max_batched_tokens": 16384}
    patient = SLO(queue_timeout_s=1e9)
    recompute = ServingCluster(replica=ReplicaConfig(preemption="recompute", **tight), slo=patient).run(trace)
    swap = ServingCluster(replica=ReplicaConfig(preemption="swap", **tight), slo=patient).run(trace)
    assert recompute.metrics["preemptions"] > 0 and swap.metrics["preemptions"] > 0
    for result in (recompute, swap):
        assert result.metrics["finished"] == 400


def test_latency_grows_with_load() -> None:
    base = burstgpt_like(4000, np.random.default_rng(2), rate=5.0, failure_fraction=0.0)
    results = [ServingCluster(n_replicas=1).run(base.scaled(f)).metrics for f in (1.0, 16.0)]
    assert results[1]["ttft_s_p99"] > results[0]["ttft_s_p99"]
    assert results[1]["kv_utilisation_mean"] > results[0]["kv_utilisation_mean"]
    assert 0 < results[0]["gpu_busy_fraction"] < results[1]["gpu_busy_fraction"] <= 1.0


def test_least_outstanding_balances_a_skewed_stream() -> None:
    # Every other request is huge: round-robin sends all of them to the same replica.
    n = 600
    prompt = np.where(np.arange(n) % 2 == 0, 6000, 50)
    trace = RequestTrace(
        np.arange(n) * 0.02, prompt, np.where(prompt > 100, 400, 5), np.zeros(n, np.int64), np.zeros(n, bool)
    )
    rr = ServingCluster(n_replicas=2, router="round_robin").run(trace)
    lor = ServingCluster(n_replicas=2, router="least_outstanding").run(trace)

    def prompt_tokens_per_replica(result) -> list[int]:
        t = result.table
        return [int(t.prompt[t.replica == i].sum()) for i in range(2)]

    assert max(prompt_tokens_per_replica(rr)) == 300 * 6000  # all the huge ones on replica 0
    assert max(prompt_tokens_per_replica(lor)) < 0.7 * 300 * 6000
    assert lor.metrics["makespan_s"] < rr.metrics["makespan_s"]
    assert lor.metrics["e2e_s_p99"] < rr.metrics["e2e_s_p99"]


def _run_stepwise(cluster: ServingCluster, trace: RequestTrace):
    stepwise = ServingCluster(
        replica=cluster.replica_config,
        n_replicas=cluster.n_replicas,
        router=cluster.router,
        slo=cluster.slo,
        fast_forward=False,
    )
    return stepwise.run(trace)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(1, 80),
    rate=st.floats(1.0, 300.0),
    seed=st.integers(0, 10_000),
    preemption=st.sampled_from(["recompute", "swap"]),
    chunked=st.booleans(),
    memory=st.floats(0.25, 0.5),
    timeout=st.sampled_from([0.5, 2.0, 1e9]),
)
def test_fast_forward_matches_iteration_by_iteration(
    n: int, rate: float, seed: int, preemption: str, chunked: bool, memory: float, timeout: float
) -> None:
    """The closed-form fast-forward gives the same schedule as stepping every iteration,
    with timeouts, preemption and tight memory."""
    trace = burstgpt_like(n, np.random.default_rng(seed), rate=rate, prompt_cap=6000, output_cap=800, zipf_a=1.05)
    config = ReplicaConfig(
        preemption=preemption, chunked_prefill=chunked, gpu_memory_utilisation=memory, max_batched_tokens=4096
    )
    cluster = ServingCluster(replica=config, slo=SLO(queue_timeout_s=timeout))
    fast, slow = cluster.run(trace), _run_stepwise(cluster, trace)
    np.testing.assert_array_equal(fast.table.state, slow.table.state)
    np.testing.assert_allclose(fast.table.completion, slow.table.completion, rtol=1e-9)
    np.testing.assert_allclose(fast.table.first_token, slow.table.first_token, rtol=1e-9)
    np.testing.assert_allclose(fast.table.max_tbt, slow.table.max_tbt, rtol=1e-9)


def test_timeouts_are_not_shielded_by_a_preempted_request() -> None:
    trace = RequestTrace(
        np.array([0.0, 1.0, 2.0]),
        np.array([100, 100, 100]),
        np.array([50, 50, 50]),
        np.zeros(3, np.int64),
        np.zeros(3, bool),
    )
    cluster = ServingCluster(slo=SLO(queue_timeout_s=5.0))
    table = RequestTable(trace)
    replica = Replica(0, cluster.replica_config, table, cluster.slo)
    for rid in (1, 2):
        replica.enqueue(rid, float(rid))
    table.generated[0] = 10  # request 0 was preempted after 10 tokens: at the front, started
    replica.waiting.appendleft(0)
    replica.clock = 6.5  # request 1 waited 5.5 s > 5 s; request 2 waited 4.5 s
    replica.drop_timed_out()
    assert list(replica.waiting) == [0, 2]
    assert table.state[1] == TIMED_OUT


def test_recomputed_request_beyond_the_token_budget_is_not_failed() -> None:
    n = 40
    trace = RequestTrace(
        np.arange(n) * 0.05, np.full(n, 4000), np.full(n, 2000), np.zeros(n, np.int64), np.zeros(n, bool)
    )
    config = ReplicaConfig(preemption="recompute", max_batched_tokens=4096, gpu_memory_utilisation=0.3)
    result = ServingCluster(replica=config, slo=SLO(queue_timeout_s=1e9)).run(trace)
    assert result.metrics["preemptions"] > 0
    assert result.metrics["failed"] == 0 and result.metrics["finished"] == n


def test_slo_attainment_counts_dropped_requests() -> None:
    trace = poisson_trace(3000, np.random.default_rng(0), rate=2000.0, prompt_mean=3000, output_mean=500)
    m = (
        ServingCluster(replica=ReplicaConfig(gpu_memory_utilisation=0.4), slo=SLO(queue_timeout_s=5.0))
        .run(trace)
        .metrics
    )
    assert m["slo_attainment"] == pytest.approx(m["goodput_rps"] * m["makespan_s"] / 3000)
    assert m["slo_attainment"] < 0.1


def test_env_passes_checkers() -> None:
    gym_check_env(gym.make("infragym/LLMServing-v0").unwrapped, skip_render_check=True)
    sb3_check_env(LLMServingEnv(n_requests=50), warn=True)


def test_env_fcfs_reproduces_the_simulator() -> None:
    env = LLMServingEnv(n_requests=300, rate=80.0)
    obs, info = env.reset(seed=4)
    done, total = False, 0.0
    while not done:
        assert env.observation_space.contains(obs)
        obs, reward, done, _, info = env.step(fcfs_action(info["action_mask"]))
        total += reward
    assert env.table is not None
    direct = ServingCluster(replica=env.replica_config, slo=env.slo).run(env.episode_trace)
    np.testing.assert_allclose(env.table.completion, direct.table.completion, rtol=1e-9)
    finished = direct.metrics["finished"]
    assert total == pytest.approx(2 * direct.metrics["slo_attainment"] * finished - (direct.metrics["requests"]))


def test_env_waiting_always_moves_time_and_ends() -> None:
    """A policy that only ever waits (or sends masked actions) still makes progress: the
    batch empty, waiting jumps to the next arrival or timeout, and the episode ends."""
    env = LLMServingEnv(n_requests=30, rate=5.0, queue_timeout_s=3.0)
    _, info = env.reset(seed=0)
    clocks = [info["clock"]]
    for _ in range(500):
        mask = info["action_mask"]
        action = env.window if mask[env.window] else int(np.flatnonzero(mask)[0])
        _, _, done, _, info = env.step(action)
        clocks.append(info["clock"])
        if done:
            break
    assert done
    assert np.all(np.diff(clocks) >= 0) and clocks[-1] > clocks[0]
    assert env.table is not None and (env.table.state == TIMED_OUT).sum() > 0
    with pytest.raises(ResetNeeded, match="terminated"):  # no steps past the end
        env.step(env.window)
    env.reset(seed=0)
    with pytest.raises(ValueError):
        env.step(env.window + 1)
