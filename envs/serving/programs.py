"""Multi-turn agent programs on the serving kernel: KV-cache time-to-live and program FCFS.

Each turn of a program is one request of a kernel ``Replica``. When a turn that ends in a tool
call finishes, its KV cache (prompt + output) is pinned on the replica by its
``PrefixCacheKVManager`` until a TTL policy decides how long to keep it (a *decision point*):
pinned blocks stay allocated and count against memory. If the next turn arrives before the TTL
expires, the pin holds until the turn is admitted and its prefill skips the cached context;
otherwise the blocks return to the free pool, where vLLM-style automatic prefix caching may
still hit them (``prefix_cache.py``). A request preempted by recompute re-prefills without a
prefix hit.

Scheduling: request-level FCFS (vLLM: turns in arrival order) or program-level FCFS
(Continuum: a turn queues by its program's arrival time, so programs already under way go
first): ``schedulers.FCFSScheduler`` and ``schedulers.ProgramFCFSScheduler``. Programs are
routed to a replica at their first turn (a kernel ``Router``) and keep it (their KV cache lives
there). An optional concurrency cap starts a program only when fewer than ``concurrency`` run.

The kernel's event loop (watched: a finished turn schedules its tool call's end) carries
program starts, turn arrivals and pin expiries. The driver is pull-based so that a policy or a
gymnasium agent can make the decisions: ``next_decision()`` simulates until a tool call needs a
TTL, ``decide(ttl)`` applies it; ``run(policy)`` loops the two.
"""

from __future__ import annotations

import functools
import math
import os
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from infragym.datasets.agent_programs import AgentPrograms
from infragym.datasets.llm_traces import RequestTrace
from infragym.envs.serving.events import EventLoop
from infragym.envs.serving.policies import make_router
from infragym.envs.serving.prefix_cache import Pin, PrefixCacheKVManager
from infragym.envs.serving.schedulers import FCFSScheduler, ProgramFCFSScheduler
from infragym.envs.serving.simulator import FINISHED, SLO, Replica, ReplicaConfig, RequestTable
from infragym.envs.serving.trace import ChromeTrace

SCHEDULERS = ("request_fcfs", "program_fcfs")
# Event kinds, in their order at equal times: a turn's arrival, a program's start, a pin's expiry.
_ARRIVE, _START, _EXPIRE = 0, 1, 2
QUEUE_DELAY_EWMA = 0.1  # weight of the newest admission wait in the replica's queue-delay estimate


@dataclass(frozen=True)
class Decision:
    """A tool call waiting for its KV-cache TTL."""

    rid: int  # the turn that just finished (its row in the programs)
    program: int
    turn: int  # its index within the program
    replica: int
    time: float
    context_tokens: int
    blocks: int
    reload_s: float  # re-prefilling the context alone on this replica (cost model)
    queue_delay_s: float  # recent queueing delay of turns on this replica (EWMA)
    queue_len: int
    running: int
    free_fraction: float
    pinned_fraction: float


