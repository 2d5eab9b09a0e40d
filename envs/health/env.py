"""``infragym/UnhealthyNodeMitigation-v0``: a contextual bandit over unhealthy-node events.

One event per episode: the observation is the event's encoded features, the action one of
``ACTIONS``, the reward minus the mitigation objective of the chosen action's realised
outcomes, and the episode terminates after that single step. ``info`` carries every action's
potential outcomes (realised and expected) and the legacy action, for evaluation only.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from infragym.envs.actions import discrete_action
from infragym.envs.health.features import encode_features, encoded_feature_names
from infragym.envs.health.objective import MitigationObjective
from infragym.envs.health.simulator import ACTIONS, OUTCOMES, EventBatch, UnhealthyNodeSimulator

OBS_HIGH = 100.0


class UnhealthyNodeMitigationEnv(gym.Env[np.ndarray, np.int64]):
    """Contextual-bandit env; events are drawn in batches (vectorised) from ``self.np_random``."""

    metadata = {"render_modes": []}

    def __init__(
        self,
        *,
        exploration: float = 0.15,
        downtime_weight: float = 1.0,
        interruption_weight: float = 20.0,
        cost_weight: float = 0.05,
        batch_size: int = 256,
    ) -> None:
        super().__init__()
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.simulator = UnhealthyNodeSimulator(exploration=exploration)
        self.objective = MitigationObjective(downtime_weight, interruption_weight, cost_weight)
        self.batch_size = batch_size
        self.feature_names = encoded_feature_names()
        n = len(self.feature_names)
        # Scaled features are O(1); counts are clipped at OBS_HIGH so the space is bounded.
        self.observation_space = gym.spaces.Box(low=0.0, high=OBS_HIGH, shape=(n,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(len(ACTIONS))
        self._batch: EventBatch | None = None
        self._obs = np.zeros((0, n), dtype=np.float32)
        self._realised: dict[str, np.ndarray] = {}
        self._expected: dict[str, np.ndarray] = {}
        self._legacy = np.zeros(0, dtype=np.int64)
        self._cursor = 0
        self._awaiting_action = False

    def _refill(self) -> None:
        rng = self.np_random
        batch = self.simulator.sample_events(self.batch_size, rng)
        self._batch = batch
        self._obs = np.clip(encode_features(batch.features, scaled=True), 0.0, OBS_HIGH).astype(np.float32)
        self._realised = self.simulator.outcome_table(batch, rng)
        self._expected = self.simulator.outcome_table(batch)
        self._legacy = self.simulator.legacy_rule(batch.features)
        self._cursor = 0

    def action_masks(self) -> np.ndarray:
        """Every action is feasible for every event (sb3-contrib's MaskablePPO calls this)."""
        return np.ones(len(ACTIONS), dtype=bool)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        if seed is not None or self._batch is None or self._cursor + 1 >= self.batch_size:
            self._refill()
        else:
            self._cursor += 1
        self._awaiting_action = True
        i = self._cursor
        info = {"action_mask": self.action_masks(), "legacy_action": int(self._legacy[i])}
        return self._obs[i].copy(), info

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if not self._awaiting_action:
            raise RuntimeError("step() called without reset(): each episode is one event")
        a = discrete_action(action, len(ACTIONS), "UnhealthyNodeMitigation-v0")
        i = self._cursor
        realised = {k: self._realised[k][i] for k in OUTCOMES}
        expected = {k: self._expected[k][i] for k in OUTCOMES}
        reward = -float(self.objective({k: v[a] for k, v in realised.items()}))
        self._awaiting_action = False
        info = {
            "action_name": ACTIONS[a],
            "outcome": {k: float(v[a]) for k, v in realised.items()},
            "potential_outcomes": {k: v.copy() for k, v in realised.items()},
            "expected_outcomes": {k: v.copy() for k, v in expected.items()},
            "legacy_action": int(self._legacy[i]),
            "oracle_action": int(np.argmin(self.objective(expected))),
            "action_mask": self.action_masks(),
        }
        return self._obs[i].copy(), reward, True, False, info
