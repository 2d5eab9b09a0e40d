"""A paged KV cache with automatic prefix caching and pinned caches (Continuum's TTL pinning).

Requests belong to groups that share a growing context (the turns of an agent program, a
conversation's rounds). When a request whose group continues finishes, its KV cache (context +
output) is *pinned*: its blocks stay allocated and count against memory until a TTL decision
releases them, or until the group's next request is admitted, which then reuses them in full
(its prefill skips the cached context).

Blocks returned to the free pool keep their contents until reused, as vLLM's automatic prefix
caching does: the free pool is a FIFO of released blocks (a request's tail blocks enter it
first, so its prefix survives longest) and the group's next request reuses whatever prefix of
its old blocks has not been handed out yet. The FIFO position is tracked with two counters
rather than a list: blocks taken from the head = used - prefix hits + released. A prefix hit
removes blocks from the middle of the FIFO; the head skips those ranges. Pins are released
under memory pressure (soonest to expire first) before any running request is preempted.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from infragym.envs.serving.kv import KVManager, register_kv_manager


@dataclass
class Pin:
    """A group's KV cache held after its request finished."""

    rid: int  # the finished request whose cache this is
    blocks: int
    tokens: int
    since: float
    version: int
    expiry: float = math.inf
    decided: bool = False  # a TTL is set: the pin may be released under pressure
    arrived: bool = False  # the group's next request is queued: hold until it is admitted


