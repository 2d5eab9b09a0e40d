"""What a learned admission policy sees at a scheduling point, and what it may do.

Observation (``OBS_SIZE`` float32, each in [-1, 1]): the replica (free KV, running batch,
batched tokens, queue length, the Past-Future predicted peak and the conservative reservation as
fractions of the KV pool, the current decode time per token against the streaming TBT bound, and
the streams' TBT slack) and ``WINDOW`` waiting requests (preempted ones first, then those that
can still meet their SLO, by slack): present, prompt size, SLO slack, SLO type, whether it was
already started, whether it fits now, the Past-Future peak if it were admitted, and whether the
iteration with its prefill stays within the running streams' TBT slack (JITServe's
batch-composition test). Action: admit candidate ``k < WINDOW`` or run the iteration
(``WINDOW``); the mask allows the candidates that fit in the free KV blocks now, and running.
"""

from __future__ import annotations

import numpy as np

from infragym.envs.serving.simulator import Replica
from infragym.models.serving_schedulers.jitserve import prefill_budget_s
from infragym.models.serving_schedulers.past_future import LengthHistory, future_peak
from infragym.models.serving_schedulers.workloads import COMPOUND, DEADLINE, LATENCY

WINDOW = 8
GLOBAL_NAMES = (
    "free_kv",
    "running",
    "batch_tokens",
    "queue",
    "past_future_peak",
    "conservative_reservation",
    "token_time_vs_tbt",
    "stream_tbt_slack",
)
SLOT_NAMES = (
    "present",
    "prompt",
    "slack",
    "latency",
    "deadline",
    "compound",
    "started",
    "fits",
    "peak_if_admitted",
    "iteration_within_stream_slack",
)
OBS_SIZE = len(GLOBAL_NAMES) + WINDOW * len(SLOT_NAMES)
N_ACTIONS = WINDOW + 1
SLACK_SCALE_S = 30.0  # slack is reported as slack / 30 s, clipped to [-1, 1]


class AdmissionFeatures:
    """Observation and mask builder for one replay (keeps the history of finished lengths)."""

    def __init__(self, replica: Replica, rng: np.random.Generator) -> None:
        self.replica = replica
        self.table = replica.table
        self.columns = replica.table.columns  # the workload's SLOs (replay.WORKLOAD_COLUMNS)
        self.rng = rng
        self.history = LengthHistory()
        self.bs = replica.config.block_size
        self.capacity = replica.total_blocks * self.bs
        self._reserve = -(-(self.table.prompt + self.columns["max_new_tokens"]) // self.bs) * self.bs

    def on_finish(self, rid: int) -> None:
        self.history.add(np.array([self.table.generated[rid]]))

    def slack(self, ids: np.ndarray) -> np.ndarray:
        """Seconds until each request misses its SLO deadline: the first-token deadline of a
        stream not yet started (0 for a preempted one: it is already late to resume), the
        completion deadline of the others."""
        t, c = self.table, self.columns
        now = self.replica.clock
        return np.where(
            c["slo_type"][ids] == LATENCY,
            np.where(t.generated[ids] > 0, 0.0, t.arrival[ids] + c["ttft_s"][ids] - now),
            c["deadline_at"][ids] - now,
        )

    def candidates(self) -> list[int]:
        """The ``WINDOW`` waiting requests the policy chooses among: preempted ones first (as
        every scheduler resumes them first), then those that can still meet their SLO by
        ascending slack, then the rest (a FIFO window would show only the oldest requests,
        which under overload are the ones already past their deadline)."""
        waiting = self.replica.waiting
        if len(waiting) <= 1:
            return list(waiting)
        ids = np.fromiter(waiting, dtype=np.int64, count=len(waiting))
        slack = self.slack(ids)
        started = self.table.generated[ids] > 0
        group = np.where(started, 0, np.where(slack >= 0, 1, 2))
        order = np.lexsort((slack, group))[:WINDOW]
        return ids[order].tolist()

    def any_fits(self) -> bool:
        """Whether one of the candidates fits now (a decision exists); cheaper than ``observe``."""
        return any(self.replica.admissible(rid) for rid in self.candidates())

    def observe(self) -> tuple[np.ndarray, np.ndarray, list[int]]:
        """(observation, mask over N_ACTIONS, the candidate request ids)."""
        r, t, c = self.replica, self.table, self.columns
        cfg = r.config
        now = r.clock
        obs = np.zeros(OBS_SIZE, dtype=np.float32)
        running = r.run_ids
        held = r.blocks.astype(np.float64) * self.bs
        remaining = self.history.sample_remaining(r.generated_running, c["max_new_tokens"][running], self.rng).astype(
            np.float64
        )
        peak = future_peak(held, remaining)
        token_s = float(r.cost.iteration_time(0.0, 0.0, max(r.n, 1), float(r.ctx.sum())))
        streams = (c["slo_type"][running] == LATENCY) & np.isfinite(t.first_token[running])
        budget = np.inf  # no stream running: any prefill is within budget
        if streams.any():
            budget = prefill_budget_s(
                now=now,
                first_token=t.first_token[running[streams]],
                generated=r.generated_running[streams],
                tbt_s=c["tbt_s"][running[streams]],
                token_s=token_s,
            )
        obs[0] = r.free_blocks / r.total_blocks
        obs[1] = r.n / cfg.max_running
        obs[2] = min(r.batch_tokens() / cfg.max_batched_tokens, 1.0)
        obs[3] = min(len(r.waiting) / 64.0, 1.0)
        obs[4] = min(peak / self.capacity, 2.0) / 2.0
        obs[5] = min(float(self._reserve[running].sum()) / self.capacity, 2.0) / 2.0
        obs[6] = min(token_s / 0.1, 1.0)
        obs[7] = float(np.clip(budget, -1.0, 1.0))  # seconds, 1 when no stream bounds it
        mask = np.zeros(N_ACTIONS, dtype=bool)
        cands = self.candidates()
        base = len(GLOBAL_NAMES)
        k = len(SLOT_NAMES)
        if cands:
            ids = np.asarray(cands, dtype=np.int64)
            generated = t.generated[ids]
            slack = self.slack(ids)
            sampled = self.history.sample_remaining(generated, c["max_new_tokens"][ids], self.rng).astype(np.float64)
            # the next iteration's time if this prompt joins the prefills already planned
            planned = float(r.prefill_left.sum())
            lengths = (t.prompt[ids] + generated).astype(np.float64)
            iteration_s = r.cost.iteration_time(
                planned + lengths, (planned + lengths) ** 2 / 2.0, r.n, float(r.ctx.sum())
            )
            for slot, rid in enumerate(cands):
                fits = r.admissible(rid)
                mask[slot] = fits
                length = r.prefill_len(rid)
                peak_with = future_peak(
                    np.append(held, -(-(length + 1) // self.bs) * self.bs), np.append(remaining, sampled[slot])
                )
                o = base + slot * k
                obs[o : o + k] = (
                    1.0,
                    min(length / cfg.max_batched_tokens, 1.0),
                    np.clip(slack[slot] / SLACK_SCALE_S, -1.0, 1.0),
                    c["slo_type"][rid] == LATENCY,
                    c["slo_type"][rid] == DEADLINE,
                    c["slo_type"][rid] == COMPOUND,
                    generated[slot] > 0,
                    fits,
                    min(peak_with / self.capacity, 2.0) / 2.0,
                    iteration_s[slot] <= budget,
                )
        mask[WINDOW] = True
        return obs, mask, cands
