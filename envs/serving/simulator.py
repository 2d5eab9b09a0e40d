"""The serving kernel's entities: requests (``RequestTable``) and replicas (``Replica``).

A replica (a model on ``tp`` GPUs) runs vLLM-style iterations: at each scheduling point its
``ReplicaScheduler`` (``policies.py``) admits waiting requests (their prompts are prefilled in
the next iteration) while KV blocks, the batched-token budget and the running-request cap allow;
every running request then decodes one token per iteration. KV memory is the replica's
``KVManager`` (``kv.py``: paged blocks of ``block_size`` tokens); when a decode step needs a
block and none is free, the scheduler frees memory (vLLM: preempt the most recently admitted
request, recomputed later or swapped to host memory over PCIe at a cost). Iteration times come
from the calibrated ``cost_model.CostModel``, times ``time_scale`` (a per-replica multiplier: a
frequency cap, a slower part).

One event loop (``events.EventLoop``) drives replicas: the cluster run (``ServingCluster``,
with a ``Router`` from ``routers.py``), the gymnasium envs and the agent-program simulator.

Speed: between events (an arrival at the replica, a completion, a KV block running out) a
decode-only batch is fast-forwarded in closed form: with the batch fixed, iteration ``j``
costs ``base + slope x (context + n x j)`` (decode attention reads the growing KV cache), so
``k`` iterations cost an arithmetic series and the iteration at which a target time is
crossed is the root of a quadratic. Per-request state is a struct of numpy arrays; the running
batch lives in preallocated per-replica arrays.
"""

from __future__ import annotations

import math
from array import array
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from infragym.datasets.llm_traces import RequestTrace
from infragym.envs.serving.cost_model import CostModel
from infragym.envs.serving.events import EventLoop
from infragym.envs.serving.hardware import BYTES_BF16, GPUS, MODELS
from infragym.envs.serving.kv import SWAP_COPY_OVERHEAD_S, KVManager, PagedKVManager
from infragym.envs.serving.policies import ReplicaScheduler, Router, make_router, make_scheduler

# Request states.
PENDING, WAITING, RUNNING, SWAPPED, FINISHED, FAILED, TIMED_OUT = range(7)
STATE_NAMES = ("pending", "waiting", "running", "swapped", "finished", "failed", "timed_out")
PREEMPTION_MODES = ("recompute", "swap")


@dataclass(frozen=True)
class ReplicaConfig:
    """One serving replica. Defaults follow vLLM's (block 16, 90% of GPU memory)."""

    gpu: str = "h100"
    model: str = "llama3.1_8b"
    tp: int = 1
    block_size: int = 16
    max_batched_tokens: int = 8192
    max_running: int = 256
    chunked_prefill: bool = False
    preemption: str = "recompute"  # or "swap"
    gpu_memory_utilisation: float = 0.9
    activation_reserve_bytes: float = 2e9  # per GPU, for activations and the CUDA graph pool

    def __post_init__(self) -> None:
        if self.preemption not in PREEMPTION_MODES:
            raise ValueError(f"preemption must be 'recompute' or 'swap', got {self.preemption!r}")
        if self.block_size <= 0 or self.max_batched_tokens <= 0 or self.max_running <= 0:
            raise ValueError("block_size, max_batched_tokens and max_running must be positive")
        if not 0 < self.gpu_memory_utilisation <= 1:
            raise ValueError("gpu_memory_utilisation must be in (0, 1]")
        if isinstance(self.gpu, str) and self.gpu not in GPUS:
            raise ValueError(f"gpu: unknown GPU {self.gpu!r}; known: {sorted(GPUS)}")
        if isinstance(self.model, str) and self.model not in MODELS:
            raise ValueError(f"model: unknown model {self.model!r}; known: {sorted(MODELS)}")
        if isinstance(self.tp, bool) or not isinstance(self.tp, int) or self.tp < 1:
            raise ValueError(f"tp: the tensor-parallel degree must be a whole number >= 1, got {self.tp!r}")


_SLO_KEYS = {"ttft_s": "ttft_slo_s", "tbt_s": "tbt_slo_s", "queue_timeout_s": "queue_timeout_s"}  # env config keys


@dataclass(frozen=True)
class SLO:
    """Service-level objective of a request: time to first token and mean time between tokens."""

    ttft_s: float = 2.0
    tbt_s: float = 0.1
    queue_timeout_s: float = 60.0  # a request not started within this is dropped

    def __post_init__(self) -> None:
        for key, value in (("ttft_s", self.ttft_s), ("tbt_s", self.tbt_s), ("queue_timeout_s", self.queue_timeout_s)):
            # inf: no limit (a queue that never times out); NaN, zero and negatives are refused
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise ValueError(
                    f"SLO {key} (env.{_SLO_KEYS[key]}) must be a positive number of seconds, got {value!r}"
                )


class RequestTable:
    """Per-request state and records (struct of arrays).

    ``target`` is each request's true output length (the simulator's oracle): a scheduler that
    is not meant to know it reads predictions from ``columns`` instead. ``columns`` holds any
    further per-request arrays a workload brings (SLO classes, deadlines, predicted lengths).
    """

    def __init__(self, trace: RequestTrace, columns: Mapping[str, np.ndarray] | None = None) -> None:
        n = len(trace)
        self.n = n
        self.arrival = trace.arrival_s.astype(np.float64)
        self.prompt = trace.prompt_tokens.astype(np.int64)
        # The prefill itself yields the first token: every served request generates >= 1.
        self.target = np.maximum(trace.output_tokens.astype(np.int64), 1)
        self.trace_failed = trace.failed.astype(bool)
        self.state = np.full(n, PENDING, dtype=np.int8)
        self.replica = np.full(n, -1, dtype=np.int32)
        self.generated = np.zeros(n, dtype=np.int64)
        self.preemptions = np.zeros(n, dtype=np.int32)
        self.first_token = np.full(n, np.nan)
        self.last_token = np.full(n, np.nan)
        self.completion = np.full(n, np.nan)
        self.max_tbt = np.zeros(n)
        self.admitted = np.full(n, np.nan)  # first admission into a batch
        self.columns: dict[str, np.ndarray] = {}
        for key, values in (columns or {}).items():
            values = np.asarray(values)
            if len(values) != n:
                raise ValueError(f"columns[{key!r}]: {len(values)} values for {n} requests")
            self.columns[key] = values


