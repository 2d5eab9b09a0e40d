"""Baseline autoscalers of ``ElasticServing-v0`` (on its observation, ``env.OBS_NAMES``).

- ``StaticPeak``: hold (the env starts at the peak level; ``peak_devices`` says which).
- ``ReactiveThreshold``: scale up when the server is busier than ``up_busy`` or its queue
  holds more than ``up_queue`` x 10k tokens; scale down when busy below ``down_busy`` with an
  empty queue for ``patience`` decisions (Kubernetes HPA-style target tracking).
- ``PredictiveMA``: forecast the arrival rate as the moving average of the last ``window``
  decisions plus its trend, and move one step toward the fewest devices whose prefill capacity
  covers the forecast at ``target_utilisation`` (plus the queue drained within ``drain_s``).

Each has ``act(obs) -> 0 hold | 1 up | 2 down`` and ``reset()``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from infragym.envs.elastic.env import DOWN, HOLD, OBS_NAMES, UP

I = {name: i for i, name in enumerate(OBS_NAMES)}  # noqa: E741


def _allowed(obs: np.ndarray, action: int) -> int:
    if action == UP and obs[I["can_up"]] < 0.5:
        return HOLD
    if action == DOWN and obs[I["can_down"]] < 0.5:
        return HOLD
    return action


@dataclass
class StaticPeak:
    peak_devices: int = 16
    name: str = "static_peak"

    def reset(self) -> None:
        pass

    def act(self, obs: np.ndarray) -> int:
        return HOLD


@dataclass
class ReactiveThreshold:
    up_busy: float = 0.85
    up_queue: float = 2.0
    down_busy: float = 0.4
    patience: int = 6
    name: str = "reactive"
    calm: int = field(default=0, init=False)

    def reset(self) -> None:
        self.calm = 0

    def act(self, obs: np.ndarray) -> int:
        busy, queue = float(obs[I["busy_share"]]), float(obs[I["queue_10k_tokens"]])
        if busy > self.up_busy or queue > self.up_queue:
            self.calm = 0
            return _allowed(obs, UP)
        self.calm = self.calm + 1 if busy < self.down_busy and queue < 0.05 else 0
        if self.calm >= self.patience:
            self.calm = 0
            return _allowed(obs, DOWN)
        return HOLD


@dataclass
class PredictiveMA:
    """Needs the env's per-level prefill capacity (tokens/s) and pool size to map load to devices."""

    capacity: dict[int, float]
    pool: int
    window: int = 6
    target_utilisation: float = 0.6
    drain_s: float = 30.0
    decision_s: float = 5.0
    name: str = "predictive"
    history: deque = field(default_factory=deque, init=False)

    def reset(self) -> None:
        self.history = deque(maxlen=self.window)

    def act(self, obs: np.ndarray) -> int:
        devices = round(float(obs[I["devices_share"]]) * self.pool)
        devices = min(self.capacity, key=lambda d: abs(d - devices))
        demand = float(obs[I["arrival_tokens_per_capacity"]]) * self.capacity[devices]  # tokens/s
        self.history.append(demand)
        values = np.asarray(self.history)
        trend = (values[-1] - values[0]) / max(len(values) - 1, 1) if len(values) > 1 else 0.0
        forecast = max(values.mean() + trend * (len(values) + 1) / 2, 0.0)
        forecast += float(obs[I["queue_10k_tokens"]]) * 1e4 / self.drain_s
        need = next(
            (d for d in sorted(self.capacity) if self.capacity[d] * self.target_utilisation >= forecast),
            max(self.capacity),
        )
        if need > devices:
            return _allowed(obs, UP)
        if need < devices:
            return _allowed(obs, DOWN)
        return HOLD


__all__ = ["PredictiveMA", "ReactiveThreshold", "StaticPeak"]
