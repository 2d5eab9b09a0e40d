"""``infragym/TrainingReliability-v0``: choose checkpoint interval, tier and recovery for a
large training job under failures.

A step is a decision point of the kernel (``TrainingJobSimulator``): every failure and every
``decision_period_s`` of wall time. The action ``MultiDiscrete([intervals, tiers, recoveries])``
sets the checkpoint interval and tier from now on and, at a failure, its recovery (an option that
does not apply, see ``info["action_mask"]``, falls back to restarting in place). Reward: the net
productive iterations since the last step (negative after a rollback), per ``decision_period_s``
of nominal iterations, so the return is the run's productive time and ETTR = return x period /
horizon. The episode terminates at the horizon (a fixed wall-clock window is the task).

The infrastructure is the synchronous baseline's (NCCL watchdog, fast restart): the learned
policy competes with Young/Daly on the decisions, not on better detection.
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from infragym.envs.training import calibration as cal
from infragym.envs.training.calibration import JobSpec
from infragym.envs.training.failures import SCENARIOS, FailureSpec
from infragym.envs.training.simulator import RECOVERIES, Decision, Infrastructure, TrainingJobSimulator
from infragym.envs.training.tiers import TIER_NAMES

INTERVAL_CHOICES_S = (15.0, 30.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0)
OBS_SIZE = 20
OBS_NAMES = (
    "is_failure",
    "failure_loses_node",
    "failed_node_failures_log1p",
    "failed_node_middle_stage",
    "spares_share",
    "time_since_failure_per_mtbi_log1p",
    "failures_last_day_per_expected",
    "work_at_risk_per_mtbi",
    "interval_log2_per_15s",
    "tier_sync",
    "tier_two_stage",
    "tier_lazy",
    "tier_inmemory_ec",
    "elapsed_share",
    "shrink_speed",
    "straggling",
    "recovering",
    "copy_on_host",
    "copy_on_peers",
    "failures_of_node_slot_max_log1p",
)
assert len(OBS_NAMES) == OBS_SIZE


class TrainingReliabilityEnv(gym.Env):
    """Training-cluster reliability env.

    Args:
        scenario: a named failure scenario (``llama3``, ``weibull_hetero``) or ``mixed`` (one of
            them per episode).
        n_gpus: the job's GPU count (Llama 3: 16,384).
        horizon_days: wall-clock length of an episode.
        decision_period_s: seconds between periodic decisions.
        seed_offset: added to the reset seed's draws (training and test seeds stay apart).
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        *,
        scenario: str = "mixed",
        n_gpus: int = cal.LLAMA3_GPUS,
        horizon_days: float = 7.0,
        decision_period_s: float = 3600.0,
    ) -> None:
        if scenario != "mixed" and scenario not in SCENARIOS:
            raise ValueError(f"scenario must be 'mixed' or one of {sorted(SCENARIOS)}, got {scenario!r}")
        if horizon_days <= 0 or decision_period_s <= 0:
            raise ValueError("horizon_days and decision_period_s must be positive")
        self.scenario = scenario
        self.job = JobSpec(n_gpus=n_gpus)
        self.horizon_s = horizon_days * cal.DAY
        self.decision_period_s = decision_period_s
        self.infra = Infrastructure(detection="watchdog", fast_comm_init=True)
        self.action_space = spaces.MultiDiscrete([len(INTERVAL_CHOICES_S), len(TIER_NAMES), len(RECOVERIES)])
        self.observation_space = spaces.Box(low=-10.0, high=10.0, shape=(OBS_SIZE,), dtype=np.float32)
        self.sim: TrainingJobSimulator | None = None
        self.decision: Decision | None = None
        self.fixed_seed: int | None = None

    # ------------------------------------------------------------------ gym API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        options = options or {}
        # Training seeds stay below 2**30; the held-out test seeds are >= 2**30.
        sim_seed = int(options.get("sim_seed", self.np_random.integers(0, 2**30)))
        name = options.get("scenario", self.scenario)
        if name == "mixed":
            name = ("llama3", "weibull_hetero")[int(self.np_random.integers(0, 2))]
        spec: FailureSpec = SCENARIOS[name]
        self.scenario_now = name
        self.sim = TrainingJobSimulator(
            self.job,
            spec,
            self.infra,
            horizon_s=self.horizon_s,
            seed=sim_seed,
            decision_period_s=self.decision_period_s,
            interval_s=INTERVAL_CHOICES_S[4],
            tier=0,
        )
        self.decision = Decision(0.0, None)  # the first decision: before the job starts
        return self._obs(), self._info()

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        assert self.sim is not None, "reset() first"
        a = np.asarray(action, dtype=np.int64).reshape(-1)
        if a.shape != (3,) or not self.action_space.contains(a):
            raise ValueError(f"action must be 3 integers within {self.action_space.nvec.tolist()}, got {action!r}")
        before = self.sim.progress_s
        self.sim.decide(interval_s=INTERVAL_CHOICES_S[a[0]], tier=int(a[1]), recovery=int(a[2]))
        self.decision = self.sim.advance()
        reward = (self.sim.progress_s - before) / self.decision_period_s
        terminated = self.decision is None
        return self._obs(), float(reward), terminated, False, self._info()

    def action_mask(self) -> np.ndarray:
        """Flat mask over the three sub-actions (sb3-contrib's MultiDiscrete layout)."""
        assert self.sim is not None
        failure = self.decision.failure if self.decision is not None else None
        return np.concatenate(
            [
                np.ones(len(INTERVAL_CHOICES_S), dtype=bool),
                np.ones(len(TIER_NAMES), dtype=bool),
                self.sim.recovery_mask(failure),
            ]
        )

    def action_masks(self) -> np.ndarray:
        return self.action_mask()

    # ------------------------------------------------------------------ observation
    def _info(self) -> dict[str, Any]:
        assert self.sim is not None
        return {"action_mask": self.action_mask(), "scenario": self.scenario_now, **self.sim.results()}

    def _obs(self) -> np.ndarray:
        return observation(self.sim, self.decision)


