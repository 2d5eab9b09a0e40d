"""Discrete-event simulator of LLM serving on a GPU cluster (continuous batching, paged KV).

Replicas (a model on ``tp`` GPUs) run vLLM-style iterations: at each scheduling point the
scheduler admits waiting requests (their prompts are prefilled in the next iteration) while
KV blocks, the batched-token budget and the running-request cap allow; every running request
then decodes one token per iteration. The KV cache is paged (blocks of ``block_size``
tokens); when a decode step needs a block and none is free, the most recently admitted
request is preempted (vLLM's policy): recomputed later, or swapped to host memory over PCIe
at a cost. A global router assigns arrivals to replicas (round-robin, least outstanding).

Speed: between events (an arrival at the replica, a completion, a KV block running out) a
decode-only batch is fast-forwarded in closed form: with the batch fixed, iteration ``j``
costs ``base + slope x (context + n x j)`` (decode attention reads the growing KV cache), so
``k`` iterations cost an arithmetic series and the iteration at which a target time is
crossed is the root of a quadratic. Per-request state is a struct of numpy arrays; the
router's events come from the sorted trace (no heap is needed for one arrival stream).

Iteration time constants come from ``cost_model.CostModel`` (calibrated roofline).
"""

from __future__ import annotations

import math
from array import array
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from infragym.datasets.llm_traces import RequestTrace
from infragym.envs.serving.cost_model import CostModel
from infragym.envs.serving.hardware import BYTES_BF16, GPUS, MODELS

# Request states.
PENDING, WAITING, RUNNING, SWAPPED, FINISHED, FAILED, TIMED_OUT = range(7)
STATE_NAMES = ("pending", "waiting", "running", "swapped", "finished", "failed", "timed_out")

SWAP_COPY_OVERHEAD_S = 10e-6  # assumption: one small cudaMemcpyAsync (PAPERS.md: 64 x 32 KiB copies/block)


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
        if self.preemption not in ("recompute", "swap"):
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
    """Per-request state and records (struct of arrays)."""

    def __init__(self, trace: RequestTrace) -> None:
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


