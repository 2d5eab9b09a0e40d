"""Every scheduler on the replay loop: KV ledger, monotone clock, every request terminal, and
each policy's defining property (conservative never evicts; Past-Future evicts less than FCFS)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infragym.datasets.llm_traces import RequestTrace
from infragym.envs.serving.policies import ReplicaScheduler
from infragym.envs.serving.simulator import FAILED, FINISHED, PENDING, TIMED_OUT, ReplicaConfig
from infragym.models.serving_schedulers.length_predictor import QuantileLengthPredictor, prompt_features
from infragym.models.serving_schedulers.replay import replay
from infragym.models.serving_schedulers.task import make_scheduler
from infragym.models.serving_schedulers.workloads import (
    COMPOUND,
    mixed_slo_workload,
    past_future_workload,
    uniform_length_trace,
)

# A small KV pool (about 20k tokens) so that a few long requests already contend for memory.
SMALL = ReplicaConfig(gpu="h100", model="llama3.1_8b", gpu_memory_utilisation=0.25, max_batched_tokens=16384)


def fitted_predictor() -> QuantileLengthPredictor:
    rng = np.random.default_rng(0)
    trace = uniform_length_trace(400, rng, rate=1.0, prompt_range=(32, 2048), output_range=(16, 1024))
    return QuantileLengthPredictor(n_estimators=20).fit(
        prompt_features(trace.prompt_tokens, np.zeros(len(trace))), trace.output_tokens
    )


PREDICTOR = fitted_predictor()


SCHEDULERS = ("fcfs", "conservative", "past_future", "edf", "sjf", "jitserve")


def make(name: str) -> ReplicaScheduler:
    return make_scheduler(name, PREDICTOR, None)


class Audited(ReplicaScheduler):
    """Wraps a kernel scheduler: checks the replica's ledger and clock at every scheduling point
    and that every finish it is told of is a finished request."""

    name = "audited"

    def __init__(self, inner: ReplicaScheduler) -> None:
        self.inner = inner
        self.clocks: list[tuple[int, float]] = []

    def monotone(self) -> bool:
        """Each replica's clock never goes backwards."""
        clocks = np.array(self.clocks, dtype=np.float64).reshape(-1, 2)
        return all(np.all(np.diff(clocks[clocks[:, 0] == i, 1]) >= 0) for i in np.unique(clocks[:, 0]))

    def bind(self, replica):
        bound = Audited(self.inner)
        bound.clocks = self.clocks
        bound.bound = self.inner.bind(replica)
        return bound

    def enqueue(self, replica, rid: int) -> None:
        self.bound.enqueue(replica, rid)

    def would_admit(self, replica) -> bool:
        return self.bound.would_admit(replica)

    def decode_horizon(self, replica):
        return self.bound.decode_horizon(replica)

    def schedule(self, replica) -> bool:
        replica.audit()
        self.clocks.append((replica.index, replica.clock))
        progress = self.bound.schedule(replica)
        replica.audit()
        return progress

    def on_finish(self, replica, rid: int) -> None:
        assert replica.table.state[rid] == FINISHED
        self.bound.on_finish(replica, rid)


@pytest.mark.parametrize("name", sorted(SCHEDULERS))
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), rate=st.sampled_from([0.5, 2.0, 8.0]))
def test_invariants_hold_for_every_scheduler(name: str, seed: int, rate: float) -> None:
    rng = np.random.default_rng(seed)
    trace = uniform_length_trace(40, rng, rate=rate, prompt_range=(16, 3000), output_range=(1, 1500))
    workload = mixed_slo_workload("t", trace, rng, mix=(0.4, 0.3, 0.3), max_new_tokens=1500)
    audited = Audited(make(name))
    result = replay(workload, audited, replica=SMALL, queue_timeout_s=30.0, drain_s=3600.0)
    assert audited.monotone(), "time went backwards"
    state = result.table.state
    terminal = np.isin(state, (FINISHED, FAILED, TIMED_OUT))
    # a compound call whose parent never finished never arrives
    parent = workload.parent
    orphan = (state == PENDING) & (parent >= 0)
    orphan &= np.isin(state[np.maximum(parent, 0)], (FAILED, TIMED_OUT, PENDING))
    assert np.all(terminal | orphan), f"{name}: requests left in {np.unique(state[~terminal & ~orphan])}"
    finished = state == FINISHED
    assert np.all(result.table.generated[finished] == np.maximum(trace.output_tokens[finished], 1))
    # compound calls arrive after their parent finished
    calls = np.flatnonzero((workload.slo_type == COMPOUND) & (parent >= 0) & (state != PENDING))
    assert np.all(result.table.arrival[calls] >= result.table.completion[parent[calls]])
    assert 0.0 <= result.metrics["slo_attainment"] <= 1.0
    assert result.replica.free_blocks == result.replica.total_blocks
    # the kernel's fast-forward gives the same run as stepping every iteration
    if seed % 3 == 0:
        stepped = replay_stepped(workload, make(name))
        np.testing.assert_array_equal(stepped.table.state, result.table.state)
        np.testing.assert_allclose(stepped.table.completion, result.table.completion, rtol=1e-9)


