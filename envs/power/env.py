"""``infragym/PowerCapping-v0``: frequency caps for a power-oversubscribed row (POLCA).

A row provisioned for ``n_base`` DGX-H100 servers at their TDP holds ``n_base x (1 + x)``
servers (``x``: the oversubscription, drawn per episode from ``oversubscription``). Half of
them (``low_priority_share``) serve low-priority work. Every ``decision_s`` seconds the agent
sets the SM-clock cap of each priority class (``CLOCK_LEVELS``); the row simulator
(``row.PowerRow``) then runs ``decision_s / tick_s`` ticks of the fluid servers and the power
model. Reward per decision: requests completed within their SLO minus
``violation_weight`` x those completed late, normalised per server-second, minus
``brake_penalty`` per power-brake event, minus ``cap_penalty`` x the mean clock reduction (a cap
is a performance loss even when no SLO is missed). Episodes end by time limit (``truncated``).

Observation (float32, ``OBS_NAMES``): row power now, max and mean over the last decision and
its trend (fractions of the budget); per class the mean queued prompt tokens (per 10k) and
mean running batch (share of the cap); the current caps; whether the brake holds; ``x``.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from infragym.config import default_data_dir
from infragym.datasets.llm_traces import RequestTrace, load_azure_trace
from infragym.envs.power.model import GPUPowerModel, calibrate
from infragym.envs.power.row import CLOCK_LEVELS, PowerRow, row_workload, server_timing

OBS_NAMES = (
    "row_power_now",
    "row_power_max",
    "row_power_mean",
    "row_power_trend",
    "high_queue_10k_tokens",
    "low_queue_10k_tokens",
    "high_batch_share",
    "low_batch_share",
    "low_clock",
    "high_clock",
    "braking",
    "oversubscription",
)
OBS_SIZE = len(OBS_NAMES)
N_LEVELS = len(CLOCK_LEVELS)


@functools.lru_cache(maxsize=4)
def default_power_model(data_dir: str | None = None) -> GPUPowerModel:
    """The model calibrated on the shared splitwise tables (cached per data folder)."""
    folder = Path(data_dir or default_data_dir()) / "gpu_power"
    paths = sorted(folder.glob("*.csv"))
    if not paths:
        raise FileNotFoundError(f"{folder}: no splitwise performance tables (set INFRAGYM_DATA)")
    return calibrate(paths)


@functools.lru_cache(maxsize=4)
def azure_traces(data_dir: str | None = None) -> tuple[RequestTrace, RequestTrace]:
    """The Azure 2023 conversation (high priority) and code (low priority) traces."""
    folder = Path(data_dir or default_data_dir()) / "llm_traces"
    return (
        load_azure_trace(folder / "azure_conv_splitwise.csv"),
        load_azure_trace(folder / "azure_code_splitwise.csv"),
    )


class PowerCappingEnv(gym.Env):
    """See the module docstring. All randomness comes from ``reset(seed=)``."""

    metadata = {"render_modes": []}

    def __init__(
        self,
        *,
        n_base: int = 20,
        oversubscription: float | Sequence[float] = (0.0, 0.5),
        low_priority_share: float = 0.5,
        rates: Sequence[float] = (2.5, 1.0),
        horizon_s: float = 600.0,
        tick_s: float = 0.5,
        decision_s: float = 2.0,
        diurnal_amplitude: float = 0.3,
        split: Sequence[float] = (0.0, 0.6),
        ttft_slo_s: float = 2.0,
        tpot_slo_s: float = 0.2,
        violation_weight: float = 1.0,
        brake_penalty: float = 20.0,
        cap_penalty: float = 3.0,
        unlimited_power: bool = False,
        max_running: int = 128,
        data_dir: str | None = None,
    ) -> None:
        if n_base < 1:
            raise ValueError("n_base must be >= 1")
        if not 0 < low_priority_share < 1:
            raise ValueError("low_priority_share must be in (0, 1)")
        if not 1.0 <= decision_s / tick_s or abs(decision_s / tick_s - round(decision_s / tick_s)) > 1e-9:
            raise ValueError("decision_s must be a whole multiple of tick_s")
        if not 1.0 <= decision_s <= 5.0:
            raise ValueError("decision_s must be 1-5 s (POLCA's control period)")
        lo, hi = (oversubscription, oversubscription) if np.isscalar(oversubscription) else oversubscription
        if not 0 <= lo <= hi:
            raise ValueError("oversubscription must be >= 0 (a value or a [low, high] range)")
        self.n_base = int(n_base)
        self.oversubscription = (float(lo), float(hi))
        self.low_priority_share = low_priority_share
        self.rates = (float(rates[0]), float(rates[1]))
        self.horizon_s, self.tick_s, self.decision_s = float(horizon_s), float(tick_s), float(decision_s)
        self.diurnal_amplitude = diurnal_amplitude
        self.split = (float(split[0]), float(split[1]))
        self.ttft_slo_s, self.tpot_slo_s = ttft_slo_s, tpot_slo_s
        self.violation_weight, self.brake_penalty = violation_weight, brake_penalty
        self.cap_penalty = cap_penalty
        self.unlimited_power = unlimited_power
        self.max_running = max_running
        self.data_dir = data_dir or os.environ.get("INFRAGYM_DATA") or None
        self._power: GPUPowerModel | None = None  # calibrated and loaded at the first reset
        self.observation_space = spaces.Box(-np.inf, np.inf, shape=(OBS_SIZE,), dtype=np.float32)
        self.action_space = spaces.MultiDiscrete([N_LEVELS, N_LEVELS])
        self.row: PowerRow | None = None
        self.x = 0.0
        self.clock_idx = np.zeros(2, dtype=np.int64)
        self._window: list[float] = []

    @property
    def power(self) -> GPUPowerModel:
        """The calibrated GPU model (read from the shared splitwise tables once)."""
        if self._power is None:
            self._power = default_power_model(self.data_dir)
            self.timing = server_timing(self._power, max_running=self.max_running)
        return self._power

    @property
    def traces(self) -> tuple[RequestTrace, RequestTrace]:
        return azure_traces(self.data_dir)

    # ------------------------------------------------------------------ gym API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        options = options or {}
        rng = self.np_random
        self.x = float(options.get("oversubscription", rng.uniform(*self.oversubscription)))
        n = max(1, round(self.n_base * (1.0 + self.x)))
        low = np.zeros(n, dtype=bool)
        low[rng.permutation(n)[: round(self.low_priority_share * n)]] = True
        trace, server = row_workload(
            self.traces,
            low,
            rates=self.rates,
            horizon_s=self.horizon_s,
            split=self.split,
            rng=rng,
            diurnal_amplitude=self.diurnal_amplitude,
        )
        power = self.power
        self.row = PowerRow(
            power,
            self.timing,
            trace,
            server,
            low,
            n_base=self.n_base,
            tick_s=self.tick_s,
            ttft_slo_s=self.ttft_slo_s,
            tpot_slo_s=self.tpot_slo_s,
            budget_w=np.inf if self.unlimited_power else None,
        )
        self.clock_idx = np.zeros(2, dtype=np.int64)
        self._window = [self.row.tick(np.ones(n))[0]]
        return self._obs(), self._info()

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        if self.row is None:
            raise RuntimeError("call reset() first")
        action = np.asarray(action, dtype=np.int64).reshape(-1)
        if action.shape != (2,) or np.any(action < 0) or np.any(action >= N_LEVELS):
            raise ValueError(f"action must be two clock-level indices in [0, {N_LEVELS}), got {action}")
        self.clock_idx = action.copy()
        levels = np.asarray(CLOCK_LEVELS)
        clock = np.where(self.row.low, levels[action[0]], levels[action[1]])
        brakes_before = self.row.state.brake_events
        good = late = 0
        self._window = []
        for _ in range(round(self.decision_s / self.tick_s)):
            row_w, completed, ok = self.row.tick(clock)
            self._window.append(row_w)
            good += ok
            late += completed - ok
        new_brakes = self.row.state.brake_events - brakes_before
        scale = self.row.n * self.decision_s * sum(self.rates) / 2
        reward = (good - self.violation_weight * late) / scale - self.brake_penalty * new_brakes
        # POLCA's goal is minimal performance loss: a cap costs in proportion to the clock it takes away
        reward -= self.cap_penalty * float(np.mean(1.0 - clock))
        truncated = self.row.now >= self.horizon_s - 1e-9
        info = self._info()
        info["brake_events"] = new_brakes
        return self._obs(), float(reward), False, bool(truncated), info

    def action_masks(self) -> np.ndarray:
        return np.ones(2 * N_LEVELS, dtype=bool)

    # ------------------------------------------------------------------ observation
    def _obs(self) -> np.ndarray:
        row = self.row
        budget = row.budget_w if np.isfinite(row.budget_w) else self.n_base * row.acc.server_tdp_w
        window = np.asarray(self._window) / budget
        s = row.servers
        queue = s.waiting_tokens() / 1e4
        batch = s.running / s.max_running
        low = row.low
        levels = np.asarray(CLOCK_LEVELS)
        obs = np.array(
            [
                window[-1],
                window.max(),
                window.mean(),
                window[-1] - window[0],
                queue[~low].mean() if (~low).any() else 0.0,
                queue[low].mean() if low.any() else 0.0,
                batch[~low].mean() if (~low).any() else 0.0,
                batch[low].mean() if low.any() else 0.0,
                levels[self.clock_idx[0]],
                levels[self.clock_idx[1]],
                float(row.braking),
                self.x,
            ],
            dtype=np.float32,
        )
        return obs

    def _info(self) -> dict[str, Any]:
        row = self.row
        return {
            "row_power_w": float(self._window[-1]) if self._window else 0.0,
            "server_power_w": row.server_power_w.copy(),
            "n_servers": row.n,
            "action_mask": self.action_masks(),
        }


__all__ = ["N_LEVELS", "OBS_NAMES", "OBS_SIZE", "PowerCappingEnv", "azure_traces", "default_power_model"]