@register_kv_manager
class PrefixCacheKVManager(KVManager):
    """Paged KV cache + prefix reuse from the free pool + pins across tool calls.

    Args:
        group_of: per request, its group (program) id.
        context_tokens: per request, the context its cache holds when it finishes (prompt +
            output).
        keep: ``keep(rid)``: whether a finished request's cache is pinned (its group continues).
        pin_block_s: per request, written when its pin ends: blocks x seconds it was held.
    """

    name = "prefix_cache"

    def __init__(
        self,
        total_blocks: int,
        block_size: int,
        swap_s_per_block: float,
        *,
        group_of: np.ndarray,
        context_tokens: np.ndarray,
        keep: Callable[[int], bool],
        pin_block_s: np.ndarray | None = None,
    ) -> None:
        super().__init__(total_blocks, block_size, swap_s_per_block)
        self.group_of = group_of
        self.context_tokens = context_tokens
        self.keep = keep
        self.pin_block_s = pin_block_s if pin_block_s is not None else np.zeros(len(group_of))
        self.pins: dict[int, Pin] = {}
        self.prefix: dict[int, tuple[int, int, int]] = {}  # group -> (FIFO end index, blocks, tokens)
        self.pinned_blocks = 0
        self.pinned_block_s = 0.0
        self.prefix_hit_blocks = 0
        # The free FIFO: positions 0 .. total_blocks - 1 are the initially free blocks; the
        # k-th block ever released gets position total_blocks + k. ``_head`` is the position
        # the allocator takes next; ``_removed`` holds ranges taken out of the middle by
        # prefix hits (sorted, all at or after the head), which the head skips.
        self._head = 0
        self._popped = 0
        self._removed: list[tuple[int, int]] = []
        self._pin_version = 0

    @property
    def kept_blocks(self) -> int:
        return self.pinned_blocks

    # ------------------------------------------------------------------ prefix reuse
    def _advance_head(self) -> None:
        """Move the FIFO head by the blocks allocated since the last call. Blocks taken from
        the head so far = used - prefix hits + released (every other allocation pops it)."""
        popped = (self.total_blocks - self.free_blocks) - self.prefix_hit_blocks + self.blocks_released
        k = popped - self._popped
        self._popped = popped
        while k > 0:
            if not self._removed:
                self._head += k
                return
            start, end = self._removed[0]
            gap = start - self._head
            if k < gap:
                self._head += k
                return
            k -= gap
            self._head = end
            self._removed.pop(0)

    def surviving_prefix_blocks(self, group: int) -> int:
        """Blocks of the group's released cache not yet handed out: its prefix (a request's
        tail blocks enter the FIFO first)."""
        self._advance_head()
        end, blocks, _ = self.prefix[group]
        return min(max(end - self._head, 0), blocks)

    def take_prefix(self, group: int, hits: int) -> None:
        """The group's next request reuses ``hits`` surviving blocks of its released cache:
        they leave the middle of the free-block FIFO (a range the head will skip)."""
        end = self.prefix.pop(group)[0]
        if hits:
            self._advance_head()
            bisect.insort(self._removed, (end - hits, end))
            self.prefix_hit_blocks += hits

    def release_to_pool(self, group: int, blocks: int, tokens: int) -> None:
        """``blocks`` of the group's cache (``tokens`` long) enter the free FIFO, reusable as a
        prefix until handed out."""
        self.free_blocks += blocks
        self.blocks_released += blocks
        self.prefix[group] = (self.total_blocks + self.blocks_released, blocks, tokens)

    # ------------------------------------------------------------------ the KVManager interface
    def cached_tokens(self, rid: int, generated: int) -> int:
        if generated:
            return 0  # preempted by recompute: prefilled again from scratch
        group = int(self.group_of[rid])
        pin = self.pins.get(group)
        if pin is not None:
            return pin.tokens
        if group in self.prefix:
            blocks = self.surviving_prefix_blocks(group)
            return min(blocks, self.prefix[group][2] // self.block_size) * self.block_size
        return 0

    def blocks_to_admit(self, rid: int, tokens: int, generated: int) -> int:
        total = -(-(tokens + 1) // self.block_size)
        pin = self.pins.get(int(self.group_of[rid]))
        return total - (pin.blocks if pin is not None and not generated else 0)

    def allocate(self, rid: int, blocks: int, *, cached: int, generated: int, now: float) -> None:
        group = int(self.group_of[rid])
        pin = self.pins.get(group)
        if pin is not None and not generated:
            # The pinned blocks become this request's: they are not taken from the free pool.
            del self.pins[group]
            self._pin_over(pin, now)
            self.free_blocks += pin.blocks
        elif group in self.prefix:
            self.take_prefix(group, cached // self.block_size)
        self.free_blocks -= blocks

    def release(self, rid: int, blocks: int, now: float, *, finished: bool) -> None:
        if not finished or not self.keep(rid):
            super().release(rid, blocks, now, finished=finished)
            return
        self._pin_version += 1
        self.pins[int(self.group_of[rid])] = Pin(
            rid=rid, blocks=blocks, tokens=int(self.context_tokens[rid]), since=now, version=self._pin_version
        )
        self.pinned_blocks += blocks

    def reclaim(self, now: float) -> bool:
        """A pin never preempts a running request: decided pins are released first (the
        soonest to expire first)."""
        decided = [g for g, pin in self.pins.items() if pin.decided]
        if not decided:
            return False
        self.unpin(min(decided, key=lambda g: self.pins[g].expiry), now)
        return True

    def reclaim_for(self, rid: int, now: float) -> bool:
        """``rid`` cannot run even on an idle replica: release every other group's pin."""
        own = int(self.group_of[rid])
        others = [g for g in self.pins if g != own]
        for group in others:
            self.unpin(group, now)
        return bool(others)

    def forget(self, rid: int, now: float) -> None:
        group = int(self.group_of[rid])
        if group in self.pins:
            self.unpin(group, now)
        self.prefix.pop(group, None)

    # ------------------------------------------------------------------ pins
    def _pin_over(self, pin: Pin, now: float) -> None:
        self.pinned_blocks -= pin.blocks
        held = max(now - pin.since, 0.0)
        self.pinned_block_s += pin.blocks * held
        self.pin_block_s[pin.rid] = pin.blocks * held

    def unpin(self, group: int, now: float) -> None:
        """Return a pinned cache to the free pool (its prefix stays reusable until evicted)."""
        pin = self.pins.pop(group)
        self._pin_over(pin, now)
        self.release_to_pool(group, pin.blocks, pin.tokens)

    def expire(self, group: int, version: int, now: float) -> None:
        """A TTL ran out: release the pin unless it was replaced or its next request waits."""
        pin = self.pins.get(group)
        if pin is not None and pin.version == version and not pin.arrived:
            self.unpin(group, now)

    def audit(self, running_blocks: int) -> None:
        if sum(pin.blocks for pin in self.pins.values()) != self.pinned_blocks:
            raise AssertionError("prefix_cache: pinned block count out of date")
        super().audit(running_blocks)
        if self._head > self.total_blocks + self.blocks_released:
            raise AssertionError("prefix_cache: free-pool head beyond the released blocks")


__all__ = ["Pin", "PrefixCacheKVManager"]
