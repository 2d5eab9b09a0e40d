"""The serving cluster: replicas behind a router, fed by a request trace, on one event loop;
its metrics (throughput, goodput under the SLO, latency percentiles, KV use)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from infragym.datasets.llm_traces import RequestTrace
from infragym.envs.serving.events import EventLoop
from infragym.envs.serving.kv import KVManager
from infragym.envs.serving.policies import ReplicaScheduler, Router, make_router, make_scheduler
from infragym.envs.serving.simulator import (
    FAILED,
    FINISHED,
    RUNNING,
    SLO,
    SWAPPED,
    TIMED_OUT,
    WAITING,
    Replica,
    ReplicaConfig,
    RequestTable,
)
from infragym.envs.serving.trace import ChromeTrace

ROUTERS = ("round_robin", "least_outstanding")  # the built-in routers (registry: policies.ROUTERS)


@dataclass
class SimulationResult:
    table: RequestTable
    replicas: list[Replica]
    slo: SLO
    end_time: float
    metrics: dict[str, float] = field(default_factory=dict)


class ServingCluster:
    """Replicas behind a global router, fed by a request trace, on one event loop.

    Args:
        replica: the replicas' configuration.
        n_replicas: replicas at the start (``add_replica``/``remove_replica`` change the set at
            run time, from an event scheduled with ``at``).
        router: a registered router name or a ``Router``.
        slo: the requests' SLO (and queue timeout).
        drain_s: after the last arrival, run this long at most.
        scheduler: the replicas' ``ReplicaScheduler`` (name or instance; default FCFS).
        kv_manager: a KV manager factory (default ``PagedKVManager``).
        fast_forward: closed-form decode stretches (False: step every iteration).
        trace_path: write a Chrome trace (per-request events) of the run there (None: off).
    """

    def __init__(
        self,
        *,
        replica: ReplicaConfig | None = None,
        n_replicas: int = 1,
        router: str | Router = "round_robin",
        slo: SLO | None = None,
        drain_s: float = 3600.0,
        scheduler: str | ReplicaScheduler | None = None,
        kv_manager: Callable[[int, int, float], KVManager] | None = None,
        fast_forward: bool = True,
        trace_path: str | None = None,
    ) -> None:
        make_router(router)  # refuse an unknown router now
        if n_replicas <= 0:
            raise ValueError("n_replicas must be positive")
        self.replica_config = replica or ReplicaConfig()
        self.n_replicas = n_replicas
        self.router = router if isinstance(router, str) else router.name
        self._router_spec = router
        self.slo = slo or SLO()
        self.drain_s = drain_s
        self.scheduler = make_scheduler(scheduler)
        self.kv_manager = kv_manager
        self.fast_forward = fast_forward
        self.trace_path = trace_path
        self._timed: list[tuple[float, Callable[[ServingCluster, float], None]]] = []
        self._tracer: ChromeTrace | None = None
        self._run_scheduler = self.scheduler
        self.replicas: list[Replica] = []  # every replica of the current run (removed ones too)
        self.active: list[Replica] = []  # those the router may choose
        self.loop: EventLoop | None = None
        self.table: RequestTable | None = None

    # ------------------------------------------------------------------ run-time changes
    def at(self, time: float, action: Callable[[ServingCluster, float], None]) -> None:
        """Call ``action(cluster, time)`` at ``time`` in every later run (e.g. add or remove a
        replica, change a replica's ``time_scale``)."""
        self._timed.append((float(time), action))

    def add_replica(self, config: ReplicaConfig | None = None) -> Replica:
        """A new replica joins (idle, at the loop's clock); the router may choose it at once."""
        if self.loop is None or self.table is None:
            raise RuntimeError("add_replica is for a running cluster: schedule it with at()")
        replica = self._new_replica(len(self.replicas), config or self.replica_config)
        self.loop.add_replica(replica)
        self.active.append(replica)
        return replica

    def remove_replica(self, replica: Replica) -> None:
        """The router stops choosing ``replica``; it drains what it already has."""
        if replica not in self.active:
            raise ValueError(f"replica {replica.index} is not active")
        if len(self.active) == 1:
            raise ValueError("cannot remove the last active replica")
        self.active.remove(replica)

    def _new_replica(self, index: int, config: ReplicaConfig) -> Replica:
        assert self.table is not None
        replica = Replica(
            index,
            config,
            self.table,
            self.slo,
            scheduler=self._run_scheduler,
            kv_manager=self.kv_manager,
            fast_forward=self.fast_forward,
        )
        replica.tracer = self._tracer
        self.replicas.append(replica)
        return replica

    # ------------------------------------------------------------------ running
    def run(
        self,
        trace: RequestTrace,
        scheduler: str | ReplicaScheduler | None = None,
        *,
        columns: Mapping[str, np.ndarray] | None = None,
    ) -> SimulationResult:
        """Replay ``trace`` (with ``scheduler`` instead of the cluster's, if given; ``columns``:
        extra per-request arrays for the scheduler, see ``RequestTable``)."""
        table = self.table = RequestTable(trace, columns)
        self._tracer = ChromeTrace() if self.trace_path else None
        self._run_scheduler = self.scheduler if scheduler is None else make_scheduler(scheduler)
        self.replicas = []
        for i in range(self.n_replicas):
            self._new_replica(i, self.replica_config)
        self.active = list(self.replicas)
        loop = self.loop = EventLoop(self.replicas)
        router = make_router(self._router_spec)
        failed = table.trace_failed
        state, completion = table.state, table.completion
        active = self.active

        def arrive(rid: int, now: float) -> None:
            if failed[rid]:
                state[rid] = FAILED
                completion[rid] = now
                return
            if router.needs_load:
                for r in active:
                    if r.clock < now and (r.n or r.waiting or r.swapped):
                        r.advance_until(now)
                chosen = router.route(active, rid, now)
            else:
                chosen = router.route(active, rid, now)
                chosen.advance_until(now)
            chosen.enqueue(rid, now)

        def timed(now: float, action: Callable[[ServingCluster, float], None]) -> None:
            # Bring every replica up to ``now`` first: the action may change how they run.
            for r in self.replicas:
                if r.clock < now and (r.n or r.waiting or r.swapped):
                    r.advance_until(now)
            action(self, now)

        loop.stream(table.arrival, arrive)
        for time, action in self._timed:
            loop.at(time, timed, action, order=-1)
        end = (float(table.arrival[-1]) if table.n else 0.0) + self.drain_s
        loop.run(until=end)
        for r in self.replicas:
            r.sync()  # requests still running at the end keep their partial records
        finalise_max_tbt(table, self.replicas)
        done = table.completion[np.isfinite(table.completion)]
        finish = float(done.max()) if done.size else 0.0
        result = SimulationResult(table, self.replicas, self.slo, min(finish, end))
        result.metrics = summarize(result)
        if self._tracer is not None and self.trace_path:
            self._tracer.write(self.trace_path, table, self.replicas)
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


__all__ = ["ROUTERS", "ServingCluster", "SimulationResult", "finalise_max_tbt", "summarize"]
