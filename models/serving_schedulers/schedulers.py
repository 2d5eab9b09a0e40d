"""Admission policies of one replica, as ``ReplicaScheduler`` implementations.

- ``fcfs`` (aggressive, vLLM): admit the head of the queue while its prompt fits in the free
  KV blocks now; a decode step that runs out of blocks preempts the newest request.
- ``conservative``: also reserve every request's ``max_new_tokens`` (no preemption can happen).
- ``past_future`` (LightLLM): admit only while the predicted future peak of KV use stays under
  capacity minus 3% (``past_future.py``).
- ``edf``: earliest SLO deadline first (first-token deadline for streaming requests).
- ``sjf``: shortest predicted output first (the length predictor's median).
- ``jitserve``: grouped margin goodput order with conservative, refined length estimates and
  a prefill budget that keeps streaming requests on pace (``jitserve.py``).

Requests already started (preempted and waiting to be recomputed) go first in every policy, as
vLLM resumes them first.
"""

from __future__ import annotations

import numpy as np

from infragym.envs.serving.simulator import Replica
from infragym.models.serving_schedulers import jitserve as jit
from infragym.models.serving_schedulers.length_predictor import QuantileLengthPredictor, prompt_features
from infragym.models.serving_schedulers.past_future import MEMORY_RESERVE, LengthHistory, future_peak
from infragym.models.serving_schedulers.replay import ReplicaScheduler
from infragym.models.serving_schedulers.workloads import LATENCY, Workload


def _started_first(table, ids: np.ndarray, key: np.ndarray) -> np.ndarray:
    """Order ``ids`` by ``key``, the started (preempted) ones first in queue order."""
    started = table.generated[ids] > 0
    return ids[np.lexsort((np.where(started, 0.0, key), ~started))]


class FCFSScheduler(ReplicaScheduler):
    """Aggressive admission, first come first served (vLLM)."""

    name = "fcfs"

    def schedule(self, replica: Replica) -> None:
        waiting = replica.waiting
        while waiting and replica.admissible(waiting[0]):
            replica.admit(waiting[0])


