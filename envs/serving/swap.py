"""The swap engine of context switching (issue 15 section 2; FastSwitch, arXiv 2411.18424).

A fairness scheduler preempts running requests by swapping their KV cache to host memory and
brings them back later; FastSwitch finds three costs in vLLM's swap and removes each:

1. Granularity. vLLM's KV cache is one tensor per layer and K/V, in 16-token blocks; a request's
   blocks are scattered, so a swap is one ``cudaMemcpyAsync`` per block per layer and K/V (64
   copies of 32 KiB for one block of Llama-3-8B; PAPERS.md), each paying a fixed overhead that
   dwarfs its bytes over PCIe. FastSwitch's dynamic block groups allocate a request's blocks in
   contiguous runs (``group_blocks`` blocks), so one copy moves a whole run.
2. Synchronous swaps stall the GPU for the whole copy. FastSwitch's swap manager copies on
   another stream while the batch computes; the GPU stalls only where the next iteration
   depends on a copy that has not finished (the swapped-in request's KV, the blocks a
   swap-out frees).
3. Re-transfer across turns. A multi-turn conversation's later turns repeat its earlier context;
   FastSwitch keeps the host copy after a swap-in and after the turn ends, so the next swap-out
   of the conversation moves only the blocks the host does not hold yet.

Cost of one swap (either way): ``copies x per-copy overhead + bytes / PCIe bandwidth``, per GPU
(each GPU of a tensor-parallel replica swaps its own shard over its own link, in parallel), with
``copies = 2 x layers x ceil(blocks moved / group_blocks)``.

``SwapKVManager`` (``swap_engine``) is a paged KV manager (the same blocks and memory as vLLM's:
FastSwitch keeps vLLM's allocation policy) with a configurable engine; ``SwapEngine`` names the
three mechanisms. The manager counts bytes and copies moved and the GPU stall it charged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from infragym.envs.serving.hardware import MODELS, ModelSpec
from infragym.envs.serving.kv import SWAP_COPY_OVERHEAD_S, KVManager, register_kv_manager

# Assumption (FastSwitch does not fix one size; its block groups grow with the request): a
# contiguous run is at most 64 blocks of 16 tokens (1,024 tokens, 4 MiB per layer and K/V of
# Llama-3-8B), so one copy moves a run at close to the link's bandwidth.
DEFAULT_GROUP_BLOCKS = 64


@dataclass(frozen=True)
class SwapEngine:
    """The three mechanisms of FastSwitch's context switch, each on or off.

    Args:
        group_blocks: blocks per contiguous run (1: vLLM's scattered 16-token blocks, one copy
            per block per layer and K/V; > 1: FastSwitch's dynamic block groups).
        asynchronous: copies overlap with compute (False: the GPU waits for every copy).
        reuse_host_copy: keep a conversation's host copy across swap-ins and turns, so a
            swap-out moves only blocks the host lacks.
    """

    group_blocks: int = 1
    asynchronous: bool = False
    reuse_host_copy: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.group_blocks, bool) or not isinstance(self.group_blocks, int) or self.group_blocks < 1:
            raise ValueError(f"group_blocks must be a whole number >= 1, got {self.group_blocks!r}")


# The study's variants: vLLM's swap, FastSwitch, and each mechanism alone on top of vLLM's.
SWAP_VARIANTS: dict[str, SwapEngine] = {
    "vllm_swap": SwapEngine(),
    "block_groups": SwapEngine(group_blocks=DEFAULT_GROUP_BLOCKS),
    "async_swap": SwapEngine(asynchronous=True),
    "kv_reuse": SwapEngine(reuse_host_copy=True),
    "fastswitch": SwapEngine(group_blocks=DEFAULT_GROUP_BLOCKS, asynchronous=True, reuse_host_copy=True),
}


@register_kv_manager
class SwapKVManager(KVManager):
    """vLLM's paged KV cache with a configurable swap engine (``SwapEngine``).

    Timing: a scheduler that knows the coming iteration calls ``begin(now, window_s)`` before it
    swaps (the replica's clock and the iteration's compute time). Copies run on one copy stream
    in order; a synchronous engine charges each copy in full, an asynchronous one charges only
    the part of the copy stream's backlog that outlasts the iteration (the dependency). Without
    a ``begin`` (e.g. a swap forced by ``make_room`` under another scheduler) the window is 0.

    Args:
        total_blocks, block_size, swap_s_per_block: from the replica (``swap_s_per_block`` is
            vLLM's per-block cost: 2 x layers copies + the block's bytes over PCIe; the bytes
            part is kept, the copies are counted by granularity).
        engine: the mechanisms.
        model, tp: the served model and tensor-parallel degree (copies and bytes per block).
        conversation: per request, the id of its conversation (host copies are kept per
            conversation; None: every request is its own).
    """

    name = "swap_engine"

    def __init__(
        self,
        total_blocks: int,
        block_size: int,
        swap_s_per_block: float,
        *,
        engine: SwapEngine | None = None,
        model: ModelSpec | str = "llama3.1_8b",
        tp: int = 1,
        conversation: np.ndarray | None = None,
    ) -> None:
        super().__init__(total_blocks, block_size, swap_s_per_block)
        self.engine = engine or SwapEngine()
        self.model = MODELS[model] if isinstance(model, str) else model
        self.copies_per_run = 2 * self.model.layers  # one per layer and K/V
        self.bytes_per_block = block_size * self.model.kv_bytes_per_token / min(tp, self.model.kv_heads)
        self._bytes_s_per_block = max(swap_s_per_block - self.copies_per_run * SWAP_COPY_OVERHEAD_S, 0.0)
        self.conversation = None if conversation is None else np.asarray(conversation, dtype=np.int64)
        self.now = 0.0
        self.window_s = 0.0
        self.stream_free_at = 0.0  # when the copy stream has finished its queued copies
        self.swapped_out: dict[int, int] = {}  # swapped request -> its blocks in host memory
        self.on_device: set[int] = set()  # requests holding device blocks
        self.host_copy: dict[int, int] = {}  # conversation -> blocks of its context kept on the host
        # Counters of the study.
        self.swap_outs = 0
        self.swap_ins = 0
        self.bytes_swapped = 0.0  # per GPU, both ways
        self.copies = 0
        self.copy_s = 0.0  # copy-stream time, hidden or not
        self.stall_s = 0.0  # GPU time charged (the stall)
        self.blocks_reused = 0  # swap-out blocks the host already held

    # ------------------------------------------------------------------ timing
    def begin(self, now: float, window_s: float) -> None:
        """The next iteration starts at ``now`` and computes for ``window_s`` seconds: copies
        issued before it may overlap with it (asynchronous engine)."""
        self.now = max(self.now, float(now))
        self.window_s = max(float(window_s), 0.0)

    def _copy(self, blocks: int) -> float:
        """Issue one swap of ``blocks`` blocks; returns the GPU stall it causes."""
        if blocks <= 0:
            return 0.0
        runs = -(-blocks // self.engine.group_blocks)
        copies = runs * self.copies_per_run
        seconds = copies * SWAP_COPY_OVERHEAD_S + blocks * self._bytes_s_per_block
        self.copies += copies
        self.bytes_swapped += blocks * self.bytes_per_block
        self.copy_s += seconds
        start = max(self.now, self.stream_free_at)
        self.stream_free_at = start + seconds
        if self.engine.asynchronous:
            # The iteration needs the copied KV (or the freed blocks) by its end.
            stall = max(self.stream_free_at - (self.now + self.window_s), 0.0)
            stall = min(stall, seconds)  # earlier copies' stalls were charged already
        else:
            stall = seconds
        self.stall_s += stall
        return stall

    def swap_seconds(self, blocks: int) -> float:
        """Copy-stream seconds of one swap of ``blocks`` blocks (no reuse, no overlap)."""
        if blocks <= 0:
            return 0.0
        runs = -(-blocks // self.engine.group_blocks)
        return runs * self.copies_per_run * SWAP_COPY_OVERHEAD_S + blocks * self._bytes_s_per_block

    # ------------------------------------------------------------------ ledger
    def _conv(self, rid: int) -> int:
        return int(self.conversation[rid]) if self.conversation is not None else -1 - rid

    def allocate(self, rid: int, blocks: int, *, cached: int, generated: int, now: float) -> None:
        self.free_blocks -= blocks
        self.on_device.add(rid)
        self.now = max(self.now, now)

    def release(self, rid: int, blocks: int, now: float, *, finished: bool) -> None:
        super().release(rid, blocks, now, finished=finished)
        self.on_device.discard(rid)

    def swap_out(self, rid: int, blocks: int) -> float:
        self.free_blocks += blocks
        self.blocks_released += blocks
        self.swapped_blocks += blocks
        self.swapped_out[rid] = blocks
        self.on_device.discard(rid)
        self.swap_outs += 1
        moved = blocks
        if self.engine.reuse_host_copy:
            conv = self._conv(rid)
            held = min(self.host_copy.get(conv, 0), blocks)
            self.blocks_reused += held
            moved = blocks - held
            self.host_copy[conv] = max(self.host_copy.get(conv, 0), blocks)
        return self._copy(moved)

    def swap_in(self, rid: int, blocks: int) -> float:
        host = self.swapped_out.pop(rid, None)
        if host != blocks:
            raise AssertionError(f"swap_engine: request {rid} swaps in {blocks} blocks, {host} were swapped out")
        self.free_blocks -= blocks
        self.swapped_blocks -= blocks
        self.on_device.add(rid)
        self.swap_ins += 1
        return self._copy(blocks)

    def forget(self, rid: int, now: float) -> None:
        self.on_device.discard(rid)

    @property
    def host_blocks_kept(self) -> int:
        """Blocks of host memory held as conversations' copies (beyond the swapped requests)."""
        return sum(self.host_copy.values())

    def audit(self, running_blocks: int) -> None:
        super().audit(running_blocks)
        if sum(self.swapped_out.values()) != self.swapped_blocks:
            raise AssertionError("swap_engine: host copies of swapped requests do not add up to the swapped blocks")
        if set(self.swapped_out) & self.on_device:
            raise AssertionError("swap_engine: a swapped request also holds device blocks")
        if self.stall_s > self.copy_s + 1e-12:
            raise AssertionError("swap_engine: more stall than copy time")

    def stats(self) -> dict[str, float]:
        """The engine's counters (per replica)."""
        return {
            "swap_outs": float(self.swap_outs),
            "swap_ins": float(self.swap_ins),
            "bytes_swapped": float(self.bytes_swapped),
            "copies": float(self.copies),
            "copy_s": float(self.copy_s),
            "stall_s": float(self.stall_s),
            "blocks_reused": float(self.blocks_reused),
            "host_blocks_kept": float(self.host_blocks_kept),
        }


def swap_engine_factory(
    engine: SwapEngine | str, *, model: str = "llama3.1_8b", tp: int = 1, conversation: np.ndarray | None = None
) -> Callable[[int, int, float], SwapKVManager]:
    """The kernel's ``kv_manager`` factory for an engine (or a ``SWAP_VARIANTS`` name)."""
    if isinstance(engine, str):
        if engine not in SWAP_VARIANTS:
            raise ValueError(f"unknown swap variant {engine!r}; known: {sorted(SWAP_VARIANTS)}")
        engine = SWAP_VARIANTS[engine]
    chosen = engine

    def factory(total_blocks: int, block_size: int, swap_s_per_block: float) -> SwapKVManager:
        return SwapKVManager(
            total_blocks, block_size, swap_s_per_block, engine=chosen, model=model, tp=tp, conversation=conversation
        )

    return factory


def swap_totals(managers: list[Any]) -> dict[str, float]:
    """The engine counters summed over replicas (``stats`` of each ``SwapKVManager``)."""
    totals: dict[str, float] = {}
    for kv in managers:
        if isinstance(kv, SwapKVManager):
            for key, value in kv.stats().items():
                totals[key] = totals.get(key, 0.0) + value
    return totals


__all__ = [
    "DEFAULT_GROUP_BLOCKS",
    "SWAP_VARIANTS",
    "SwapEngine",
    "SwapKVManager",
    "swap_engine_factory",
    "swap_totals",
]
