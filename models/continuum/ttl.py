"""KV-cache time-to-live policies for tool calls (Continuum).

A policy maps a ``Decision`` (a tool call whose program's KV cache is pinned) to a TTL in
seconds (0 evicts at once, as vLLM does). Predictions are made once per workload
(``prepare``) for every tool call, from features known when the call starts, so a policy
costs a table lookup per decision.

- ``none``: evict at once (vLLM).
- ``fixed``: the preview code: pin for 2 s when the tool's running-mean duration is below 2 s.
- ``predicted_mean``: pin for the predicted mean duration.
- ``continuum``: the paper's rule tau* = argmax over tau in {0} U candidates of
  F_tool(tau) * (eta * T_queue + Reload(context)) - tau, with the candidates the predicted
  quantiles (so F_tool(q_j) = level_j), T_queue the replica's recent queueing delay and
  Reload the re-prefill time of the context on that replica. ``eta = -corr(k, N - k)`` over
  the turns of the training programs (k the turn, N the program's turns).
- ``learned``: a reward model fitted in ``infragym/KVCacheTTL-v0`` (see ``train_learned``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightgbm as lgb
import numpy as np

from infragym.datasets.agent_programs import AgentPrograms
from infragym.envs.serving.programs import Decision, ProgramSimulation
from infragym.envs.serving.ttl_env import ACTION_LEVELS, action_ttl, decision_features
from infragym.models.continuum.predictors import DurationPredictor, continuum_ttl


def program_eta(programs: AgentPrograms) -> float:
    """The paper's eta = -corr(k, N - k) over all turns (k: turn number, N: program turns)."""
    k = programs.turn_index.astype(np.float64) + 1.0
    n = np.repeat(np.diff(programs.offsets), np.diff(programs.offsets)).astype(np.float64)
    if np.std(k) == 0 or np.std(n - k) == 0:
        return 1.0
    return float(-np.corrcoef(k, n - k)[0, 1])


class TTLPolicy:
    """Base: ``prepare(programs)`` before a run; ``__call__(decision, sim) -> seconds``."""

    name = "base"

    def __init__(self, predictor: DurationPredictor | None = None) -> None:
        self.predictor = predictor
        self.quantiles = np.zeros((0, 0))
        self.mean = np.zeros(0)

    @property
    def levels(self) -> tuple[float, ...]:
        return self.predictor.levels if self.predictor is not None else ()

    def prepare(self, programs: AgentPrograms) -> TTLPolicy:
        """Predict every tool call of the workload (rows = turns; the last turns get zeros)."""
        if self.predictor is not None:
            self.quantiles, self.mean = programs.turn_predictions(self.predictor)
        return self

    def __call__(self, decision: Decision, sim: ProgramSimulation) -> float:
        raise NotImplementedError


class NoTTL(TTLPolicy):
    name = "none"

    def __call__(self, decision: Decision, sim: ProgramSimulation) -> float:
        return 0.0


class FixedTTL(TTLPolicy):
    """Pin for ``ttl_s`` if the predicted (running-mean) duration is below it, else evict."""

    name = "fixed"

    def __init__(self, predictor: DurationPredictor | None = None, ttl_s: float = 2.0) -> None:
        super().__init__(predictor)
        if ttl_s < 0:
            raise ValueError("ttl_s must be >= 0")
        self.ttl_s = ttl_s

    def __call__(self, decision: Decision, sim: ProgramSimulation) -> float:
        if self.predictor is not None and self.mean[decision.rid] >= self.ttl_s:
            return 0.0
        return self.ttl_s


class PredictedMean(TTLPolicy):
    name = "predicted_mean"

    def __call__(self, decision: Decision, sim: ProgramSimulation) -> float:
        return float(self.mean[decision.rid])


class DurationOracle(TTLPolicy):
    """The reference: pin for exactly the true tool duration (a perfect predictor; not the
    optimal policy, which would also weigh the memory the pin holds)."""

    name = "oracle_duration"

    def prepare(self, programs: AgentPrograms) -> DurationOracle:
        self.durations = programs.tool_duration_s
        return self

    def __call__(self, decision: Decision, sim: ProgramSimulation) -> float:
        return float(self.durations[decision.rid]) + 1e-6


class ContinuumRule(TTLPolicy):
    """tau* = argmax_tau F(tau) * (eta * T_queue + Reload) - pin_cost * tau (0 if no
    candidate gains)."""

    name = "continuum"

    def __init__(self, predictor: DurationPredictor, eta: float = 1.0, pin_cost: float = 1.0) -> None:
        super().__init__(predictor)
        if pin_cost < 0:
            raise ValueError("pin_cost must be >= 0")
        self.eta = eta
        self.pin_cost = pin_cost

    def __call__(self, decision: Decision, sim: ProgramSimulation) -> float:
        benefit = self.eta * decision.queue_delay_s + decision.reload_s
        return float(continuum_ttl(self.quantiles[decision.rid], self.levels, np.array([benefit]), self.pin_cost)[0])


