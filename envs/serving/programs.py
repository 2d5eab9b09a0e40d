"""Multi-turn agent programs on the serving simulator: KV-cache time-to-live and program FCFS.

Each turn of a program is one request of the underlying ``Replica``. When a turn that ends in
a tool call finishes, its KV cache (prompt + output) is pinned on the replica until a TTL
policy decides how long to keep it (a *decision point*): pinned blocks stay allocated and
count against memory. If the next turn arrives before the TTL expires, the pin holds until
the turn is admitted and its prefill skips the cached context; otherwise the blocks return to
the free pool.

Blocks returned to the free pool keep their contents until reused, as vLLM's automatic prefix
caching does: the free pool is a FIFO of released blocks (a request's tail blocks enter it
first, so its prefix survives longest) and a later turn of the same program reuses whatever
prefix of its old blocks has not been handed out yet. The FIFO position is tracked with two
counters rather than a list: blocks taken from the head = used - prefix hits + released. A
prefix hit removes blocks from the middle of the FIFO, which this bookkeeping ignores: blocks
behind it are evicted a little later than in vLLM, which favours the evict-at-once baseline.
A request preempted by recompute re-prefills without a prefix hit.

Scheduling: request-level FCFS (vLLM: turns in arrival order) or program-level FCFS
(Continuum: a turn queues by its program's arrival time, so programs already under way go
first). Programs are routed to a replica at their first turn and keep it (their KV cache lives
there). An optional concurrency cap starts a program only when fewer than ``concurrency`` run.

The driver is pull-based so that a policy or a gymnasium agent can make the decisions:
``next_decision()`` simulates until a tool call needs a TTL, ``decide(ttl)`` applies it;
``run(policy)`` loops the two.
"""

from __future__ import annotations

import bisect
import heapq
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from infragym.datasets.agent_programs import AgentPrograms
from infragym.datasets.llm_traces import RequestTrace
from infragym.envs.serving.simulator import FINISHED, ROUTERS, SLO, Replica, ReplicaConfig, RequestTable

SCHEDULERS = ("request_fcfs", "program_fcfs")
_ARRIVE, _START, _EXPIRE = 0, 1, 2
QUEUE_DELAY_EWMA = 0.1  # weight of the newest admission wait in the replica's queue-delay estimate


@dataclass
class Pin:
    """A program's KV cache held across a tool call."""

    rid: int  # the finished turn whose cache this is
    blocks: int
    tokens: int
    since: float
    version: int
    expiry: float = math.inf
    decided: bool = False
    arrived: bool = False  # the next turn is queued: hold until it is admitted


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


