"""``infragym/ServerlessKeepAlive-v0``: choose each invocation's keep-alive and pre-warm windows.

One step per invocation, function by function in arrival order (functions share no capacity, so
their order does not matter): the agent sees the idle-time features of the invocation's function
(``policies.FEATURES``) and picks a (pre-warm, keep-alive) pair from ``WINDOWS`` for the pod that
serves it, applied when the pod goes idle. The reward is what the choices cost up to the next
invocation's arrival, measured by the simulator itself (the same kernel as the batch runs):

    reward = -(cold-start seconds + idle_weight * idle GB-seconds)

so an episode's return is minus its total cost. An episode is ``functions_per_episode``
functions over ``hours`` hours, drawn from a given trace (training functions and days) or from
a freshly generated region.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from infragym.datasets.serverless import InvocationTrace
from infragym.envs.serverless.generator import cold_start_times, generate_region
from infragym.envs.serverless.policies import FEATURES, trace_features
from infragym.envs.serverless.simulator import simulate

# (pre-warm s, keep-alive s): fixed windows of 1 to 240 minutes, and pre-warmed windows
WINDOWS: tuple[tuple[float, float], ...] = (
    (0.0, 0.0),
    (0.0, 60.0),
    (0.0, 300.0),
    (0.0, 600.0),
    (0.0, 1200.0),
    (0.0, 3600.0),
    (0.0, 14_400.0),
    (60.0, 600.0),
    (300.0, 1200.0),
    (900.0, 1800.0),
    (1800.0, 3600.0),
    (3600.0, 7200.0),
)
OBS_BOUND = 30.0


def observations(features: np.ndarray) -> np.ndarray:
    """Features as the env's observations: NaN (no history) as -1, clipped, float32."""
    return np.clip(np.nan_to_num(features, nan=-1.0), -OBS_BOUND, OBS_BOUND).astype(np.float32)


