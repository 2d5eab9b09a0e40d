"""Agent programs on the serving simulator: KV pins, prefix reuse, program FCFS, the TTL env."""

from __future__ import annotations

import math
from collections import deque

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infragym.datasets.agent_programs import AgentPrograms, swe_bench_like
from infragym.envs.serving.prefix_cache import PrefixCacheKVManager
from infragym.envs.serving.programs import ProgramSimulation
from infragym.envs.serving.simulator import FAILED, FINISHED, ReplicaConfig
from infragym.envs.serving.ttl_env import ACTION_LEVELS, KVCacheTTLEnv, action_ttl

# A replica with little KV memory (about 1,000 blocks of 16 tokens) so that pins, evictions
# and preemptions all happen in small workloads.
TIGHT = ReplicaConfig(gpu="h100", model="llama3.1_8b", gpu_memory_utilisation=0.25, chunked_prefill=True)
ROOMY = ReplicaConfig(gpu="h100", model="llama3.1_8b", chunked_prefill=True)
# About 160 blocks (2,600 tokens): pins crowd out decodes, so they are released first.
TINY = ReplicaConfig(gpu="h100", model="llama3.1_8b", gpu_memory_utilisation=0.23, chunked_prefill=True)


def _programs(turns: list[int], tokens: list[int], durations: list[float], gaps: list[float]) -> AgentPrograms:
    n = sum(turns)
    offsets = np.concatenate([[0], np.cumsum(turns)]).astype(np.int64)
    tool_duration = np.array([durations[i % len(durations)] for i in range(n)])
    last = offsets[1:] - 1
    tool_duration[last] = 0.0
    tool = np.array(["bash"] * n, dtype=object)
    tool[last] = ""
    return AgentPrograms(
        arrival_s=np.cumsum([gaps[i % len(gaps)] for i in range(len(turns))]),
        offsets=offsets,
        new_tokens=np.array([tokens[i % len(tokens)] for i in range(n)], dtype=np.int64),
        output_tokens=np.array([1 + tokens[(i + 1) % len(tokens)] // 4 for i in range(n)], dtype=np.int64),
        tool=tool,
        tool_args=np.array(["ls"] * n, dtype=object),
        tool_duration_s=tool_duration,
    )


def _check_queue_order(sim: ProgramSimulation) -> None:
    if sim.scheduler != "program_fcfs":
        return
    for r in sim.replicas:
        fresh = [rid for rid in r.waiting if sim.table.generated[rid] == 0]
        keys = sim.priority[fresh]
        assert np.all(np.diff(keys) >= 0), "program FCFS: queued turns out of program order"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    turns=st.lists(st.integers(1, 6), min_size=1, max_size=6),
    tokens=st.lists(st.integers(1, 1500), min_size=1, max_size=8),
    durations=st.lists(st.floats(0.0, 5.0), min_size=1, max_size=5),
    gaps=st.lists(st.floats(0.0, 3.0), min_size=1, max_size=4),
    ttls=st.lists(st.sampled_from([0.0, 0.01, 0.5, 3.0, 100.0]), min_size=1, max_size=5),
    scheduler=st.sampled_from(["program_fcfs", "request_fcfs"]),
    n_replicas=st.integers(1, 2),
)
def test_program_simulation_invariants(turns, tokens, durations, gaps, ttls, scheduler, n_replicas) -> None:
    progs = _programs(turns, tokens, durations, gaps)
    sim = ProgramSimulation(progs, replica=TINY, n_replicas=n_replicas, scheduler=scheduler)
    k = 0
    while (d := sim.next_decision()) is not None:
        for r in sim.replicas:
            r.audit()
        _check_queue_order(sim)
        assert d.context_tokens == sim.table.prompt[d.rid] + sim.table.target[d.rid]
        sim.decide(ttls[k % len(ttls)])
        k += 1
    for r in sim.replicas:
        r.audit()
        assert not r.has_work and not r.kv.pins
    t = sim.table
    ok = t.state == FINISHED
    assert k == int(np.sum(ok & ~progs.is_last))  # one decision per finished tool-calling turn
    # A turn fails only if its prompt and output exceed the whole KV cache; its program is
    # aborted (no later turn arrives); every other program finishes with every token.
    capacity = sim.replicas[0].total_blocks * TINY.block_size
    failed = t.state == FAILED
    assert np.all(t.prompt[failed] + t.target[failed] + 1 > capacity)
    program_failed = np.zeros(len(progs), dtype=bool)
    program_failed[sim.program_of[failed]] = True
    assert np.array_equal(program_failed, sim.program_failed)
    assert np.array_equal(np.isfinite(sim.program_finish), ~program_failed)
    assert np.all(ok | failed | program_failed[sim.program_of])
    assert np.array_equal(t.generated[ok], t.target[ok])
    assert np.all(t.first_token[ok] >= t.arrival[ok]) and np.all(t.completion[ok] >= t.first_token[ok])
    # The next turn arrives exactly a tool call after the previous one finished.
    nxt = np.flatnonzero(~progs.is_last & ok)
    assert np.allclose(t.arrival[nxt + 1], t.completion[nxt] + progs.tool_duration_s[nxt])
    # Reuse never exceeds the previous context, and a surviving prefix is whole blocks.
    history = t.prompt - progs.new_tokens
    assert np.all(sim.cached <= np.where(progs.turn_index > 0, history, 0))
    done = np.isfinite(sim.program_finish)
    jct = (sim.program_finish - sim.program_start)[done]
    tools = np.add.reduceat(progs.tool_duration_s, progs.offsets[:-1])[done]
    assert np.all(jct >= tools - 1e-9)


def test_pinned_caches_are_reused_in_full() -> None:
    progs = swe_bench_like(8, np.random.default_rng(0), rate=0.02)
    sim = ProgramSimulation(progs, replica=ROOMY)
    metrics = sim.run(lambda d, s: 1e4)  # pin far beyond any tool call
    later = progs.turn_index > 0
    assert np.array_equal(sim.cached[later], (sim.table.prompt - progs.new_tokens)[later])
    assert metrics["context_reuse"] == 1.0 and metrics["pinned_memory_fraction"] > 0


def test_released_caches_survive_in_the_free_pool_when_memory_is_ample() -> None:
    progs = swe_bench_like(8, np.random.default_rng(0), rate=0.02)
    sim = ProgramSimulation(progs, replica=ROOMY)
    sim.run(lambda d, s: 0.0)  # vLLM: evict at once; automatic prefix caching still hits
    later = progs.turn_index > 0
    history = (sim.table.prompt - progs.new_tokens)[later]
    assert np.array_equal(sim.cached[later], history // 16 * 16)


def test_eviction_under_memory_pressure_costs_reuse_and_pinning_gets_it_back() -> None:
    progs = swe_bench_like(60, np.random.default_rng(2), rate=0.3)
    evict = ProgramSimulation(progs, replica=TIGHT).run(lambda d, s: 0.0)
    oracle = ProgramSimulation(progs, replica=TIGHT).run(
        lambda d, s: float(s.programs.tool_duration_s[d.rid]) + 1e-3  # exactly long enough
    )
    assert evict["context_reuse"] < 0.9
    assert oracle["context_reuse"] > evict["context_reuse"]
    assert oracle["prefill_tokens"] < evict["prefill_tokens"]


def test_free_pool_fifo_matches_a_reference_queue() -> None:
    """The counter-based FIFO (head skipping ranges removed by prefix hits) against a list."""
    sim = ProgramSimulation(_programs([1], [10], [0.0], [1.0]), replica=TIGHT)
    kv = sim.replicas[0].kv
    assert isinstance(kv, PrefixCacheKVManager)
    total = kv.total_blocks
    queue: deque[tuple[int, int]] = deque((-1, i) for i in range(total))
    rng = np.random.default_rng(0)
    live: dict[int, int] = {}
    next_program = 0
    for _ in range(3000):
        used = total - kv.free_blocks
        op = rng.integers(3)
        if op == 0 and kv.free_blocks:
            k = int(rng.integers(1, min(kv.free_blocks, 200) + 1))
            kv.grow(k)
            for _ in range(k):
                popped = queue.popleft()
                if popped[0] in live:
                    live[popped[0]] -= 1
        elif op == 1 and used:
            b = int(rng.integers(1, min(used, 60) + 1))
            p, next_program = next_program, next_program + 1
            kv.release_to_pool(p, b, b * kv.block_size)
            queue.extend((p, j) for j in reversed(range(b)))  # tail blocks enter first
            live[p] = b
        elif op == 2 and live:
            p = int(rng.choice(list(live)))
            survive = kv.surviving_prefix_blocks(p)
            assert survive == live.pop(p)
            # admit: the surviving blocks are taken out of the middle of the pool
            kv.take_prefix(p, survive)
            kv.grow(survive)
            for item in [q for q in queue if q[0] == p]:
                queue.remove(item)
        for p, count in live.items():
            assert kv.surviving_prefix_blocks(p) == count
        assert len(queue) == kv.free_blocks


def test_program_fcfs_puts_earlier_programs_first() -> None:
    progs = swe_bench_like(40, np.random.default_rng(5), rate=0.5)
    request = ProgramSimulation(progs, replica=TIGHT, scheduler="request_fcfs").run(lambda d, s: 0.0)
    program = ProgramSimulation(progs, replica=TIGHT, scheduler="program_fcfs").run(lambda d, s: 0.0)
    # Same work, but programs under way finish before new ones start: shorter mean JCT.
    assert program["mean_jct_s"] < request["mean_jct_s"]
    with pytest.raises(ValueError, match="scheduler"):
        ProgramSimulation(progs, scheduler="lifo")


def test_decide_needs_a_pending_decision() -> None:
    sim = ProgramSimulation(_programs([2], [10], [0.1], [1.0]), replica=ROOMY)
    with pytest.raises(RuntimeError, match="next_decision"):
        sim.decide(1.0)
    sim.next_decision()
    with pytest.raises(ValueError, match="finite"):
        sim.decide(float("nan"))


def test_ttl_env_passes_the_checker_and_reproduces_the_simulator() -> None:
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    import infragym.envs  # noqa: F401

    env = gym.make("infragym/KVCacheTTL-v0", n_programs=20)
    check_env(env.unwrapped)
    sb3_check_env(env.unwrapped)
    assert env.unwrapped.action_masks().all()
    progs = swe_bench_like(30, np.random.default_rng(9), rate=0.3)
    env = KVCacheTTLEnv(programs=progs, rate=0.3, gpu="h100", model="llama3.1_8b", tp=1)
    obs, info = env.reset(seed=0)
    steps, resolved = 0, 0
    terminated = False
    while not terminated:
        assert env.observation_space.contains(obs)
        obs, reward, terminated, _, info = env.step(0)
        resolved += len(info["resolved"])
        assert reward == pytest.approx(sum(r for _, r in info["resolved"]))
        steps += 1
    assert steps == resolved == progs.n_turns - len(progs)
    direct = ProgramSimulation(progs, replica=env.replica_config).run(lambda d, s: 0.0)
    assert info["metrics"] == pytest.approx(direct)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(0)


def test_action_ttl_reads_the_predicted_quantiles() -> None:
    levels = (0.5, 0.9, 0.99)
    q = np.array([1.0, 4.0, 10.0])
    assert action_ttl(0, q, levels) == 0.0
    assert action_ttl(ACTION_LEVELS.index(0.9), q, levels) == 4.0
    assert action_ttl(ACTION_LEVELS.index(0.75), q, levels) == pytest.approx(1.0 + 3.0 * 0.25 / 0.4)
    assert math.isfinite(action_ttl(len(ACTION_LEVELS) - 1, q, levels))
