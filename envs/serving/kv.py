"""KV-cache managers: a serving replica's KV memory, behind one interface.

The replica owns the running batch (which request holds how many tokens); its ``KVManager``
owns the memory: how many blocks are free, what admitting a request takes (a cached prefix is
free of charge), what a decode step that opens new blocks takes, where a preempted request's
cache goes (freed, or swapped to host memory at a PCIe cost), and memory held outside the
running batch (pinned caches) that can be reclaimed under pressure.

Managers:

- ``PagedKVManager`` (``paged``): vLLM's paged KV cache (blocks of ``block_size`` tokens, a
  request holds ``ceil(tokens / block_size)``), swap over PCIe at a per-block cost.
- ``PrefixCacheKVManager`` (``prefix_cache``, in ``prefix_cache.py``): the paged cache plus
  automatic prefix caching and pins held across tool calls (Continuum).

Accounting is in blocks of ``ReplicaConfig.block_size`` tokens; a manager with another
granularity (e.g. vAttention's pages mapped on demand) sets the replica's ``block_size`` to its
unit's tokens. A manager whose attention kernels differ in speed from paged attention sets
``attention_cost_factor``; a swap engine that overlaps copies with compute returns the seconds
it does not hide from ``swap_out``/``swap_in``.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

SWAP_COPY_OVERHEAD_S = 10e-6  # assumption: one small cudaMemcpyAsync (PAPERS.md: 64 x 32 KiB copies/block)


class KVManager:
    """The KV memory of one replica: capacity, usage, allocate/grow/release, swap out/in.

    The replica calls, in its own time order (``now`` is the replica's clock):

    - ``cached_tokens(rid, generated)`` and ``blocks_to_admit(rid, tokens, generated)`` to check
      an admission, then ``allocate(rid, blocks, cached=, generated=, now=)`` when it admits;
    - ``grow(blocks)`` when decode steps open new blocks (the batch's growth, summed);
    - ``release(rid, blocks, now, finished=...)`` when a request leaves the batch;
    - ``swap_out(rid, blocks)`` / ``swap_in(rid, blocks)`` for swap preemption (seconds of copy);
    - ``reclaim(now)`` before preempting anyone when a decode step needs blocks, and
      ``reclaim_for(rid, now)`` when ``rid`` cannot run even on an idle replica; both return
      whether memory held outside the running batch was freed;
    - ``forget(rid, now)`` when a request fails (a manager drops what it kept for it).

    ``free_blocks`` is a plain attribute (the hot path reads it); a subclass keeps it equal to
    ``total_blocks`` minus the blocks held by running requests and by itself.
    """

    name: ClassVar[str] = ""
    # Multiplies the attention part of an iteration's time (prefill attention FLOPs, decode KV
    # reads): a manager whose kernels read the cache faster or slower than paged attention.
    attention_cost_factor: ClassVar[float] = 1.0

    def __init__(self, total_blocks: int, block_size: int, swap_s_per_block: float) -> None:
        if total_blocks <= 0 or block_size <= 0:
            raise ValueError(f"a KV cache needs positive blocks and block size, got {total_blocks}, {block_size}")
        self.total_blocks = int(total_blocks)
        self.block_size = int(block_size)
        self.swap_s_per_block = float(swap_s_per_block)
        self.free_blocks = self.total_blocks
        self.swapped_blocks = 0  # in host memory
        self.blocks_released = 0  # blocks ever returned to the free pool (an LRU clock)

    # ------------------------------------------------------------------ capacity and usage
    @property
    def capacity(self) -> int:
        """Blocks of the device KV cache."""
        return self.total_blocks

    @property
    def used_blocks(self) -> int:
        return self.total_blocks - self.free_blocks

    def usage(self) -> float:
        """Fraction of the device KV cache in use (running requests and anything kept)."""
        return 1.0 - self.free_blocks / self.total_blocks

    def blocks_for(self, tokens: int | np.ndarray) -> int | np.ndarray:
        """Blocks that hold ``tokens`` tokens."""
        return -(-tokens // self.block_size)

    # ------------------------------------------------------------------ admission
    def cached_tokens(self, rid: int, generated: int) -> int:
        """Tokens of ``rid``'s context already in the cache (its prefill skips them)."""
        return 0

    def blocks_to_admit(self, rid: int, tokens: int, generated: int) -> int:
        """Free blocks that admitting ``rid`` with ``tokens`` of context takes: the context and
        the token its prefill emits, less what the manager already holds for it."""
        return -(-(tokens + 1) // self.block_size)

    def allocate(self, rid: int, blocks: int, *, cached: int, generated: int, now: float) -> None:
        """``rid`` (``generated`` > 0: preempted by recompute after that many tokens) joins the
        batch holding ``blocks`` blocks, ``cached`` tokens of them reused."""
        self.free_blocks -= blocks

    def grow(self, blocks: int) -> None:
        """Decode steps of the running batch opened ``blocks`` new blocks."""
        self.free_blocks -= blocks

    def release(self, rid: int, blocks: int, now: float, *, finished: bool) -> None:
        """``rid`` left the batch (finished, or preempted by recompute) holding ``blocks``."""
        self.free_blocks += blocks
        self.blocks_released += blocks

    # ------------------------------------------------------------------ swapping
    def swap_seconds(self, blocks: int) -> float:
        """Seconds to copy ``blocks`` blocks between device and host (either way)."""
        return blocks * self.swap_s_per_block

    def swap_out(self, rid: int, blocks: int) -> float:
        """Copy a preempted request's ``blocks`` to host memory; returns the copy time."""
        self.free_blocks += blocks
        self.blocks_released += blocks
        self.swapped_blocks += blocks
        return self.swap_seconds(blocks)

    def swap_in(self, rid: int, blocks: int) -> float:
        """Copy a swapped request's ``blocks`` back to the device; returns the copy time."""
        self.free_blocks -= blocks
        self.swapped_blocks -= blocks
        return self.swap_seconds(blocks)

    # ------------------------------------------------------------------ memory kept outside the batch
    def reclaim(self, now: float) -> bool:
        """Free memory kept outside the running batch (before anyone is preempted)."""
        return False

    def reclaim_for(self, rid: int, now: float) -> bool:
        """Free memory kept for requests other than ``rid`` (``rid`` cannot run even alone)."""
        return False

    def forget(self, rid: int, now: float) -> None:
        """``rid`` failed: drop whatever is kept for it."""
        return None

    @property
    def kept_blocks(self) -> int:
        """Blocks held outside the running batch (pins)."""
        return 0

    def audit(self, running_blocks: int) -> None:
        """Check the ledger: blocks of the running batch + kept + free = capacity."""
        if self.free_blocks < 0:
            raise AssertionError(f"{self.name}: negative free blocks ({self.free_blocks})")
        if running_blocks + self.kept_blocks + self.free_blocks != self.total_blocks:
            raise AssertionError(
                f"{self.name}: {running_blocks} running + {self.kept_blocks} kept + {self.free_blocks} free "
                f"!= {self.total_blocks}"
            )


class PagedKVManager(KVManager):
    """vLLM's paged KV cache: fixed blocks, freed at once when a request leaves the batch."""

    name = "paged"


KV_MANAGERS: dict[str, type[KVManager]] = {"paged": PagedKVManager}


def register_kv_manager(cls: type[KVManager]) -> type[KVManager]:
    """Class decorator: make a manager available by its ``name`` (config ``kv_manager=<name>``)."""
    if not cls.name:
        raise ValueError(f"{cls.__qualname__}: a KV manager needs a non-empty name")
    KV_MANAGERS[cls.name] = cls
    return cls


__all__ = ["KV_MANAGERS", "SWAP_COPY_OVERHEAD_S", "KVManager", "PagedKVManager", "register_kv_manager"]