def replay_stepped(workload, scheduler):
    from infragym.models.serving_schedulers.replay import WorkloadRun

    run = WorkloadRun(workload, scheduler, replica=SMALL, queue_timeout_s=30.0, drain_s=3600.0)
    run.replica.fast_forward_enabled = False
    assert run.run()
    return run.result()


@pytest.mark.parametrize("name", SCHEDULERS)
@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    rate=st.floats(1.0, 200.0),
    preemption=st.sampled_from(["recompute", "swap"]),
    chunked=st.booleans(),
    memory=st.floats(0.25, 0.5),
    replicas=st.integers(1, 3),
    router=st.sampled_from(["round_robin", "least_outstanding"]),
)
def test_kernel_invariants_hold_for_every_scheduler_in_a_cluster(
    name: str, seed: int, rate: float, preemption: str, chunked: bool, memory: float, replicas: int, router: str
) -> None:
    """The kernel's cluster invariants (tests/test_serving_sim.py) with each scheduler: the KV
    ledger after every scheduling point, time monotone, every request terminal, the pool
    empty again; with swap or recompute preemption, chunked prefill and both routers."""
    from infragym.envs.serving.simulator import SLO, ServingCluster
    from infragym.models.serving_schedulers.replay import workload_columns

    rng = np.random.default_rng(seed)
    trace = uniform_length_trace(60, rng, rate=rate, prompt_range=(16, 5000), output_range=(1, 1200))
    workload = mixed_slo_workload("t", trace, rng, mix=(0.6, 0.4, 0.0), max_new_tokens=1200)
    config = ReplicaConfig(
        preemption=preemption, chunked_prefill=chunked, gpu_memory_utilisation=memory, max_batched_tokens=4096
    )
    audited = Audited(make(name))
    cluster = ServingCluster(replica=config, n_replicas=replicas, router=router, slo=SLO(queue_timeout_s=20.0))
    result = cluster.run(trace, audited, columns=workload_columns(workload))
    assert audited.monotone(), "time went backwards"
    t = result.table
    assert np.isin(t.state, (FINISHED, FAILED, TIMED_OUT)).all()
    failed = t.state == FAILED
    assert (t.generated[failed] == 0).all()
    finished = t.state == FINISHED
    np.testing.assert_array_equal(t.generated[finished], t.target[finished])
    assert (t.first_token[finished] >= t.arrival[finished]).all()
    for replica in result.replicas:
        replica.audit()
        assert replica.kv.free_blocks == replica.kv.total_blocks and replica.kv.swapped_blocks == 0


def test_policies_differ_where_the_papers_say() -> None:
    """Under memory pressure: conservative never evicts, Past-Future evicts far less than FCFS
    and keeps more of the KV pool busy than conservative."""
    # The artifact's setting: a ~110k-token KV pool (Llama-2-7B on an A100-80GB), 3k-5k / 3k-5k.
    replica = ReplicaConfig(gpu="a100_80gb", model="llama2_7b", max_batched_tokens=32768)
    workload = past_future_workload("pf_long_both", 80, np.random.default_rng(3), rate=0.15, ttft_s=10.0, tbt_s=0.1)
    results = {
        name: replay(workload, make(name), replica=replica).metrics for name in ("fcfs", "conservative", "past_future")
    }
    assert results["fcfs"]["evictions"] > 20
    assert results["conservative"]["evictions"] == 0
    assert results["past_future"]["evictions"] < results["fcfs"]["evictions"] / 2
    assert results["past_future"]["kv_utilisation_mean"] > results["conservative"]["kv_utilisation_mean"]


def test_light_load_serves_everything_within_its_slo() -> None:
    rng = np.random.default_rng(1)
    trace = RequestTrace(
        np.arange(20) * 5.0, np.full(20, 200), np.full(20, 50), np.zeros(20, np.int64), np.zeros(20, bool)
    )
    workload = mixed_slo_workload("light", trace, rng)
    for name in SCHEDULERS:
        metrics = replay(workload, make(name), replica=SMALL).metrics
        assert metrics["slo_attainment"] == 1.0, name
        assert metrics["evictions"] == 0, name