class ProgramReplica(Replica):
    """A replica that pins finished turns' KV caches and reuses cached prefixes."""

    def __init__(
        self,
        index: int,
        config: ReplicaConfig,
        table: RequestTable,
        slo: SLO,
        sim: ProgramSimulation,
    ) -> None:
        super().__init__(index, config, table, slo)
        self.sim = sim
        self.pins: dict[int, Pin] = {}
        self.prefix: dict[int, tuple[int, int, int]] = {}  # program -> (FIFO end index, blocks, tokens)
        self.pinned_blocks = 0
        self.prefix_hit_blocks = 0
        # The free FIFO: positions 0 .. total_blocks - 1 are the initially free blocks; the
        # k-th block ever released gets position total_blocks + k. ``_head`` is the position
        # the allocator takes next; ``_removed`` holds ranges taken out of the middle by
        # prefix hits (sorted, all at or after the head), which the head skips.
        self._head = 0
        self._popped = 0
        self._removed: list[tuple[int, int]] = []
        self.pinned_block_s = 0.0
        self.queue_delay_s = 0.0
        self._pin_version = 0

    # ------------------------------------------------------------------ queueing
    def enqueue(self, rid: int, now: float) -> None:
        super().enqueue(rid, now)
        if self.sim.scheduler == "program_fcfs":
            key = self.sim.priority
            waiting = self.waiting
            # Move it forward past later programs' turns (never past a preempted, started turn).
            j = len(waiting) - 1
            while j > 0 and key[waiting[j - 1]] > key[rid] and self.table.generated[waiting[j - 1]] == 0:
                j -= 1
            if j != len(waiting) - 1:
                waiting.pop()
                waiting.insert(j, rid)

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

    def _surviving_prefix_blocks(self, program: int) -> int:
        """Blocks of the program's released cache not yet handed out: its prefix (a request's
        tail blocks enter the FIFO first)."""
        self._advance_head()
        end, blocks, _ = self.prefix[program]
        return min(max(end - self._head, 0), blocks)

    def _take_prefix(self, program: int, hits: int) -> None:
        """The program's next turn reuses ``hits`` surviving blocks of its released cache: they
        leave the middle of the free-block FIFO (a range the head will skip)."""
        end = self.prefix.pop(program)[0]
        if hits:
            self._advance_head()
            bisect.insort(self._removed, (end - hits, end))
            self.prefix_hit_blocks += hits

    def cached_tokens(self, rid: int) -> int:
        """Context tokens of ``rid`` already in the KV cache (pinned or a surviving prefix)."""
        if self.table.generated[rid]:
            return 0  # preempted by recompute: prefilled again from scratch
        program = int(self.sim.program_of[rid])
        pin = self.pins.get(program)
        if pin is not None:
            return pin.tokens
        if program in self.prefix:
            blocks = self._surviving_prefix_blocks(program)
            return min(blocks, self.prefix[program][2] // self.config.block_size) * self.config.block_size
        return 0

    def _prefill_len(self, rid: int) -> int:
        t = self.table
        return int(t.prompt[rid] + t.generated[rid]) - self.cached_tokens(rid)

    def _blocks_to_admit(self, rid: int, length: int) -> int:
        t = self.table
        total = -(-(int(t.prompt[rid] + t.generated[rid]) + 1) // self.config.block_size)
        pin = self.pins.get(int(self.sim.program_of[rid]))
        return total - (pin.blocks if pin is not None and not t.generated[rid] else 0)

    def _admit_unchecked(self, rid: int) -> None:
        t = self.table
        program = int(self.sim.program_of[rid])
        cached = self.cached_tokens(rid)
        total_tokens = int(t.prompt[rid] + t.generated[rid])
        total = -(-(total_tokens + 1) // self.config.block_size)
        pin = self.pins.get(program)
        if pin is not None and not t.generated[rid]:
            # The pinned blocks become this turn's: they are not taken from the free pool.
            del self.pins[program]
            self._pin_over(pin, self.clock)
            self.free_blocks += pin.blocks
        elif program in self.prefix:
            self._take_prefix(program, cached // self.config.block_size)
        self._append_running(rid, context=cached, prefill=total_tokens - cached, blocks=total)
        if not t.generated[rid]:
            self.sim.cached[rid] = cached
            self.queue_delay_s += QUEUE_DELAY_EWMA * (self.clock - t.arrival[rid] - self.queue_delay_s)

    # ------------------------------------------------------------------ pins
    def _release(self, rid: int, blocks: int) -> None:
        sim = self.sim
        if sim.next_turn[rid] < 0:  # the program's last turn: nothing to keep
            super()._release(rid, blocks)
            sim._program_finished(int(sim.program_of[rid]), self.clock)
            self.horizon = self.clock
            return
        program = int(sim.program_of[rid])
        t = self.table
        self._pin_version += 1
        self.pins[program] = Pin(
            rid=rid,
            blocks=blocks,
            tokens=int(t.prompt[rid] + t.target[rid]),
            since=self.clock,
            version=self._pin_version,
        )
        self.pinned_blocks += blocks
        sim._turn_finished(rid, self)
        self.horizon = self.clock  # stop: the decision (and the next turn's arrival) come first

    def _pin_over(self, pin: Pin, now: float) -> None:
        self.pinned_blocks -= pin.blocks
        held = max(now - pin.since, 0.0)
        self.pinned_block_s += pin.blocks * held
        self.sim.pin_block_s[pin.rid] = pin.blocks * held

    def unpin(self, program: int, now: float) -> None:
        """Return a pinned cache to the free pool (its prefix stays reusable until evicted)."""
        pin = self.pins.pop(program)
        self._pin_over(pin, now)
        self.free_blocks += pin.blocks
        self.blocks_released += pin.blocks
        self.prefix[program] = (self.total_blocks + self.blocks_released, pin.blocks, pin.tokens)

    def expire(self, program: int, version: int, now: float) -> None:
        pin = self.pins.get(program)
        if pin is not None and pin.version == version and not pin.arrived:
            self.unpin(program, now)

    def _make_room(self) -> float:
        """A pin never preempts a running request: when a decode step needs blocks, decided
        pins are released first (the soonest to expire first); only then is the newest running
        request preempted."""
        decided = [p for p, pin in self.pins.items() if pin.decided]
        if decided:
            self.unpin(min(decided, key=lambda p: self.pins[p].expiry), self.clock)
            return 0.0
        return self._preempt_last()

    def turn_arrives(self, rid: int, now: float) -> None:
        pin = self.pins.get(int(self.sim.program_of[rid]))
        if pin is not None:
            pin.arrived = True
        self.enqueue(rid, now)

    def step_fcfs(self) -> None:
        """FCFS in the queue's order; if the head cannot run even on an idle replica because
        other programs' pins hold the memory, those pins are released first."""
        self._swap_in()
        waiting = self.waiting
        while waiting and self.admissible(waiting[0]):
            self._admit_unchecked(waiting.popleft())
        if waiting and not self.n and not self.swapped:
            head = int(self.sim.program_of[waiting[0]])
            others = [p for p in self.pins if p != head]
            if others:
                for p in others:
                    self.unpin(p, self.clock)
                return
            self._fail_unservable(waiting[0])
            return
        self.run_iteration()

    def audit(self) -> None:
        """The base ledger check with pinned blocks counted as used, plus the pin records."""
        if sum(pin.blocks for pin in self.pins.values()) != self.pinned_blocks:
            raise AssertionError(f"replica {self.index}: pinned block count out of date")
        self.free_blocks += self.pinned_blocks  # the base ledger counts running requests only
        try:
            super().audit()
        finally:
            self.free_blocks -= self.pinned_blocks
        if self._head > self.total_blocks + self.blocks_released:
            raise AssertionError(f"replica {self.index}: free-pool head beyond the released blocks")

    def _fail_unservable(self, rid: int) -> None:
        """A turn that cannot fit even alone fails, and its program is aborted: its pinned or
        cached context is released and its later turns never come."""
        super()._fail_unservable(rid)
        program = int(self.sim.program_of[rid])
        if program in self.pins:
            self.unpin(program, self.clock)
        self.prefix.pop(program, None)
        self.sim._program_aborted(program, self.clock)
        self.horizon = self.clock

    def reload_seconds(self, tokens: int) -> float:
        """Time to prefill ``tokens`` of context alone on this replica (in budget-sized chunks)."""
        budget = self.config.max_batched_tokens
        seconds, done = 0.0, 0
        while done < tokens:
            chunk = min(budget, tokens - done)
            seconds += self._iteration_seconds(chunk, chunk * (done + chunk / 2.0), 0, 0)
            done += chunk
        return seconds


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
    ) -> None:
        if scheduler not in SCHEDULERS:
            raise ValueError(f"scheduler must be one of {SCHEDULERS}, got {scheduler!r}")
        if router not in ROUTERS:
            raise ValueError(f"router must be one of {ROUTERS}, got {router!r}")
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
        self.replicas = [ProgramReplica(i, config, self.table, slo, self) for i in range(n_replicas)]
        self._heap: list[tuple[float, int, int, int, int]] = []
        self._seq = 0
        for p, t in enumerate(programs.arrival_s):
            self._push(float(t), _START, p)
        self._pending: deque[Decision] = deque()
        self._queued_programs: deque[int] = deque()
        self._active = 0
        self._next_rr = 0
        self.resolved: list[tuple[int, float, float]] = []  # (decision rid, next turn's latency, pinned block-s)

    # ------------------------------------------------------------------ events
    def _push(self, time: float, kind: int, x: int, version: int = 0) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (time, kind, self._seq, x, version))

    def _turn_finished(self, rid: int, replica: ProgramReplica) -> None:
        t = self.table
        ctx = int(t.prompt[rid] + t.target[rid])
        self._pending.append(
            Decision(
                rid=rid,
                program=int(self.program_of[rid]),
                turn=int(self.turn_index[rid]),
                replica=replica.index,
                time=replica.clock,
                context_tokens=ctx,
                blocks=int(replica.blocks_for(ctx)),
                reload_s=replica.reload_seconds(ctx),
                queue_delay_s=replica.queue_delay_s,
                queue_len=len(replica.waiting),
                running=replica.n,
                free_fraction=replica.free_blocks / replica.total_blocks,
                pinned_fraction=replica.pinned_blocks / replica.total_blocks,
            )
        )
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
            self._push(now, _START, self._queued_programs.popleft())

    def _program_aborted(self, program: int, now: float) -> None:
        self.program_failed[program] = True
        self._active -= 1
        if self._queued_programs:
            self._push(now, _START, self._queued_programs.popleft())

    def _start(self, program: int, now: float) -> None:
        if self.concurrency is not None and self._active >= self.concurrency:
            self._queued_programs.append(program)
            return
        self._active += 1
        self.program_start[program] = now
        if self.router == "least_outstanding":
            replica = min(self.replicas, key=lambda r: r.outstanding)
        else:
            replica = self.replicas[self._next_rr]
            self._next_rr = (self._next_rr + 1) % len(self.replicas)
        self.assigned[program] = replica.index
        rid = int(self.programs.offsets[program])
        self.table.arrival[rid] = now
        replica.turn_arrives(rid, now)

    # ------------------------------------------------------------------ driving
    def next_decision(self) -> Decision | None:
        """Simulate until a tool call needs its TTL; None once every program has finished."""
        while not self._pending:
            if not self._heap:
                busy = [r for r in self.replicas if r.has_work]
                if not busy:
                    return None
                for r in busy:
                    r.horizon = math.inf
                    r.advance_until(math.inf)
                    if self._pending or self._heap:
                        break
                continue
            time, kind, seq, x, version = self._heap[0]
            if not self._catch_up(time, seq):
                continue  # a turn finished first: its decision or its program's end comes first
            heapq.heappop(self._heap)
            if kind == _START:
                self._start(x, time)
            elif kind == _ARRIVE:
                self.table.arrival[x] = time
                self.replicas[self.assigned[self.program_of[x]]].turn_arrives(x, time)
            else:
                self.replicas[self.assigned[x]].expire(x, version, time)
        return self._pending[0]

    def _catch_up(self, time: float, seq: int) -> bool:
        """Advance every replica to ``time``; False as soon as a finish created a decision or
        an earlier event (replicas stop at every finish: see ``ProgramReplica._release``)."""
        for r in self.replicas:
            while r.has_work and r.clock < time:
                r.horizon = math.inf
                r.advance_until(time)
                if self._pending or self._heap[0][2] != seq:
                    return False
        return True

    def decide(self, ttl_s: float) -> None:
        """Apply a TTL (seconds; <= 0 evicts at once) to the oldest pending decision."""
        if not self._pending:
            raise RuntimeError("no decision is pending: call next_decision() first")
        if not math.isfinite(ttl_s):
            raise ValueError(f"ttl_s must be a finite number of seconds, got {ttl_s!r}")
        d = self._pending.popleft()
        replica = self.replicas[d.replica]
        ttl_s = max(float(ttl_s), 0.0)
        self.ttl[d.rid] = ttl_s
        pin = replica.pins[d.program]
        pin.decided = True
        if ttl_s <= 0:
            replica.unpin(d.program, d.time)
        else:
            pin.expiry = d.time + ttl_s
            self._push(pin.expiry, _EXPIRE, d.program, pin.version)
        self._push(d.time + float(self.programs.tool_duration_s[d.rid]), _ARRIVE, d.rid + 1)

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
            "pinned_memory_fraction": float(sum(r.pinned_block_s for r in self.replicas) / (total_blocks * makespan)),
            "preemptions": float(t.preemptions.sum()),
            "makespan_s": makespan,
        }
        return metrics


__all__ = ["SCHEDULERS", "Decision", "Pin", "ProgramReplica", "ProgramSimulation"]
