"""KV memory managers of the memory study: paged block sizes and vAttention pages, with the
invariants every manager keeps (hypothesis): blocks/pages conserved, no request's KV beyond what
is mapped, a swapped request never held on the device and in host memory at once, time monotone."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infragym.datasets.llm_traces import RequestTrace, burstgpt_like
from infragym.envs.serving.kv import KV_MANAGERS, PagedKVManager
from infragym.envs.serving.kv_memory import (
    MAP_S_PER_PAGE,
    PAGED_BLOCK_SIZES,
    VATTENTION_PAGE_BYTES,
    VAttentionKVManager,
    kv_memory_variant,
    tokens_per_page,
)
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

VARIANTS = [f"paged_{b}" for b in PAGED_BLOCK_SIZES] + [f"vattention_{p}" for p in VATTENTION_PAGE_BYTES]


def test_tokens_per_page_follow_the_published_layout() -> None:
    # PAPERS.md: a 2 MB page holds 1,024 tokens of one Llama-3-8B K tensor per layer.
    assert tokens_per_page(2 * 1024 * 1024, "llama3.1_8b") == 1024
    assert tokens_per_page(64 * 1024, "llama3.1_8b") == 32
    # 70B at TP 4: 2 KV heads per GPU; TP 8: one; TP 16: the head is replicated, still one.
    assert tokens_per_page(2 * 1024 * 1024, "llama3.1_70b", tp=4) == 4096
    assert tokens_per_page(2 * 1024 * 1024, "llama3.1_70b", tp=8) == 8192
    assert tokens_per_page(2 * 1024 * 1024, "llama3.1_70b", tp=16) == 8192
    assert "vattention" in KV_MANAGERS


def _replica(config: ReplicaConfig, factory=None) -> Replica:
    one = RequestTrace(
        np.zeros(1), np.ones(1, np.int64), np.ones(1, np.int64), np.zeros(1, np.int64), np.zeros(1, bool)
    )
    return Replica(0, config, RequestTable(one), SLO(), kv_manager=factory)


def test_variants_build_replicas_of_the_same_memory() -> None:
    capacity = {}
    for name in VARIANTS:
        overrides, factory = kv_memory_variant(name)
        replica = _replica(ReplicaConfig(**overrides), factory)
        capacity[name] = replica.kv.total_blocks * replica.config.block_size
    # The same bytes hold the same tokens, up to one block of rounding.
    assert max(capacity.values()) - min(capacity.values()) <= 1024
    with pytest.raises(ValueError, match=r"set ReplicaConfig\.block_size=1024"):
        VAttentionKVManager(100, 16, 1e-3, page_bytes="2mb")
    with pytest.raises(ValueError, match="unknown KV memory variant 'paged_x'"):
        kv_memory_variant("paged_x")


def test_contiguous_swap_makes_fewer_copies() -> None:
    overrides, factory = kv_memory_variant("vattention_64kb")
    v = _replica(ReplicaConfig(**overrides), factory).kv
    p = _replica(ReplicaConfig(block_size=32)).kv
    assert v.block_size == p.block_size == 32
    # 100 blocks: paged = 100 x 64 copies; vAttention = 64 copies of the contiguous buffer.
    assert v.swap_seconds(100) < p.swap_seconds(100)
    assert p.swap_seconds(100) - v.swap_seconds(100) == pytest.approx(99 * 64 * 10e-6, rel=1e-6)


class AuditingFCFS(FCFSScheduler):
    """FCFS that checks every invariant after each scheduling step."""

    name = "auditing_fcfs_test"

    def __init__(self) -> None:
        self.clock = -np.inf
        self.max_batch = 0
        self.preempted_at: float | None = None

    def schedule(self, replica) -> bool:
        assert replica.clock >= self.clock  # time never goes backwards
        self.clock = replica.clock
        before = int(replica.table.preemptions.sum())
        progress = super().schedule(replica)
        replica.audit()  # blocks/pages conserved; every request's KV within what it holds
        kv = replica.kv
        assert 0 <= kv.free_blocks <= kv.total_blocks
        # a swapped request is in host memory only: not in the running batch whose blocks the
        # audit just matched against the device ledger
        assert not set(replica.swapped) & set(replica.run_ids.tolist())
        if isinstance(kv, VAttentionKVManager):
            assert kv.mapped_pages - kv.unmapped_pages == kv.used_blocks * kv.pages_per_block
            assert not set(kv.swapped_out) & set(replica.run_ids.tolist())  # host or device, not both
        if self.preempted_at is None:
            if int(replica.table.preemptions.sum()) > before:
                self.preempted_at = replica.clock
            else:
                self.max_batch = max(self.max_batch, replica.n)
        return progress

    def bind(self, replica) -> AuditingFCFS:
        return AuditingFCFS()


def _run(name: str, trace: RequestTrace, preemption: str, memory: float = 0.25, background: bool = True):
    overrides, factory = kv_memory_variant(name, background=background)
    config = ReplicaConfig(**overrides, preemption=preemption, gpu_memory_utilisation=memory, max_batched_tokens=4096)
    schedulers: list[AuditingFCFS] = []

    class Recording(AuditingFCFS):
        def bind(self, replica) -> AuditingFCFS:
            s = AuditingFCFS()
            schedulers.append(s)
            return s

    result = ServingCluster(replica=config, n_replicas=2, scheduler=Recording(), kv_manager=factory).run(trace)
    return result, schedulers


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    variant=st.sampled_from(VARIANTS),
    preemption=st.sampled_from(["swap", "recompute"]),
    seed=st.integers(0, 2**16),
    rate=st.floats(20.0, 200.0),
    background=st.booleans(),
)
def test_every_manager_keeps_the_invariants_under_memory_pressure(
    variant: str, preemption: str, seed: int, rate: float, background: bool
) -> None:
    trace = burstgpt_like(250, np.random.default_rng(seed), rate=rate, prompt_cap=6000, output_cap=1500, zipf_a=1.02)
    result, _ = _run(variant, trace, preemption, background=background)
    t = result.table
    assert np.isin(t.state, (FINISHED, FAILED, TIMED_OUT)).all()
    finished = t.state == FINISHED
    np.testing.assert_array_equal(t.generated[finished], t.target[finished])
    assert np.all(t.first_token[finished] >= t.arrival[finished])
    assert np.all(t.completion[finished] >= t.first_token[finished])
    for replica in result.replicas:
        kv = replica.kv
        assert kv.free_blocks == kv.total_blocks and kv.swapped_blocks == 0  # all returned
        if isinstance(kv, VAttentionKVManager):
            assert kv.mapped_pages == kv.unmapped_pages  # eager reclamation leaves nothing mapped
            assert not kv.swapped_out


def test_large_pages_fragment_and_lower_the_batch_before_preemption() -> None:
    # 400 short requests at once, long outputs: the batch grows until KV runs out.
    n = 400
    trace = RequestTrace(np.zeros(n), np.full(n, 60), np.full(n, 1500), np.zeros(n, np.int64), np.zeros(n, bool))
    batches = {}
    for name in ("paged_16", "vattention_64kb", "vattention_2mb"):
        _, schedulers = _run(name, trace, "recompute")
        assert all(s.preempted_at is not None for s in schedulers)  # memory did run out
        batches[name] = max(s.max_batch for s in schedulers)
    # 2 MB pages hold 1,024 tokens: a 60-token request wastes most of its page in every layer.
    assert batches["vattention_2mb"] < batches["vattention_64kb"] <= batches["paged_16"]
    assert PagedKVManager.name == "paged"


def test_page_mapping_time_is_charged_where_the_mode_says() -> None:
    # Requests far apart: each runs alone, so its times show exactly what mapping costs.
    n, prompt, output = 20, 3000, 400
    trace = RequestTrace(
        np.arange(n) * 30.0, np.full(n, prompt), np.full(n, output), np.zeros(n, np.int64), np.zeros(n, bool)
    )
    results = {}
    for label, background, map_s in (("free", True, 0.0), ("background", True, MAP_S_PER_PAGE), ("sync", False, None)):

        def factory(total, block, swap, background=background, map_s=map_s):
            kwargs = {} if map_s is None else {"map_s_per_page": map_s}
            return VAttentionKVManager(total, block, swap, page_bytes="64kb", background=background, **kwargs)

        results[label] = ServingCluster(replica=ReplicaConfig(block_size=32), kv_manager=factory).run(trace)
    # Free mapping: vAttention's 64 KB pages are 32-token blocks, so it serves exactly as paged_32.
    paged = ServingCluster(replica=ReplicaConfig(block_size=32)).run(trace)
    np.testing.assert_array_equal(results["free"].table.completion, paged.table.completion)
    t = {label: r.table for label, r in results.items()}
    ttft = {label: tab.first_token - tab.arrival for label, tab in t.items()}
    # A prompt's pages (its 3,001 tokens: 94 blocks x 64 pages of Llama-3-8B) are mapped before
    # its prefill in both modes.
    np.testing.assert_allclose(ttft["background"] - ttft["free"], 94 * 64 * MAP_S_PER_PAGE, rtol=1e-6)
    np.testing.assert_allclose(ttft["sync"], ttft["background"], rtol=1e-9)
    # Decode growth: hidden in the background; on the critical path it opens 13 more blocks
    # (3,400 tokens: 107 blocks) per request.
    decode_bg = t["background"].completion - t["background"].first_token
    decode_free = t["free"].completion - t["free"].first_token
    decode_sync = t["sync"].completion - t["sync"].first_token
    np.testing.assert_allclose(decode_bg, decode_free, rtol=1e-9)
    np.testing.assert_allclose(decode_sync - decode_free, 13 * 64 * MAP_S_PER_PAGE, rtol=1e-3)
    kv = {label: r.replicas[0].kv for label, r in results.items()}
    assert kv["sync"].map_s_charged == pytest.approx(kv["sync"].mapped_pages * MAP_S_PER_PAGE)
    assert kv["background"].map_s_charged == pytest.approx(n * 94 * 64 * MAP_S_PER_PAGE)


def test_contiguous_kernels_speed_up_decode_attention_only() -> None:
    n = 5
    trace = RequestTrace(
        np.arange(n) * 60.0, np.full(n, 6000), np.full(n, 500), np.zeros(n, np.int64), np.zeros(n, bool)
    )
    runs = {}
    for kernels in (False, True):
        overrides, factory = kv_memory_variant("vattention_2mb", contiguous_kernels=kernels)
        runs[kernels] = ServingCluster(replica=ReplicaConfig(**overrides), kv_manager=factory).run(trace).table
        assert runs[kernels].state.tolist() == [FINISHED] * n
    memory, full = runs[False], runs[True]
    # Prefill runs on FlashAttention in both (vLLM has no paged prefill kernel): same TTFT.
    np.testing.assert_allclose(full.first_token - full.arrival, memory.first_token - memory.arrival, rtol=1e-12)
    # Decode reads the KV cache at 1 / 1.23 of the paged kernel's time (vLLM paper, SOSP'23).
    decode = {k: t.completion - t.first_token for k, t in runs.items()}
    assert np.all(decode[True] < decode[False])
    one = Replica(0, ReplicaConfig(**overrides), RequestTable(trace), SLO(), kv_manager=factory)
    assert one.kv.decode_attention_factor == pytest.approx(1 / 1.23) and one.kv.prefill_attention_factor == 1.0