class ReplicaListener(Protocol):
    """Who watches a replica's requests (the agent-program simulator): called at admission,
    completion and failure. A listener may ``replica.interrupt()`` to stop the replica there
    (its events come first)."""

    def on_admit(self, replica: Replica, rid: int, cached: int) -> None: ...

    def on_finish(self, replica: Replica, rid: int) -> None: ...

    def on_fail(self, replica: Replica, rid: int) -> None: ...


@dataclass(frozen=True)
class ReplicaView:
    """A read-only snapshot of a replica's queue and batch, as arrays (for schedulers that
    score requests: lengths so far, ages, memory)."""

    clock: float
    waiting: np.ndarray  # request ids, queue order
    waiting_prompt: np.ndarray
    waiting_generated: np.ndarray  # > 0: preempted by recompute after this many tokens
    waiting_arrival: np.ndarray
    running: np.ndarray  # request ids, admission order (slot order)
    running_context: np.ndarray  # tokens in the KV cache
    running_prefill_left: np.ndarray
    running_generated: np.ndarray  # tokens generated so far
    running_blocks: np.ndarray
    swapped: np.ndarray
    free_blocks: int
    total_blocks: int


def _read_only(values: np.ndarray) -> np.ndarray:
    values.flags.writeable = False
    return values


class Replica:
    """One replica: its running batch, its KV manager, its scheduler and its iteration loop.

    The running batch lives in preallocated arrays (``max_running`` slots, admission order,
    the newest last) holding each request's context, pending prefill, KV blocks and token
    records; a request's records are written back to the ``RequestTable`` when it leaves the
    batch (finished or preempted), so an iteration touches only the replica's own arrays.

    Public mechanics (what schedulers, routers and drivers call): ``enqueue``, ``admissible``,
    ``admit``/``admit_head``, ``preempt``, ``swap_in``, ``drop_timed_out``, ``fail``,
    ``run_iteration``, ``fast_forward``, ``advance_until``, ``interrupt``, ``view``; state:
    ``waiting``, ``swapped``, ``n``, ``run_ids``, ``ctx``, ``prefill_left``, ``kv``, ``clock``.

    Args:
        scheduler: the replica's ``ReplicaScheduler`` (default FCFS).
        kv_manager: a factory ``(total_blocks, block_size, swap_s_per_block) -> KVManager``
            (default ``PagedKVManager``).
        fast_forward: closed-form decode stretches (False: every iteration is stepped; the
            results are the same, a check of the closed form).
    """

    def __init__(
        self,
        index: int,
        config: ReplicaConfig,
        table: RequestTable,
        slo: SLO,
        *,
        scheduler: ReplicaScheduler | None = None,
        kv_manager: Callable[[int, int, float], KVManager] | None = None,
        fast_forward: bool = True,
    ) -> None:
        self.index = index
        self.config = config
        self.table = table
        self.slo = slo
        self.cost = CostModel(config.gpu, config.model, config.tp)
        model = self.cost.model
        gpu = self.cost.gpu
        usable = config.tp * (gpu.memory_bytes * config.gpu_memory_utilisation - config.activation_reserve_bytes)
        kv_bytes = usable - model.weight_bytes
        # Each GPU holds kv_heads / tp heads of every token, or one head replicated when tp
        # exceeds the KV heads (grouped-query attention).
        shards = min(config.tp, model.kv_heads)
        kv_per_gpu_per_token = model.kv_bytes_per_token / shards
        block_bytes_per_gpu = config.block_size * kv_per_gpu_per_token
        total_blocks = int(kv_bytes // (block_bytes_per_gpu * config.tp))
        if total_blocks <= 0:
            raise ValueError(f"{model.name} does not fit on {config.tp} x {gpu.name} with room for a KV cache")
        # Every GPU swaps its own shard over its own PCIe link, in parallel.
        swap_s_per_block = 2 * model.layers * SWAP_COPY_OVERHEAD_S + block_bytes_per_gpu / gpu.pcie_bandwidth
        self.kv: KVManager = (kv_manager or PagedKVManager)(total_blocks, config.block_size, swap_s_per_block)
        # Iteration-time tables, by tokens in the batch and by sampled tokens.
        tokens = np.arange(config.max_batched_tokens + config.max_running + 2, dtype=np.float64)
        self._layers_s = model.layers * self.cost.layer_time(np.maximum(tokens, 1.0))
        self._head_s = self.cost.lm_head_time(tokens)
        eff = self.cost.eff
        attention = self.kv.attention_cost_factor
        self._overhead_s = eff.iteration_overhead_s
        self._kv_read_s_per_token = kv_per_gpu_per_token / (gpu.hbm_bandwidth * eff.mem_eff) * attention
        self._attn_flop_s = (
            4.0 * model.layers * (model.q_heads / config.tp) * model.head_dim / (gpu.peak_flops * eff.flop_eff)
        ) * attention
        self.time_scale = 1.0  # iteration-time multiplier (a frequency cap: > 1), set between events
        self._pending_swap_s = 0.0  # swap-in time charged to the next iteration
        self.clock = 0.0
        self.waiting: deque[int] = deque()
        self.swapped: deque[int] = deque()
        self.iterations = 0
        self.busy_s = 0.0
        self.kv_log_t = array("d")
        self.kv_log_used = array("d")
        # The running batch: slots [0, n).
        cap = config.max_running
        self.n = 0
        self._ids = np.zeros(cap, dtype=np.int64)
        self._ctx = np.zeros(cap, dtype=np.int64)  # tokens in the KV cache
        self._pre = np.zeros(cap, dtype=np.int64)  # prompt tokens still to prefill
        # KV blocks reserved by a prefilling slot (its prompt + the token it emits). A decoding
        # slot always holds exactly ceil(ctx / block_size) blocks, so it needs no record.
        self._blk = np.zeros(cap, dtype=np.int64)
        self._rem = np.zeros(cap, dtype=np.int64)  # tokens still to generate
        self._target = np.zeros(cap, dtype=np.int64)
        self._buffers = (
            self._ids,
            self._ctx,
            self._pre,
            self._blk,
            self._rem,
            self._target,
        )
        self._pending_prefill = 0  # sum of _pre over the batch
        self._prefilling = 0  # slots with prompt tokens left
        self._resuming: dict[int, float] = {}  # swapped-in request -> its last token time
        self.seg_max = array("d")  # longest iteration of each logged segment (ends: kv_log_t)
        self._decoding = 0  # slots with nothing left to prefill
        self._interrupted = False
        self.fast_forward_enabled = fast_forward
        self.listener: ReplicaListener | None = None
        self.tracer: Any = None  # a trace.ChromeTrace while tracing (None: no cost)
        self.scheduler: ReplicaScheduler = make_scheduler(scheduler).bind(self)

    @property
    def scheduler(self) -> ReplicaScheduler:
        return self._scheduler

    @scheduler.setter
    def scheduler(self, scheduler: ReplicaScheduler) -> None:
        self._scheduler = scheduler
        # Call the finish hook only for schedulers that use it (none: no cost per completion).
        self._scheduler_on_finish = type(scheduler).on_finish is not ReplicaScheduler.on_finish

    # ------------------------------------------------------------------ views and helpers
    @property
    def free_blocks(self) -> int:
        return self.kv.free_blocks

    @property
    def total_blocks(self) -> int:
        return self.kv.total_blocks

    @property
    def swapped_blocks(self) -> int:
        return self.kv.swapped_blocks

    @property
    def run_ids(self) -> np.ndarray:
        return self._ids[: self.n]

    @property
    def ctx(self) -> np.ndarray:
        return self._ctx[: self.n]

    @property
    def prefill_left(self) -> np.ndarray:
        return self._pre[: self.n]

    @property
    def generated_running(self) -> np.ndarray:
        """Tokens each running request has generated so far."""
        return self._target[: self.n] - self._rem[: self.n]

    @property
    def blocks(self) -> np.ndarray:
        """KV blocks held by each running request."""
        n = self.n
        return np.where(self._pre[:n] > 0, self._blk[:n], -(-self._ctx[:n] // self.config.block_size))

    def blocks_for(self, tokens: int | np.ndarray) -> int | np.ndarray:
        return -(-tokens // self.config.block_size)

    @property
    def outstanding(self) -> int:
        return len(self.waiting) + len(self.swapped) + self.n

    @property
    def has_work(self) -> bool:
        return bool(self.n or self.waiting or self.swapped)

    @property
    def pending_swap_s(self) -> float:
        """Swap-in seconds the next iteration pays."""
        return self._pending_swap_s

    def view(self) -> ReplicaView:
        """The queue and the batch as read-only arrays."""
        t = self.table
        waiting = np.fromiter(self.waiting, dtype=np.int64, count=len(self.waiting))
        n = self.n
        return ReplicaView(
            clock=self.clock,
            waiting=_read_only(waiting),
            waiting_prompt=_read_only(t.prompt[waiting]),
            waiting_generated=_read_only(t.generated[waiting]),
            waiting_arrival=_read_only(t.arrival[waiting]),
            running=_read_only(self._ids[:n].copy()),
            running_context=_read_only(self._ctx[:n].copy()),
            running_prefill_left=_read_only(self._pre[:n].copy()),
            running_generated=_read_only(self.generated_running),
            running_blocks=_read_only(self.blocks),
            swapped=_read_only(np.fromiter(self.swapped, dtype=np.int64, count=len(self.swapped))),
            free_blocks=self.kv.free_blocks,
            total_blocks=self.kv.total_blocks,
        )

    def prefill_len(self, rid: int) -> int:
        """Tokens to prefill on (re)admission: the prompt plus anything generated before a
        recompute preemption, less what the KV manager has cached."""
        t = self.table
        generated = int(t.generated[rid])
        return int(t.prompt[rid]) + generated - self.kv.cached_tokens(rid, generated)

    def prefill_seconds(self, tokens: int) -> float:
        """Time to prefill ``tokens`` of context alone on this replica (in budget-sized chunks)."""
        budget = self.config.max_batched_tokens
        seconds, done = 0.0, 0
        while done < tokens:
            chunk = min(budget, tokens - done)
            seconds += self._iteration_seconds(chunk, chunk * (done + chunk / 2.0), 0, 0)
            done += chunk
        return seconds

    def enqueue(self, rid: int, now: float) -> None:
        """Request ``rid`` arrives at ``now``; the scheduler places it in the queue."""
        if not (self.n or self.waiting or self.swapped) and self.clock < now:
            self.clock = now  # idle until this arrival
        self.table.state[rid] = WAITING
        self.table.replica[rid] = self.index
        self._scheduler.enqueue(self, rid)

    def drop_timed_out(self) -> None:
        """Drop never-started requests that waited longer than the queue timeout. Preempted
        requests (at the front, already started) never time out; behind them, never-started
        requests are in arrival order, so the scan stops at the first one still in time."""
        t = self.table
        waiting = self.waiting
        timeout = self.slo.queue_timeout_s
        if not waiting or (t.generated[waiting[0]] == 0 and self.clock - t.arrival[waiting[0]] <= timeout):
            return  # the common case: nothing to drop
        started: list[int] = []
        while waiting and t.generated[waiting[0]] > 0:
            started.append(waiting.popleft())
        while waiting and self.clock - t.arrival[waiting[0]] > timeout:
            rid = waiting.popleft()
            t.state[rid] = TIMED_OUT
            t.completion[rid] = self.clock
        waiting.extendleft(reversed(started))

    def next_timeout(self) -> float:
        """When the oldest never-started waiting request times out (inf if none)."""
        t = self.table
        for rid in self.waiting:
            if t.generated[rid] == 0:
                return float(t.arrival[rid]) + self.slo.queue_timeout_s
        return math.inf

    def _append_running(self, rid: int, *, context: int, prefill: int, blocks: int) -> None:
        t = self.table
        i = self.n
        self._ids[i] = rid
        self._ctx[i] = context
        self._pre[i] = prefill
        self._blk[i] = blocks
        self._rem[i] = t.target[rid] - t.generated[rid]
        self._target[i] = t.target[rid]
        self.n = i + 1
        self._pending_prefill += prefill
        self._prefilling += prefill > 0
        self._decoding += prefill == 0
        t.state[rid] = RUNNING

    def _remove_slot(self, i: int) -> None:
        """Close slot ``i``'s gap, keeping admission order."""
        n = self.n
        if i != n - 1:
            for buffer in self._buffers:
                buffer[i : n - 1] = buffer[i + 1 : n]
        self.n = n - 1

    def _write_back(self, slots: np.ndarray | slice) -> np.ndarray:
        """Copy the records of ``slots`` to the request table; returns their ids.

        A decoding slot's last token is the end of the latest iteration (every decoding request
        takes part in every iteration), except for a swapped-in request that has not decoded
        since: the table keeps the time of its last token before the swap. (First-token times
        and resume gaps are written to the table when they happen.)
        """
        t = self.table
        rids = self._ids[slots]
        t.generated[rids] = self._target[slots] - self._rem[slots]
        decoded = self._pre[slots] == 0
        if self._resuming:
            decoded &= ~np.isin(rids, list(self._resuming))
        t.last_token[rids[decoded]] = self.clock
        return rids

    def sync(self) -> None:
        """Write every running request's records to the table (for inspection mid-run)."""
        if self.n:
            self._write_back(slice(0, self.n))

    def idle_until(self, time: float) -> None:
        """Start nothing before ``time`` (the clock moves there if it is earlier)."""
        if time > self.clock:
            self.clock = time

    def interrupt(self) -> None:
        """Stop ``advance_until`` after the current step (a listener's events come first)."""
        self._interrupted = True

    # ------------------------------------------------------------------ scheduling primitives
    def batch_tokens(self) -> int:
        """Tokens already planned for the next iteration (decodes + admitted prefills)."""
        return self._decoding + self._pending_prefill

    def admissible(self, rid: int) -> bool:
        """Whether ``rid`` can join the next iteration without preempting anyone."""
        cfg = self.config
        if self.n >= cfg.max_running:
            return False
        t = self.table
        generated = int(t.generated[rid])
        tokens = int(t.prompt[rid]) + generated
        kv = self.kv
        length = tokens - kv.cached_tokens(rid, generated)
        if cfg.chunked_prefill:
            if self._decoding + self._pending_prefill >= cfg.max_batched_tokens:
                return False
        elif self._decoding + self._pending_prefill + length > cfg.max_batched_tokens:
            # A preempted request whose prompt + generated tokens outgrew the budget is
            # recomputed on its own (no other prefill in the iteration); a fresh prompt beyond
            # the budget is refused, as vLLM refuses prompts beyond its limit.
            if generated == 0 or self._pending_prefill:
                return False
        return kv.blocks_to_admit(rid, tokens, generated) <= kv.free_blocks

    def admit(self, rid: int) -> None:
        """Move a waiting request (anywhere in the queue) into the running batch (its prefill
        runs next iteration)."""
        if not self.admissible(rid):
            raise ValueError(f"request {rid} is not admissible on replica {self.index}")
        if self.waiting[0] == rid:
            self.waiting.popleft()
        else:
            self.waiting.remove(rid)
        self._admit(rid)

    def admit_head(self) -> None:
        """Admit the queue's head; the caller has checked ``admissible``."""
        self._admit(self.waiting.popleft())

    def _admit(self, rid: int) -> None:
        t = self.table
        generated = int(t.generated[rid])
        tokens = int(t.prompt[rid]) + generated
        kv = self.kv
        cached = kv.cached_tokens(rid, generated)
        # Reserve the context and the token the prefill emits, so the prefill never stalls.
        blocks = -(-(tokens + 1) // self.config.block_size)
        kv.allocate(rid, blocks, cached=cached, generated=generated, now=self.clock)
        self._append_running(rid, context=cached, prefill=tokens - cached, blocks=blocks)
        if generated == 0:
            t.admitted[rid] = self.clock
        if self.tracer is not None:
            self.tracer.admit(self, rid)
        if self.listener is not None:
            self.listener.on_admit(self, rid, cached)

    def swap_in(self) -> float:
        """Bring swapped requests back first (vLLM prioritises them); returns the PCIe time."""
        t = self.table
        seconds = 0.0
        kv = self.kv
        while self.swapped and self.n < self.config.max_running:
            rid = self.swapped[0]
            context = int(t.prompt[rid] + t.generated[rid])
            if kv.blocks_for(context + 1) > kv.free_blocks:
                break
            self.swapped.popleft()
            blocks = int(kv.blocks_for(context))
            # Its next token's block is taken by the decode step as for any request.
            seconds += kv.swap_in(rid, blocks)
            self._append_running(rid, context=context, prefill=0, blocks=blocks)
            self._resuming[rid] = float(t.last_token[rid])
        self._pending_swap_s += seconds
        return seconds

    def preempt(self, slot: int | None = None, mode: str | None = None) -> float:
        """Take a running request out of the batch (default: the newest, vLLM's choice), to be
        recomputed later or swapped to host memory (``mode``, default the config's). Returns
        the swap seconds (charged to the current iteration)."""
        t = self.table
        i = self.n - 1 if slot is None else int(slot)
        if not 0 <= i < self.n:
            raise IndexError(f"replica {self.index}: no running slot {i} (batch of {self.n})")
        mode = mode or self.config.preemption
        if mode not in PREEMPTION_MODES:
            raise ValueError(f"preemption mode must be one of {PREEMPTION_MODES}, got {mode!r}")
        rid = int(self._write_back(slice(i, i + 1))[0])
        prefilling = self._pre[i] > 0
        context = 0 if prefilling else int(self._ctx[i])  # a partial prefill is redone
        freed = int(self._blk[i]) if prefilling else int(self.kv.blocks_for(int(self._ctx[i])))
        self._pending_prefill -= int(self._pre[i])
        self._prefilling -= prefilling
        self._decoding -= not prefilling
        self._resuming.pop(rid, None)
        self._remove_slot(i)
        t.preemptions[rid] += 1
        if self.tracer is not None:
            self.tracer.preempt(self, rid, mode)
        if mode == "swap" and context > 0:
            # context == prompt + generated tokens, all in the cache
            self.swapped.appendleft(rid)
            t.state[rid] = SWAPPED
            return self.kv.swap_out(rid, freed)
        self.kv.release(rid, freed, self.clock, finished=False)
        t.state[rid] = WAITING
        self.waiting.appendleft(rid)  # recompute: its prompt + generated tokens are prefilled again
        return 0.0

    def fail(self, rid: int) -> None:
        """A waiting request that can never run (beyond the KV capacity or the token budget)
        fails instead of blocking the queue forever."""
        self.waiting.remove(rid)
        self.table.state[rid] = FAILED
        self.table.completion[rid] = self.clock
        self.kv.forget(rid, self.clock)
        if self.listener is not None:
            self.listener.on_fail(self, rid)

    def _iteration_seconds(self, prefill_tokens: int, attention_pairs: float, decodes: int, context: int) -> float:
        tokens = min(prefill_tokens + decodes, len(self._layers_s) - 1)
        sampled = decodes + (1 if prefill_tokens else 0)
        return (
            self._overhead_s
            + self._layers_s[tokens]
            + self._head_s[min(sampled, len(self._head_s) - 1)]
            + attention_pairs * self._attn_flop_s
            + context * self._kv_read_s_per_token
        ) * self.time_scale

    def run_iteration(self) -> None:
        """Run one iteration: prefill chunks of admitted requests, one token for the others."""
        cfg = self.config
        bs = cfg.block_size
        swap_s = self._pending_swap_s  # swap-ins before this iteration, then swap-outs in it
        self._pending_swap_s = 0.0
        # A decode that starts a new block needs a free one; preempt the newest until it fits.
        while self.n:
            n = self.n
            # Prefilling slots are the newest ones (a suffix) unless a swap-in landed behind a
            # partial chunked prefill; then fall back to a mask.
            d = n - self._prefilling
            suffix = self._prefilling == 0 or not self._pre[:d].any()
            decoding = slice(0, d) if suffix else np.flatnonzero(self._pre[:n] == 0)
            grow = self._ctx[decoding] % bs == 0  # the next token opens a new block
            need = int(np.count_nonzero(grow))
            if need <= self.kv.free_blocks:
                break
            swap_s += self._scheduler.make_room(self)
        if not self.n:
            self.clock += swap_s
            self.busy_s += swap_s
            if swap_s:
                self._log_segment(swap_s)
            return
        n = self.n
        ctx, pre, rem = self._ctx[:n], self._pre[:n], self._rem[:n]
        decodes = self._decoding
        context = int(ctx[decoding].sum()) if decodes else 0
        prefill_tokens = 0
        pairs = 0.0
        if self._prefilling:
            prefilling = slice(d, n) if suffix else np.flatnonzero(pre > 0)
            chunks = pre[prefilling]
            if cfg.chunked_prefill:
                budget = max(cfg.max_batched_tokens - decodes, 0)
                chunks = np.clip(chunks - np.maximum(np.cumsum(chunks) - budget, 0), 0, None)
                prefill_tokens = int(chunks.sum())
            else:
                chunks = chunks.copy()
                prefill_tokens = self._pending_prefill  # every pending prompt runs whole
            pairs = float(np.dot(chunks, ctx[prefilling] + chunks / 2.0))
        seconds = self._iteration_seconds(prefill_tokens, pairs, decodes, context) + swap_s
        end = self.clock + seconds
        self.clock = end
        self.iterations += 1
        self.busy_s += seconds
        if decodes:
            self.kv.grow(need)
            rem[decoding] -= 1
            ctx[decoding] += 1
            if self._resuming:
                self._resumed_gaps(end)
        if prefill_tokens:
            pre[prefilling] -= chunks
            ctx[prefilling] += chunks
            self._pending_prefill -= prefill_tokens
            if not cfg.chunked_prefill:
                done = np.arange(d, n) if suffix else prefilling  # whole prompts: all done
            elif suffix:
                done = np.arange(d, n)[pre[d:n] == 0]
            else:
                done = prefilling[pre[prefilling] == 0]
            if done.size:
                t = self.table
                rids = self._ids[done]
                fresh = rem[done] == self._target[done]
                t.first_token[rids[fresh]] = end
                resumed = rids[~fresh]
                if resumed.size:  # recomputed after a preemption: the wait is one long gap
                    t.max_tbt[resumed] = np.maximum(t.max_tbt[resumed], end - t.last_token[resumed])
                rem[done] -= 1
                ctx[done] += 1  # the emitted token's slot was reserved at admission
                self._prefilling -= done.size
                self._decoding += done.size
        self._finish_completed()
        self._log_segment(seconds)

    def _resumed_gaps(self, first_token_end: float) -> None:
        """Swapped-in requests just produced their first token since the swap: record the gap."""
        t = self.table
        for rid, last in self._resuming.items():
            t.max_tbt[rid] = max(t.max_tbt[rid], first_token_end - last)
        self._resuming.clear()

    def _finish_completed(self) -> None:
        """Retire the requests that generated their last token (rem == 0 only happens once the
        prefill is done: a pending prefill still owes at least one token)."""
        t = self.table
        bs = self.config.block_size
        kv = self.kv
        while self.n:
            n = self.n
            rem = self._rem[:n]
            i = int(rem.argmin())
            if rem[i] > 0:
                return
            rid = int(self._ids[i])
            t.generated[rid] = self._target[i]
            t.last_token[rid] = t.completion[rid] = self.clock
            t.state[rid] = FINISHED
            kv.release(rid, -(-int(self._ctx[i]) // bs), self.clock, finished=True)
            if self.listener is not None:
                self.listener.on_finish(self, rid)  # sees the batch as it was (the request in it)
            if self._scheduler_on_finish:
                self._scheduler.on_finish(self, rid)
            self._decoding -= 1
            for buffer in self._buffers:  # close the gap, keeping admission order
                buffer[i : n - 1] = buffer[i + 1 : n]
            self.n = n - 1

    def _log_segment(self, longest_iteration_s: float) -> None:
        """Log the end of a segment (one iteration or a fast-forwarded run): the KV use and the
        longest iteration in it, from which each request's longest gap between tokens is
        computed at the end (``finalise_max_tbt``)."""
        self.kv_log_t.append(self.clock)
        kv = self.kv
        self.kv_log_used.append(1.0 - kv.free_blocks / kv.total_blocks)
        self.seg_max.append(longest_iteration_s)

    # ------------------------------------------------------------------ fast-forward
    def fast_forward(self, target: float, horizon: int | None = None) -> bool:
        """Run decode-only iterations in closed form until the first completion, the first
        block shortage, the first iteration ending at or after ``target`` or ``horizon``
        iterations. False if the batch is not decode-only (nothing done)."""
        n = self.n
        if not n or self._pending_prefill or self._pending_swap_s:
            return False
        bs = self.config.block_size
        ctx, rem = self._ctx[:n], self._rem[:n]
        k = first_completion = int(rem.min())
        if horizon is not None:
            k = max(1, min(k, horizon))
        free = self.kv.free_blocks
        if free < n * (k // bs + 1):
            # request i needs a new block at iterations room_i + 1, room_i + 1 + bs, ...
            room = (-ctx) % bs
            k = min(k, self._max_iterations_within_blocks(room, free))
            if k == 0:
                return False  # the next decode needs a block: run_iteration preempts
        context = int(ctx.sum())
        base = self._iteration_seconds(0, 0.0, n, context)
        slope = n * self._kv_read_s_per_token * self.time_scale  # extra seconds per iteration as the cache grows
        # Iterations needed to reach the target: smallest j with cumulative(j) >= target.
        if math.isfinite(target) and target > self.clock:
            span = target - self.clock
            if slope > 0:
                a, b = slope / 2.0, base - slope / 2.0
                j = math.ceil((-b + math.sqrt(b * b + 4 * a * span)) / (2 * a) - 1e-9)
            else:
                j = math.ceil(span / base)
            k = max(1, min(k, j))
        elif math.isfinite(target):
            k = 1
        elapsed = k * base + slope * k * (k - 1) / 2.0
        if self._resuming:
            self._resumed_gaps(self.clock + base)
        self.clock += elapsed
        self.busy_s += elapsed
        self.iterations += k
        # blocks held go from ceil(ctx / bs) to ceil((ctx + k) / bs)
        self.kv.grow(int(((ctx + (k + bs - 1)) // bs - (ctx + (bs - 1)) // bs).sum()))
        ctx += k
        rem -= k
        if k == first_completion:
            self._finish_completed()
        self._log_segment(base + slope * (k - 1))
        return True

    def _max_iterations_within_blocks(self, room: np.ndarray, free: int) -> int:
        """Largest k such that k decode iterations need no more than the free blocks."""
        bs = self.config.block_size

        def needed(k: int) -> int:
            return int(np.sum(np.maximum(0, -(-(k - room) // bs))))

        lo, hi = 0, 1
        while needed(hi) <= free:
            lo, hi = hi, hi * 2
            if hi > 1 << 24:
                return lo
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if needed(mid) <= free:
                lo = mid
            else:
                hi = mid
        return lo

    def audit(self) -> None:
        """Check the KV ledger and the per-request bookkeeping (used by the tests)."""
        t = self.table
        n = self.n
        held = self.blocks
        if np.any(held * self.config.block_size < self._ctx[:n] + self._pre[:n]):
            raise AssertionError(f"replica {self.index}: a request holds fewer blocks than its tokens")
        self.kv.audit(int(held.sum()))
        swapped = sum(int(self.blocks_for(t.prompt[r] + t.generated[r])) for r in self.swapped)
        if swapped != self.kv.swapped_blocks:
            raise AssertionError(f"replica {self.index}: swapped blocks {self.kv.swapped_blocks} != {swapped}")
        if n and np.any(t.state[self._ids[:n]] != RUNNING):
            raise AssertionError(f"replica {self.index}: a request in the batch is not RUNNING")
        if np.any(self._rem[:n] < 0):
            raise AssertionError(f"replica {self.index}: generated more tokens than requested")
        prefilling = int(np.count_nonzero(self._pre[:n]))
        if (
            self._pending_prefill != int(self._pre[:n].sum())
            or self._decoding != n - prefilling
            or self._prefilling != prefilling
        ):
            raise AssertionError(f"replica {self.index}: batch counters out of date")

    # ------------------------------------------------------------------ driving
    def advance_until(self, target: float) -> bool:
        """Process scheduling points while the clock is before ``target`` and there is work;
        False if the scheduler paused (an external decision is pending)."""
        scheduler = self._scheduler
        self._interrupted = False
        while self.clock < target and not self._interrupted and (self.n or self.waiting or self.swapped):
            if self.waiting:
                self.drop_timed_out()
            if self.fast_forward_enabled and not self.swapped and not scheduler.would_admit(self):
                # A timeout can unblock the queue: stop the fast-forward there too.
                stop = min(target, self.next_timeout()) if self.waiting else target
                if self.fast_forward(stop, scheduler.decode_horizon(self)):
                    continue
            if not scheduler.schedule(self):
                return False
        return True


# ---------------------------------------------------------------------- cluster
ROUTERS = ("round_robin", "least_outstanding")  # the built-in routers (registry: policies.ROUTERS)


@dataclass
class SimulationResult:
    table: RequestTable
    replicas: list[Replica]
    slo: SLO
    end_time: float
    metrics: dict[str, float] = field(default_factory=dict)


class ServingCluster:
    """Replicas behind a global router, fed by a request trace, on one event loop.

    Args:
        replica: the replicas' configuration.
        n_replicas: replicas at the start (``add_replica``/``remove_replica`` change the set at
            run time, from an event scheduled with ``at``).
        router: a registered router name or a ``Router``.
        slo: the requests' SLO (and queue timeout).
        drain_s: after the last arrival, run this long at most.
        scheduler: the replicas' ``ReplicaScheduler`` (name or instance; default FCFS).
        kv_manager: a KV manager factory (default ``PagedKVManager``).
        fast_forward: closed-form decode stretches (False: step every iteration).
        trace_path: write a Chrome trace (per-request events) of the run there (None: off).
    """

    def __init__(
        self,
        *,
        replica: ReplicaConfig | None = None,
        n_replicas: int = 1,
        router: str | Router = "round_robin",
        slo: SLO | None = None,
        drain_s: float = 3600.0,
        scheduler: str | ReplicaScheduler | None = None,
        kv_manager: Callable[[int, int, float], KVManager] | None = None,
        fast_forward: bool = True,
        trace_path: str | None = None,
    ) -> None:
        make_router(router)  # refuse an unknown router now
        if n_replicas <= 0:
            raise ValueError("n_replicas must be positive")
        self.replica_config = replica or ReplicaConfig()
        self.n_replicas = n_replicas
        self.router = router if isinstance(router, str) else router.name
        self._router_spec = router
        self.slo = slo or SLO()
        self.drain_s = drain_s
        self.scheduler = make_scheduler(scheduler)
        self.kv_manager = kv_manager
        self.fast_forward = fast_forward
        self.trace_path = trace_path
        self._timed: list[tuple[float, Callable[[ServingCluster, float], None]]] = []
        self.replicas: list[Replica] = []  # every replica of the current run (removed ones too)
        self.active: list[Replica] = []  # those the router may choose
        self.loop: EventLoop | None = None
        self.table: RequestTable | None = None

    # ------------------------------------------------------------------ run-time changes
    def at(self, time: float, action: Callable[[ServingCluster, float], None]) -> None:
        """Call ``action(cluster, time)`` at ``time`` of the next run (e.g. add or remove a
        replica, change a replica's ``time_scale``)."""
        self._timed.append((float(time), action))

    def add_replica(self, config: ReplicaConfig | None = None) -> Replica:
        """A new replica joins (idle, at the loop's clock); the router may choose it at once."""
        if self.loop is None or self.table is None:
            raise RuntimeError("add_replica is for a running cluster: schedule it with at()")
        replica = self._new_replica(len(self.replicas), config or self.replica_config)
        self.loop.add_replica(replica)
        self.active.append(replica)
        return replica

    def remove_replica(self, replica: Replica) -> None:
        """The router stops choosing ``replica``; it drains what it already has."""
        if replica not in self.active:
            raise ValueError(f"replica {replica.index} is not active")
        if len(self.active) == 1:
            raise ValueError("cannot remove the last active replica")
        self.active.remove(replica)

    def _new_replica(self, index: int, config: ReplicaConfig) -> Replica:
        assert self.table is not None
        replica = Replica(
            index,
            config,
            self.table,
            self.slo,
            scheduler=self.scheduler,
            kv_manager=self.kv_manager,
            fast_forward=self.fast_forward,
        )
        replica.tracer = self._tracer
        self.replicas.append(replica)
        return replica

    # ------------------------------------------------------------------ running
    def run(
        self,
        trace: RequestTrace,
        scheduler: str | ReplicaScheduler | None = None,
        *,
        columns: Mapping[str, np.ndarray] | None = None,
    ) -> SimulationResult:
        """Replay ``trace`` (with ``scheduler`` instead of the cluster's, if given; ``columns``:
        extra per-request arrays for the scheduler, see ``RequestTable``)."""
        from infragym.envs.serving.trace import ChromeTrace

        table = self.table = RequestTable(trace, columns)
        self._tracer = ChromeTrace() if self.trace_path else None
        if scheduler is not None:
            self.scheduler = make_scheduler(scheduler)
        self.replicas = []
        for i in range(self.n_replicas):
            self._new_replica(i, self.replica_config)
        self.active = list(self.replicas)
        loop = self.loop = EventLoop(self.replicas)
        router = make_router(self._router_spec)
        failed = table.trace_failed
        state, completion = table.state, table.completion
        active = self.active

        def arrive(rid: int, now: float) -> None:
            if failed[rid]:
                state[rid] = FAILED
                completion[rid] = now
                return
            if router.needs_load:
                for r in active:
                    r.advance_until(now)
                chosen = router.route(active, rid, now)
            else:
                chosen = router.route(active, rid, now)
                chosen.advance_until(now)
            chosen.enqueue(rid, now)

        loop.stream(table.arrival, arrive)
        for time, action in self._timed:
            loop.at(time, lambda t, action=action: action(self, t), order=-1)
        end = (float(table.arrival[-1]) if table.n else 0.0) + self.drain_s
        loop.run(until=end)
        for r in self.replicas:
            r.sync()  # requests still running at the end keep their partial records
        finalise_max_tbt(table, self.replicas)
        done = table.completion[np.isfinite(table.completion)]
        finish = float(done.max()) if done.size else 0.0
        result = SimulationResult(table, self.replicas, self.slo, min(finish, end))
        result.metrics = summarize(result)
        if self._tracer is not None and self.trace_path:
            self._tracer.write(self.trace_path, table, self.replicas)
        return result


def finalise_max_tbt(table: RequestTable, replicas: list[Replica]) -> None:
    """Each request's longest gap between tokens: the longest iteration its replica ran
    between its first and last token (every decoding request takes part in every iteration),
    or a preemption gap recorded when it resumed, whichever is longer. A range-maximum query
    over each replica's segment log (sparse table), vectorised over requests."""
    for replica in replicas:
        ends = np.frombuffer(replica.kv_log_t)
        longest = np.frombuffer(replica.seg_max)
        rids = np.flatnonzero((table.replica == replica.index) & np.isfinite(table.first_token))
        if not rids.size or not ends.size:
            continue
        lo = np.searchsorted(ends, table.first_token[rids], side="right")
        hi = np.searchsorted(ends, table.last_token[rids], side="right")
        ok = hi > lo
        lo, hi, rids = lo[ok], hi[ok], rids[ok]
        levels = [longest]
        while (1 << len(levels)) <= len(longest):
            prev, half = levels[-1], 1 << (len(levels) - 1)
            levels.append(np.maximum(prev[:-half], prev[half:]))
        span = hi - lo
        level = np.floor(np.log2(span)).astype(np.int64)
        best = np.empty(len(rids))
        for j in np.unique(level):
            sel = level == j
            width = 1 << int(j)
            best[sel] = np.maximum(levels[j][lo[sel]], levels[j][hi[sel] - width])
        table.max_tbt[rids] = np.maximum(table.max_tbt[rids], best)


def summarize(result: SimulationResult) -> dict[str, float]:
    """Throughput, goodput under the SLO, latency percentiles, preemptions, failures."""
    t = result.table
    slo = result.slo
    finished = t.state == FINISHED
    start = float(t.arrival.min()) if t.n else 0.0
    makespan = max(result.end_time - start, 1e-9)
    ttft = t.first_token[finished] - t.arrival[finished]
    e2e = t.completion[finished] - t.arrival[finished]
    multi = finished & (t.generated > 1)
    tpot = (t.completion[multi] - t.first_token[multi]) / (t.generated[multi] - 1)
    tpot_all = np.zeros(int(finished.sum()))
    tpot_all[(t.generated[finished] > 1)] = tpot
    good = (ttft <= slo.ttft_s) & (tpot_all <= slo.tbt_s)
    metrics: dict[str, float] = {
        "requests": float(t.n),
        "finished": float(finished.sum()),
        "failed": float(np.sum(t.state == FAILED)),
        "timed_out": float(np.sum(t.state == TIMED_OUT)),
        "unfinished": float(np.sum(np.isin(t.state, (WAITING, RUNNING, SWAPPED)))),
        "throughput_rps": float(finished.sum() / makespan),
        "throughput_tokens_s": float(t.generated[finished].sum() / makespan),
        "goodput_rps": float(good.sum() / makespan),
        # Share of all requests (except those the trace marks failed) served within the SLO:
        # timed-out, refused and unfinished requests count against it.
        "slo_attainment": float(good.sum() / max(int(np.sum(~t.trace_failed)), 1)),
        "preemptions": float(t.preemptions.sum()),
        "gpu_busy_fraction": float(sum(r.busy_s for r in result.replicas) / (len(result.replicas) * makespan))
        if result.replicas
        else 0.0,
        "makespan_s": makespan,
    }
    for name, values in (("ttft_s", ttft), ("tbt_s", tpot), ("e2e_s", e2e), ("max_tbt_s", t.max_tbt[multi])):
        if values.size:
            metrics[f"{name}_mean"] = float(values.mean())
            for q in (50, 95, 99):
                metrics[f"{name}_p{q}"] = float(np.percentile(values, q))
    # Time-weighted: the use logged at the end of a segment holds until the next segment ends.
    area = duration = peak = 0.0
    for replica in result.replicas:
        ends = np.frombuffer(replica.kv_log_t)
        used = np.frombuffer(replica.kv_log_used)
        if ends.size > 1:
            area += float(np.dot(used[:-1], np.diff(ends)))
            duration += float(ends[-1] - ends[0])
        if used.size:
            peak = max(peak, float(used.max()))
    metrics["kv_utilisation_mean"] = area / duration if duration > 0 else 0.0
    metrics["kv_utilisation_max"] = peak
    return metrics


__all__ = [
    "BYTES_BF16",
    "ROUTERS",
    "SLO",
    "STATE_NAMES",
    "Replica",
    "ReplicaConfig",
    "ReplicaListener",
    "ReplicaView",
    "RequestTable",
    "ServingCluster",
    "SimulationResult",
    "summarize",
]