class ServerlessKeepAliveEnv(gym.Env):
    """Keep-alive and pre-warm windows per invocation (see the module docstring).

    Args:
        trace, cold_start_s: draw episodes from this trace (and its per-invocation cold-start
            times); None: generate a region of ``n_functions`` functions per episode.
        functions_per_episode: functions in an episode.
        hours: length of an episode's time window.
        idle_weight: reward seconds per idle GB-second.
        concurrency: requests a pod serves at once.
        max_function_requests: functions with more requests in the window are cut to their first
            ones (a step re-simulates its function's prefix).
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        *,
        trace: InvocationTrace | None = None,
        cold_start_s: np.ndarray | None = None,
        n_functions: int = 40,
        functions_per_episode: int = 8,
        hours: float = 6.0,
        idle_weight: float = 0.01,
        concurrency: int = 1,
        region: str = "all",
        max_function_requests: int = 1500,
    ) -> None:
        if functions_per_episode < 1 or hours <= 0 or idle_weight < 0 or max_function_requests < 2:
            raise ValueError("functions_per_episode >= 1, hours > 0, idle_weight >= 0, max_function_requests >= 2")
        if (trace is None) != (cold_start_s is None):
            raise ValueError("give both trace and cold_start_s, or neither")
        self.source_trace = trace
        self.source_cold_start = None if cold_start_s is None else np.asarray(cold_start_s, dtype=np.float64)
        self.n_functions = n_functions
        self.functions_per_episode = functions_per_episode
        self.hours = hours
        self.idle_weight = idle_weight
        self.concurrency = concurrency
        self.region = region
        self.max_function_requests = max_function_requests
        self.observation_space = spaces.Box(-OBS_BOUND, OBS_BOUND, (len(FEATURES),), dtype=np.float32)
        self.action_space = spaces.Discrete(len(WINDOWS))
        self._windows = np.asarray(WINDOWS, dtype=np.float64)

    # ------------------------------------------------------------------ episodes
    def _episode_trace(self) -> tuple[InvocationTrace, np.ndarray]:
        rng = self.np_random
        span = self.hours * 3600.0
        if self.source_trace is None:
            trace = generate_region(self.n_functions, self.hours / 24.0, rng)
            cold, _ = cold_start_times(trace, rng, self.region)
            start = 0.0
        else:
            trace, cold = self.source_trace, self.source_cold_start
            first, last = float(trace.arrival_s[0]), float(trace.arrival_s[-1])
            start = first + rng.random() * max(last - first - span, 0.0)
        rows = np.flatnonzero((trace.arrival_s >= start) & (trace.arrival_s < start + span))
        present = np.unique(trace.function[rows])
        if present.size == 0:
            return self._episode_trace()
        chosen = rng.choice(present, size=min(self.functions_per_episode, present.size), replace=False)
        keep = np.isin(trace.function[rows], chosen)
        rows = rows[keep]
        # at most max_function_requests per function: its first ones in the window
        function = trace.function[rows]
        order = np.argsort(function, kind="stable")
        rank = np.empty(rows.size, dtype=np.int64)
        counts = np.bincount(function, minlength=trace.n_functions)
        starts = np.r_[0, np.cumsum(counts)][function[order]]
        rank[order] = np.arange(rows.size) - starts
        rows = rows[rank < self.max_function_requests]
        return trace.select(rows), cold[rows]

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.trace, self.cold_start = self._episode_trace()
        self.obs = observations(trace_features(self.trace))
        # steps: invocations grouped by function, arrival order within
        self.order = np.argsort(self.trace.function, kind="stable")
        grouped = self.trace.function[self.order]
        starts = np.r_[0, np.flatnonzero(grouped[1:] != grouped[:-1]) + 1]
        self.segment_start = np.repeat(starts, np.diff(np.r_[starts, len(self.trace)]))
        self.prewarm = np.zeros(len(self.trace))
        self.keep = np.zeros(len(self.trace))
        self.step_index = 0
        self.function_cost = 0.0  # cost of the current function's prefix so far
        self.total = {"cold_start_seconds": 0.0, "idle_gb_s": 0.0}
        self.episode_end = float(self.trace.horizon_s) + 1.0
        return self.obs[self.order[0]], self._info()

    def _info(self) -> dict[str, Any]:
        return {"action_mask": self.action_masks(), **self.total}

    def action_masks(self) -> np.ndarray:
        """Every window is allowed (sb3-contrib's MaskablePPO reads this)."""
        return np.ones(len(WINDOWS), dtype=bool)

    def _prefix_cost(self, rows: np.ndarray, horizon: float) -> tuple[float, float]:
        sub = self.trace.select(rows)
        result = simulate(
            sub,
            self.cold_start[rows],
            prewarm_s=self.prewarm[rows],
            keep_alive_s=self.keep[rows],
            concurrency=self.concurrency,
            horizon_s=horizon,
        )
        # the last row is the next invocation: its cold start counts, its own window not yet
        return result.cold_start_seconds, result.wasted_gb_s

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        if not self.action_space.contains(action):
            raise ValueError(f"action {action!r} is not in {self.action_space}")
        i = self.order[self.step_index]
        self.prewarm[i], self.keep[i] = self._windows[int(action)]
        f = self.trace.function[i]
        n = len(self.trace)
        nxt = self.step_index + 1
        same_function = nxt < n and self.trace.function[self.order[nxt]] == f
        first = self.segment_start[self.step_index]
        if same_function:
            rows = np.sort(self.order[first : nxt + 1])
            horizon = float(self.trace.arrival_s[self.order[nxt]])
        else:
            rows = np.sort(self.order[first:nxt])
            horizon = self.episode_end
        cold_s, idle = self._prefix_cost(rows, horizon)
        cost = cold_s + self.idle_weight * idle
        reward = -(cost - self.function_cost)
        self.function_cost = cost if same_function else 0.0
        if not same_function:
            self.total["cold_start_seconds"] += cold_s
            self.total["idle_gb_s"] += idle
        self.step_index = nxt
        terminated = nxt >= n
        obs = self.obs[self.order[nxt]] if not terminated else np.zeros(len(FEATURES), dtype=np.float32)
        return obs, float(reward), terminated, False, self._info()


__all__ = ["WINDOWS", "ServerlessKeepAliveEnv", "observations"]
