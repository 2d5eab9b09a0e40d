"""Replay a workload on one serving replica of the kernel under an admission scheduler.

``AdmissionScheduler`` is the base of this component's schedulers: a kernel
``ReplicaScheduler`` (``envs/serving/policies.py``) whose ``schedule`` does vLLM's mechanics
(drop timed-out requests, swap requests back in, never leave the replica idle while the queue's
head fits, run the iteration) around the policy's own admissions (``admit``). The per-request
SLOs of a workload reach the schedulers as ``RequestTable.columns`` (``WORKLOAD_COLUMNS``), so
the schedulers run in any kernel driver (``ServingCluster``, ``LLMServing-v0``) that passes them.

``WorkloadRun`` drives one replica on the kernel's event loop: the trace's arrivals are a
stream; a compound call arrives ``think_s`` after its parent finishes (an event scheduled by the
replica's listener).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np

from infragym.envs.serving.events import EventLoop
from infragym.envs.serving.policies import ReplicaScheduler
from infragym.envs.serving.simulator import FAILED, SLO, Replica, ReplicaConfig, RequestTable, finalise_max_tbt
from infragym.models.serving_schedulers.goodput import goodput_metrics, queueing_metrics
from infragym.models.serving_schedulers.workloads import Workload

# The per-request arrays a workload brings to the schedulers (RequestTable.columns).
WORKLOAD_COLUMNS = ("slo_type", "ttft_s", "tbt_s", "max_stall_s", "deadline_at", "max_new_tokens")
# Without a workload's columns (a plain kernel run), every request streams under the replica's
# SLO and may generate up to this many tokens: a common API cap on output length, an assumption.
DEFAULT_MAX_NEW_TOKENS = 4096
# Past-Future's artifact decides admissions every 10 decode steps: a policy that refused waits
# at most this many fast-forwarded iterations before deciding again.
DECISION_ITERATIONS = 10


def workload_columns(workload: Workload) -> dict[str, np.ndarray]:
    return {name: getattr(workload, name) for name in WORKLOAD_COLUMNS}


def request_columns(replica: Replica) -> dict[str, np.ndarray]:
    """The SLO columns of the replica's requests: the workload's, or (in a plain kernel run) every
    request a stream under the replica's SLO with ``DEFAULT_MAX_NEW_TOKENS``."""
    table = replica.table
    n = table.n
    defaults = {
        "slo_type": np.zeros(n, np.int8),  # workloads.LATENCY
        "ttft_s": np.full(n, replica.slo.ttft_s),
        "tbt_s": np.full(n, replica.slo.tbt_s),
        "max_stall_s": np.full(n, np.inf),
        "deadline_at": np.full(n, np.inf),
        # a request never generates beyond its cap: raised to its length where the trace exceeds it
        "max_new_tokens": np.maximum(np.full(n, DEFAULT_MAX_NEW_TOKENS), table.target),
    }
    return {name: table.columns.get(name, defaults[name]) for name in WORKLOAD_COLUMNS}