class LearnedTTL(TTLPolicy):
    """Argmax over actions of a fitted reward model r(features, action)."""

    name = "learned"

    def __init__(self, predictor: DurationPredictor, model: Any) -> None:
        super().__init__(predictor)
        self.model = model
        self._eye = np.eye(len(ACTION_LEVELS), dtype=np.float32)
        self._booster = getattr(model, "booster_", model)  # skip the scikit-learn wrapper per call

    def choose(self, features: np.ndarray) -> int:
        rows = np.hstack([np.tile(features, (len(ACTION_LEVELS), 1)), self._eye])
        return int(np.argmax(self._booster.predict(rows, num_threads=1)))

    def __call__(self, decision: Decision, sim: ProgramSimulation) -> float:
        q = self.quantiles[decision.rid]
        features = decision_features(decision, q, self.levels)
        return action_ttl(self.choose(features), q, self.levels)


def fit_reward_model(features: np.ndarray, actions: np.ndarray, rewards: np.ndarray, seed: int = 0) -> Any:
    """Reward regression on (features, one-hot action): the learned policy's critic."""
    x = np.hstack([features, np.eye(len(ACTION_LEVELS), dtype=np.float32)[actions]])
    model = lgb.LGBMRegressor(
        n_estimators=120,
        learning_rate=0.05,
        num_leaves=15,
        min_child_samples=30,
        n_jobs=1,
        random_state=seed,
        verbose=-1,
    )
    return model.fit(x, rewards)


def collect_episode(
    env: Any, policy: LearnedTTL | None, epsilon: float, rng: np.random.Generator, seed: int
) -> tuple[list[np.ndarray], list[int], list[float], dict[str, float]]:
    """Play one episode of ``KVCacheTTL-v0`` (epsilon-greedy around ``policy``; uniform if
    None) and return each resolved decision's (features, action, reward) and the run's metrics."""
    obs, info = env.reset(seed=seed)
    pending: dict[int, tuple[np.ndarray, int]] = {}
    features: list[np.ndarray] = []
    actions: list[int] = []
    rewards: list[float] = []
    n_actions = len(ACTION_LEVELS)
    while True:
        if policy is None or rng.random() < epsilon:
            action = int(rng.integers(n_actions))
        else:
            action = policy.choose(obs)
        pending[info["decision"]] = (obs, action)
        obs, _, terminated, truncated, info = env.step(action)
        for rid, reward in info["resolved"]:
            f, a = pending.pop(rid)
            features.append(f)
            actions.append(a)
            rewards.append(reward)
        if terminated or truncated:
            return features, actions, rewards, info.get("metrics", {})


def train_learned(
    envs: Sequence[Any],
    predictor: DurationPredictor,
    *,
    rounds: int = 2,
    epsilon: float = 0.3,
    seed: int = 0,
    progress: Any = None,
) -> tuple[LearnedTTL, dict[str, float]]:
    """Fit the learned TTL policy: round 0 explores uniformly, later rounds act
    epsilon-greedily on the current reward model; the model is refitted on all data after
    each round (a contextual bandit with a fitted reward model: each decision is credited
    with its own resolved reward). One episode per env per round, seeds from ``seed``."""
    if rounds < 1 or not envs:
        raise ValueError("train_learned needs rounds >= 1 and at least one env")
    rng = np.random.default_rng(seed)
    data_f: list[np.ndarray] = []
    data_a: list[int] = []
    data_r: list[float] = []
    policy: LearnedTTL | None = None
    stats: dict[str, float] = {}
    for round_ in range(rounds):
        returns = []
        for e, env in enumerate(envs):
            f, a, r, _ = collect_episode(env, policy, epsilon, rng, seed=seed + 1000 * round_ + e)
            data_f += f
            data_a += a
            data_r += r
            returns.append(float(np.mean(r)) if r else 0.0)
            if progress is not None:
                progress.update(1)
        model = fit_reward_model(np.asarray(data_f), np.asarray(data_a), np.asarray(data_r), seed=seed)
        policy = LearnedTTL(predictor, model)
        stats[f"round{round_}/mean_reward"] = float(np.mean(returns))
    stats["decisions"] = float(len(data_r))
    assert policy is not None
    return policy, stats


__all__ = [
    "ACTION_LEVELS",
    "ContinuumRule",
    "DurationOracle",
    "FixedTTL",
    "LearnedTTL",
    "NoTTL",
    "PredictedMean",
    "TTLPolicy",
    "action_ttl",
    "collect_episode",
    "decision_features",
    "fit_reward_model",
    "program_eta",
    "train_learned",
]
