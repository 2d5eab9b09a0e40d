"""Admission policies of one replica, as kernel ``ReplicaScheduler`` implementations.

- ``fcfs`` (aggressive, vLLM): the kernel's ``FCFSScheduler``: admit the head of the queue while
  its prompt fits in the free KV blocks now; a decode step that runs out of blocks preempts the
  newest request.
- ``conservative``: also reserve every request's ``max_new_tokens`` (no preemption can happen).
- ``past_future`` (LightLLM): admit only while the predicted future peak of KV use stays under
  capacity minus 3% (``past_future.py``).
- ``edf``: earliest SLO deadline first (first-token deadline for streaming requests).
- ``sjf``: shortest predicted output first (the length predictor's median).
- ``jitserve``: grouped margin goodput order with conservative, refined length estimates and
  a prefill budget that keeps streaming requests on pace (``jitserve.py``).

Requests already started (preempted and waiting to be recomputed) go first in every policy, as
vLLM resumes them first. The workload's SLOs come from ``RequestTable.columns``
(``replay.WORKLOAD_COLUMNS``).
"""

from __future__ import annotations

import numpy as np

from infragym.envs.serving.policies import ReplicaScheduler, register_scheduler
from infragym.envs.serving.schedulers import FCFSScheduler
from infragym.envs.serving.simulator import Replica
from infragym.models.serving_schedulers import jitserve as jit
from infragym.models.serving_schedulers.length_predictor import QuantileLengthPredictor, prompt_features
from infragym.models.serving_schedulers.past_future import MEMORY_RESERVE, LengthHistory, future_peak
from infragym.models.serving_schedulers.replay import AdmissionScheduler
from infragym.models.serving_schedulers.workloads import LATENCY


def _started_first(table, ids: np.ndarray, key: np.ndarray) -> np.ndarray:
    """Order ``ids`` by ``key``, the started (preempted) ones first in queue order."""
    started = table.generated[ids] > 0
    return ids[np.lexsort((np.where(started, 0.0, key), ~started))]


