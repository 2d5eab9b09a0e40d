"""``infragym/KVCacheTTL-v0``: the KV-cache time-to-live decision at each tool call.

An episode replays a workload of agent programs on a serving replica
(``programs.ProgramSimulation``); a step is one tool call. The observation describes the call
and the replica (``decision_features``); the action picks the TTL: evict at once, or pin for
the predicted duration quantile at one of ``ACTION_LEVELS``. The reward of a decision arrives
when its program's next turn finishes:

    reward = (Reload(context) + T_queue) - latency of the next turn - memory_cost * pinned memory-time

where Reload + T_queue (the re-prefill time and the replica's recent queueing delay, known at
the decision) is what evicting would roughly cost, the latency is from the turn's arrival to its
last token, and the memory-time is the fraction of the replica's KV blocks the pin held times
how long it held them. A step's reward is the sum over the decisions resolved since the last
step; ``info["resolved"]`` lists them one by one (decision id, reward) for learners that
credit each decision with its own outcome.

Predictions of tool durations come from a predictor with ``predict_distribution`` and
``levels`` (``infragym.models.continuum.predictors``); by default the paper's per-tool
empirical predictor fitted on a separately generated training workload.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from infragym.datasets.agent_programs import AgentPrograms, bfcl_like, swe_bench_like
from infragym.envs.actions import discrete_action
from infragym.envs.serving.programs import SCHEDULERS, Decision, ProgramSimulation
from infragym.envs.serving.simulator import ReplicaConfig

# Actions: evict, or pin for the predicted quantile at this level.
ACTION_LEVELS: tuple[float | None, ...] = (None, 0.5, 0.75, 0.9, 0.95, 0.99)
N_FEATURES = 11
WORKLOADS = {"swe_like": swe_bench_like, "bfcl_like": bfcl_like}


def decision_features(decision: Decision, quantiles: np.ndarray, levels: Sequence[float]) -> np.ndarray:
    """The observation of a decision: predicted duration quantiles (median, p90, p99), the
    re-prefill cost, the replica's queueing delay, queue and batch sizes, free and pinned KV
    memory, context size and turn position; log scales for the heavy-tailed ones."""
    picks = np.interp((0.5, 0.9, 0.99), levels, quantiles) if len(levels) else np.zeros(3)
    return np.array(
        [
            *np.log1p(picks),
            math.log1p(decision.reload_s),
            math.log1p(decision.queue_delay_s),
            math.log1p(decision.queue_len),
            math.log1p(decision.running),
            decision.free_fraction,
            decision.pinned_fraction,
            math.log1p(decision.context_tokens / 1000.0),
            decision.turn / 50.0,
        ],
        dtype=np.float32,
    )


def action_ttl(action: int, quantiles: np.ndarray, levels: Sequence[float]) -> float:
    """The TTL an action stands for: 0, or the predicted quantile at its level."""
    level = ACTION_LEVELS[int(action)]
    if level is None:
        return 0.0
    return float(np.interp(level, levels, quantiles))


class KVCacheTTLEnv(gym.Env[np.ndarray, np.int64]):
    """TTL decisions over one workload of agent programs per episode.

    Args:
        workload: ``swe_like`` or ``bfcl_like`` (generated anew at each reset from the env's
            seed), unless ``programs`` fixes the workload.
        n_programs, rate: programs per episode and their arrival rate (programs/s).
        gpu, model, tp, max_batched_tokens: the replica (chunked prefill on).
        n_replicas, scheduler: the serving cluster (``program_fcfs`` or ``request_fcfs``).
        memory_cost: seconds of reward per (fraction of KV memory x second) pinned.
        predictor: tool-duration predictor for the observation and the action's TTLs.
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        *,
        workload: str = "swe_like",
        n_programs: int = 200,
        rate: float = 0.2,
        gpu: str = "h100",
        model: str = "llama3.1_70b",
        tp: int = 4,
        max_batched_tokens: int = 8192,
        n_replicas: int = 1,
        scheduler: str = "program_fcfs",
        memory_cost: float = 5.0,
        predictor: Any | None = None,
        programs: AgentPrograms | None = None,
    ) -> None:
        super().__init__()
        if workload not in WORKLOADS:
            raise ValueError(f"workload must be one of {sorted(WORKLOADS)}, got {workload!r}")
        if scheduler not in SCHEDULERS:
            raise ValueError(f"scheduler must be one of {SCHEDULERS}, got {scheduler!r}")
        if n_programs <= 0 or rate <= 0 or memory_cost < 0:
            raise ValueError("n_programs and rate must be positive, memory_cost >= 0")
        self.workload = workload
        self.n_programs = n_programs
        self.rate = rate
        self.replica_config = ReplicaConfig(
            gpu=gpu, model=model, tp=tp, max_batched_tokens=max_batched_tokens, chunked_prefill=True
        )
        self.n_replicas = n_replicas
        self.scheduler = scheduler
        self.memory_cost = memory_cost
        self.fixed_programs = programs
        if predictor is None:
            # Default: the paper's per-tool empirical predictor, fitted on its own workload.
            from infragym.models.continuum.predictors import EmpiricalPerTool

            train = WORKLOADS[workload](max(n_programs, 500), np.random.default_rng(2**31 - 1), rate=rate)
            predictor = EmpiricalPerTool().fit(train.tool_calls())
        self.predictor = predictor
        self.levels = tuple(predictor.levels)
        self.observation_space = gym.spaces.Box(0.0, 100.0, shape=(N_FEATURES,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(len(ACTION_LEVELS))
        self.sim: ProgramSimulation | None = None
        self._decision: Decision | None = None
        self._baseline: dict[int, float] = {}
        self._quantiles = np.zeros((0, len(self.levels)))
        self._total_blocks = 1

    def _programs(self) -> AgentPrograms:
        if self.fixed_programs is not None:
            return self.fixed_programs
        return WORKLOADS[self.workload](self.n_programs, self.np_random, rate=self.rate)

    def _observe(self) -> np.ndarray:
        if self._decision is None:
            return np.zeros(N_FEATURES, dtype=np.float32)
        return decision_features(self._decision, self._quantiles[self._decision.rid], self.levels)

    def action_masks(self) -> np.ndarray:
        """Every TTL is always allowed (for sb3-contrib's MaskablePPO and the house API)."""
        return np.ones(len(ACTION_LEVELS), dtype=bool)

    def _info(self) -> dict[str, Any]:
        d = self._decision
        return {"decision": d.rid if d is not None else -1, "action_mask": self.action_masks()}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        programs = self._programs()
        self.sim = ProgramSimulation(
            programs, replica=self.replica_config, n_replicas=self.n_replicas, scheduler=self.scheduler
        )
        self._quantiles, _ = programs.turn_predictions(self.predictor)
        self._total_blocks = sum(r.total_blocks for r in self.sim.replicas)
        self._baseline = {}
        self._decision = self.sim.next_decision()
        info = self._info()
        info["resolved"] = []
        return self._observe(), info

    def step(self, action: int | np.integer):
        if self.sim is None or self._decision is None:
            raise RuntimeError("call reset() before step(), and again after the episode ended")
        action = discrete_action(action, int(self.action_space.n), "KVCacheTTL-v0")
        d = self._decision
        self._baseline[d.rid] = d.reload_s + d.queue_delay_s
        self.sim.decide(action_ttl(action, self._quantiles[d.rid], self.levels))
        self._decision = self.sim.next_decision()
        resolved = []
        for rid, latency, pin_block_s in self.sim.resolved:
            pinned = self.memory_cost * pin_block_s / self._total_blocks
            resolved.append((rid, self._baseline.pop(rid) - latency - pinned))
        self.sim.resolved.clear()
        terminated = self._decision is None
        info = self._info()
        info["resolved"] = resolved
        if terminated:
            info["metrics"] = self.sim.metrics()
        return self._observe(), float(sum(r for _, r in resolved)), terminated, False, info


__all__ = ["ACTION_LEVELS", "N_FEATURES", "KVCacheTTLEnv", "action_ttl", "decision_features"]
