"""``infragym/ElasticServing-v0``: autoscaling an MoE deployment on a pool of accelerators.

The deployment (``model`` on ``gpu`` devices, between ``min_devices`` and the pool) serves a
bursty stream (``workload``: the Azure code trace, inter-arrival CV ~13, time-compressed by
``code_speedup``; or BurstGPT-like Gamma arrivals) through the fluid server model
(``infragym.envs.power.fluid``) with MoE iteration costs (``moe_cost``). Every ``decision_s``
the agent holds, scales up or scales down by one step: ``device_step`` devices for
``elastic``/``restart``, one replica of ``replica_devices`` for ``replica`` (``scaling``).
A step in progress blocks new ones (the action mask says so). While a ``restart`` step runs
nothing is served and the running requests' KV is recomputed afterwards; no request is ever
dropped (``FluidServers.conserved``).

Reward per decision: (requests completed within the SLO - ``violation_weight`` x late ones)
per expected arrival, minus ``device_cost`` x devices held (including devices being added).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from infragym.config import default_data_dir
from infragym.datasets.llm_traces import RequestTrace, burstgpt_like, load_azure_trace
from infragym.envs.elastic.moe_cost import min_devices, moe_timing
from infragym.envs.elastic.scaling import METHODS, ScaleStep, scale_step
from infragym.envs.power.fluid import FluidServers

HOLD, UP, DOWN = 0, 1, 2
OBS_NAMES = (
    "devices_share",
    "scaling",
    "scaling_left_share",
    "queue_10k_tokens",
    "batch_share",
    "arrival_tokens_per_capacity",
    "arrival_ewma_per_capacity",
    "good_share_last",
    "busy_share",
    "can_up",
    "can_down",
)
OBS_SIZE = len(OBS_NAMES)
WORKLOADS = ("azure_code", "burstgpt")
TEST_SEED_BASE = 2**30


@functools.lru_cache(maxsize=2)
def azure_code_trace(data_dir: str | None = None) -> RequestTrace:
    return load_azure_trace(Path(data_dir or default_data_dir()) / "llm_traces" / "azure_code_splitwise.csv")


class ElasticServingEnv(gym.Env):
    """See the module docstring."""

    metadata = {"render_modes": []}

    def __init__(
        self,
        *,
        model: str = "mixtral-8x7b",
        gpu: str = "a100_80gb",
        pool_devices: int = 16,
        method: str = "elastic",
        device_step: int = 2,
        replica_devices: int = 4,
        initial_devices: int = 4,
        workload: str = "azure_code",
        code_speedup: float = 3.0,
        burst_rate: float = 8.0,
        burst_gamma_shape: float = 0.05,
        horizon_s: float = 300.0,
        tick_s: float = 0.5,
        decision_s: float = 5.0,
        split: tuple[float, float] = (0.0, 0.6),
        ttft_slo_s: float = 5.0,
        tpot_slo_s: float = 0.2,
        violation_weight: float = 1.0,
        device_cost: float = 0.02,
        data_dir: str | None = None,
    ) -> None:
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        if workload not in WORKLOADS:
            raise ValueError(f"workload must be one of {WORKLOADS}, got {workload!r}")
        self.min_devices = min_devices(model, gpu)
        step = replica_devices if method == "replica" else device_step
        if step < 1 or initial_devices < self.min_devices or initial_devices > pool_devices:
            raise ValueError(
                f"need a step >= 1 and min_devices ({self.min_devices}) <= initial_devices <= pool_devices"
            )
        if method == "replica" and initial_devices % replica_devices:
            raise ValueError("with replicas, initial_devices must be a multiple of replica_devices")
        if decision_s / tick_s != round(decision_s / tick_s):
            raise ValueError("decision_s must be a whole multiple of tick_s")
        self.model, self.gpu, self.pool, self.method = model, gpu, int(pool_devices), method
        self.step_devices, self.replica_devices = int(step), int(replica_devices)
        self.device_step = int(device_step)
        self.initial_devices = int(initial_devices)
        self.workload, self.code_speedup = workload, float(code_speedup)
        self.burst_rate, self.burst_gamma_shape = float(burst_rate), float(burst_gamma_shape)
        self.horizon_s, self.tick_s, self.decision_s = float(horizon_s), float(tick_s), float(decision_s)
        self.split = (float(split[0]), float(split[1]))
        self.ttft_slo_s, self.tpot_slo_s = ttft_slo_s, tpot_slo_s
        self.violation_weight, self.device_cost = violation_weight, device_cost
        self.data_dir = data_dir or os.environ.get("INFRAGYM_DATA") or None
        levels = range(self.min_devices if method != "replica" else replica_devices, self.pool + 1, self.step_devices)
        self.levels = [d for d in levels if d >= self.min_devices and (method != "replica" or d % replica_devices == 0)]
        if self.initial_devices not in self.levels:
            raise ValueError(f"initial_devices {initial_devices} is not a reachable level {self.levels}")
        self._timings = {d: self._timing(d) for d in self.levels}
        self.capacity_tokens_s = {d: 1.0 / t.prefill_per_token_s for d, t in self._timings.items()}
        self.observation_space = spaces.Box(-np.inf, np.inf, shape=(OBS_SIZE,), dtype=np.float32)
        self.action_space = spaces.Discrete(3)
        self.servers: FluidServers | None = None

    def _timing(self, devices: int):
        replicas = devices // self.replica_devices if self.method == "replica" else 1
        return moe_timing(self.model, self.gpu, devices, replicas=replicas)

    # ------------------------------------------------------------------ workload
    def _trace(self, rng: np.random.Generator) -> RequestTrace:
        if self.workload == "burstgpt":
            n = int(self.burst_rate * self.horizon_s * 1.2) + 10
            trace = burstgpt_like(
                n,
                rng,
                rate=self.burst_rate,
                gamma_shape=self.burst_gamma_shape,
                models=("default",),
                model_mix=(1.0,),
                failure_fraction=0.0,
            )
            keep = trace.arrival_s < self.horizon_s
        else:
            source = azure_code_trace(self.data_dir).scaled(self.code_speedup)
            lo, hi = self.split[0] * source.duration_s, self.split[1] * source.duration_s - self.horizon_s
            if hi <= lo:
                raise ValueError(f"the trace split {self.split} is shorter than one episode ({self.horizon_s} s)")
            start = rng.uniform(lo, hi)
            trace = source.window(start, start + self.horizon_s)
            keep = np.ones(len(trace), dtype=bool)
        return RequestTrace(
            trace.arrival_s[keep],
            trace.prompt_tokens[keep],
            trace.output_tokens[keep],
            np.zeros(int(keep.sum()), np.int64),
            np.zeros(int(keep.sum()), bool),
        )

    # ------------------------------------------------------------------ gym API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        trace = self._trace(self.np_random)
        self.trace = trace
        self.devices = self.initial_devices
        self.servers = FluidServers(
            trace,
            np.zeros(len(trace), dtype=np.int64),
            1,
            self._timings[self.devices],
            ttft_slo_s=self.ttft_slo_s,
            tpot_slo_s=self.tpot_slo_s,
        )
        self.pending: ScaleStep | None = None
        self.pending_left = 0.0
        self.steps: list[dict[str, float]] = []
        self.device_seconds = 0.0
        self.served_tokens_scaling = self.time_scaling = 0.0
        self.arrival_ewma = 0.0
        self._last = {"arrived_tokens": 0.0, "good": 0.0, "completed": 0.0, "busy": 0.0}
        self.mean_arrivals = max(len(trace) / self.horizon_s * self.decision_s, 1.0)
        return self._obs(), self._info()

    def action_masks(self) -> np.ndarray:
        mask = np.ones(3, dtype=bool)
        if self.pending is not None:
            mask[UP] = mask[DOWN] = False
        else:
            mask[UP] = self.devices + self.step_devices <= self.pool
            mask[DOWN] = self.devices - self.step_devices >= self.levels[0]
        return mask

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        if self.servers is None:
            raise RuntimeError("call reset() first")
        action = int(action)
        if action not in (HOLD, UP, DOWN):
            raise ValueError(f"action must be 0 (hold), 1 (up) or 2 (down), got {action}")
        if not self.action_masks()[action]:
            action = HOLD  # a masked action holds (the mask is in info and action_masks())
        if action != HOLD:
            target = self.devices + (self.step_devices if action == UP else -self.step_devices)
            self.pending = scale_step(self.method, self.model, self.gpu, self.devices, target)
            self.pending_left = self.pending.latency_s
            self.steps.append(
                {
                    "start_s": self.servers.now,
                    "latency_s": self.pending.latency_s,
                    "up": float(action == UP),
                    "method_downtime": float(self.pending.downtime),
                }
            )
            if self.pending.downtime:  # a restart loses the running requests' KV: recompute it
                self.servers.debt[0] += self._running_context()
        good = completed = arrived_tokens = busy = 0.0
        for _ in range(round(self.decision_s / self.tick_s)):
            scaling = self.pending is not None
            held = max(self.devices, self.pending.to_devices if scaling else 0)
            self.device_seconds += held * self.tick_s
            clock = self.pending.serving_share if scaling and not self.pending.downtime else 1.0
            before = self.servers.arrived_by(self.servers.now)
            result = self.servers.tick(self.tick_s, clock=clock, available=not (scaling and self.pending.downtime))
            after = self.servers.arrived_by(self.servers.now)
            arrived_tokens += float(self.servers.cum_prompt[after[0]] - self.servers.cum_prompt[before[0]])
            good += float(result.good.sum())
            completed += float(result.completed.sum())
            busy += float(result.prefill_busy[0] + result.decode_busy[0]) / (self.decision_s / self.tick_s)
            if scaling:
                self.time_scaling += self.tick_s
                self.served_tokens_scaling += float(result.completed.sum())
                self.pending_left -= self.tick_s
                if self.pending_left <= 1e-9:
                    self.devices = self.pending.to_devices
                    self.servers.set_timing(self._timings[self.devices])
                    self.pending = None
        rate = arrived_tokens / self.decision_s / self.capacity_tokens_s[self.devices]
        self.arrival_ewma = 0.7 * self.arrival_ewma + 0.3 * rate
        self._last = {"arrived_tokens": arrived_tokens, "good": good, "completed": completed, "busy": busy}
        reward = (good - self.violation_weight * (completed - good)) / self.mean_arrivals
        reward -= self.device_cost * max(self.devices, self.pending.to_devices if self.pending else 0)
        truncated = self.servers.now >= self.horizon_s - 1e-9
        return self._obs(), float(reward), False, bool(truncated), self._info()

    def _running_context(self) -> float:
        s = self.servers
        idx = s.running_idx
        if not idx.size:
            return 0.0
        done = np.maximum(s.iterations[0] - (s.finish_g[idx] - s.output[idx] + 1.0), 0.0)
        return float(np.sum(s.prompt[idx] + done))

    # ------------------------------------------------------------------ observation
    def _obs(self) -> np.ndarray:
        s = self.servers
        mask = self.action_masks()
        last = self._last
        return np.array(
            [
                self.devices / self.pool,
                float(self.pending is not None),
                self.pending_left / 60.0 if self.pending is not None else 0.0,
                min(float(s.waiting_tokens()[0]) / 1e4, 100.0),
                float(s.running[0] / s.max_running[0]),
                last["arrived_tokens"] / self.decision_s / self.capacity_tokens_s[self.devices],
                self.arrival_ewma,
                last["good"] / last["completed"] if last["completed"] else 1.0,
                last["busy"],
                float(mask[UP]),
                float(mask[DOWN]),
            ],
            dtype=np.float32,
        )

    def _info(self) -> dict[str, Any]:
        return {"devices": self.devices, "action_mask": self.action_masks(), "scaling": self.pending is not None}

    # ------------------------------------------------------------------ results
    def metrics(self) -> dict[str, float]:
        """SLO attainment, device-hours, scale-up latency and throughput during scaling."""
        s = self.servers
        arrived = int((s.arrival <= s.now).sum())
        done = np.flatnonzero(np.isfinite(s.completion))
        good = int(s.request_good(done).sum()) if done.size else 0
        ups = [x["latency_s"] for x in self.steps if x["up"]]
        lat = s.latencies()
        return {
            "slo_attainment": good / max(arrived, 1),
            "device_hours": self.device_seconds / 3600.0,
            "scale_ups": float(len(ups)),
            "scale_downs": float(len(self.steps) - len(ups)),
            "scale_up_latency_s": float(np.mean(ups)) if ups else 0.0,
            "throughput_during_scaling_rps": self.served_tokens_scaling / self.time_scaling
            if self.time_scaling
            else 0.0,
            "throughput_rps": done.size / max(s.now, 1e-9),
            "p99_ttft_s": float(np.percentile(lat["ttft_s"], 99)) if lat["ttft_s"].size else 0.0,
            "unfinished": float(arrived - done.size),
        }


__all__ = ["DOWN", "HOLD", "OBS_NAMES", "OBS_SIZE", "UP", "ElasticServingEnv"]
