"""Replay a workload on one serving replica under a ``ReplicaScheduler``.

The loop (one clock): enqueue the arrivals due, drop requests whose queue wait exceeded the
timeout, swap requests back in, ask the scheduler which waiting requests join the next
iteration, then run it; when the scheduler admits nothing and the batch only decodes, the
decode stretch is fast-forwarded in closed form to the next arrival, completion or the
scheduler's next decision time. Compound calls arrive ``think_s`` after their parent finishes.

A scheduler never leaves the replica idle while the head of the queue fits (work conservation:
an empty batch admits the head), and a request that cannot run even alone fails.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field

import numpy as np

from infragym.envs.serving.simulator import FINISHED, SLO, Replica, ReplicaConfig, RequestTable, finalise_max_tbt
from infragym.models.serving_schedulers.goodput import goodput_metrics, queueing_metrics
from infragym.models.serving_schedulers.workloads import Workload


class ReplicaScheduler:
    """Admission policy of one replica: which waiting requests join the next iteration.

    ``schedule`` admits through ``replica.admit`` (which checks that the request's prompt fits in
    the free KV blocks and the batch budgets now); the policy adds its own conditions and order.
    ``decision_interval_s`` bounds how long a decode stretch runs before the next decision.
    """

    name = "base"
    decision_interval_s = 0.25

    def reset(self, replica: Replica, workload: Workload, rng: np.random.Generator) -> None:
        self.replica = replica
        self.workload = workload
        self.table = replica.table
        self.rng = rng

    def schedule(self, replica: Replica) -> None:
        raise NotImplementedError

    def on_finished(self, rids: np.ndarray) -> None:
        """Requests that just finished (their output lengths are now known)."""

    # ---------------------------------------------------------------- helpers for subclasses
    def waiting_ids(self, replica: Replica) -> np.ndarray:
        return np.fromiter(replica.waiting, dtype=np.int64, count=len(replica.waiting))

    def admit_in_order(self, replica: Replica, order: np.ndarray) -> int:
        """Admit ``order`` one by one while each is admissible; stop at the first that is not
        (no overtaking past a request that does not fit, so none starves). Returns admissions."""
        admitted = 0
        for rid in order:
            if not replica.admissible(int(rid)) or not self.accepts(replica, int(rid)):
                break
            replica.admit(int(rid))
            admitted += 1
        return admitted

    def accepts(self, replica: Replica, rid: int) -> bool:
        """The policy's own admission condition beyond the replica's (default: none)."""
        return True

    @staticmethod
    def nothing_fits(replica: Replica, ids: np.ndarray) -> bool:
        """True when no waiting request in ``ids`` can be admitted now (the batch is full, or
        not even the shortest prompt fits in the free KV blocks): a policy can skip ordering."""
        if not ids.size or replica.n >= replica.config.max_running:
            return True
        table = replica.table
        shortest = int((table.prompt[ids] + table.generated[ids]).min())
        return -(-(shortest + 1) // replica.config.block_size) > replica.free_blocks


@dataclass
class ReplayResult:
    workload: Workload
    table: RequestTable
    replica: Replica
    end_time: float
    queue_s: np.ndarray
    metrics: dict[str, float] = field(default_factory=dict)


class ReplicaRun:
    """One replay in progress, stepped from outside (``replay`` and the admission env drive it).

    ``next_decision()`` runs the bookkeeping of a scheduling point (arrivals, queue timeouts,
    swap-ins, idling) and returns False when the run is over; the caller then admits requests
    (``replica.admit``) and calls ``run(admitted)``, which runs the next iteration or fast-forwards
    a decode-only stretch. ``finished`` holds the requests that finished in the last ``run``.
    """

    def __init__(
        self,
        workload: Workload,
        *,
        replica: ReplicaConfig | None = None,
        queue_timeout_s: float = 60.0,
        drain_s: float = 600.0,
        decision_interval_s: float = 0.25,
    ) -> None:
        self.workload = workload
        trace = workload.trace
        self.table = table = RequestTable(trace)
        # Per-request TTFT/TBT bounds live in the workload; the replica's SLO only times out queues.
        self.replica = Replica(0, replica or ReplicaConfig(), table, SLO(queue_timeout_s=queue_timeout_s))
        self.decision_interval_s = decision_interval_s
        self.child = np.full(table.n, -1, np.int64)
        has_parent = workload.parent >= 0
        self.child[workload.parent[has_parent]] = np.flatnonzero(has_parent)
        table.arrival[has_parent] = np.inf  # known when the parent finishes
        self.arrivals = [(float(table.arrival[i]), int(i)) for i in np.flatnonzero(~has_parent & ~table.trace_failed)]
        heapq.heapify(self.arrivals)
        self.queue_s = np.full(table.n, np.nan)
        self.end = (float(trace.arrival_s[-1]) if table.n else 0.0) + drain_s
        self.replica.clock = self.arrivals[0][0] if self.arrivals else 0.0
        self.finished = np.zeros(0, np.int64)
        self._before = 0

    def next_decision(self) -> bool:
        """Advance to the next scheduling point with waiting or running work; False when done."""
        server, arrivals = self.replica, self.arrivals
        while True:
            while arrivals and arrivals[0][0] <= server.clock:
                t, rid = heapq.heappop(arrivals)
                server.enqueue(rid, t)
            if server.waiting:
                server._drop_timed_out()
            if server.swapped:
                server._swap_in()
            if server.clock >= self.end:
                return False
            if server.has_work:
                self._before = server.n
                return True
            if not arrivals:
                return False
            server.clock = max(server.clock, arrivals[0][0])

    def run(self) -> None:
        """Run the scheduling point's iteration (or a decode-only stretch up to the next event)."""
        server, table = self.replica, self.table
        before = self._before
        if server.waiting and not server.n and not server.swapped and not server._pending_swap_s:
            head = server.waiting[0]
            if server.admissible(head):
                server.admit(head)  # work conservation: never idle while the head fits
            else:
                server._fail_unservable(head)
                self.finished = np.zeros(0, np.int64)
                return
        if server.n > before:
            new = server.run_ids[before:]
            fresh = np.isnan(self.queue_s[new])
            self.queue_s[new[fresh]] = server.clock - table.arrival[new[fresh]]
        running = server.run_ids.copy()
        next_arrival = self.arrivals[0][0] if self.arrivals else math.inf
        horizon = min(next_arrival, server.clock + self.decision_interval_s, self.end)
        if server.waiting:
            horizon = min(horizon, math.nextafter(server.next_timeout(), math.inf))
        if server.n != before or not server.fast_forward(horizon):
            server.run_iteration()
        self.finished = running[table.state[running] == FINISHED] if running.size else np.zeros(0, np.int64)
        for rid in self.finished[self.child[self.finished] >= 0]:
            c = int(self.child[rid])
            table.arrival[c] = table.completion[rid] + self.workload.think_s[c]
            heapq.heappush(self.arrivals, (float(table.arrival[c]), c))

    def result(self) -> ReplayResult:
        server, table = self.replica, self.table
        server.sync()
        finalise_max_tbt(table, [server])
        finish = table.completion[np.isfinite(table.completion)]
        end_time = min(float(finish.max()) if finish.size else server.clock, self.end)
        start = float(self.workload.trace.arrival_s[0]) if table.n else 0.0
        kv_log = (np.frombuffer(server.kv_log_t).copy(), np.frombuffer(server.kv_log_used).copy())
        result = ReplayResult(self.workload, table, server, end_time, self.queue_s)
        result.metrics = goodput_metrics(self.workload, table, makespan_s=end_time - start, kv_log=kv_log)
        result.metrics.update(queueing_metrics(self.queue_s))
        return result


def replay(
    workload: Workload,
    scheduler: ReplicaScheduler,
    *,
    replica: ReplicaConfig | None = None,
    queue_timeout_s: float = 60.0,
    drain_s: float = 600.0,
    seed: int = 0,
) -> ReplayResult:
    """Serve ``workload`` on one replica under ``scheduler``; returns the records and metrics."""
    run = ReplicaRun(
        workload,
        replica=replica,
        queue_timeout_s=queue_timeout_s,
        drain_s=drain_s,
        decision_interval_s=scheduler.decision_interval_s,
    )
    scheduler.reset(run.replica, workload, np.random.default_rng(seed))
    while run.next_decision():
        scheduler.schedule(run.replica)
        run.run()
        if run.finished.size:
            scheduler.on_finished(run.finished)
    return run.result()
