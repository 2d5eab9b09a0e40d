"""Context switching (FastSwitch): the swap engine's costs, the VTC fair scheduler, invariants
under fairness-driven swaps for every swap variant, and experiment=kv_memory end to end."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infragym.datasets.llm_traces import RequestTrace
from infragym.envs.serving.fairness import VTCFairScheduler
from infragym.envs.serving.kv import KV_MANAGERS, SWAP_COPY_OVERHEAD_S, PagedKVManager
from infragym.envs.serving.policies import SCHEDULERS, make_scheduler
from infragym.envs.serving.schedulers import FCFSScheduler
from infragym.envs.serving.simulator import FINISHED, SLO, ReplicaConfig, ServingCluster
from infragym.envs.serving.swap import SWAP_VARIANTS, SwapEngine, SwapKVManager, swap_engine_factory
from infragym.models.kv_memory.studies import conversation_workload, jain_index, run_switch_variant
from infragym.runner import run_train

from .conftest import SHARED_DATA, compose_config, smoke

BLOCK_S = 64 * SWAP_COPY_OVERHEAD_S + 2e-5  # a block: 64 copies + its bytes (here 20 us)


def _manager(engine: SwapEngine, conversation=None) -> SwapKVManager:
    return SwapKVManager(1000, 16, BLOCK_S, engine=engine, conversation=conversation)


def test_copies_follow_the_granularity() -> None:
    vllm, groups = _manager(SwapEngine()), _manager(SwapEngine(group_blocks=64))
    # vLLM: one copy per block per layer and K/V: the paged kernel's per-block cost exactly.
    assert vllm.swap_seconds(100) == pytest.approx(PagedKVManager(1000, 16, BLOCK_S).swap_seconds(100))
    # Block groups: 100 blocks = 2 runs of <= 64 -> 2 x 64 copies instead of 100 x 64.
    assert groups.swap_seconds(100) == pytest.approx(2 * 64 * SWAP_COPY_OVERHEAD_S + 100 * 2e-5)
    vllm.swap_out(0, 100)
    groups.swap_out(0, 100)
    assert (vllm.copies, groups.copies) == (6400, 128)
    assert vllm.bytes_swapped == groups.bytes_swapped == 100 * 16 * 128 * 1024  # Llama-3-8B: 128 KiB/token


def test_asynchronous_copies_stall_only_beyond_the_iteration() -> None:
    sync, overlap = _manager(SwapEngine()), _manager(SwapEngine(asynchronous=True))
    copy = sync.swap_seconds(10)
    for kv in (sync, overlap):
        kv.begin(0.0, window_s=copy * 3)
    assert sync.swap_out(1, 10) == pytest.approx(copy)  # the GPU waits for the whole copy
    assert overlap.swap_out(1, 10) == 0.0  # hidden behind the iteration
    # The copy stream is busy until `copy`: two more copies end at 3 x copy, the second one
    # just fits, a third overruns the window by one copy.
    assert overlap.swap_in(1, 10) == 0.0
    assert overlap.swap_out(1, 10) == pytest.approx(0.0, abs=1e-12)
    assert overlap.swap_in(1, 10) == pytest.approx(copy)
    assert overlap.stall_s == pytest.approx(copy) and overlap.copy_s == pytest.approx(4 * copy)


def test_host_copy_is_kept_across_swaps_and_turns() -> None:
    conversation = np.array([7, 7, 8])  # requests 0 and 1: two turns of one conversation
    reuse, plain = _manager(SwapEngine(reuse_host_copy=True), conversation), _manager(SwapEngine(), conversation)
    for kv in (reuse, plain):
        kv.allocate(0, 10, cached=0, generated=0, now=0.0)
        kv.swap_out(0, 10)
        kv.swap_in(0, 10)
        kv.grow(2)
        kv.swap_out(0, 12)  # 2 blocks generated since the last swap-out
        kv.swap_in(0, 12)
        kv.release(0, 12, 1.0, finished=True)
        kv.allocate(1, 15, cached=0, generated=0, now=2.0)  # the next turn repeats the context
        kv.swap_out(1, 15)
        kv.allocate(2, 5, cached=0, generated=0, now=3.0)  # another conversation: nothing kept
        kv.swap_out(2, 5)
    block = 16 * 128 * 1024
    assert reuse.bytes_swapped == (10 + 10 + 2 + 12 + 3 + 5) * block  # outs move only new blocks
    assert plain.bytes_swapped == (10 + 10 + 12 + 12 + 15 + 5) * block
    assert reuse.blocks_reused == 10 + 12
    # Host copies do not count against the device: all 1000 blocks are free with 2 swapped out.
    assert reuse.free_blocks == 1000 - 0 and reuse.swapped_blocks == 15 + 5
    reuse.audit(0)


def test_registries_and_variants() -> None:
    make_scheduler(None)
    assert "vtc_fair" in SCHEDULERS and {"swap_engine", "vattention"} <= set(KV_MANAGERS)
    assert set(SWAP_VARIANTS) == {"vllm_swap", "block_groups", "async_swap", "kv_reuse", "fastswitch"}
    fast = SWAP_VARIANTS["fastswitch"]
    assert fast.group_blocks > 1 and fast.asynchronous and fast.reuse_host_copy
    with pytest.raises(ValueError, match="group_blocks"):
        SwapEngine(group_blocks=0)
    with pytest.raises(ValueError, match="unknown swap variant"):
        swap_engine_factory("fast")
    with pytest.raises(ValueError, match="update_every"):
        VTCFairScheduler(0)
    assert jain_index(np.ones(5)) == 1.0 and jain_index(np.array([1.0, 0, 0, 0])) == pytest.approx(0.25)


def _two_clients(n_heavy: int = 120) -> tuple[RequestTrace, np.ndarray]:
    """A heavy client floods the replica at t=0; a light one sends a few requests just after."""
    n = n_heavy + 6
    arrival = np.concatenate([np.zeros(n_heavy), 0.5 + np.arange(6) * 0.2])
    prompt = np.full(n, 2000, np.int64)
    output = np.full(n, 300, np.int64)
    trace = RequestTrace(arrival, prompt, output, np.zeros(n, np.int64), np.zeros(n, bool))
    return trace, np.concatenate([np.zeros(n_heavy, np.int64), np.ones(6, np.int64)])


def test_vtc_serves_the_light_client_first_under_contention() -> None:
    trace, client = _two_clients()
    config = ReplicaConfig(gpu="a100_80gb", preemption="swap", gpu_memory_utilisation=0.3)
    ttft = {}
    for name, scheduler in (("fcfs", FCFSScheduler()), ("vtc", VTCFairScheduler(5))):
        result = ServingCluster(
            replica=config, scheduler=scheduler, kv_manager=swap_engine_factory("fastswitch", conversation=client)
        ).run(trace, columns={"client": client})
        t = result.table
        assert np.all(t.state == FINISHED)
        light = client == 1
        ttft[name] = float(np.mean(t.first_token[light] - t.arrival[light]))
    # FCFS makes the light client wait behind the whole flood; VTC serves it within a few updates.
    assert ttft["vtc"] < 0.2 * ttft["fcfs"]


class AuditingVTC(VTCFairScheduler):
    """VTC that checks the kernel's and the swap engine's invariants after every step."""

    def __init__(self, update_every: int = 10, **kwargs) -> None:
        super().__init__(update_every, **kwargs)
        self.clock = -math.inf

    def schedule(self, replica) -> bool:
        assert replica.clock >= self.clock  # time monotone
        self.clock = replica.clock
        progress = super().schedule(replica)
        replica.audit()  # device blocks conserved; every request's KV within its blocks
        kv = replica.kv
        running = set(replica.run_ids.tolist())
        assert not set(replica.swapped) & running
        assert set(kv.swapped_out) == set(replica.swapped)  # host copies are the swapped requests'
        assert not set(kv.swapped_out) & kv.on_device  # never on the host and the device at once
        assert kv.stall_s <= kv.copy_s + 1e-12
        return progress


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    variant=st.sampled_from(sorted(SWAP_VARIANTS)),
    update_every=st.sampled_from([1, 3, 20]),
    seed=st.integers(0, 2**16),
)
def test_every_swap_variant_keeps_the_invariants(variant: str, update_every: int, seed: int) -> None:
    requests = conversation_workload(120, 4.0, np.random.default_rng(seed), max_context_tokens=6000)
    config = ReplicaConfig(gpu="a100_80gb", preemption="swap", gpu_memory_utilisation=0.24)
    result = ServingCluster(
        replica=config,
        slo=SLO(queue_timeout_s=float("inf")),
        scheduler=AuditingVTC(update_every),
        kv_manager=swap_engine_factory(variant, conversation=requests.conversation),
    ).run(requests.trace, columns={"client": requests.conversation})
    t = result.table
    assert np.all(t.state == FINISHED)
    np.testing.assert_array_equal(t.generated, t.target)
    kv = result.replicas[0].kv
    assert kv.free_blocks == kv.total_blocks and kv.swapped_blocks == 0 and not kv.on_device


def test_fastswitch_cuts_stalls_and_tail_latency_under_pressure() -> None:
    requests = conversation_workload(600, 3.0, np.random.default_rng(1))
    runs = {v: run_switch_variant(v, requests, gpu_memory_utilisation=0.25) for v in ("vllm_swap", "fastswitch")}
    vllm, fast = runs["vllm_swap"], runs["fastswitch"]
    assert vllm["preemptions"] > 50  # the workload does switch contexts
    assert fast["gpu_stall_s"] < 0.2 * vllm["gpu_stall_s"]
    assert fast["gb_swapped"] < vllm["gb_swapped"]
    # Stalls sit between tokens: the TBT tail and the throughput follow them. (TTFT also depends
    # on which requests the fair scheduler runs, so at this small scale it is not asserted.)
    assert fast["p99_tbt_s"] < 0.5 * vllm["p99_tbt_s"]
    assert fast["throughput_tok_s"] > vllm["throughput_tok_s"]


def test_kv_memory_experiment_end_to_end(tmp_path: Path) -> None:
    cfg = compose_config("train", smoke("kv_memory", "logger=none"), tmp_path)
    run_train(cfg)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    variants = ["vllm_swap", "block_groups", "async_swap", "kv_reuse", "fastswitch"]
    variants += ["paged_16", "paged_256", "vattention_64kb", "vattention_2mb"]
    for variant in variants:
        for name in ("p99_ttft_s", "p99_tbt_s", "throughput_tok_s"):
            value = metrics[f"test/{variant}/{name}"]
            assert math.isfinite(value) and value > 0, (variant, name, value)
    # The memory study: same bytes, same capacity up to a block; mapping time only for vAttention.
    assert metrics["test/paged_16/map_s"] == 0 and metrics["test/vattention_2mb/map_s"] > 0
    assert metrics["test/vattention_64kb_sync/map_s"] > metrics["test/vattention_64kb/map_s"]
    assert (tmp_path / "plots" / "throughput_vs_page_size.png").is_file()
    assert (tmp_path / "plots" / "tail_vs_update_frequency.png").is_file()
    assert "Context switching" in (tmp_path / "results.txt").read_text()
    data = Path(os.environ.get("INFRAGYM_DATA") or SHARED_DATA) / "llm_traces" / "azure_conv_splitwise.csv"
    if data.is_file():  # the Azure trace also goes through the switching study
        for variant in ("vllm_swap", "fastswitch"):
            assert math.isfinite(metrics[f"test/{variant}/azure_conv/p99_ttft_s"])
