"""The two studies of issue 15 as functions: one simulation run per variant.

- Memory (vAttention): ``run_memory_variant`` serves a trace on one replica with a
  ``paged_<block>`` or ``vattention_<page>`` KV manager (FCFS, chunked prefill, recompute
  preemption) and reports usable capacity, the largest batch before the first preemption,
  throughput and TTFT/TBT percentiles.
- Context switching (FastSwitch): ``run_switch_variant`` serves multi-turn conversations with
  the VTC fair scheduler (periodic priority updates, swap preemption) and one swap engine
  (``swap.SWAP_VARIANTS``), reporting tail latency, throughput, fairness, bytes swapped and GPU
  stall time.

Workloads: the long-prompt arXiv sample (vAttention's artifact; Poisson arrivals), the Azure 2023
conversation trace (replayed at a chosen rate) and multi-turn conversations calibrated to
BurstGPT's conversation statistics (``conversation_workload``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from infragym.datasets.conversations import ConversationRequests, generate_conversations, profile_from_workload
from infragym.datasets.llm_traces import RequestTrace, load_azure_trace
from infragym.datasets.workload_twin import burstgpt_reference_model, fit_workload
from infragym.envs.serving.fairness import VTCFairScheduler
from infragym.envs.serving.kv_memory import VAttentionKVManager, kv_memory_variant
from infragym.envs.serving.schedulers import FCFSScheduler
from infragym.envs.serving.simulator import SLO, ReplicaConfig, ServingCluster
from infragym.envs.serving.swap import swap_engine_factory, swap_totals


class WorkloadError(ValueError):
    """A workload file that cannot be read as the study needs it."""


# ---------------------------------------------------------------------- workloads
def arxiv_trace(path: str | Path, n: int, rate: float, rng: np.random.Generator) -> RequestTrace:
    """``n`` requests drawn from the arXiv summarisation sample (prompt and output lengths),
    arriving as a Poisson process at ``rate`` requests/s (the sample has no arrival times)."""
    frame = pd.read_csv(path)
    for column in ("num_prefill_tokens", "num_decode_tokens"):
        if column not in frame.columns:
            raise WorkloadError(f"{path}: no column {column!r} (the vAttention artifact's arXiv sample has it)")
    prompt = frame["num_prefill_tokens"].to_numpy(np.int64)
    output = frame["num_decode_tokens"].to_numpy(np.int64)
    bad = np.flatnonzero((prompt <= 0) | (output < 0))
    if bad.size:
        raise WorkloadError(f"{path}: row {int(bad[0]) + 2}: token counts must be positive")
    rows = rng.integers(0, len(frame), n)
    gaps = rng.exponential(1.0 / rate, n)
    return RequestTrace(np.cumsum(gaps) - gaps[0], prompt[rows], output[rows], np.zeros(n, np.int64), np.zeros(n, bool))


def azure_trace(path: str | Path, n: int, rate: float) -> RequestTrace:
    """The first ``n`` requests of an Azure 2023 trace, replayed at ``rate`` requests/s."""
    trace = load_azure_trace(path).head(n)
    return trace.scaled(rate / trace.rate)


def conversation_workload(
    n: int, rate: float, rng: np.random.Generator, *, max_context_tokens: int = 16_384
) -> ConversationRequests:
    """Multi-turn conversations at ``rate`` sessions/s: turns per conversation, the interval
    between turns, request and response lengths fitted (``fit_workload``) to a BurstGPT-like
    trace generated from BurstGPT's published statistics (PAPERS.md), so the fit-and-generate
    path a user takes with their own trace is the one used here. Contexts are capped at
    ``max_context_tokens`` (a conversation that would outgrow it ends)."""
    reference = burstgpt_reference_model(mean_rate=0.4)
    fitted_on, conversation = reference.generate_with_conversations(20_000, np.random.default_rng(0))
    profile = profile_from_workload(fit_workload(fitted_on, conversation=conversation))
    return generate_conversations(profile, n, rng, rate=rate, max_context_tokens=max_context_tokens)


def single_turn_workload(trace: RequestTrace) -> ConversationRequests:
    """A trace without conversations (the Azure traces) for the switching study: every request
    is its own client and conversation (no context repeats, so nothing to reuse across turns)."""
    n = len(trace)
    ids = np.arange(n, dtype=np.int64)
    return ConversationRequests(
        trace, ids, np.zeros(n, np.int64), np.zeros(n, np.int64), trace.prompt_tokens.astype(np.int64), np.zeros(n)
    )


# ---------------------------------------------------------------------- memory study
class _BatchRecorder(FCFSScheduler):
    """FCFS that records the largest running batch before the first preemption."""

    name = "kv_memory_batch_recorder"

    def __init__(self) -> None:
        self.max_batch = 0
        self.preempted = False

    def bind(self, replica: Any) -> _BatchRecorder:
        return self

    def schedule(self, replica: Any) -> bool:
        progress = super().schedule(replica)
        if not self.preempted:
            if replica.table.preemptions.any():
                self.preempted = True
            else:
                self.max_batch = max(self.max_batch, replica.n)
        return progress


def run_memory_variant(
    variant: str,
    trace: RequestTrace,
    *,
    gpu: str = "h100",
    model: str = "llama3.1_8b",
    tp: int = 1,
    background: bool = True,
    contiguous_kernels: bool = False,
) -> dict[str, float]:
    """One replica serving ``trace`` with a memory variant (``paged_16``, ``vattention_2mb``...);
    ``background``: vAttention maps decode pages off the critical path; ``contiguous_kernels``:
    vAttention's decode kernel speed (else memory effects only)."""
    overrides, factory = kv_memory_variant(
        variant, model=model, tp=tp, background=background, contiguous_kernels=contiguous_kernels
    )
    config = ReplicaConfig(gpu=gpu, model=model, tp=tp, chunked_prefill=True, **overrides)
    recorder = _BatchRecorder()
    started = time.perf_counter()
    result = ServingCluster(replica=config, scheduler=recorder, kv_manager=factory).run(trace)
    m = result.metrics
    kv = result.replicas[0].kv
    row = {
        "block_tokens": float(config.block_size),
        "capacity_tokens": float(kv.total_blocks * config.block_size),
        "max_batch_before_preemption": float(recorder.max_batch),
        "preemptions": m["preemptions"],
        "throughput_tok_s": m["throughput_tokens_s"],
        "p50_ttft_s": m.get("ttft_s_p50", np.nan),
        "p99_ttft_s": m.get("ttft_s_p99", np.nan),
        "p50_tbt_s": m.get("tbt_s_p50", np.nan),
        "p99_tbt_s": m.get("tbt_s_p99", np.nan),
        "finished": m["finished"],
        "map_s": float(kv.map_s_charged) if isinstance(kv, VAttentionKVManager) else 0.0,
        "sim_s": time.perf_counter() - started,
    }
    return row


