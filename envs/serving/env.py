"""``infragym/LLMServing-v0``: the admission decision of one serving replica.

At each scheduling point the agent sees the replica (free KV blocks, batch, queue) and the
first ``window`` waiting requests, and either admits one of them into the next iteration or
runs the iteration (a masked admission also runs it); with an empty batch, running means
waiting for the next arrival or queue timeout. Between decisions the kernel's event loop runs
(arrivals, iterations, fast-forwarded decode-only stretches) until a waiting request could be
admitted: the replica's scheduler is the agent (``AgentScheduler``), which pauses the loop at
such a scheduling point. Reward per step: requests finished within the SLO minus those
finished late, timed out or failed since the last step.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.error import ResetNeeded

from infragym.datasets.llm_traces import RequestTrace, burstgpt_like, poisson_trace
from infragym.envs.actions import discrete_action
from infragym.envs.serving.events import EventLoop
from infragym.envs.serving.policies import ReplicaScheduler
from infragym.envs.serving.simulator import (
    FAILED,
    FINISHED,
    PENDING,
    SLO,
    TIMED_OUT,
    Replica,
    ReplicaConfig,
    RequestTable,
)

N_REPLICA_FEATURES = 6
N_SLOT_FEATURES = 3
WORKLOADS = ("burstgpt_like", "poisson")


class AgentScheduler(ReplicaScheduler):
    """The env's agent as a replica scheduler: at a scheduling point where one of the first
    ``window`` waiting requests could be admitted, pause the event loop for the agent's action;
    otherwise run the iteration (or fail a head that can never run)."""

    name = "agent"

    def __init__(self, window: int) -> None:
        self.window = window

    def candidates(self, replica: Replica) -> list[int]:
        waiting = replica.waiting
        return [waiting[i] for i in range(min(self.window, len(waiting)))]

    def would_admit(self, replica: Replica) -> bool:
        return any(replica.admissible(rid) for rid in self.candidates(replica))

    def schedule(self, replica: Replica) -> bool:
        replica.swap_in()
        if self.would_admit(replica):
            return False  # the agent decides
        if replica.waiting and not replica.n and not replica.swapped and not replica.pending_swap_s:
            replica.fail(replica.waiting[0])
        else:
            replica.run_iteration()
        return True


class LLMServingEnv(gym.Env[np.ndarray, np.int64]):
    """Admission control of one replica over an episode of ``n_requests`` generated requests."""

    metadata = {"render_modes": []}

    def __init__(
        self,
        *,
        n_requests: int = 200,
        rate: float = 30.0,
        workload: str = "burstgpt_like",
        window: int = 8,
        gpu: str = "h100",
        model: str = "llama3.1_8b",
        tp: int = 1,
        max_batched_tokens: int = 8192,
        max_running: int = 256,
        ttft_slo_s: float = 2.0,
        tbt_slo_s: float = 0.1,
        queue_timeout_s: float = 60.0,
    ) -> None:
        super().__init__()
        if workload not in WORKLOADS:
            raise ValueError(f"workload must be one of {WORKLOADS}, got {workload!r}")
        if n_requests <= 0 or rate <= 0 or window <= 0:
            raise ValueError("n_requests, rate and window must be positive")
        self.n_requests = n_requests
        self.rate = rate
        self.workload = workload
        self.window = window
        self.replica_config = ReplicaConfig(
            gpu=gpu, model=model, tp=tp, max_batched_tokens=max_batched_tokens, max_running=max_running
        )
        self.slo = SLO(ttft_s=ttft_slo_s, tbt_s=tbt_slo_s, queue_timeout_s=queue_timeout_s)
        size = N_REPLICA_FEATURES + N_SLOT_FEATURES * window
        self.observation_space = gym.spaces.Box(low=0.0, high=1.0, shape=(size,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(window + 1)  # admit slot k, or run (= window)
        self.replica: Replica | None = None
        self.table: RequestTable | None = None
        self.loop: EventLoop | None = None
        self._scheduler = AgentScheduler(window)
        self._scored = 0.0

    # ------------------------------------------------------------------ episode
    def _trace(self) -> RequestTrace:
        rng = self.np_random
        if self.workload == "poisson":
            return poisson_trace(self.n_requests, rng, rate=self.rate)
        return burstgpt_like(self.n_requests, rng, rate=self.rate, failure_fraction=0.0)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        trace = self._trace()
        self.episode_trace = trace  # the episode's trace, for replay outside the env
        self.table = RequestTable(trace)
        self.replica = Replica(0, self.replica_config, self.table, self.slo, scheduler=self._scheduler)
        self.loop = EventLoop([self.replica], watch=True)
        self.loop.stream(self.table.arrival, self._arrive)
        self._scored = 0.0
        self._advance_to_decision()
        return self._observation(), self._info()

    def _arrive(self, rid: int, now: float) -> None:
        assert self.replica is not None
        self.replica.enqueue(rid, now)

    def _candidates(self) -> list[int]:
        assert self.replica is not None
        return self._scheduler.candidates(self.replica)

    def _next_event(self) -> float:
        """The next arrival, or just past the next queue timeout (so that it fires)."""
        assert self.replica is not None and self.loop is not None
        return min(self.loop.next_time(), float(np.nextafter(self.replica.next_timeout(), np.inf)))

    def action_masks(self) -> np.ndarray:
        mask = np.zeros(self.window + 1, dtype=bool)
        if self.replica is None:
            mask[self.window] = True
            return mask
        for slot, rid in enumerate(self._candidates()):
            mask[slot] = self.replica.admissible(rid)
        # Running (or waiting) is allowed unless the batch is empty and nothing will happen.
        r = self.replica
        mask[self.window] = bool(r.n or r.pending_swap_s or np.isfinite(self._next_event()) or not mask.any())
        return mask

    def _done(self) -> bool:
        assert self.table is not None and self.replica is not None and self.loop is not None
        return not self.loop.pending() and not self.replica.has_work

    def _advance_to_decision(self) -> None:
        """Run the event loop until the agent has an admission to decide or the episode is over."""
        assert self.loop is not None
        self.loop.run()

    def _score(self) -> float:
        """Cumulative score: +1 per request finished within the SLO, -1 per late, timed-out or
        failed one."""
        t = self.table
        assert t is not None
        done = t.state == FINISHED
        ttft = t.first_token - t.arrival
        tpot = np.where(t.generated > 1, (t.completion - t.first_token) / np.maximum(t.generated - 1, 1), 0.0)
        good = done & (ttft <= self.slo.ttft_s) & (tpot <= self.slo.tbt_s)
        bad = (done & ~good) | (t.state == TIMED_OUT) | (t.state == FAILED)
        return float(good.sum() - bad.sum())

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        if self.replica is None:
            raise ResetNeeded("LLMServing-v0: call reset() before step()")
        if self._done():
            raise ResetNeeded("LLMServing-v0: the episode has terminated; call reset() before stepping again")
        a = discrete_action(action, self.window + 1, "LLMServing-v0")
        if a < self.window:
            candidates = self._candidates()
            if a < len(candidates) and self.replica.admissible(candidates[a]):
                self.replica.admit(candidates[a])
                if not self.action_masks()[: self.window].any():
                    a = self.window  # nothing else fits: the iteration runs
            else:
                # A masked admission (an agent that ignores the mask) counts as "run".
                a = self.window
        if a == self.window:
            if self.replica.n or self.replica.pending_swap_s:
                self.replica.run_iteration()
            else:
                # Waiting with an empty batch: idle until the next arrival or timeout.
                self.replica.idle_until(self._next_event())
            self._advance_to_decision()
        score = self._score()
        reward = score - self._scored
        self._scored = score
        return self._observation(), reward, self._done(), False, self._info()

    # ------------------------------------------------------------------ observation
    def _observation(self) -> np.ndarray:
        r, t = self.replica, self.table
        assert r is not None and t is not None
        cfg = self.replica_config
        obs = np.zeros(self.observation_space.shape, dtype=np.float32)
        obs[0] = r.free_blocks / r.total_blocks
        obs[1] = len(r.run_ids) / cfg.max_running
        obs[2] = min(r.batch_tokens() / cfg.max_batched_tokens, 1.0)
        obs[3] = min(len(r.waiting) / 100.0, 1.0)
        obs[4] = min(len(r.swapped) / 10.0, 1.0)
        obs[5] = min(float(np.sum(t.state == PENDING)) / t.n, 1.0)
        for slot, rid in enumerate(self._candidates()):
            base = N_REPLICA_FEATURES + N_SLOT_FEATURES * slot
            obs[base] = 1.0
            obs[base + 1] = min(r.prefill_len(rid) / cfg.max_batched_tokens, 1.0)
            obs[base + 2] = min((r.clock - t.arrival[rid]) / (10 * self.slo.ttft_s), 1.0)
        return obs

    def _info(self) -> dict[str, Any]:
        assert self.replica is not None
        return {"action_mask": self.action_masks(), "clock": self.replica.clock, "score": self._scored}


def fcfs_action(mask: np.ndarray) -> int:
    """The FCFS baseline in the env's terms: admit the head if it fits, else run."""
    return 0 if mask[0] else len(mask) - 1