class AdmissionScheduler(ReplicaScheduler):
    """vLLM's scheduling mechanics around a policy's admissions.

    Subclasses implement ``admit(replica)`` (admit waiting requests with ``replica.admit``;
    return False to pause the event loop for an external decision) and may override ``setup``
    (per-replica state, from the table's columns) and ``on_finish``. ``bind`` gives each replica
    its own copy, with a random generator seeded by ``seed``.
    """

    name = ""

    def __init__(self, *, seed: int = 0) -> None:
        self.seed = seed

    def bind(self, replica: Replica) -> AdmissionScheduler:
        bound = copy.copy(self)
        bound.replica = replica
        bound.table = replica.table
        bound.columns = request_columns(replica)
        bound.rng = np.random.default_rng(self.seed)
        bound._refused_at = -1  # iteration of the last refusal (-1: none pending)
        bound._refused_state: tuple[int, ...] = ()
        bound.setup(replica)
        return bound

    def setup(self, replica: Replica) -> None:
        """Per-replica state (called by ``bind``)."""

    def admit(self, replica: Replica) -> bool:
        raise NotImplementedError

    def accepts(self, replica: Replica, rid: int) -> bool:
        """The policy's own condition beyond the replica's (default: none)."""
        return True

    # ---------------------------------------------------------------- the kernel's contract
    @staticmethod
    def _state(replica: Replica) -> tuple[int, ...]:
        waiting = replica.waiting
        return (len(waiting), waiting[0] if waiting else -1, replica.n, len(replica.swapped))

    def _holding(self, replica: Replica) -> bool:
        """The policy refused within the last ``DECISION_ITERATIONS`` iterations and neither the
        queue nor the batch has changed since: no new decision yet (the same whether the kernel
        fast-forwards or steps every iteration)."""
        return (
            self._refused_at >= 0
            and replica.iterations - self._refused_at < DECISION_ITERATIONS
            and self._state(replica) == self._refused_state
        )

    def schedule(self, replica: Replica) -> bool:
        replica.drop_timed_out()
        replica.swap_in()
        before = replica.n
        if replica.waiting and not self._holding(replica) and not self.admit(replica):
            return False
        waiting = replica.waiting
        if waiting and not replica.n and not replica.swapped and not replica.pending_swap_s:
            head = waiting[0]
            if replica.admissible(head):
                replica.admit(head)  # work conservation: never idle while the head fits
            else:
                if not replica.kv.reclaim_for(head, replica.clock):
                    replica.fail(head)  # it cannot run even alone
                return True
        if not self._holding(replica):
            refused = bool(waiting) and replica.n == before and not self.nothing_fits(replica)
            self._refused_at = replica.iterations if refused else -1
            self._refused_state = self._state(replica)
        replica.run_iteration()
        return True

    def would_admit(self, replica: Replica) -> bool:
        """Worth a decision: something fits, and the policy is not holding after a refusal."""
        return not self.nothing_fits(replica) and not self._holding(replica)

    def decode_horizon(self, replica: Replica) -> int | None:
        if self._refused_at < 0:
            return None
        return max(DECISION_ITERATIONS - (replica.iterations - self._refused_at), 1)

    # ---------------------------------------------------------------- helpers for subclasses
    @staticmethod
    def waiting_ids(replica: Replica) -> np.ndarray:
        return np.fromiter(replica.waiting, dtype=np.int64, count=len(replica.waiting))

    def admit_in_order(self, replica: Replica, order: np.ndarray) -> int:
        """Admit ``order`` one by one while each is admissible and accepted; stop at the first
        that is not (no overtaking past a request that does not fit, so none starves)."""
        admitted = 0
        for rid in order:
            rid = int(rid)
            if not replica.admissible(rid) or not self.accepts(replica, rid):
                break
            replica.admit(rid)
            admitted += 1
        return admitted

    @staticmethod
    def nothing_fits(replica: Replica) -> bool:
        """True when no waiting request can be admitted now (the batch is full, or not even the
        shortest prompt fits in the free KV blocks): a policy can skip ordering."""
        waiting = replica.waiting
        if not waiting or replica.n >= replica.config.max_running:
            return True
        table = replica.table
        if len(waiting) == 1:
            return not replica.admissible(waiting[0])
        ids = np.fromiter(waiting, dtype=np.int64, count=len(waiting))
        shortest = int((table.prompt[ids] + table.generated[ids]).min())
        return -(-(shortest + 1) // replica.config.block_size) > replica.free_blocks


@dataclass
class ReplayResult:
    workload: Workload
    table: RequestTable
    replica: Replica
    end_time: float
    metrics: dict[str, float] = field(default_factory=dict)


class WorkloadRun:
    """One replica serving a workload on the kernel's event loop (stepped by ``run``; the
    admission env resumes it after each decision)."""

    def __init__(
        self,
        workload: Workload,
        scheduler: ReplicaScheduler,
        *,
        replica: ReplicaConfig | None = None,
        queue_timeout_s: float = 60.0,
        drain_s: float = 600.0,
    ) -> None:
        self.workload = workload
        trace = workload.trace
        self.table = table = RequestTable(trace, workload_columns(workload))
        # Per-request TTFT/TBT bounds are columns; the replica's SLO only times out queues.
        self.replica = Replica(
            0, replica or ReplicaConfig(), table, SLO(queue_timeout_s=queue_timeout_s), scheduler=scheduler
        )
        has_parent = workload.parent >= 0
        self.child = np.full(table.n, -1, np.int64)
        self.child[workload.parent[has_parent]] = np.flatnonzero(has_parent)
        if has_parent.any():
            self.replica.listener = self  # a finished call schedules its child's arrival
            table.arrival[has_parent] = np.inf  # known when the parent finishes
        self.roots = np.flatnonzero(~has_parent)
        self.loop = EventLoop([self.replica], watch=True)
        self.loop.stream(table.arrival[self.roots], self._arrive_root)
        self.end = (float(trace.arrival_s[-1]) if table.n else 0.0) + drain_s

    # ---------------------------------------------------------------- events and listener
    def _arrive_root(self, i: int, now: float) -> None:
        self._arrive(now, int(self.roots[i]))

    def _arrive(self, now: float, rid: int) -> None:
        t = self.table
        if t.trace_failed[rid]:
            t.state[rid] = FAILED
            t.completion[rid] = now
            return
        self.replica.enqueue(rid, now)

    def on_admit(self, replica: Replica, rid: int, cached: int) -> None:
        return None

    def on_finish(self, replica: Replica, rid: int) -> None:
        child = int(self.child[rid])
        if child >= 0:
            arrival = float(replica.clock + self.workload.think_s[child])
            self.table.arrival[child] = arrival
            self.loop.at(arrival, self._arrive, child)
            replica.interrupt()  # the loop handles the arrival in time order

    def on_fail(self, replica: Replica, rid: int) -> None:
        return None  # a failed call's program never continues (its later calls never arrive)

    # ---------------------------------------------------------------- running
    def run(self) -> bool:
        """Run until the end (True) or until the scheduler pauses for a decision (False)."""
        return self.loop.run(until=self.end)

    def result(self) -> ReplayResult:
        server, table = self.replica, self.table
        server.sync()
        finalise_max_tbt(table, [server])
        finish = table.completion[np.isfinite(table.completion)]
        end_time = min(float(finish.max()) if finish.size else server.clock, self.end)
        start = float(self.workload.trace.arrival_s[0]) if table.n else 0.0
        kv_log = (np.frombuffer(server.kv_log_t).copy(), np.frombuffer(server.kv_log_used).copy())
        result = ReplayResult(self.workload, table, server, end_time)
        result.metrics = goodput_metrics(self.workload, table, makespan_s=end_time - start, kv_log=kv_log)
        result.metrics.update(queueing_metrics(table.admitted - table.arrival))
        return result


def replay(
    workload: Workload,
    scheduler: ReplicaScheduler,
    *,
    replica: ReplicaConfig | None = None,
    queue_timeout_s: float = 60.0,
    drain_s: float = 600.0,
) -> ReplayResult:
    """Serve ``workload`` on one replica under ``scheduler``; returns the records and metrics."""
    run = WorkloadRun(workload, scheduler, replica=replica, queue_timeout_s=queue_timeout_s, drain_s=drain_s)
    if not run.run():
        raise RuntimeError(f"{type(scheduler).__name__} paused the event loop: replay needs a self-contained scheduler")
    return run.result()