def observation(sim: TrainingJobSimulator | None, decision: Decision | None) -> np.ndarray:
    """The policy's view of the job at a decision point (``OBS_NAMES``)."""
    assert sim is not None
    mtbi = sim.job.mtbi_s
    obs = np.zeros(OBS_SIZE, dtype=np.float32)
    failure = decision.failure if decision is not None else None
    if failure is not None:
        obs[0] = 1.0
        obs[1] = float(failure.loses_nodes > 0)
        obs[2] = math.log1p(sim.nodes.failures[failure.slot])
        obs[3] = float(failure.middle_stage)
    initial_spares = max(1, sim.job.n_nodes // 100)
    obs[4] = min(sim.spares / initial_spares, 2.0)
    obs[5] = math.log1p((sim.t - sim.last_failure_t) / mtbi)
    expected_day = cal.DAY / mtbi
    obs[6] = min(sum(1 for t in sim.recent_failures if t > sim.t - cal.DAY) / expected_day, 10.0)
    obs[7] = min((sim.progress_s - max(sim.newest_copy_s(), 0.0)) / mtbi, 10.0)
    obs[8] = math.log2(max(sim.interval_s, 1.0) / 15.0)
    obs[9 + sim.tier] = 1.0
    obs[13] = min(sim.t / sim.horizon_s, 1.0)
    obs[14] = sim.shrink_speed
    obs[15] = float(sim.straggling)
    obs[16] = float(sim.busy)
    obs[17] = float(sim.durable[0] >= 0)
    obs[18] = float(sim.durable[1] >= 0)
    obs[19] = math.log1p(int(sim.nodes.failures.max()))
    return np.clip(obs, -10.0, 10.0)


# Losses no decision of the env changes: the infrastructure's detection and restart times,
# planned maintenance, false alarms and the slowdown of undetected stragglers.
DECISION_FREE_LOSSES = ("detection", "restart", "maintenance", "false_alarm", "straggler")


class DecisionCostReward(gym.Wrapper):
    """Training-time reward with a control variate: the env's reward plus the time lost, since the
    last step, to losses no decision changes (``DECISION_FREE_LOSSES``), per decision period.

    Adding an action-independent term leaves the optimal policy unchanged and removes the largest
    source of return variance (a 10-minute detection per failure), so PPO sees the costs its
    choices cause: checkpoint stalls, rollback, node actions, shrinking, convergence.
    """

    def __init__(self, env: TrainingReliabilityEnv) -> None:
        super().__init__(env)
        self._free = 0.0

    def _free_lost(self) -> float:
        sim = self.env.unwrapped.sim
        return sum(sim.lost[k] for k in DECISION_FREE_LOSSES) if sim is not None else 0.0

    def reset(self, **kwargs: Any) -> tuple[np.ndarray, dict]:
        out = self.env.reset(**kwargs)
        self._free = self._free_lost()
        return out

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        free = self._free_lost()
        reward += (free - self._free) / self.env.unwrapped.decision_period_s
        self._free = free
        return obs, float(reward), terminated, truncated, info

    def action_masks(self) -> np.ndarray:
        return self.env.unwrapped.action_masks()
