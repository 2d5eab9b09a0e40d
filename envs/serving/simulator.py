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

One event loop (``events.EventLoop``) drives replicas: the cluster run (``cluster.ServingCluster``,
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
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from infragym.datasets.llm_traces import RequestTrace
from infragym.envs.serving import kernels
from infragym.envs.serving.cost_model import CostModel
from infragym.envs.serving.hardware import BYTES_BF16, GPUS, MODELS
from infragym.envs.serving.kv import SWAP_COPY_OVERHEAD_S, KVManager, PagedKVManager
from infragym.envs.serving.policies import ReplicaScheduler, make_scheduler

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
        self._costs = np.stack(
            [model.layers * self.cost.layer_time(np.maximum(tokens, 1.0)), self.cost.lm_head_time(tokens)]
        )
        self._layers_s = self._costs[kernels.LAYERS]
        self._head_s = self._costs[kernels.HEAD]
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
        # The running batch: slots [0, n), one row per field (the compiled kernels take it whole).
        cap = config.max_running
        self.n = 0
        self._slots = np.zeros((kernels.N_ROWS, cap), dtype=np.int64)
        self._ids = self._slots[kernels.IDS]
        self._ctx = self._slots[kernels.CTX]  # tokens in the KV cache
        self._pre = self._slots[kernels.PRE]  # prompt tokens still to prefill
        # KV blocks reserved by a prefilling slot (its prompt + the token it emits). A decoding
        # slot always holds exactly ceil(ctx / block_size) blocks, so it needs no record.
        self._blk = self._slots[kernels.BLK]
        self._rem = self._slots[kernels.REM]  # tokens still to generate
        self._target = self._slots[kernels.TARGET]
        self._retired_ids = np.zeros(cap, dtype=np.int64)  # scratch for kernels.retire_finished
        self._retired_blocks = np.zeros(cap, dtype=np.int64)
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
            self._slots[:, i : n - 1] = self._slots[:, i + 1 : n]
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
        kv = self.kv
        slots = self._slots
        swap_s = self._pending_swap_s  # swap-ins before this iteration, then swap-outs in it
        self._pending_swap_s = 0.0
        # A decode that starts a new block needs a free one; the scheduler frees memory (vLLM:
        # preempts the newest) until it fits.
        need = 0
        while self.n:
            need = (
                kernels.decode_blocks_needed(slots, self.n, self._prefilling, cfg.block_size) if self._decoding else 0
            )
            if need <= kv.free_blocks:
                break
            swap_s += self._scheduler.make_room(self)
        if not self.n:
            self.clock += swap_s
            self.busy_s += swap_s
            if swap_s:
                self._log_segment(swap_s)
            return
        t = self.table
        decodes = self._decoding
        seconds, prefill_tokens, completed, finished = kernels.run_iteration(
            slots,
            self.n,
            self._prefilling,
            self._pending_prefill,
            decodes,
            cfg.chunked_prefill,
            cfg.max_batched_tokens,
            self._costs,
            self._overhead_s,
            self._attn_flop_s,
            self._kv_read_s_per_token,
            self.time_scale,
            swap_s,
            self.clock,
            t.first_token,
            t.max_tbt,
            t.last_token,
        )
        end = self.clock + seconds
        self.clock = end
        self.iterations += 1
        self.busy_s += seconds
        if decodes:
            kv.grow(need)
            if self._resuming:
                self._resumed_gaps(end)
        if prefill_tokens:
            self._pending_prefill -= prefill_tokens
            self._prefilling -= completed
            self._decoding += completed
        if finished:
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
        if self.listener is None:
            # Compiled: retire them all in one pass, then hand their blocks back in slot order.
            rids, blocks = self._retired_ids, self._retired_blocks
            self.n, count = kernels.retire_finished(
                self._slots,
                self.n,
                self.clock,
                bs,
                FINISHED,
                t.generated,
                t.last_token,
                t.completion,
                t.state,
                rids,
                blocks,
            )
            self._decoding -= count
            for j in range(count):
                rid = int(rids[j])
                kv.release(rid, int(blocks[j]), self.clock, finished=True)
                if self._scheduler_on_finish:
                    self._scheduler.on_finish(self, rid)
            return
        # A listener sees the batch as it was at each completion: one at a time.
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
            if i != n - 1:  # close the gap, keeping admission order
                self._slots[:, i : n - 1] = self._slots[:, i + 1 : n]
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
        iterations. False if the batch is not decode-only or its next decode needs a block
        (nothing done)."""
        n = self.n
        if not n or self._pending_prefill or self._pending_swap_s:
            return False
        kv = self.kv
        k, elapsed, grown, base, slope, completion = kernels.fast_forward(
            self._slots,
            n,
            self.config.block_size,
            kv.free_blocks,
            -1 if horizon is None else horizon,
            self.clock,
            target,
            self._costs,
            self._overhead_s,
            self._kv_read_s_per_token,
            self.time_scale,
        )
        if not k:
            return False  # the next decode needs a block: run_iteration frees one
        if self._resuming:
            self._resumed_gaps(self.clock + base)
        self.clock += elapsed
        self.busy_s += elapsed
        self.iterations += k
        kv.grow(grown)
        if completion:
            self._finish_completed()
        self._log_segment(base + slope * (k - 1))
        return True

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


# The cluster (``cluster.py``) builds on these entities; its names stay importable from here.
_CLUSTER_NAMES = ("ROUTERS", "ServingCluster", "SimulationResult", "finalise_max_tbt", "summarize")


def __getattr__(name: str) -> Any:
    if name in _CLUSTER_NAMES:
        from infragym.envs.serving import cluster

        return getattr(cluster, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BYTES_BF16",
    "SLO",
    "STATE_NAMES",
    "Replica",
    "ReplicaConfig",
    "ReplicaListener",
    "ReplicaView",
    "RequestTable",
]
