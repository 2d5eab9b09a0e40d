"""The mitigation objective: how downtime, interruptions and resource cost are traded."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class MitigationObjective:
    """Cost of an outcome, in minutes of VM downtime (lower is better).

    Defaults: an interruption (a VM restarted or redeployed) weighs as much as 20 minutes of
    downtime, a node-hour out of service as 0.05 minutes (so a 2-day repair ~ 2.4 minutes).
    These are policy choices, not facts; sweep them to draw other operating points.
    """

    downtime_weight: float = 1.0
    interruption_weight: float = 20.0
    cost_weight: float = 0.05

    def __post_init__(self) -> None:
        for name in ("downtime_weight", "interruption_weight", "cost_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")

    @property
    def weights(self) -> np.ndarray:
        return np.array([self.downtime_weight, self.interruption_weight, self.cost_weight])

    def __call__(self, outcomes: Mapping[str, np.ndarray]) -> np.ndarray:
        return (
            self.downtime_weight * np.asarray(outcomes["downtime_min"], dtype=np.float64)
            + self.interruption_weight * np.asarray(outcomes["interrupted"], dtype=np.float64)
            + self.cost_weight * np.asarray(outcomes["cost_node_hours"], dtype=np.float64)
        )