class Replica:
    """One replica's scheduler state and iteration loop.

    The running batch lives in preallocated arrays (``max_running`` slots, admission order,
    the newest last) holding each request's context, pending prefill, KV blocks and token
    records; a request's records are written back to the ``RequestTable`` when it leaves the
    batch (finished or preempted), so an iteration touches only the replica's own arrays.

    The scheduling primitives (``admissible``, ``admit``, ``run_iteration``) are public so a
    learned scheduler (the gymnasium env) can drive them; ``step_fcfs`` is the FCFS baseline.
    """

    def __init__(self, index: int, config: ReplicaConfig, table: RequestTable, slo: SLO) -> None:
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
        self.total_blocks = int(kv_bytes // (block_bytes_per_gpu * config.tp))
        if self.total_blocks <= 0:
            raise ValueError(f"{model.name} does not fit on {config.tp} x {gpu.name} with room for a KV cache")
        self.free_blocks = self.total_blocks
        # Iteration-time tables, by tokens in the batch and by sampled tokens.
        tokens = np.arange(config.max_batched_tokens + config.max_running + 2, dtype=np.float64)
        self._layers_s = model.layers * self.cost.layer_time(np.maximum(tokens, 1.0))
        self._head_s = self.cost.lm_head_time(tokens)
        eff = self.cost.eff
        self._overhead_s = eff.iteration_overhead_s
        self._kv_read_s_per_token = kv_per_gpu_per_token / (gpu.hbm_bandwidth * eff.mem_eff)
        self._attn_flop_s = (
            4.0 * model.layers * (model.q_heads / config.tp) * model.head_dim / (gpu.peak_flops * eff.flop_eff)
        )
        # Every GPU swaps its own shard over its own PCIe link, in parallel.
        self._swap_s_per_block = 2 * model.layers * SWAP_COPY_OVERHEAD_S + block_bytes_per_gpu / gpu.pcie_bandwidth
        self._pending_swap_s = 0.0  # swap-in time charged to the next iteration
        self.clock = 0.0
        self.waiting: deque[int] = deque()
        self.swapped: deque[int] = deque()
        self.swapped_blocks = 0
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
        self.blocks_released = 0  # KV blocks ever returned to the free pool (prefix-cache LRU clock)
        self.horizon = math.inf  # advance_until stops here too (moved by subclasses' events)

    # ------------------------------------------------------------------ views and helpers
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

    def _prefill_len(self, rid: int) -> int:
        """Tokens to prefill on (re)admission: the prompt plus anything generated before a
        recompute preemption."""
        t = self.table
        return int(t.prompt[rid] + t.generated[rid])

    def enqueue(self, rid: int, now: float) -> None:
        if not self.has_work and self.clock < now:
            self.clock = now  # idle until this arrival
        self.table.state[rid] = WAITING
        self.table.replica[rid] = self.index
        self.waiting.append(rid)

    def _drop_timed_out(self) -> None:
        """Drop never-started requests that waited longer than the queue timeout. Preempted
        requests (at the front, already started) never time out; behind them, never-started
        requests are in arrival order, so the scan stops at the first one still in time."""
        t = self.table
        waiting = self.waiting
        started: list[int] = []
        while waiting and t.generated[waiting[0]] > 0:
            started.append(waiting.popleft())
        while waiting and self.clock - t.arrival[waiting[0]] > self.slo.queue_timeout_s:
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
        self.free_blocks -= blocks
        self._pending_prefill += prefill
        self._prefilling += prefill > 0
        self._decoding += prefill == 0
        t.state[rid] = RUNNING

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

    # ------------------------------------------------------------------ scheduling primitives
    def batch_tokens(self) -> int:
        """Tokens already planned for the next iteration (decodes + admitted prefills)."""
        return self._decoding + self._pending_prefill

    def admissible(self, rid: int) -> bool:
        """Whether ``rid`` can join the next iteration without preempting anyone."""
        cfg = self.config
        if self.n >= cfg.max_running:
            return False
        length = self._prefill_len(rid)
        if cfg.chunked_prefill:
            if self.batch_tokens() >= cfg.max_batched_tokens:
                return False
        elif self.batch_tokens() + length > cfg.max_batched_tokens:
            # A preempted request whose prompt + generated tokens outgrew the budget is
            # recomputed on its own (no other prefill in the iteration); a fresh prompt beyond
            # the budget is refused, as vLLM refuses prompts beyond its limit.
            if self.table.generated[rid] == 0 or self._pending_prefill:
                return False
        return self._blocks_to_admit(rid, length) <= self.free_blocks

    def _blocks_to_admit(self, rid: int, length: int) -> int:
        """Free blocks that admitting ``rid`` (prefilling ``length`` tokens) takes: the prompt
        and the token the prefill emits."""
        return -(-(length + 1) // self.config.block_size)

    def admit(self, rid: int) -> None:
        """Move a waiting request into the running batch (its prefill runs next iteration)."""
        if not self.admissible(rid):
            raise ValueError(f"request {rid} is not admissible on replica {self.index}")
        if self.waiting[0] == rid:
            self.waiting.popleft()
        else:
            self.waiting.remove(rid)
        self._admit_unchecked(rid)

    def _admit_unchecked(self, rid: int) -> None:
        length = self._prefill_len(rid)
        # Reserve the prompt and the token the prefill emits, so the prefill never stalls.
        self._append_running(rid, context=0, prefill=length, blocks=-(-(length + 1) // self.config.block_size))

    def _swap_in(self) -> float:
        """Bring swapped requests back first (vLLM prioritises them); returns the PCIe time."""
        t = self.table
        seconds = 0.0
        while self.swapped and self.n < self.config.max_running:
            rid = self.swapped[0]
            context = int(t.prompt[rid] + t.generated[rid])
            blocks = int(self.blocks_for(context + 1))
            if blocks > self.free_blocks:
                break
            self.swapped.popleft()
            self.swapped_blocks -= int(self.blocks_for(context))
            # Its next token's block is taken by the decode step as for any request.
            self._append_running(rid, context=context, prefill=0, blocks=int(self.blocks_for(context)))
            self._resuming[rid] = float(t.last_token[rid])
            seconds += self.blocks_for(context) * self._swap_s_per_block
        self._pending_swap_s += seconds
        return seconds

    def _make_room(self) -> float:
        """Free KV blocks for a decode step that needs them; returns the swap time spent.
        vLLM preempts the most recently admitted request (subclasses may free other memory
        first)."""
        return self._preempt_last()

    def _preempt_last(self) -> float:
        """Preempt the most recently admitted running request; returns the swap time."""
        t = self.table
        i = self.n - 1
        rid = int(self._write_back(slice(i, i + 1))[0])
        prefilling = self._pre[i] > 0
        context = 0 if prefilling else int(self._ctx[i])  # a partial prefill is redone
        freed = int(self._blk[i]) if prefilling else int(self.blocks_for(int(self._ctx[i])))
        self.free_blocks += freed
        self.blocks_released += freed
        self._pending_prefill -= int(self._pre[i])
        self._prefilling -= prefilling
        self._decoding -= not prefilling
        self._resuming.pop(rid, None)
        self.n = i
        t.preemptions[rid] += 1
        if self.config.preemption == "swap" and context > 0:
            # context == prompt + generated tokens, all in the cache
            self.swapped.appendleft(rid)
            self.swapped_blocks += int(self.blocks_for(context))
            t.state[rid] = SWAPPED
            return self.blocks_for(context) * self._swap_s_per_block
        t.state[rid] = WAITING
        self.waiting.appendleft(rid)  # recompute: its prompt + generated tokens are prefilled again
        return 0.0

    def _iteration_seconds(self, prefill_tokens: int, attention_pairs: float, decodes: int, context: int) -> float:
        tokens = min(prefill_tokens + decodes, len(self._layers_s) - 1)
        sampled = decodes + (1 if prefill_tokens else 0)
        return (
            self._overhead_s
            + self._layers_s[tokens]
            + self._head_s[min(sampled, len(self._head_s) - 1)]
            + attention_pairs * self._attn_flop_s
            + context * self._kv_read_s_per_token
        )

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
            if need <= self.free_blocks:
                break
            swap_s += self._make_room()
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
            self.free_blocks -= need
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
            self._release(rid, -(-int(self._ctx[i]) // bs))
            self._decoding -= 1
            for buffer in self._buffers:  # close the gap, keeping admission order
                buffer[i : n - 1] = buffer[i + 1 : n]
            self.n = n - 1

    def _release(self, rid: int, blocks: int) -> None:
        """A finished request's KV blocks go back to the free pool (subclasses may keep them)."""
        self.free_blocks += blocks
        self.blocks_released += blocks

    def _log_segment(self, longest_iteration_s: float) -> None:
        """Log the end of a segment (one iteration or a fast-forwarded run): the KV use and the
        longest iteration in it, from which each request's longest gap between tokens is
        computed at the end (``finalise_max_tbt``)."""
        self.kv_log_t.append(self.clock)
        self.kv_log_used.append(1.0 - self.free_blocks / self.total_blocks)
        self.seg_max.append(longest_iteration_s)

    # ------------------------------------------------------------------ fast-forward
    def fast_forward(self, target: float) -> bool:
        """Run decode-only iterations in closed form until the first completion, the first
        block shortage or the first iteration ending at or after ``target``. False if the
        batch is not decode-only (nothing done)."""
        n = self.n
        if not n or self._pending_prefill or self._pending_swap_s:
            return False
        bs = self.config.block_size
        ctx, rem = self._ctx[:n], self._rem[:n]
        k = first_completion = int(rem.min())
        if self.free_blocks < n * (k // bs + 1):
            # request i needs a new block at iterations room_i + 1, room_i + 1 + bs, ...
            room = (-ctx) % bs
            k = min(k, self._max_iterations_within_blocks(room))
            if k == 0:
                return False  # the next decode needs a block: run_iteration preempts
        context = int(ctx.sum())
        base = self._iteration_seconds(0, 0.0, n, context)
        slope = n * self._kv_read_s_per_token  # extra seconds per iteration as the cache grows
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
        self.free_blocks -= int(((ctx + (k + bs - 1)) // bs - (ctx + (bs - 1)) // bs).sum())
        ctx += k
        rem -= k
        if k == first_completion:
            self._finish_completed()
        self._log_segment(base + slope * (k - 1))
        return True

    def _max_iterations_within_blocks(self, room: np.ndarray) -> int:
        """Largest k such that k decode iterations need no more than the free blocks."""
        bs = self.config.block_size

        def needed(k: int) -> int:
            return int(np.sum(np.maximum(0, -(-(k - room) // bs))))

        lo, hi = 0, 1
        while needed(hi) <= self.free_blocks:
            lo, hi = hi, hi * 2
            if hi > 1 << 24:
                return lo
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if needed(mid) <= self.free_blocks:
                lo = mid
            else:
                hi = mid
        return lo

    def audit(self) -> None:
        """Check the KV-block ledger and the per-request bookkeeping (used by the tests)."""
        t = self.table
        n = self.n
        held = self.blocks
        used = int(held.sum())
        if np.any(held * self.config.block_size < self._ctx[:n] + self._pre[:n]):
            raise AssertionError(f"replica {self.index}: a request holds fewer blocks than its tokens")
        if used + self.free_blocks != self.total_blocks:
            raise AssertionError(f"replica {self.index}: {used} used + {self.free_blocks} free != {self.total_blocks}")
        if self.free_blocks < 0:
            raise AssertionError(f"replica {self.index}: negative free blocks")
        swapped = sum(int(self.blocks_for(t.prompt[r] + t.generated[r])) for r in self.swapped)
        if swapped != self.swapped_blocks:
            raise AssertionError(f"replica {self.index}: swapped blocks {self.swapped_blocks} != {swapped}")
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
    def step_fcfs(self) -> None:
        """The baseline scheduler: swap in, admit waiting requests first come first served
        while they fit (head-of-line blocking, as vLLM), run one iteration."""
        self._drop_timed_out()
        self._swap_in()
        waiting = self.waiting
        while waiting and self.admissible(waiting[0]):
            self._admit_unchecked(waiting.popleft())
        if self.waiting and not self.n and not self.swapped:
            self._fail_unservable(self.waiting[0])
            return
        self.run_iteration()

    def _fail_unservable(self, rid: int) -> None:
        """A request that cannot run even on an empty replica (prompt beyond the KV capacity or
        the token budget) fails instead of blocking the queue forever."""
        self.waiting.remove(rid)
        self.table.state[rid] = FAILED
        self.table.completion[rid] = self.clock

    def advance_until(self, target: float, scheduler: Callable[[Replica], None] | None = None) -> None:
        """Process scheduling points while the clock is before ``target``."""
        step = scheduler or type(self).step_fcfs
        while self.clock < target and self.clock < self.horizon and (self.n or self.waiting or self.swapped):
            if self.waiting:
                self._drop_timed_out()
            blocked = not self.waiting or not self.admissible(self.waiting[0])
            # A timeout can unblock the queue: stop the fast-forward there too.
            stop = min(target, self.next_timeout()) if self.waiting else target
            if blocked and not self.swapped and self.fast_forward(stop):
                continue
            step(self)


# ---------------------------------------------------------------------- cluster
ROUTERS = ("round_robin", "least_outstanding")


@dataclass
class SimulationResult:
    table: RequestTable
    replicas: list[Replica]
    slo: SLO
    end_time: float
    metrics: dict[str, float] = field(default_factory=dict)


class ServingCluster:
    """Replicas behind a global router, fed by a request trace."""

    def __init__(
        self,
        *,
        replica: ReplicaConfig | None = None,
        n_replicas: int = 1,
        router: str = "round_robin",
        slo: SLO | None = None,
        drain_s: float = 3600.0,
    ) -> None:
        if router not in ROUTERS:
            raise ValueError(f"router must be one of {ROUTERS}, got {router!r}")
        if n_replicas <= 0:
            raise ValueError("n_replicas must be positive")
        self.replica_config = replica or ReplicaConfig()
        self.n_replicas = n_replicas
        self.router = router
        self.slo = slo or SLO()
        self.drain_s = drain_s

    def run(self, trace: RequestTrace, scheduler: Callable[[Replica], None] | None = None) -> SimulationResult:
        table = RequestTable(trace)
        replicas = [Replica(i, self.replica_config, table, self.slo) for i in range(self.n_replicas)]
        arrival = table.arrival
        failed = table.trace_failed
        least = self.router == "least_outstanding"
        next_rr = 0
        for rid in range(table.n):
            now = arrival[rid]
            if failed[rid]:
                table.state[rid] = FAILED
                table.completion[rid] = now
                continue
            if least:
                for r in replicas:
                    r.advance_until(now, scheduler)
                chosen = min(replicas, key=lambda r: r.outstanding)
            else:
                chosen = replicas[next_rr]
                next_rr = (next_rr + 1) % self.n_replicas
                chosen.advance_until(now, scheduler)
            chosen.enqueue(rid, now)
        end = (arrival[-1] if table.n else 0.0) + self.drain_s
        for r in replicas:
            r.advance_until(end, scheduler)
            r.sync()  # requests still running at the end keep their partial records
        finalise_max_tbt(table, replicas)
        done = table.completion[np.isfinite(table.completion)]
        finish = float(done.max()) if done.size else 0.0
        result = SimulationResult(table, replicas, self.slo, min(finish, end))
        result.metrics = summarize(result)
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
    "RequestTable",
    "ServingCluster",
    "SimulationResult",
    "summarize",
]
