"""The serving kernel's event loop: one clock, one queue of events.

Every driver runs on it: the cluster run (``simulator.ServingCluster``: arrivals routed to
replicas), ``LLMServing-v0`` (arrivals at one replica whose scheduler pauses the loop for the
agent's decision), the agent-program simulator (``programs.ProgramSimulation``: program starts,
turn arrivals after tool calls, pin expiries) and ``KVCacheTTL-v0`` on top of it.

Events are ``(time, order, sequence)``-ordered callbacks: a heap of scheduled events merged
with one sorted stream (a trace's arrivals, read by index: a million arrivals need no heap).
``order`` breaks ties between kinds at the same time; the sequence keeps insertion order.

Replicas are advanced between events, lazily. A *watched* loop (``watch=True``: the replicas
emit events, e.g. a finished turn starts a tool call) brings every replica up to an event's
time before handling it, stopping as soon as a replica's completion schedules an earlier event
or pauses the loop (the replica interrupts itself at that completion). An unwatched loop
advances only the replicas an event touches (the router's choice, or all of them for a router
that reads load) and all of them at the end: replicas interact only through events, so the
result is the same as advancing every replica at every event, at a fraction of the cost.

A replica's clock is when its current iteration ends (it may run ahead of the loop's clock
while it is busy); the loop's clock is the time of the last event handled.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from infragym.envs.serving.simulator import Replica

Handler = Callable[..., None]


class EventLoop:
    """One clock and one event queue over a set of replicas (addable and removable between
    events).

    Args:
        replicas: the replicas the loop advances.
        watch: bring every replica up to each event's time before handling it (replicas that
            emit events); otherwise handlers advance what they touch.
    """

    def __init__(self, replicas: Sequence[Replica] = (), *, watch: bool = False) -> None:
        self.clock = 0.0
        self.replicas: list[Replica] = list(replicas)
        self.watch = watch
        self._heap: list[tuple[float, int, int, Handler, tuple[Any, ...]]] = []
        self._seq = 0
        self._stream_times: list[float] = []
        self._stream_handler: Callable[[int, float], None] | None = None
        self._stream_next = 0
        self._paused = False
        self.events = 0  # events handled

    # ------------------------------------------------------------------ scheduling
    def at(self, time: float, handler: Handler, *args: Any, order: int = 0) -> None:
        """Call ``handler(time, *args)`` at ``time`` (ties: lower ``order`` first, then FIFO)."""
        if math.isnan(time):
            raise ValueError("an event needs a time, got NaN")
        self._seq += 1
        heapq.heappush(self._heap, (float(time), order, self._seq, handler, args))

    def stream(self, times: np.ndarray, handler: Callable[[int, float], None]) -> None:
        """A sorted stream of events: ``handler(i, times[i])`` for each ``i`` in order, merged
        with the scheduled events (a stream event goes after a scheduled one at the same time)."""
        times = np.asarray(times, dtype=np.float64)
        if times.size and np.any(np.diff(times) < 0):
            raise ValueError("a stream's times must be non-decreasing")
        self._stream_times = times.tolist()  # Python floats: cheaper to index one at a time
        self._stream_handler = handler
        self._stream_next = 0

    @property
    def stream_position(self) -> int:
        """Stream events handled so far."""
        return self._stream_next

    def next_time(self) -> float:
        """The time of the next event (inf if none)."""
        t = self._heap[0][0] if self._heap else math.inf
        if self._stream_next < len(self._stream_times):
            t = min(t, self._stream_times[self._stream_next])
        return t

    def pending(self) -> bool:
        return bool(self._heap) or self._stream_next < len(self._stream_times)

    def add_replica(self, replica: Replica) -> None:
        """Add a replica (between events); it starts idle at the loop's clock."""
        replica.clock = max(replica.clock, self.clock)
        self.replicas.append(replica)

    def remove_replica(self, replica: Replica) -> None:
        """Stop advancing ``replica`` (between events); what it holds stays as it is."""
        self.replicas.remove(replica)

    def pause(self) -> None:
        """Stop ``run`` after the current step (an external decision is pending)."""
        self._paused = True

    # ------------------------------------------------------------------ running
    def _catch_up(self, time: float) -> bool:
        """Advance every replica to ``time``; False as soon as one paused the loop or
        scheduled a new event (then the earliest event must be looked at again)."""
        seq = self._seq
        for replica in self.replicas:
            while (replica.n or replica.waiting or replica.swapped) and replica.clock < time:
                if not replica.advance_until(time):
                    self._paused = True
                if self._paused or self._seq != seq:
                    return False
        return True

    def run(self, until: float = math.inf) -> bool:
        """Handle events up to ``until``, then bring every replica to ``until``. Returns True
        when done (nothing left before ``until``), False when paused."""
        self._paused = False
        heap = self._heap
        times = self._stream_times
        n_stream = len(times)
        while True:
            from_heap = bool(heap) and heap[0][0] <= until
            from_stream = self._stream_next < n_stream and times[self._stream_next] <= until
            if not from_heap and not from_stream:
                # Nothing left before ``until``: bring the replicas there (a run's drain).
                if not self._catch_up(until):
                    if self._paused:
                        return False
                    continue  # a replica scheduled an event before ``until``
                if math.isfinite(until):
                    self.clock = max(self.clock, until)
                return True
            t_heap = heap[0][0] if from_heap else math.inf
            t_stream = times[self._stream_next] if from_stream else math.inf
            t = t_heap if t_heap <= t_stream else t_stream
            if self.watch and not self._catch_up(t):
                if self._paused:
                    return False
                continue
            if t_heap <= t_stream:
                time, _, _, handler, args = heapq.heappop(heap)
                handler(time, *args)
            else:
                i = self._stream_next
                self._stream_next = i + 1
                self._stream_handler(i, t_stream)  # type: ignore[misc]
            self.clock = t
            self.events += 1
            if self._paused:
                return False


__all__ = ["EventLoop"]
