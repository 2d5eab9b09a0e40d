"""Compiled (numba) inner loops of a replica: one iteration, a fast-forwarded decode stretch.

Profiling the 1M-request benchmark (py-spy) put ~85% of the time in ``Replica.run_iteration``
and ``Replica.fast_forward``: a dozen small numpy operations each on a batch of tens of slots,
where the per-call overhead, not the arithmetic, dominates. These kernels do the same work in
one compiled pass over the batch's slots. Floating-point operations are written in the same
order as the numpy code they replace, so schedules are reproduced (the attention pairs of a
prefill are now summed in slot order rather than by BLAS).

The batch is one ``int64`` array ``slots[6, max_running]`` with the rows below; the cost
tables are one ``float64`` array ``costs[2, tokens]``: the layers' time and the LM head's time
by tokens in the batch.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

IDS, CTX, PRE, BLK, REM, TARGET = range(6)
N_ROWS = 6
LAYERS, HEAD = 0, 1


@njit(cache=True)
def _prefill_is_suffix(slots: np.ndarray, n: int, prefilling: int) -> bool:
    """Whether the prefilling slots are the newest ``prefilling`` ones (the common case; a
    swap-in behind a partial chunked prefill breaks it)."""
    if prefilling == 0:
        return True
    for i in range(n - prefilling):
        if slots[PRE, i] != 0:
            return False
    return True


@njit(cache=True)
def decode_blocks_needed(slots: np.ndarray, n: int, prefilling: int, block_size: int) -> int:
    """New KV blocks the next decode step takes: decoding slots whose context fills its blocks."""
    need = 0
    if _prefill_is_suffix(slots, n, prefilling):
        for i in range(n - prefilling):
            if slots[CTX, i] % block_size == 0:
                need += 1
    else:
        for i in range(n):
            if slots[PRE, i] == 0 and slots[CTX, i] % block_size == 0:
                need += 1
    return need


@njit(cache=True)
def iteration_seconds(
    costs: np.ndarray,
    overhead: float,
    attn_flop: float,
    kv_read: float,
    time_scale: float,
    prefill_tokens: int,
    pairs: float,
    decodes: int,
    context: int,
) -> float:
    last = costs.shape[1] - 1
    tokens = min(prefill_tokens + decodes, last)
    sampled = decodes + (1 if prefill_tokens else 0)
    return (
        overhead + costs[LAYERS, tokens] + costs[HEAD, min(sampled, last)] + pairs * attn_flop + context * kv_read
    ) * time_scale


@njit(cache=True)
def run_iteration(
    slots: np.ndarray,
    n: int,
    prefilling: int,
    pending_prefill: int,
    decodes: int,
    chunked: bool,
    max_batched_tokens: int,
    costs: np.ndarray,
    overhead: float,
    attn_flop: float,
    kv_read: float,
    time_scale: float,
    swap_s: float,
    clock: float,
    first_token: np.ndarray,
    max_tbt: np.ndarray,
    last_token: np.ndarray,
) -> tuple[float, int, int, bool]:
    """One iteration of the batch: prefill chunks, one token for every decoding slot. Writes
    first-token times (and the gap of requests recomputed after a preemption) to the table.
    Returns (seconds, prefill tokens, prefills completed, whether a request has finished)."""
    suffix = _prefill_is_suffix(slots, n, prefilling)
    d = n - prefilling
    context = 0
    if decodes:
        for i in range(n):
            if (i < d) if suffix else slots[PRE, i] == 0:
                context += slots[CTX, i]
    prefill_tokens = 0
    pairs = 0.0
    chunks = np.zeros(n, dtype=np.int64)
    if prefilling:
        budget = max(max_batched_tokens - decodes, 0)
        cumulative = 0
        for i in range(n):
            if (i >= d) if suffix else slots[PRE, i] > 0:
                chunk = slots[PRE, i]
                if chunked:
                    cumulative += chunk
                    chunk = max(chunk - max(cumulative - budget, 0), 0)
                chunks[i] = chunk
                prefill_tokens += chunk
                pairs += chunk * (slots[CTX, i] + chunk / 2.0)
        if not chunked:
            prefill_tokens = pending_prefill  # every pending prompt runs whole
    seconds = (
        iteration_seconds(costs, overhead, attn_flop, kv_read, time_scale, prefill_tokens, pairs, decodes, context)
        + swap_s
    )
    end = clock + seconds
    completed = 0
    finished = False
    for i in range(n):
        is_prefill = (i >= d) if suffix else slots[PRE, i] > 0
        if not is_prefill:
            if decodes:
                slots[REM, i] -= 1
                slots[CTX, i] += 1
        elif prefill_tokens:
            slots[PRE, i] -= chunks[i]
            slots[CTX, i] += chunks[i]
            if slots[PRE, i] == 0:
                rid = slots[IDS, i]
                if slots[REM, i] == slots[TARGET, i]:
                    first_token[rid] = end
                else:  # recomputed after a preemption: the wait is one long gap
                    max_tbt[rid] = max(max_tbt[rid], end - last_token[rid])
                slots[REM, i] -= 1
                slots[CTX, i] += 1  # the emitted token's slot was reserved at admission
                completed += 1
        if slots[REM, i] == 0:
            finished = True
    return seconds, prefill_tokens, completed, finished


@njit(cache=True)
def _max_iterations_within_blocks(ctx: np.ndarray, n: int, block_size: int, free: int) -> int:
    """Largest k such that k decode iterations need no more than ``free`` blocks (request i
    needs a new block at iterations room_i + 1, room_i + 1 + block_size, ...)."""
    room = np.empty(n, dtype=np.int64)
    for i in range(n):
        room[i] = (-ctx[i]) % block_size

    def needed(k: int) -> int:
        total = 0
        for i in range(n):
            total += max(0, -(-(k - room[i]) // block_size))
        return total

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


@njit(cache=True)
def fast_forward(
    slots: np.ndarray,
    n: int,
    block_size: int,
    free: int,
    horizon: int,
    clock: float,
    target: float,
    costs: np.ndarray,
    overhead: float,
    kv_read: float,
    time_scale: float,
) -> tuple[int, float, int, float, float, bool]:
    """Decode-only iterations of a fixed batch in closed form until the first completion, the
    first block shortage, the first iteration ending at or after ``target`` or ``horizon``
    iterations (< 0: none). Iteration j costs ``base + slope x j`` (decode attention reads the
    growing cache), so k iterations cost an arithmetic series and the iteration crossing the
    target is the root of a quadratic. Returns (iterations, seconds, new blocks, base, slope,
    whether the first completion was reached); 0 iterations: the next decode needs a block."""
    ctx = slots[CTX]
    rem = slots[REM]
    first_completion = rem[0]
    for i in range(1, n):
        if rem[i] < first_completion:
            first_completion = rem[i]
    k = first_completion
    if horizon >= 0:
        k = max(1, min(k, horizon))
    if free < n * (k // block_size + 1):
        k = min(k, _max_iterations_within_blocks(ctx, n, block_size, free))
        if k == 0:
            return 0, 0.0, 0, 0.0, 0.0, False
    context = 0
    for i in range(n):
        context += ctx[i]
    base = iteration_seconds(costs, overhead, 0.0, kv_read, time_scale, 0, 0.0, n, context)
    slope = n * kv_read * time_scale  # extra seconds per iteration as the cache grows
    if math.isfinite(target) and target > clock:
        span = target - clock
        if slope > 0:
            a, b = slope / 2.0, base - slope / 2.0
            j = math.ceil((-b + math.sqrt(b * b + 4 * a * span)) / (2 * a) - 1e-9)
        else:
            j = math.ceil(span / base)
        k = max(1, min(k, j))
    elif math.isfinite(target):
        k = 1
    elapsed = k * base + slope * k * (k - 1) / 2.0
    grown = 0
    for i in range(n):
        # blocks held go from ceil(ctx / bs) to ceil((ctx + k) / bs)
        grown += (ctx[i] + (k + block_size - 1)) // block_size - (ctx[i] + (block_size - 1)) // block_size
        ctx[i] += k
        rem[i] -= k
    return k, elapsed, grown, base, slope, k == first_completion


@njit(cache=True)
def retire_finished(
    slots: np.ndarray,
    n: int,
    clock: float,
    block_size: int,
    finished_state: int,
    generated: np.ndarray,
    last_token: np.ndarray,
    completion: np.ndarray,
    state: np.ndarray,
    out_rids: np.ndarray,
    out_blocks: np.ndarray,
) -> tuple[int, int]:
    """Remove the slots that generated their last token (keeping the others' admission
    order), record them in the table and list them (ids, KV blocks held) in slot order.
    Returns (slots left, requests retired)."""
    kept = 0
    count = 0
    for i in range(n):
        if slots[REM, i] == 0:
            rid = slots[IDS, i]
            generated[rid] = slots[TARGET, i]
            last_token[rid] = clock
            completion[rid] = clock
            state[rid] = finished_state
            out_rids[count] = rid
            out_blocks[count] = -(-slots[CTX, i] // block_size)
            count += 1
        else:
            if kept != i:
                for row in range(N_ROWS):
                    slots[row, kept] = slots[row, i]
            kept += 1
    return kept, count


__all__ = ["N_ROWS", "decode_blocks_needed", "fast_forward", "iteration_seconds", "retire_finished", "run_iteration"]
