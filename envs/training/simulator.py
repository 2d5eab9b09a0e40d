"""The training-job kernel: one clock, one event loop, driven by batch runs and the env alike.

The job alternates between computing (progress accrues at its current speed), blocking
segments (a checkpoint stall, detection, diagnosis, restart, a planned restart) and decision
points. ``advance()`` runs to the next decision point (a failure, or a periodic tick) and
returns it; ``decide(...)`` applies the policy's choice: the checkpoint interval and tier from
now on and, at a failure, the recovery.

Accounting: every second of wall time is either productive (progress that is still in the
model: ``progress_s``, in seconds of full-speed compute) or lost to exactly one loss category
(``LOSSES``). Work rolled back moves from productive to ``rollback``; a CheckFree rebuild's
extra iterations move to ``convergence``. ``wall = progress + sum(lost)`` holds at all times.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from infragym.envs.training import calibration as cal
from infragym.envs.training.calibration import JobSpec
from infragym.envs.training.failures import FailureSpec, JobStreams, NodeFailures
from infragym.envs.training.tiers import HOST, LEVELS, PEER, REMOTE, SYNC, CheckpointTier, build_tiers, survives

LOSSES = (
    "checkpoint_stall",
    "detection",
    "diagnosis",
    "restart",
    "rollback",
    "straggler",
    "shrink",
    "convergence",
    "maintenance",
    "false_alarm",
)
RECOVERIES = ("in_place", "swap_spare", "shrink", "checkfree")
IN_PLACE, SWAP_SPARE, SHRINK, CHECKFREE = range(4)
DETECTIONS = ("watchdog", "heartbeat", "collective")
NO_COPY = -1.0


@dataclass(frozen=True)
class Infrastructure:
    """What a strategy brings besides its decisions: how failures are detected and how fast the
    job restarts.

    Attributes:
        detection: ``watchdog`` (NCCL timeout, ~10 min), ``heartbeat`` (MegaScale: heartbeats and
            RDMA metrics, then stop-and-diagnose tests) or ``collective`` (C4: deviating collective
            timings, a few iterations, with false alarms).
        fast_comm_init: MegaScale's communicator initialisation (5 s instead of 1,047 s at 2,048 GPUs).
        straggler_detect_s: seconds until a slow host is found and evicted (inf: never; it is then
            cleared at the next failure's restart).
        checkfree_plus: CheckFree+ (edge stages can be rebuilt too).
        oracle: knows every failure's time and cause; checkpoints just before it in the cheapest
            tier whose copy survives.
    """

    detection: str = "watchdog"
    fast_comm_init: bool = True
    straggler_detect_s: float = math.inf
    checkfree_plus: bool = False
    oracle: bool = False

    def __post_init__(self) -> None:
        if self.detection not in DETECTIONS:
            raise ValueError(f"detection must be one of {DETECTIONS}, got {self.detection!r}")


@dataclass
class FailureEvent:
    """A failure as the policy sees it when choosing the recovery."""

    time: float
    slot: int
    cause: int
    loses_nodes: int
    max_group_losses: int
    middle_stage: bool
    during_recovery: bool

    @property
    def cause_name(self) -> str:
        return cal.CAUSES[self.cause]


@dataclass
class Decision:
    """A decision point: ``failure`` is None for a periodic tick."""

    time: float
    failure: FailureEvent | None


@dataclass
class RunLog:
    """Counters for invariants and reports."""

    failures: int = 0
    checkpoints: int = 0
    # (time, progress before, progress restored): the restored progress is a usable copy's
    rollbacks: list[tuple[float, float, float]] = field(default_factory=list)
    # (time usable, progress, level) of every copy that became usable
    copies: list[tuple[float, float, int]] = field(default_factory=list)
    # times of CheckFree rebuilds (copies from before one are re-logged, capped, at its time)
    rebuilds: list[float] = field(default_factory=list)
    lost_by_failure_cause: dict[str, float] = field(default_factory=dict)
    recoveries: dict[str, int] = field(default_factory=dict)
    restores: dict[str, int] = field(default_factory=dict)  # rollbacks per level restored from


class TrainingJobSimulator:
    """A training job of ``job.n_gpus`` GPUs under failures, for ``horizon_s`` of wall time.

    Args:
        job: the job.
        failures: the failure model.
        infra: detection and restart infrastructure.
        horizon_s: wall-clock length of the run.
        seed: seeds every random stream.
        decision_period_s: a decision tick every this many seconds (besides failures).
        interval_s, tier: the initial checkpoint interval (seconds of compute) and tier.
    """

    def __init__(
        self,
        job: JobSpec,
        failures: FailureSpec,
        infra: Infrastructure,
        *,
        horizon_s: float,
        seed: int,
        decision_period_s: float = 3600.0,
        interval_s: float = 600.0,
        tier: int = SYNC,
    ) -> None:
        self.job, self.spec, self.infra = job, failures, infra
        self.horizon_s = float(horizon_s)
        self.decision_period_s = float(decision_period_s)
        self.tiers: tuple[CheckpointTier, ...] = build_tiers(job)
        node_seed, cause_seed = np.random.SeedSequence([seed, 3]).spawn(2)
        self.nodes = NodeFailures(job, failures, np.random.default_rng(node_seed))
        self.rng = np.random.default_rng(cause_seed)
        self.streams = JobStreams.draw(job, failures, self.horizon_s, seed)
        self._maint_i = self._strag_i = self._alarm_i = 0
        self.t = 0.0
        self.progress_s = 0.0
        self.since_ckpt_s = 0.0  # progress since the last checkpoint (or restore)
        self.durable = [NO_COPY, NO_COPY, 0.0]  # per level: progress of its newest usable copy
        self.pending: list[tuple[float, float] | None] = [None, None, None]  # per level: (progress, ready at)
        self.lost = dict.fromkeys(LOSSES, 0.0)
        # Blocking segments, in order: (loss category, end time, action at its end, tier, progress).
        self.segments: list[tuple[str, float, str, int, float]] = []
        self.tier_counts = [0] * len(self.tiers)
        self.interval_s = float(interval_s)
        self.tier = int(tier)
        self.straggling = False
        self.straggler_found_at = math.inf
        self.shrunk_nodes = 0
        self.spares = failures.spare_nodes if failures.spare_nodes is not None else max(1, job.n_nodes // 100)
        self.repairs: list[float] = []  # times at which evicted nodes return as spares
        self.next_tick = self.decision_period_s
        self.last_failure_t = 0.0
        self.recent_failures: list[float] = []
        self.done = False
        self.log = RunLog()
        self._pending_failure: FailureEvent | None = None

    # ------------------------------------------------------------------ derived state
    @property
    def speed(self) -> float:
        straggle = cal.STRAGGLER_SPEED if self.straggling else 1.0
        return straggle * self.shrink_speed

    @property
    def shrink_speed(self) -> float:
        replicas = self.job.data_parallel
        return max(replicas - self.shrunk_nodes, 1) / replicas

    @property
    def busy(self) -> bool:
        return bool(self.segments)

    def ettr(self) -> float:
        return self.progress_s / self.t if self.t > 0 else 1.0

    def newest_copy_s(self) -> float:
        return max(self.durable)

    # ------------------------------------------------------------------ the loop
    def advance(self) -> Decision | None:
        """Run until the next decision point and return it (None: the horizon is reached)."""
        if self._pending_failure is not None:
            raise RuntimeError("a failure awaits its recovery decision: call decide(...) first")
        collective_alarms = self.infra.detection == "collective" and not self.infra.oracle
        while not self.done:
            t_fail, slot = self.nodes.peek()
            t_maint = self._stream_next(self.streams.maintenance, self._maint_i)
            t_strag = self._stream_next(self.streams.stragglers, self._strag_i)
            t_alarm = self._stream_next(self.streams.false_alarms, self._alarm_i) if collective_alarms else math.inf
            t_found = self.straggler_found_at
            t_other = min(t_fail, t_maint, t_strag, t_alarm, t_found, self.next_tick, self.horizon_s)
            # Checkpoints and segment ends change none of the other events' times: run them in a
            # tight loop until the next other event.
            while True:
                t_ckpt = self._next_checkpoint_time(t_fail, slot)
                t_seg = self.segments[0][1] if self.segments else math.inf
                t_next = min(t_other, t_ckpt, t_seg)
                self._run_to(t_next)
                if t_next >= t_other and t_next < t_seg and t_next < t_ckpt:
                    break
                if t_next == t_seg:
                    self._end_segment()
                else:
                    self._start_checkpoint(self.tier)
            if t_next >= self.horizon_s:
                self.done = True
                return None
            if t_next == t_fail:
                return self._failure(slot)
            elif t_next == t_maint:
                self._maint_i += 1
                if not self.busy:
                    self._planned_restart("maintenance", evict=False)
            elif t_next == t_strag:
                self._strag_i += 1
                if not self.straggling:
                    self.straggling = True
                    self.straggler_found_at = self.t + self.infra.straggler_detect_s
            elif t_next == t_alarm:
                self._alarm_i += 1
                if not self.busy:  # a healthy node flagged: evicted, the job restarts from a fresh copy
                    self._planned_restart("false_alarm", evict=True)
            elif t_next == t_found:
                self.straggler_found_at = math.inf
                if self.busy:
                    self.straggling = False
                else:
                    self._planned_restart("straggler", evict=True)
            elif t_next == self.next_tick:
                self.next_tick += self.decision_period_s
                return Decision(self.t, None)
        return None

    def decide(self, *, interval_s: float, tier: int, recovery: int = IN_PLACE) -> None:
        """Apply a decision: the checkpoint interval (seconds of compute) and tier from now on,
        and at a failure its recovery (an option that does not apply falls back to in place)."""
        if not (interval_s > 0 and math.isfinite(interval_s)):
            raise ValueError(f"interval_s must be positive and finite, got {interval_s}")
        if not 0 <= tier < len(self.tiers):
            raise ValueError(f"tier must be in [0, {len(self.tiers)}), got {tier}")
        self.interval_s, self.tier = float(interval_s), int(tier)
        event, self._pending_failure = self._pending_failure, None
        if event is not None:
            self._recover(event, int(recovery))

    def recovery_mask(self, event: FailureEvent | None) -> np.ndarray:
        """Which recoveries apply to ``event`` (all but in place are moot at a tick)."""
        mask = np.zeros(len(RECOVERIES), dtype=bool)
        mask[IN_PLACE] = True
        if event is None or event.loses_nodes == 0:
            return mask
        mask[SWAP_SPARE] = True
        mask[SHRINK] = self.job.data_parallel - self.shrunk_nodes > 1
        mask[CHECKFREE] = not event.during_recovery and (event.middle_stage or self.infra.checkfree_plus)
        return mask

    # ------------------------------------------------------------------ time passing
    @staticmethod
    def _stream_next(times: np.ndarray, i: int) -> float:
        return float(times[i]) if i < times.size else math.inf

    def _run_to(self, t_next: float) -> None:
        t_next = min(t_next, self.horizon_s)
        dt = t_next - self.t
        if dt < 0:
            raise AssertionError(f"time would go backwards: {self.t} -> {t_next}")
        if self.segments:
            self.lost[self.segments[0][0]] += dt
        elif dt > 0:
            if self.straggling or self.shrunk_nodes:
                straggle = cal.STRAGGLER_SPEED if self.straggling else 1.0
                self.lost["straggler"] += dt * (1 - straggle)
                self.lost["shrink"] += dt * straggle * (1 - self.shrink_speed)
                dt *= self.speed
            self.progress_s += dt
            self.since_ckpt_s += dt
        self.t = t_next

    def _next_checkpoint_time(self, t_fail: float, slot: int) -> float:
        if self.segments:
            return math.inf
        if self.infra.oracle:
            return self._oracle_checkpoint_time(t_fail, slot)
        return self.t + max(self.interval_s - self.since_ckpt_s, 0.0) / self.speed

    def _oracle_checkpoint_time(self, t_fail: float, slot: int) -> float:
        """Start the cheapest surviving checkpoint so that its copy is usable when the failure hits."""
        tier, lead = self._oracle_tier(slot)
        self.tier = tier
        # At most one checkpoint per iteration (checkpoints are taken at iteration boundaries).
        earliest = self.t + max(self.job.step_s - self.since_ckpt_s, 0.0) / self.speed
        return max(earliest, t_fail - lead)

    def _oracle_tier(self, slot: int) -> tuple[int, float]:
        loses = bool(cal.CAUSE_LOSES_NODE[self.nodes.next_cause[slot]])
        partner = bool(self.nodes.next_partner[slot])
        best = (SYNC, math.inf)
        for i, tier in enumerate(self.tiers):
            for level, delay in tier.writes:
                if level == REMOTE and (self.tier_counts[i] + 1) % tier.remote_every:
                    continue
                ok = survives(
                    level, loses_nodes=int(loses) * (1 + partner), max_group_losses=int(loses) * (1 + partner)
                )
                if ok and tier.stall_s + delay < best[1]:
                    best = (i, tier.stall_s + delay)
        return best

    # ------------------------------------------------------------------ checkpoints
    def _promote(self) -> None:
        for level, item in enumerate(self.pending):
            if item is not None and item[1] <= self.t:
                self.durable[level] = max(self.durable[level], item[0])
                self.log.copies.append((item[1], item[0], level))
                self.pending[level] = None

    def _start_checkpoint(self, tier: int) -> None:
        self._promote()
        # Backpressure: wait for the previous checkpoint's background writes.
        ready = max((item[1] for item in self.pending if item is not None), default=self.t)
        end = max(ready, self.t) + self.tiers[tier].stall_s
        self.since_ckpt_s = 0.0
        self.segments = [("checkpoint_stall", end, "commit", tier, self.progress_s)]

    def _commit(self, tier: int, progress: float) -> None:
        self.tier_counts[tier] += 1
        self.log.checkpoints += 1
        spec = self.tiers[tier]
        for level, delay in spec.writes:
            if level == REMOTE and self.tier_counts[tier] % spec.remote_every:
                continue
            if delay <= 0:
                self.durable[level] = max(self.durable[level], progress)
                self.log.copies.append((self.t, progress, level))
            else:
                self.pending[level] = (progress, self.t + delay)

    def _end_segment(self) -> None:
        _, _, action, tier, progress = self.segments.pop(0)
        if action == "commit":
            self._commit(tier, progress)
        elif action == "commit_remote":  # a planned restart's copy; host copies go with the restart
            self.durable[REMOTE] = max(self.durable[REMOTE], progress)
            self.durable[HOST] = self.durable[PEER] = NO_COPY
            self.log.copies.append((self.t, progress, REMOTE))
        elif action == "resume":
            self.since_ckpt_s = 0.0

    # ------------------------------------------------------------------ failures
    def _failure(self, slot: int) -> Decision:
        self.log.failures += 1
        cause = int(self.nodes.next_cause[slot])
        loses = bool(cal.CAUSE_LOSES_NODE[cause])
        partner = loses and bool(self.nodes.next_partner[slot])
        stage = slot % self.job.pipeline_parallel
        event = FailureEvent(
            time=self.t,
            slot=slot,
            cause=cause,
            loses_nodes=int(loses) * (1 + int(partner)),
            max_group_losses=int(loses) * (1 + int(partner)),
            middle_stage=0 < stage < self.job.pipeline_parallel - 1,
            during_recovery=self.busy and any(s[2] == "resume" for s in self.segments),
        )
        # The job stops now: an unfinished checkpoint or restart is abandoned.
        self.segments = []
        self.recent_failures = [t for t in self.recent_failures if t > self.t - cal.DAY] + [self.t]
        self._pending_failure = event
        return Decision(self.t, event)

    def _recover(self, event: FailureEvent, recovery: int) -> None:
        self._promote()
        if not self.recovery_mask(event)[recovery]:
            recovery = IN_PLACE
        name = RECOVERIES[recovery]
        self.log.recoveries[name] = self.log.recoveries.get(name, 0) + 1
        cause = event.cause_name
        before = sum(self.lost.values())
        # Where the job restarts from.
        if recovery == CHECKFREE:
            edge = not event.middle_stage
            penalty = cal.CHECKFREE_PLUS_EDGE_PENALTY_ITERATIONS if edge else cal.CHECKFREE_PENALTY_ITERATIONS
            lost = min(penalty * self.job.step_s, self.progress_s)
            self.progress_s -= lost
            self.lost["convergence"] += lost
            restore_level = None
            # Copies on the lost node are gone. A surviving copy from before the failure is worth
            # no more progress than the rebuilt model (counting both would count work twice).
            self.log.rebuilds.append(self.t)
            for level in range(len(LEVELS)):
                if level != REMOTE and not survives(
                    level, loses_nodes=event.loses_nodes, max_group_losses=event.max_group_losses
                ):
                    self.durable[level] = NO_COPY
                elif self.durable[level] >= 0:
                    self.durable[level] = min(self.durable[level], self.progress_s)
                    self.log.copies.append((self.t, self.durable[level], level))
        else:
            usable = [
                (self.durable[level], -level)
                for level in range(len(LEVELS))
                if self.durable[level] >= 0
                and survives(level, loses_nodes=event.loses_nodes, max_group_losses=event.max_group_losses)
            ]
            restore_p, neg_level = max(usable)
            restore_level = -neg_level
            self.log.restores[LEVELS[restore_level]] = self.log.restores.get(LEVELS[restore_level], 0) + 1
            allowed = self.progress_s - restore_p
            self.lost["rollback"] += allowed
            self.log.rollbacks.append((self.t, self.progress_s, restore_p))
            self.progress_s = restore_p
            for level in range(len(LEVELS)):
                if level != restore_level and self.durable[level] > restore_p:
                    self.durable[level] = NO_COPY  # lost with the node (else it would be the max)
                if not survives(level, loses_nodes=event.loses_nodes, max_group_losses=event.max_group_losses):
                    self.durable[level] = NO_COPY
            self.durable[REMOTE] = max(self.durable[REMOTE], 0.0)
        self.pending = [None, None, None]
        self.since_ckpt_s = 0.0
        # How long the job is down.
        segments: list[tuple[str, float]] = []
        if not event.during_recovery:
            segments.append(("detection", self._detection_s()))
            if self.infra.detection == "heartbeat":
                segments.append(("diagnosis", cal.MEGASCALE_DIAGNOSE_S))
        self._refill_shrunk()
        if event.loses_nodes:
            segments.append(("diagnosis", self._node_action_s(event, recovery)))
        else:
            self.nodes.renew(event.slot, self.t)
        restore_s = self.tiers[0].restore_s[restore_level] if restore_level is not None else 0.0
        segments.append(("restart", self._restart_s() + restore_s))
        if self.straggling and math.isinf(self.straggler_found_at):
            self.straggling = False  # the restart's health checks find an undetected slow host
        self._schedule(segments)
        self.last_failure_t = self.t
        self.log.lost_by_failure_cause[cause] = self.log.lost_by_failure_cause.get(cause, 0.0) + (
            sum(self.lost.values()) - before + sum(d for _, d in segments)
        )

    def _detection_s(self) -> float:
        if self.infra.oracle or self.infra.detection == "collective":
            return cal.C4_DETECT_ITERATIONS * self.job.step_s
        if self.infra.detection == "heartbeat":
            return cal.MEGASCALE_DETECT_S
        return cal.WATCHDOG_S

    def _restart_s(self) -> float:
        return cal.RELAUNCH_S + self.job.comm_init_s(fast=self.infra.fast_comm_init)

    def _node_action_s(self, event: FailureEvent, recovery: int) -> float:
        """Time to fix the failed node(s): reboot in place, swap in spares, or shrink."""
        if recovery == IN_PLACE:
            self.nodes.renew(event.slot, self.t)
            return cal.REBOOT_S
        if recovery == SHRINK:
            self.shrunk_nodes += 1
            self.repairs.append(self.t + cal.AUTO_REPAIR_S)
            self.nodes.replace(event.slot, self.t)  # the replica is re-formed later with another node
            return cal.RESHARD_S
        wait = 0.0
        for _ in range(event.loses_nodes):
            if self.spares > 0:
                self.spares -= 1
            else:  # wait for the earliest repaired node
                self.repairs.sort()
                ready = self.repairs.pop(0) if self.repairs else self.t + cal.AUTO_REPAIR_S
                wait = max(wait, ready - self.t)
            self.repairs.append(self.t + cal.AUTO_REPAIR_S)
        self.nodes.replace(event.slot, self.t)
        return cal.EVICT_S + wait

    def _refill_shrunk(self) -> None:
        """Nodes back from repair refill the spare pool and then the shrunk replicas."""
        back = [r for r in self.repairs if r <= self.t]
        self.repairs = [r for r in self.repairs if r > self.t]
        self.spares += len(back)
        refill = min(self.shrunk_nodes, self.spares)
        self.shrunk_nodes -= refill
        self.spares -= refill

    def _planned_restart(self, loss: str, *, evict: bool) -> None:
        """Checkpoint to remote storage, then restart (maintenance, a found straggler, a false alarm)."""
        self._promote()
        tier = self.tiers[SYNC]
        self.pending = [None, None, None]
        segments = [(loss, tier.stall_s)]
        if evict:
            segments.append((loss, cal.EVICT_S))
            self.straggling = False
        segments.append((loss, self._restart_s() + tier.restore_s[REMOTE]))
        self._schedule(segments)
        loss0, end0, _, _, _ = self.segments[0]
        self.segments[0] = (loss0, end0, "commit_remote", SYNC, self.progress_s)

    def _schedule(self, segments: list[tuple[str, float]]) -> None:
        t = self.t
        out: list[tuple[str, float, str, int, float]] = []
        for i, (loss, duration) in enumerate(segments):
            t += max(duration, 0.0)
            out.append((loss, t, "resume" if i == len(segments) - 1 else "", 0, 0.0))
        self.segments = out

    # ------------------------------------------------------------------ results
    def results(self) -> dict[str, float]:
        """ETTR, goodput (tokens/s) and hours lost per category, over the wall time so far."""
        wall = max(self.t, 1e-9)
        out = {
            "ettr": self.progress_s / wall,
            "goodput": self.progress_s / self.job.step_s * self.job.tokens_per_iteration / wall,
            "wall_hours": self.t / cal.HOUR,
            "productive_hours": self.progress_s / cal.HOUR,
            "failures": float(self.log.failures),
            "checkpoints": float(self.log.checkpoints),
        }
        out.update({f"lost_hours_{k}": v / cal.HOUR for k, v in self.lost.items()})
        return out