# ---------------------------------------------------------------------- context-switching study
def jain_index(values: np.ndarray) -> float:
    """Jain's fairness index: 1 when every value is equal, 1/n when one takes everything."""
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    if not x.size or not np.any(x):
        return 1.0
    return float(x.sum() ** 2 / (x.size * np.square(x).sum()))


def run_switch_variant(
    variant: str,
    requests: ConversationRequests,
    *,
    gpu: str = "a100_80gb",
    model: str = "llama3.1_8b",
    tp: int = 1,
    gpu_memory_utilisation: float = 0.3,
    update_every: int = 10,
) -> dict[str, float]:
    """One replica serving multi-turn conversations with the VTC fair scheduler (priority
    updates every ``update_every`` iterations, swap preemption) and the swap engine
    ``variant`` (a ``swap.SWAP_VARIANTS`` name). Each conversation is a client."""
    config = ReplicaConfig(
        gpu=gpu, model=model, tp=tp, preemption="swap", gpu_memory_utilisation=gpu_memory_utilisation
    )
    factory = swap_engine_factory(variant, model=model, tp=tp, conversation=requests.conversation)
    cluster = ServingCluster(
        replica=config,
        slo=SLO(queue_timeout_s=float("inf")),  # fairness decides who waits; nobody is dropped
        scheduler=VTCFairScheduler(update_every),
        kv_manager=factory,
    )
    started = time.perf_counter()
    result = cluster.run(requests.trace, columns={"client": requests.conversation})
    m = result.metrics
    t = result.table
    engine = swap_totals([r.kv for r in result.replicas])
    fair = result.replicas[0].scheduler.fairness()
    # Each client's service rate while it had requests in the system: tokens generated over the
    # summed time its requests spent from arrival to completion (1 = every client the same).
    done = np.isfinite(t.completion)
    _, client = np.unique(requests.conversation[done], return_inverse=True)
    tokens = np.bincount(client, t.generated[done].astype(np.float64))
    in_system = np.bincount(client, t.completion[done] - t.arrival[done])
    rate = tokens / np.maximum(in_system, 1e-9)
    busy = sum(r.busy_s for r in result.replicas)
    return {
        "p99_ttft_s": m.get("ttft_s_p99", np.nan),
        "p99_tbt_s": m.get("tbt_s_p99", np.nan),
        "p99_max_tbt_s": m.get("max_tbt_s_p99", np.nan),
        "p50_ttft_s": m.get("ttft_s_p50", np.nan),
        "throughput_tok_s": m["throughput_tokens_s"],
        "finished": m["finished"],
        "preemptions": m["preemptions"],
        "jain_service_rate": jain_index(rate),
        "service_spread": fair["service_spread"],
        "priority_updates": fair["priority_updates"],
        "gb_swapped": engine.get("bytes_swapped", 0.0) / 1e9,
        "copies": engine.get("copies", 0.0),
        "gpu_stall_s": engine.get("stall_s", 0.0),
        "copy_s": engine.get("copy_s", 0.0),
        "stall_share_of_busy": engine.get("stall_s", 0.0) / busy if busy else 0.0,
        "blocks_reused": engine.get("blocks_reused", 0.0),
        "sim_s": time.perf_counter() - started,
    }


__all__ = [
    "WorkloadError",
    "arxiv_trace",
    "azure_trace",
    "conversation_workload",
    "jain_index",
    "run_memory_variant",
    "run_switch_variant",
    "single_turn_workload",
]