class ProgramSimulation:
    """Agent programs on ``n_replicas`` replicas, with pull-based TTL decisions.

    Args:
        programs: the workload (arrival times of programs, their turns and tool calls).
        replica: the replica configuration (``chunked_prefill`` is needed for contexts beyond
            ``max_batched_tokens``).
        n_replicas: replicas; a program is routed at its first turn and stays.
        scheduler: ``request_fcfs`` (vLLM) or ``program_fcfs`` (Continuum).
        router: ``round_robin`` or ``least_outstanding`` (fewest queued + running turns).
        concurrency: at most this many programs run at once (None: unlimited).
        chrome_trace: record a per-request Chrome trace (``write_trace``); off by default.
    """

    def __init__(
        self,
        programs: AgentPrograms,
        *,
        replica: ReplicaConfig | None = None,
        n_replicas: int = 1,
        scheduler: str = "program_fcfs",
        router: str = "round_robin",
        concurrency: int | None = None,
        chrome_trace: bool = False,
    ) -> None:
        if scheduler not in SCHEDULERS:
            raise ValueError(f"scheduler must be one of {SCHEDULERS}, got {scheduler!r}")
        make_router(router)  # refuse an unknown router now
        if n_replicas <= 0 or (concurrency is not None and concurrency <= 0):
            raise ValueError("n_replicas and concurrency must be positive")
        self.programs = programs
        self.scheduler = scheduler
        self.router = router
        self.concurrency = concurrency
        n = programs.n_turns
        trace = RequestTrace(
            arrival_s=np.zeros(n),
            prompt_tokens=programs.prompt_tokens,
            output_tokens=programs.output_tokens,
            model=np.zeros(n, dtype=np.int64),
            failed=np.zeros(n, dtype=bool),
        )
        self.table = RequestTable(trace)
        self.table.arrival[:] = math.inf  # set when each turn arrives
        self.program_of = programs.program_of_turn
        self.turn_index = programs.turn_index
        self.next_turn = np.where(programs.is_last, -1, np.arange(n) + 1)
        self.priority = programs.arrival_s[self.program_of] + 1e-9 * self.program_of  # program FCFS key
        self.cached = np.zeros(n, dtype=np.int64)
        self.ttl = np.full(n, np.nan)
        self.pin_block_s = np.zeros(n)
        self.program_start = np.full(len(programs), np.nan)
        self.program_finish = np.full(len(programs), np.nan)
        self.program_failed = np.zeros(len(programs), dtype=bool)
        self.assigned = np.full(len(programs), -1, dtype=np.int64)
        config = replica or ReplicaConfig(chunked_prefill=True)
        slo = SLO(queue_timeout_s=math.inf)  # agent turns wait; they are never dropped
        kv_manager = functools.partial(
            PrefixCacheKVManager,
            group_of=self.program_of,
            context_tokens=self.table.prompt + self.table.target,
            keep=lambda rid: bool(self.next_turn[rid] >= 0),
            pin_block_s=self.pin_block_s,
        )
        policy = ProgramFCFSScheduler(self.priority) if scheduler == "program_fcfs" else FCFSScheduler()
        self.replicas = [
            Replica(i, config, self.table, slo, scheduler=policy, kv_manager=kv_manager) for i in range(n_replicas)
        ]
        self.queue_delay_s = [0.0] * n_replicas  # per replica: EWMA of turns' admission waits
        self.tracer = ChromeTrace() if chrome_trace else None
        for r in self.replicas:
            r.listener = self
            r.tracer = self.tracer
        self.router = router
        self._router = make_router(router)
        self.loop = EventLoop(self.replicas, watch=True)
        for p, t in enumerate(programs.arrival_s):
            self.loop.at(float(t), self._start, p, order=_START)
        self._pending: deque[Decision] = deque()
        self._queued_programs: deque[int] = deque()
        self._active = 0
        self.resolved: list[tuple[int, float, float]] = []  # (decision rid, next turn's latency, pinned block-s)

    # ------------------------------------------------------------------ the replicas' listener
    def on_admit(self, replica: Replica, rid: int, cached: int) -> None:
        t = self.table
        if not t.generated[rid]:
            self.cached[rid] = cached
            delay = self.queue_delay_s[replica.index]
            self.queue_delay_s[replica.index] = delay + QUEUE_DELAY_EWMA * (replica.clock - t.arrival[rid] - delay)

    def on_finish(self, replica: Replica, rid: int) -> None:
        if self.next_turn[rid] < 0:  # the program's last turn: nothing kept
            self._program_finished(int(self.program_of[rid]), replica.clock)
        else:
            self._turn_finished(rid, replica)
        replica.interrupt()  # stop: the decision (and the next turn's arrival) come first

    def on_fail(self, replica: Replica, rid: int) -> None:
        """A turn that cannot fit even alone fails, and its program is aborted: its pinned or
        cached context was released by the KV manager and its later turns never come."""
        self._program_aborted(int(self.program_of[rid]), replica.clock)
        replica.interrupt()

    # ------------------------------------------------------------------ events
    def _turn_finished(self, rid: int, replica: Replica) -> None:
        t = self.table
        ctx = int(t.prompt[rid] + t.target[rid])
        kv = replica.kv
        assert isinstance(kv, PrefixCacheKVManager)
        self._pending.append(
            Decision(
                rid=rid,
                program=int(self.program_of[rid]),
                turn=int(self.turn_index[rid]),
                replica=replica.index,
                time=replica.clock,
                context_tokens=ctx,
                blocks=int(replica.blocks_for(ctx)),
                reload_s=replica.prefill_seconds(ctx),
                queue_delay_s=self.queue_delay_s[replica.index],
                queue_len=len(replica.waiting),
                running=replica.n,
                free_fraction=kv.free_blocks / kv.total_blocks,
                pinned_fraction=kv.pinned_blocks / kv.total_blocks,
            )
        )
        self.loop.pause()
        self._resolve(rid)

    def _resolve(self, rid: int) -> None:
        """The turn ``rid`` finished: the decision made at the previous tool call is resolved."""
        prev = rid - 1
        if prev >= 0 and self.program_of[prev] == self.program_of[rid] and not math.isnan(self.ttl[prev]):
            latency = float(self.table.completion[rid] - self.table.arrival[rid])
            self.resolved.append((prev, latency, float(self.pin_block_s[prev])))

    def _program_finished(self, program: int, now: float) -> None:
        self.program_finish[program] = now
        self._resolve(int(self.programs.offsets[program + 1] - 1))
        self._active -= 1
        if self._queued_programs:
            self.loop.at(now, self._start, self._queued_programs.popleft(), order=_START)

    def _program_aborted(self, program: int, now: float) -> None:
        self.program_failed[program] = True
        self._active -= 1
        if self._queued_programs:
            self.loop.at(now, self._start, self._queued_programs.popleft(), order=_START)

    def _start(self, now: float, program: int) -> None:
        if self.concurrency is not None and self._active >= self.concurrency:
            self._queued_programs.append(program)
            return
        self._active += 1
        self.program_start[program] = now
        # The loop is watched: every replica is already current, as a load-reading router needs.
        replica = self._router.route(self.replicas, int(self.programs.offsets[program]), now)
        self.assigned[program] = replica.index
        rid = int(self.programs.offsets[program])
        self.table.arrival[rid] = now
        self._turn_arrives(replica, rid, now)

    def _arrive(self, now: float, rid: int) -> None:
        self.table.arrival[rid] = now
        self._turn_arrives(self.replicas[self.assigned[self.program_of[rid]]], rid, now)

    def _turn_arrives(self, replica: Replica, rid: int, now: float) -> None:
        kv = replica.kv
        assert isinstance(kv, PrefixCacheKVManager)
        pin = kv.pins.get(int(self.program_of[rid]))
        if pin is not None:
            pin.arrived = True
        replica.enqueue(rid, now)

    def _expire(self, now: float, program: int, version: int) -> None:
        kv = self.replicas[self.assigned[program]].kv
        assert isinstance(kv, PrefixCacheKVManager)
        kv.expire(program, version, now)

    # ------------------------------------------------------------------ driving
    def next_decision(self) -> Decision | None:
        """Simulate until a tool call needs its TTL; None once every program has finished."""
        while not self._pending:
            if self.loop.run():
                return None if not self._pending else self._pending[0]
        return self._pending[0]

    def decide(self, ttl_s: float) -> None:
        """Apply a TTL (seconds; <= 0 evicts at once) to the oldest pending decision."""
        if not self._pending:
            raise RuntimeError("no decision is pending: call next_decision() first")
        if not math.isfinite(ttl_s):
            raise ValueError(f"ttl_s must be a finite number of seconds, got {ttl_s!r}")
        d = self._pending.popleft()
        kv = self.replicas[d.replica].kv
        assert isinstance(kv, PrefixCacheKVManager)
        ttl_s = max(float(ttl_s), 0.0)
        self.ttl[d.rid] = ttl_s
        pin = kv.pins[d.program]
        pin.decided = True
        if ttl_s <= 0:
            kv.unpin(d.program, d.time)
        else:
            pin.expiry = d.time + ttl_s
            self.loop.at(pin.expiry, self._expire, d.program, pin.version, order=_EXPIRE)
        self.loop.at(d.time + float(self.programs.tool_duration_s[d.rid]), self._arrive, d.rid + 1, order=_ARRIVE)

    def write_trace(self, path: str | os.PathLike[str]) -> Path:
        """Write the run's per-request Chrome trace (needs ``chrome_trace=True``)."""
        if self.tracer is None:
            raise RuntimeError("no trace was recorded: build the simulation with chrome_trace=True")
        return self.tracer.write(path, self.table, self.replicas)

    def run(self, policy: Callable[[Decision, ProgramSimulation], float]) -> dict[str, float]:
        """Run to the end with ``policy(decision, sim) -> ttl_s``; returns the metrics."""
        while (d := self.next_decision()) is not None:
            self.decide(policy(d, self))
        return self.metrics()

    # ------------------------------------------------------------------ results
    def metrics(self) -> dict[str, float]:
        """Job completion time (a program's first arrival to its last token, tool time
        included), throughput, time to first token per turn, cache reuse and pinned memory."""
        t = self.table
        progs = self.programs
        done = np.isfinite(self.program_finish)
        jct = (self.program_finish - self.program_start)[done]
        start = float(np.nanmin(self.program_start)) if done.any() else 0.0
        end = float(np.nanmax(self.program_finish)) if done.any() else 0.0
        makespan = max(end - start, 1e-9)
        finished = t.state == FINISHED
        ttft = (t.first_token - t.arrival)[finished]
        later = finished & (self.turn_index > 0)
        reused = self.cached[later].sum()
        history = (t.prompt - progs.new_tokens)[later].sum()  # context a cache could have held
        total_blocks = sum(r.total_blocks for r in self.replicas)
        metrics = {
            "programs": float(len(progs)),
            "programs_finished": float(done.sum()),
            "programs_failed": float(self.program_failed.sum()),  # a turn beyond the KV capacity
            "turns_finished": float(finished.sum()),
            "mean_jct_s": float(jct.mean()) if jct.size else math.nan,
            "p50_jct_s": float(np.percentile(jct, 50)) if jct.size else math.nan,
            "p95_jct_s": float(np.percentile(jct, 95)) if jct.size else math.nan,
            "throughput_programs_s": float(done.sum() / makespan),
            "throughput_tokens_s": float(t.generated[finished].sum() / makespan),
            "mean_ttft_s": float(ttft.mean()) if ttft.size else math.nan,
            "p95_ttft_s": float(np.percentile(ttft, 95)) if ttft.size else math.nan,
            "context_reuse": float(reused / history) if history else 0.0,
            "prefill_tokens": float((t.prompt - self.cached)[finished].sum()),
            "pinned_memory_fraction": float(
                sum(r.kv.pinned_block_s for r in self.replicas) / (total_blocks * makespan)
            ),
            "preemptions": float(t.preemptions.sum()),
            "makespan_s": makespan,
        }
        return metrics


__all__ = ["SCHEDULERS", "Decision", "Pin", "ProgramSimulation"]
