"""``infragym/LLMAdmission-v0``: the admission decision of one serving replica under mixed SLOs.

Each episode replays a workload of ``n_requests`` (streaming, deadline and compound requests,
``workloads.mixed_slo_workload``) on one replica of the serving kernel (its event loop, driven
by ``models/serving_schedulers/replay.WorkloadRun``); the agent is the replica's scheduler,
which pauses the loop for each decision (``learned.AgentScheduler``). At each scheduling point
where a waiting request fits, the agent admits one of ``WINDOW`` waiting requests (those that
can still meet their SLO first) or runs the iteration
(``admission_features``: observation, mask). Reward per step: requests that met their SLO minus
those that missed it (finished late, timed out or failed) since the last step.

Workloads: lengths drawn like the Azure 2023 conversation trace (log-normal with its means) or
windows of a real trace file (``trace_path``; e.g. the first half hour of the raw Azure trace,
keeping later half-hours unseen), at an arrival rate drawn per episode from ``rate_range``
(requests/s; for a trace file, a multiple of its own rate).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.error import ResetNeeded

from infragym.datasets.llm_traces import RequestTrace, load_trace, poisson_trace
from infragym.envs.actions import discrete_action
from infragym.envs.serving.simulator import FAILED, FINISHED, TIMED_OUT, ReplicaConfig
from infragym.models.serving_schedulers.admission_features import N_ACTIONS, OBS_SIZE, WINDOW
from infragym.models.serving_schedulers.goodput import slo_met
from infragym.models.serving_schedulers.learned import AgentScheduler
from infragym.models.serving_schedulers.replay import WorkloadRun
from infragym.models.serving_schedulers.workloads import mixed_slo_workload


class LLMAdmissionEnv(gym.Env[np.ndarray, np.int64]):
    """Admission control of one replica over an episode of ``n_requests`` mixed-SLO requests."""

    metadata = {"render_modes": []}

    def __init__(
        self,
        *,
        n_requests: int = 150,
        rate_range: tuple[float, float] = (3.0, 12.0),
        trace_path: str | None = None,
        trace_span_s: tuple[float, float] = (0.0, 1800.0),
        slo_mix: tuple[float, float, float] = (0.5, 0.3, 0.2),
        ttft_s: float = 2.0,
        tbt_s: float = 0.1,
        gpu: str = "a100_80gb",
        model: str = "llama3.1_8b",
        max_batched_tokens: int = 8192,
        queue_timeout_s: float = 60.0,
    ) -> None:
        super().__init__()
        # the constructor's arguments, to build copies (one per vector-env worker)
        self.kwargs = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        if n_requests < 2 or not 0 < rate_range[0] <= rate_range[1]:
            raise ValueError(f"n_requests must be >= 2 and rate_range positive and ordered, got {rate_range}")
        self.n_requests = n_requests
        self.rate_range = (float(rate_range[0]), float(rate_range[1]))
        self.slo_mix = tuple(slo_mix)
        self.ttft_s, self.tbt_s = ttft_s, tbt_s
        self.replica_config = ReplicaConfig(gpu=gpu, model=model, max_batched_tokens=max_batched_tokens)
        self.queue_timeout_s = queue_timeout_s
        self.source: RequestTrace | None = None
        if trace_path is not None:
            full = load_trace(trace_path)
            self.source = full.window(*trace_span_s)
            if len(self.source) <= n_requests:
                raise ValueError(f"{trace_path}: the span {trace_span_s} holds <= n_requests={n_requests} requests")
        self.observation_space = gym.spaces.Box(-1.0, 1.0, shape=(OBS_SIZE,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(N_ACTIONS)
        self.run: WorkloadRun | None = None
        self._scored = 0.0

    def _trace(self) -> RequestTrace:
        rng = self.np_random
        rate = float(rng.uniform(*self.rate_range))
        if self.source is None:
            return poisson_trace(self.n_requests, rng, rate=rate)
        start = int(rng.integers(0, len(self.source) - self.n_requests))
        window = self.source._take(slice(start, start + self.n_requests))
        window = window._take(slice(None), window.arrival_s - window.arrival_s[0])
        return window.scaled(rate / max(window.rate, 1e-9)) if np.isfinite(window.rate) else window

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        workload = mixed_slo_workload(
            "episode", self._trace(), self.np_random, mix=self.slo_mix, ttft_s=self.ttft_s, tbt_s=self.tbt_s
        )
        self.workload = workload
        agent = AgentScheduler(seed=int(self.np_random.integers(2**31)))
        self.run = WorkloadRun(workload, agent, replica=self.replica_config, queue_timeout_s=self.queue_timeout_s)
        self.agent = self.run.replica.scheduler
        self.features = self.agent.features
        self._scored = 0.0
        self._done = False
        self._advance()
        return self._observe()

    def _observe(self) -> tuple[np.ndarray, dict]:
        if self._done:
            return np.zeros(OBS_SIZE, np.float32), {"action_mask": self._terminal_mask(), "score": self._scored}
        obs, mask, _ = self.features.observe()
        self._mask = mask
        return obs, {"action_mask": mask, "score": self._scored}

    @staticmethod
    def _terminal_mask() -> np.ndarray:
        mask = np.zeros(N_ACTIONS, bool)
        mask[WINDOW] = True
        return mask

    def action_masks(self) -> np.ndarray:
        if self.run is None or self._done:
            return self._terminal_mask()
        return self._mask

    def _advance(self) -> None:
        """Run the event loop until the agent has a decision (a candidate fits) or the end."""
        assert self.run is not None
        self._done = self.run.run()

    def _score(self) -> float:
        t = self.run.table
        met = slo_met(self.workload, t)
        finished = t.state == FINISHED
        bad = (finished & ~met) | (t.state == TIMED_OUT) | (t.state == FAILED)
        return float(met.sum() - bad.sum())

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        if self.run is None:
            raise ResetNeeded("LLMAdmission-v0: call reset() before step()")
        if self._done:
            raise ResetNeeded("LLMAdmission-v0: the episode has terminated; call reset() before stepping again")
        a = discrete_action(action, N_ACTIONS, "LLMAdmission-v0")
        cands = self.features.candidates()
        if a < WINDOW and a < len(cands) and self.run.replica.admissible(cands[a]):
            self.run.replica.admit(cands[a])
            if not self.features.any_fits():
                a = WINDOW  # nothing else fits: the iteration runs
        else:
            a = WINDOW  # run (a masked admission counts as run)
        if a == WINDOW:
            self.agent.run_next = True
            self._advance()
        score = self._score()
        reward = score - self._scored
        self._scored = score
        obs, info = self._observe()
        return obs, reward, self._done, False, info
