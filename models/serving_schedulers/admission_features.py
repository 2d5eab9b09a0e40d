"""What a learned admission policy sees at a scheduling point, and what it may do.

Observation (``OBS_SIZE`` float32, each in [-1, 1]): the replica (free KV, running batch,
batched tokens, queue length, the Past-Future predicted peak and the conservative reservation as
fractions of the KV pool, the current decode time per token against the streaming TBT bound, and
the streams' TBT slack) and the first ``WINDOW`` waiting requests (present, prompt size, SLO
slack, SLO type, whether it was already started, whether it fits now, and the Past-Future peak
if it were admitted). Action: admit waiting request ``k < WINDOW`` or run the iteration
(``WINDOW``); the mask allows the requests that fit in the free KV blocks now, and running.
"""

from __future__ import annotations

import numpy as np

from infragym.envs.serving.simulator import Replica
from infragym.models.serving_schedulers.jitserve import prefill_budget_s
from infragym.models.serving_schedulers.past_future import LengthHistory, future_peak
from infragym.models.serving_schedulers.workloads import COMPOUND, DEADLINE, LATENCY, Workload

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
SLOT_NAMES = ("present", "prompt", "slack", "latency", "deadline", "compound", "started", "fits", "peak_if_admitted")
OBS_SIZE = len(GLOBAL_NAMES) + WINDOW * len(SLOT_NAMES)
N_ACTIONS = WINDOW + 1
SLACK_SCALE_S = 30.0  # slack is reported as slack / 30 s, clipped to [-1, 1]


class AdmissionFeatures:
    """Observation and mask builder for one replay (keeps the history of finished lengths)."""

    def __init__(self, replica: Replica, workload: Workload, rng: np.random.Generator) -> None:
        self.replica = replica
        self.workload = workload
        self.table = replica.table
        self.rng = rng
        self.history = LengthHistory()
        self.bs = replica.config.block_size
        self.capacity = replica.total_blocks * self.bs
        self._reserve = -(-(workload.trace.prompt_tokens + workload.max_new_tokens) // self.bs) * self.bs

    def on_finished(self, rids: np.ndarray) -> None:
        self.history.add(self.table.generated[rids])

    def candidates(self) -> list[int]:
        waiting = self.replica.waiting
        return [waiting[i] for i in range(min(WINDOW, len(waiting)))]

    def observe(self) -> tuple[np.ndarray, np.ndarray, list[int]]:
        """(observation, mask over N_ACTIONS, the candidate request ids)."""
        r, t, w = self.replica, self.table, self.workload
        cfg = r.config
        now = r.clock
        obs = np.zeros(OBS_SIZE, dtype=np.float32)
        running = r.run_ids
        held = r.blocks.astype(np.float64) * self.bs
        remaining = self.history.sample_remaining(t.generated[running], w.max_new_tokens[running], self.rng).astype(
            np.float64
        )
        peak = future_peak(held, remaining)
        token_s = float(r.cost.iteration_time(0.0, 0.0, max(r.n, 1), float(r.ctx.sum())))
        streams = running[(w.slo_type[running] == LATENCY) & np.isfinite(t.first_token[running])]
        budget = 1.0
        if streams.size:
            r.sync()
            budget = prefill_budget_s(
                now=now,
                first_token=t.first_token[streams],
                generated=t.generated[streams],
                tbt_s=w.tbt_s[streams],
                token_s=token_s,
            )
        obs[0] = r.free_blocks / r.total_blocks
        obs[1] = r.n / cfg.max_running
        obs[2] = min(r.batch_tokens() / cfg.max_batched_tokens, 1.0)
        obs[3] = min(len(r.waiting) / 64.0, 1.0)
        obs[4] = min(peak / self.capacity, 2.0) / 2.0
        obs[5] = min(float(self._reserve[running].sum()) / self.capacity, 2.0) / 2.0
        obs[6] = min(token_s / 0.1, 1.0)
        obs[7] = float(np.clip(budget, -1.0, 1.0))
        mask = np.zeros(N_ACTIONS, dtype=bool)
        cands = self.candidates()
        base = len(GLOBAL_NAMES)
        k = len(SLOT_NAMES)
        if cands:
            ids = np.asarray(cands, dtype=np.int64)
            generated = t.generated[ids]
            slack = np.where(
                w.slo_type[ids] == LATENCY,
                np.where(generated > 0, 0.0, t.arrival[ids] + w.ttft_s[ids] - now),
                w.deadline_at[ids] - now,
            )
            sampled = self.history.sample_remaining(generated, w.max_new_tokens[ids], self.rng).astype(np.float64)
            for slot, rid in enumerate(cands):
                fits = r.admissible(rid)
                mask[slot] = fits
                length = int(t.prompt[rid] + t.generated[rid])
                peak_with = future_peak(
                    np.append(held, -(-(length + 1) // self.bs) * self.bs), np.append(remaining, sampled[slot])
                )
                o = base + slot * k
                obs[o : o + k] = (
                    1.0,
                    min(length / cfg.max_batched_tokens, 1.0),
                    np.clip(slack[slot] / SLACK_SCALE_S, -1.0, 1.0),
                    w.slo_type[rid] == LATENCY,
                    w.slo_type[rid] == DEADLINE,
                    w.slo_type[rid] == COMPOUND,
                    generated[slot] > 0,
                    fits,
                    min(peak_with / self.capacity, 2.0) / 2.0,
                )
        mask[WINDOW] = True
        return obs, mask, cands
