"""Baseline frequency-capping policies of a row, on the env's observation (``env.OBS_NAMES``).

- ``uncapped``: never caps. At oversubscription 0 this is "no oversubscription" (the budget is
  sized for every server's TDP); above it, the power brake is the only protection.
- ``static``: fixed caps per class, whatever the power.
- ``polca``: POLCA's rule (Patel et al., arXiv 2308.12908, Sec. 6): above threshold ``t1`` of
  the row budget cap the low-priority servers, above ``t2`` cap all; uncap a level only once
  the power is ``margin`` below its threshold (hysteresis). The row power it reacts to is the
  peak of the last decision period (what a row-level power meter reports).

Each has ``act(obs) -> [low clock index, high clock index]`` (indices into ``row.CLOCK_LEVELS``)
and ``reset()``; the learned policy's export has the same ``act``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from infragym.envs.power.env import OBS_NAMES
from infragym.envs.power.row import CLOCK_LEVELS

POWER = OBS_NAMES.index("row_power_max")


def clock_index(clock: float) -> int:
    """The index of a clock fraction in ``CLOCK_LEVELS`` (must be one of them)."""
    for i, level in enumerate(CLOCK_LEVELS):
        if abs(level - clock) < 1e-9:
            return i
    raise ValueError(f"clock {clock} is not one of the levels {CLOCK_LEVELS}")


@dataclass
class Uncapped:
    name: str = "uncapped"

    def reset(self) -> None:
        pass

    def act(self, obs: np.ndarray) -> np.ndarray:
        return np.zeros(2, dtype=np.int64)


@dataclass
class StaticCaps:
    low_clock: float = 0.7
    high_clock: float = 1.0
    name: str = "static"

    def reset(self) -> None:
        pass

    def act(self, obs: np.ndarray) -> np.ndarray:
        return np.array([clock_index(self.low_clock), clock_index(self.high_clock)], dtype=np.int64)


@dataclass
class PolcaRule:
    """Two thresholds with hysteresis (see the module docstring)."""

    t1: float = 0.85
    t2: float = 0.93
    margin: float = 0.05
    low_clock: float = 0.6
    all_clock: float = 0.7
    name: str = "polca"
    level: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if not 0 < self.t1 <= self.t2 or self.margin < 0:
            raise ValueError("need 0 < t1 <= t2 and margin >= 0")
        clock_index(self.low_clock), clock_index(self.all_clock)

    def reset(self) -> None:
        self.level = 0

    def act(self, obs: np.ndarray) -> np.ndarray:
        power = float(np.asarray(obs)[POWER])
        if power >= self.t2:
            self.level = 2
        elif power >= self.t1:
            self.level = max(self.level, 1)
        if self.level == 2 and power < self.t2 - self.margin:
            self.level = 1
        if self.level == 1 and power < self.t1 - self.margin:
            self.level = 0
        low = clock_index(self.low_clock) if self.level >= 1 else 0
        high = clock_index(self.all_clock) if self.level == 2 else 0
        return np.array([low, high], dtype=np.int64)


__all__ = ["PolcaRule", "StaticCaps", "Uncapped", "clock_index"]