@register_scheduler
class ConservativeScheduler(AdmissionScheduler):
    """FCFS that reserves each request's prompt + max_new_tokens of KV (no preemption ever)."""

    name = "conservative"

    def setup(self, replica: Replica) -> None:
        bs = replica.config.block_size
        self._reserve = -(-(replica.table.prompt + self.columns["max_new_tokens"]) // bs)

    def admit(self, replica: Replica) -> bool:
        if self.nothing_fits(replica):
            return True
        self._reserved = int(self._reserve[replica.run_ids].sum())
        self.admit_in_order(replica, self.waiting_ids(replica))
        return True

    def accepts(self, replica: Replica, rid: int) -> bool:
        need = int(self._reserve[rid])
        if self._reserved + need > replica.total_blocks:
            return False
        self._reserved += need
        return True


@register_scheduler
class PastFutureScheduler(AdmissionScheduler):
    """LightLLM's Past-Future admission: future peak of KV use from the history of finished
    output lengths (sampled per running request, conditioned on what it generated)."""

    name = "past_future"

    def __init__(self, *, window: int = 1000, reserve: float = MEMORY_RESERVE, seed: int = 0) -> None:
        super().__init__(seed=seed)
        self.window = window
        self.reserve = reserve

    def setup(self, replica: Replica) -> None:
        self.history = LengthHistory(self.window)
        self.capacity = (1.0 - self.reserve) * replica.total_blocks * replica.config.block_size
        self.max_new = self.columns["max_new_tokens"]

    def on_finish(self, replica: Replica, rid: int) -> None:
        self.history.add(np.array([replica.table.generated[rid]]))

    def admit(self, replica: Replica) -> bool:
        if self.nothing_fits(replica):
            return True  # draws nothing: the same decisions whether the kernel steps or fast-forwards
        running = replica.run_ids
        held = replica.blocks.astype(np.float64) * replica.config.block_size
        remaining = self.history.sample_remaining(replica.generated_running, self.max_new[running], self.rng)
        self._held = held.tolist()
        self._remaining = remaining.astype(np.float64).tolist()
        self.admit_in_order(replica, self.waiting_ids(replica))
        return True

    def accepts(self, replica: Replica, rid: int) -> bool:
        t = self.table
        bs = replica.config.block_size
        held = float(-(-(replica.prefill_len(rid) + 1) // bs) * bs)
        generated = np.array([t.generated[rid]])
        remaining = float(self.history.sample_remaining(generated, self.max_new[rid : rid + 1], self.rng)[0])
        if future_peak(np.array([*self._held, held]), np.array([*self._remaining, remaining])) > self.capacity:
            return False
        self._held.append(held)
        self._remaining.append(remaining)
        return True


@register_scheduler
class EDFScheduler(AdmissionScheduler):
    """Earliest deadline first: the first-token deadline of streaming requests, the completion
    deadline of the others."""

    name = "edf"

    def setup(self, replica: Replica) -> None:
        c = self.columns
        self.key = np.where(c["slo_type"] == LATENCY, replica.table.arrival + c["ttft_s"], c["deadline_at"])

    def admit(self, replica: Replica) -> bool:
        if self.nothing_fits(replica):
            return True
        ids = self.waiting_ids(replica)
        # a compound call's deadline is its program's, absolute: its late arrival changes nothing
        self.admit_in_order(replica, _started_first(self.table, ids, self.key[ids]))
        return True


class _PredictedLengths(AdmissionScheduler):
    """A scheduler that uses the output-length predictor's quantile grid of every request."""

    def __init__(self, *, predictor: QuantileLengthPredictor, seed: int = 0) -> None:
        super().__init__(seed=seed)
        self.predictor = predictor

    def setup(self, replica: Replica) -> None:
        features = prompt_features(replica.table.prompt, self.columns["slo_type"])
        self.grid = self.predictor.quantile_grid(features)


@register_scheduler
class SJFScheduler(_PredictedLengths):
    """Shortest predicted job first (the predictor's median output length)."""

    name = "sjf"

    def setup(self, replica: Replica) -> None:
        super().setup(replica)
        median = int(np.argmin(np.abs(self.predictor.levels - 0.5)))
        self.key = self.grid[:, median]

    def admit(self, replica: Replica) -> bool:
        if self.nothing_fits(replica):
            return True
        ids = self.waiting_ids(replica)
        self.admit_in_order(replica, _started_first(self.table, ids, self.key[ids]))
        return True


@register_scheduler
class JITServeScheduler(_PredictedLengths):
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
        predictor: QuantileLengthPredictor,
        refine: bool = True,
        grouping: bool = True,
        batch_composition: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__(predictor=predictor, seed=seed)
        self.refine = refine
        self.grouping = grouping
        self.batch_composition = batch_composition

    def _iteration_s(self, replica: Replica, prefill_tokens: float, pairs: float) -> float:
        return float(replica.cost.iteration_time(prefill_tokens, pairs, replica.n, float(replica.ctx.sum())))

    def admit(self, replica: Replica) -> bool:
        if self.nothing_fits(replica):
            return True
        ids = self.waiting_ids(replica)
        t, c = self.table, self.columns
        now = replica.clock
        generated = t.generated[ids]
        total = self.predictor.estimate_total(self.grid[ids], generated, refine=self.refine)
        remaining = np.maximum(np.minimum(total, c["max_new_tokens"][ids]) - generated, 1.0)
        token_s = self._iteration_s(replica, 0.0, 0.0)
        length = (t.prompt[ids] + generated).astype(np.float64)
        prefill_s = token_s + replica.cost.iteration_time(length, length**2 / 2, 0, 0)
        slack = jit.slack_seconds(
            now=now,
            slo_type=c["slo_type"][ids],
            arrival=t.arrival[ids],
            ttft_s=c["ttft_s"][ids],
            tbt_s=c["tbt_s"][ids],
            deadline_at=c["deadline_at"][ids],
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
            streams = (c["slo_type"][running] == LATENCY) & np.isfinite(t.first_token[running])
            if streams.any():
                self._budget = jit.prefill_budget_s(
                    now=now,
                    first_token=t.first_token[running[streams]],
                    generated=replica.generated_running[streams],
                    tbt_s=c["tbt_s"][running[streams]],
                    token_s=token_s,
                )
        self._prefill = float(replica.prefill_left.sum())
        self._pairs = 0.0
        self._slack = dict(zip(ids[order].tolist(), slack[order].tolist(), strict=True))
        self.admit_in_order(replica, ids[order])
        return True

    def accepts(self, replica: Replica, rid: int) -> bool:
        if not np.isfinite(self._budget):
            return True
        length = float(replica.prefill_len(rid))
        prefill = self._prefill + length
        pairs = self._pairs + length * length / 2
        # A request whose slack runs out within this budget goes now whatever it costs.
        urgent = self._slack.get(rid, 0.0) < self._budget
        if not urgent and self._iteration_s(replica, prefill, pairs) > self._budget:
            return False
        self._prefill, self._pairs = prefill, pairs
        return True


SCHEDULERS: dict[str, type[ReplicaScheduler]] = {
    "fcfs": FCFSScheduler,
    **{
        cls.name: cls
        for cls in (ConservativeScheduler, PastFutureScheduler, EDFScheduler, SJFScheduler, JITServeScheduler)
    },
}
PREDICTED = ("sjf", "jitserve")  # the schedulers that take a length predictor
