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


@dataclass
class ReplayResult:
    workload: Workload
    table: RequestTable
    replica: Replica
    end_time: float
    queue_s: np.ndarray
    metrics: dict[str, float] = field(default_factory=dict)


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
    config = replica or ReplicaConfig()
    trace = workload.trace
    table = RequestTable(trace)
    # The per-request TTFT/TBT bounds live in the workload; the replica's SLO only times out queues.
    server = Replica(0, config, table, SLO(queue_timeout_s=queue_timeout_s))
    rng = np.random.default_rng(seed)
    scheduler.reset(server, workload, rng)
    child = np.full(table.n, -1, np.int64)
    has_parent = workload.parent >= 0
    child[workload.parent[has_parent]] = np.flatnonzero(has_parent)
    table.arrival[has_parent] = np.inf  # known when the parent finishes
    arrivals = [(float(table.arrival[i]), int(i)) for i in np.flatnonzero(~has_parent & ~table.trace_failed)]
    heapq.heapify(arrivals)
    queue_s = np.full(table.n, np.nan)
    end = (float(trace.arrival_s[-1]) if table.n else 0.0) + drain_s
    server.clock = arrivals[0][0] if arrivals else 0.0
    while True:
        while arrivals and arrivals[0][0] <= server.clock:
            t, rid = heapq.heappop(arrivals)
            server.enqueue(rid, t)
        if server.waiting:
            server._drop_timed_out()
        if server.swapped:
            server._swap_in()
        if not server.has_work:
            if not arrivals:
                break
            server.clock = max(server.clock, arrivals[0][0])
            continue
        if server.clock >= end:
            break
        before = server.n
        scheduler.schedule(server)
        if server.waiting and not server.n and not server.swapped and not server._pending_swap_s:
            head = server.waiting[0]
            if server.admissible(head):
                server.admit(head)  # work conservation
            else:
                server._fail_unservable(head)
                continue
        if server.n > before:
            new = server.run_ids[before:]
            fresh = np.isnan(queue_s[new])
            queue_s[new[fresh]] = server.clock - table.arrival[new[fresh]]
        running = server.run_ids.copy()
        next_arrival = arrivals[0][0] if arrivals else math.inf
        horizon = min(next_arrival, server.clock + scheduler.decision_interval_s, end)
        if server.waiting:
            horizon = min(horizon, math.nextafter(server.next_timeout(), math.inf))
        admitted = server.n != before
        if admitted or not server.fast_forward(horizon):
            server.run_iteration()
        if running.size:
            done = running[table.state[running] == FINISHED]
            if done.size:
                scheduler.on_finished(done)
                for rid in done[child[done] >= 0]:
                    c = int(child[rid])
                    table.arrival[c] = table.completion[rid] + workload.think_s[c]
                    heapq.heappush(arrivals, (float(table.arrival[c]), c))
    server.sync()
    finalise_max_tbt(table, [server])
    finish = table.completion[np.isfinite(table.completion)]
    end_time = min(float(finish.max()) if finish.size else server.clock, end)
    start = float(trace.arrival_s[0]) if table.n else 0.0
    kv_log = (np.frombuffer(server.kv_log_t).copy(), np.frombuffer(server.kv_log_used).copy())
    result = ReplayResult(workload, table, server, end_time, queue_s)
    result.metrics = goodput_metrics(workload, table, makespan_s=end_time - start, kv_log=kv_log)
    result.metrics.update(queueing_metrics(queue_s))
    return result