class ConservativeScheduler(ReplicaScheduler):
    """FCFS that reserves each request's prompt + max_new_tokens of KV (no preemption ever)."""

    name = "conservative"

    def reset(self, replica: Replica, workload: Workload, rng: np.random.Generator) -> None:
        super().reset(replica, workload, rng)
        bs = replica.config.block_size
        self._reserve = -(-(workload.trace.prompt_tokens + workload.max_new_tokens) // bs)

    def schedule(self, replica: Replica) -> None:
        self._reserved = int(self._reserve[replica.run_ids].sum())
        self.admit_in_order(replica, self.waiting_ids(replica))

    def accepts(self, replica: Replica, rid: int) -> bool:
        need = int(self._reserve[rid])
        if self._reserved + need > replica.total_blocks:
            return False
        self._reserved += need
        return True


class PastFutureScheduler(ReplicaScheduler):
    """LightLLM's Past-Future admission: future peak of KV use from the history of finished
    output lengths (sampled per running request, conditioned on what it generated)."""

    name = "past_future"

    def __init__(self, *, window: int = 1000, reserve: float = MEMORY_RESERVE) -> None:
        self.window = window
        self.reserve = reserve

    def reset(self, replica: Replica, workload: Workload, rng: np.random.Generator) -> None:
        super().reset(replica, workload, rng)
        self.history = LengthHistory(self.window)
        bs = replica.config.block_size
        self.capacity = (1.0 - self.reserve) * replica.total_blocks * bs

    def on_finished(self, rids: np.ndarray) -> None:
        self.history.add(self.table.generated[rids])

    def schedule(self, replica: Replica) -> None:
        t = self.table
        running = replica.run_ids
        bs = replica.config.block_size
        held = replica.blocks.astype(np.float64) * bs
        remaining = self.history.sample_remaining(
            t.generated[running], self.workload.max_new_tokens[running], self.rng
        ).astype(np.float64)
        self._held = list(held)
        self._remaining = list(remaining)
        self.admit_in_order(replica, self.waiting_ids(replica))

    def accepts(self, replica: Replica, rid: int) -> bool:
        t = self.table
        bs = replica.config.block_size
        length = int(t.prompt[rid] + t.generated[rid])
        held = float(-(-(length + 1) // bs) * bs)
        remaining = float(
            self.history.sample_remaining(
                np.array([t.generated[rid]]), self.workload.max_new_tokens[rid : rid + 1], self.rng
            )[0]
        )
        peak = future_peak(np.array([*self._held, held]), np.array([*self._remaining, remaining]))
        if peak > self.capacity:
            return False
        self._held.append(held)
        self._remaining.append(remaining)
        return True


class _PredictedLengths:
    """Mixin: the output-length predictor's quantile grid of every request of the workload."""

    predictor: QuantileLengthPredictor | None

    def _predict(self, workload: Workload) -> None:
        if self.predictor is None:
            raise ValueError(f"{type(self).__name__}: give it a fitted QuantileLengthPredictor")
        features = prompt_features(workload.trace.prompt_tokens, workload.slo_type)
        self.grid = self.predictor.quantile_grid(features)


class EDFScheduler(ReplicaScheduler):
    """Earliest deadline first: the first-token deadline of streaming requests, the completion
    deadline of the others."""

    name = "edf"

    def reset(self, replica: Replica, workload: Workload, rng: np.random.Generator) -> None:
        super().reset(replica, workload, rng)
        self.key = np.where(
            workload.slo_type == LATENCY, workload.trace.arrival_s + workload.ttft_s, workload.deadline_at
        )

    def schedule(self, replica: Replica) -> None:
        ids = self.waiting_ids(replica)
        if self.nothing_fits(replica, ids):
            return
        # compound calls arrive late: their deadline is absolute already
        self.admit_in_order(replica, _started_first(self.table, ids, self.key[ids]))


class SJFScheduler(ReplicaScheduler, _PredictedLengths):
    """Shortest predicted job first (the predictor's median output length)."""

    name = "sjf"

    def __init__(self, *, predictor: QuantileLengthPredictor | None = None) -> None:
        self.predictor = predictor

    def reset(self, replica: Replica, workload: Workload, rng: np.random.Generator) -> None:
        super().reset(replica, workload, rng)
        self._predict(workload)
        median = int(np.argmin(np.abs(self.predictor.levels - 0.5)))
        self.key = self.grid[:, median]

    def schedule(self, replica: Replica) -> None:
        ids = self.waiting_ids(replica)
        if self.nothing_fits(replica, ids):
            return
        self.admit_in_order(replica, _started_first(self.table, ids, self.key[ids]))


class JITServeScheduler(ReplicaScheduler, _PredictedLengths):
    """JITServe: grouped margin goodput order over the waiting requests, with conservative
    length estimates refined as tokens are generated and a prefill budget that keeps the
    running streams on their TBT pace (batch composition).

    Args:
        predictor: a fitted ``QuantileLengthPredictor``.
        refine: refine the estimates with the tokens generated (ablation: static quantile).
        grouping: group by slack (ablation: one group ordered by marginal goodput).
        batch_composition: cap each iteration's prefill by the streams' TBT slack (ablation: off).
    """

    name = "jitserve"

    def __init__(
        self,
        *,
        predictor: QuantileLengthPredictor | None = None,
        refine: bool = True,
        grouping: bool = True,
        batch_composition: bool = True,
    ) -> None:
        self.predictor = predictor
        self.refine = refine
        self.grouping = grouping
        self.batch_composition = batch_composition

    def reset(self, replica: Replica, workload: Workload, rng: np.random.Generator) -> None:
        super().reset(replica, workload, rng)
        self._predict(workload)
        self.cost = replica.cost

    def _iteration_s(self, replica: Replica, prefill_tokens: float, pairs: float) -> float:
        ctx = float(replica.ctx.sum())
        return float(self.cost.iteration_time(prefill_tokens, pairs, replica.n, ctx))

    def schedule(self, replica: Replica) -> None:
        ids = self.waiting_ids(replica)
        if self.nothing_fits(replica, ids):
            return
        t, w = self.table, self.workload
        now = replica.clock
        generated = t.generated[ids]
        total = self.predictor.estimate_total(self.grid[ids], generated, refine=self.refine)
        remaining = np.maximum(np.minimum(total, w.max_new_tokens[ids]) - generated, 1.0)
        token_s = self._iteration_s(replica, 0.0, 0.0)
        length = (t.prompt[ids] + generated).astype(np.float64)
        prefill_s = self._iteration_s(replica, 0.0, 0.0) + self.cost.iteration_time(length, length**2 / 2, 0, 0)
        slack = jit.slack_seconds(
            now=now,
            slo_type=w.slo_type[ids],
            arrival=t.arrival[ids],
            ttft_s=w.ttft_s[ids],
            tbt_s=w.tbt_s[ids],
            deadline_at=w.deadline_at[ids],
            first_token=np.nan_to_num(t.first_token[ids], nan=now),
            generated=generated.astype(np.float64),
            remaining=remaining,
            token_s=token_s,
            prefill_s=prefill_s,
        )
        value = jit.marginal_goodput(t.prompt[ids], generated, remaining, token_s)
        service_s = prefill_s + remaining * token_s
        order = jit.grouped_margin_order(slack, value, service_s, grouping=self.grouping)
        started = generated[order] > 0
        order = np.concatenate([order[started], order[~started]])
        self._budget = np.inf
        if self.batch_composition and replica.n:
            running = replica.run_ids
            streaming = running[(w.slo_type[running] == LATENCY) & np.isfinite(t.first_token[running])]
            if streaming.size:
                replica.sync()
                self._budget = jit.prefill_budget_s(
                    now=now,
                    first_token=t.first_token[streaming],
                    generated=t.generated[streaming],
                    tbt_s=w.tbt_s[streaming],
                    token_s=token_s,
                )
        self._prefill = 0.0
        self._pairs = 0.0
        self._slack = dict(zip(ids[order].tolist(), slack[order].tolist(), strict=True))
        self.admit_in_order(replica, ids[order])

    def accepts(self, replica: Replica, rid: int) -> bool:
        if not np.isfinite(self._budget):
            return True
        t = self.table
        length = float(t.prompt[rid] + t.generated[rid])
        prefill = self._prefill + length
        pairs = self._pairs + length * length / 2
        # A request whose slack runs out within this budget goes now whatever it costs.
        urgent = self._slack.get(rid, 0.0) < self._budget
        if not urgent and self._iteration_s(replica, prefill, pairs) > self._budget:
            return False
        self._prefill, self._pairs = prefill, pairs
        return True


SCHEDULERS: dict[str, type[ReplicaScheduler]] = {
    cls.name: cls
    for cls in (
        FCFSScheduler,
        ConservativeScheduler,
        PastFutureScheduler,
        EDFScheduler,
        SJFScheduler,
        JITServeScheduler,
    )
}
