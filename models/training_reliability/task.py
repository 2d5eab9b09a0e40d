"""The training-reliability Task: train a PPO policy for checkpoint interval, tier and recovery
on generated failure histories, then compare it on held-out failure seeds with the published
strategies (synchronous + watchdog, Young/Daly per tier, MegaScale, C4, DataStates-LLM,
in-memory erasure coding, CheckFree) and an oracle, over 54 days of a 16,384-GPU job under
Llama 3's rates (``llama3``) and under Weibull failures with bad nodes (``weibull_hetero``).

The learned policy is evaluated through its ONNX export (the deployment code path).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import matplotlib.pyplot as plt
import numpy as np

from infragym.envs.training import calibration as cal
from infragym.envs.training.checkfree import compare_strategies, generate_schedule
from infragym.envs.training.env import (
    INTERVAL_CHOICES_S,
    DecisionCostReward,
    TrainingReliabilityEnv,
    observation,
)
from infragym.envs.training.failures import SCENARIOS
from infragym.envs.training.simulator import LOSSES
from infragym.envs.training.strategies import POLICIES, make_simulator, run_rule, strategies
from infragym.evaluation import average_over_seeds, method_metrics, results_table
from infragym.export import write_export
from infragym.logging import RunLogger
from infragym.models.training_reliability import export as tr_export
from infragym.ppo_config import ppo_keywords
from infragym.sb3_callbacks import episode_logger
from infragym.task import EvaluationReport

log = logging.getLogger(__name__)
COMPONENT = "training_reliability"
# Held-out failure seeds start here; training episodes draw their seeds below it.
TEST_SEED_BASE = 2**30


class TrainingReliabilityTask:
    """Reinforcement-learning Task for training-cluster reliability.

    Args:
        env: the training env (its scenario mix, horizon and decision period).
        seed: the run seed.
        ppo: SB3 PPO settings: ``total_steps``, ``n_envs``, ``n_steps``, ``batch_size``,
            ``n_epochs``, ``learning_rate``, ``gamma``, ``ent_coef``, ``net_arch``.
        scenarios: evaluation scenarios.
        policies: the baselines and oracle to compare (besides ``learned``).
        extra_policies: more named strategies reported beside them (e.g. ``daly_lazy``).
        eval_seeds: held-out failure seeds per scenario.
        eval_horizon_days: wall-clock length of an evaluation run (Llama 3: 54 days).
        torch_threads: threads for training.
        progress_bar: SB3's progress bar during training.
        variance_reduction: train on ``DecisionCostReward`` (the env's reward plus the
            decision-free losses: same optimum, less variance).
    """

    def __init__(
        self,
        *,
        env: TrainingReliabilityEnv,
        seed: int = 0,
        ppo: Mapping[str, Any] | None = None,
        scenarios: Sequence[str] = ("llama3", "weibull_hetero"),
        policies: Sequence[str] = POLICIES,
        extra_policies: Sequence[str] = (),
        eval_seeds: int = 3,
        eval_horizon_days: float = cal.LLAMA3_DAYS,
        torch_threads: int = 1,
        progress_bar: bool = True,
        variance_reduction: bool = True,
    ) -> None:
        unknown = set(scenarios) - set(SCENARIOS)
        if unknown:
            raise ValueError(f"task.scenarios: unknown {sorted(unknown)}; choose from {sorted(SCENARIOS)}")
        named = strategies(env.job)
        unknown = (set(policies) | set(extra_policies)) - set(named)
        if unknown:
            raise ValueError(f"task.policies: unknown {sorted(unknown)}; choose from {sorted(named)}")
        if eval_seeds < 1:
            raise ValueError("task.eval_seeds must be >= 1")
        self.env = env
        self.seed = int(seed)
        self.ppo = {
            "total_steps": 60_000,
            "n_envs": 4,
            "n_steps": 512,
            "batch_size": 256,
            "n_epochs": 5,
            "learning_rate": 3e-4,
            "gamma": 0.995,
            "ent_coef": 0.001,
            "net_arch": [64, 64],
            **dict(ppo or {}),
        }
        self.scenarios = list(scenarios)
        self.policies = list(policies)
        self.extra_policies = list(extra_policies)
        self.eval_seeds = int(eval_seeds)
        self.eval_horizon_s = float(eval_horizon_days) * cal.DAY
        self.torch_threads = torch_threads
        self.progress_bar = progress_bar
        self.variance_reduction = variance_reduction
        self.onnx: bytes | None = None
        self.history: list[tuple[int, float]] = []

    # ------------------------------------------------------------------ training
    def make_env(self) -> gym.Env:
        """A training env: the configured env with the decision-cost control variate
        (``DecisionCostReward``) when ``variance_reduction`` is on."""
        e = self.env
        env = TrainingReliabilityEnv(
            scenario=e.scenario,
            n_gpus=e.job.n_gpus,
            horizon_days=e.horizon_s / cal.DAY,
            decision_period_s=e.decision_period_s,
        )
        return DecisionCostReward(env) if self.variance_reduction else env

    def fit(self, logger: RunLogger) -> None:
        import torch
        from sb3_contrib import MaskablePPO
        from stable_baselines3.common.env_util import make_vec_env

        torch.set_num_threads(self.torch_threads)
        args = self.ppo
        vec = make_vec_env(self.make_env, n_envs=int(args["n_envs"]), seed=self.seed)
        history = self.history

        # MaskablePPO: a sub-action that cannot matter (the recovery at a periodic tick, or at a
        # failure that takes no node) has one allowed value, so it gets no gradient noise.
        model = MaskablePPO(
            "MlpPolicy",
            vec,
            **ppo_keywords(args, self.seed),
        )
        log.info(
            "training PPO for %d steps on %d envs (scenario %s)", args["total_steps"], args["n_envs"], self.env.scenario
        )
        model.learn(
            total_timesteps=int(args["total_steps"]),
            progress_bar=self.progress_bar,
            callback=episode_logger(
                history, logger, metric="train/episode_ettr", value=lambda info: float(info["ettr"])
            ),
        )
        vec.close()
        self.onnx = tr_export.export_onnx(model.policy)

    # ------------------------------------------------------------------ evaluation
    def evaluate(self) -> EvaluationReport:
        if self.onnx is None:
            raise RuntimeError("fit() first: there is no trained policy to evaluate")
        return self._evaluate(tr_export.ReliabilityPolicy(self.onnx))

    def evaluate_export(self, predictor: tr_export.ReliabilityPolicy) -> EvaluationReport:
        """Evaluate a loaded export on the run's held-out seeds (same seeds: same numbers)."""
        return self._evaluate(predictor)

    def test_seeds(self) -> list[int]:
        return [TEST_SEED_BASE + self.seed * 1000 + i for i in range(self.eval_seeds)]

    def run_learned(self, predictor: tr_export.ReliabilityPolicy, scenario: str, seed: int) -> dict[str, float]:
        """One held-out run of the learned policy (the env's infrastructure and decision period)."""
        env = self.env
        named = strategies(env.job)
        base = named["sync_watchdog"]
        sim = make_simulator(
            env.job,
            SCENARIOS[scenario],
            base,
            horizon_s=self.eval_horizon_s,
            seed=seed,
            decision_period_s=env.decision_period_s,
        )
        from infragym.envs.training.simulator import Decision

        decision: Decision | None = Decision(0.0, None)
        while decision is not None:
            obs = observation(sim, decision)
            mask = np.concatenate(
                [np.ones(tr_export.NVEC[0] + tr_export.NVEC[1], dtype=bool), sim.recovery_mask(decision.failure)]
            )
            a = predictor.act(obs, mask)
            sim.decide(interval_s=INTERVAL_CHOICES_S[int(a[0])], tier=int(a[1]), recovery=int(a[2]))
            decision = sim.advance()
        return sim.results()

    def _evaluate(self, predictor: tr_export.ReliabilityPolicy) -> EvaluationReport:
        named = strategies(self.env.job)
        metrics: dict[str, float] = {}
        methods = [*self.policies, *self.extra_policies, "learned"]
        for scenario in self.scenarios:
            spec = SCENARIOS[scenario]
            split = f"test/{scenario}"
            for method in methods:
                runs = []
                for seed in self.test_seeds():
                    if method == "learned":
                        result = self.run_learned(predictor, scenario, seed)
                    else:
                        strategy = named[method]
                        sim = make_simulator(self.env.job, spec, strategy, horizon_s=self.eval_horizon_s, seed=seed)
                        result = run_rule(sim, strategy.rule)
                    runs.append(result)
                averaged = average_over_seeds(runs, ci_for=["ettr", "goodput"])
                metrics.update(method_metrics(split, method, averaged))
                log.info("%s %s: ETTR %.4f", scenario, method, averaged["ettr"])
        metrics.update(self._checkfree_metrics())
        tables = {}
        columns = ["ettr", "goodput", *(f"lost_hours_{k}" for k in LOSSES)]
        for scenario in self.scenarios:
            table = results_table(
                f"{scenario}: {self.env.job.n_gpus} GPUs, {self.eval_horizon_s / cal.DAY:.0f} days, "
                f"{self.eval_seeds} held-out failure seeds (mean)",
                metrics,
                methods,
                columns,
                split=f"test/{scenario}",
            )
            tables[scenario] = table
        figures: dict[str, Any] = {}
        fig, ax = plt.subplots(figsize=(7, 3.5))
        width = 0.8 / max(len(self.scenarios), 1)
        for i, scenario in enumerate(self.scenarios):
            values = [metrics[f"test/{scenario}/{m}/ettr"] for m in methods]
            ax.bar(np.arange(len(methods)) + i * width, values, width, label=scenario)
        ax.set_xticks(np.arange(len(methods)) + width * (len(self.scenarios) - 1) / 2, methods, rotation=45, ha="right")
        ax.set_ylim(0.8, 1.0)
        ax.set_ylabel("ETTR")
        ax.legend()
        figures["ettr"] = fig
        if self.history:
            fig2, ax2 = plt.subplots(figsize=(5.5, 3.5))
            ax2.plot([h[0] for h in self.history], [h[1] for h in self.history], ".", alpha=0.5)
            ax2.set_xlabel("environment steps")
            ax2.set_ylabel("training episode ETTR")
            figures["training_curve"] = fig2
        return EvaluationReport(metrics=metrics, tables=tables, figures=figures)

    def _checkfree_metrics(self) -> dict[str, float]:
        """CheckFree's own protocol: time to the target loss (in failure-free iterations) of each
        recovery strategy on schedules generated as the paper's at 5% and 10% stage failures per
        hour (``test/checkfree_<rate>pct/<strategy>/time_to_target_iterations``)."""
        out: dict[str, float] = {}
        rng = np.random.default_rng([self.seed, 17])
        for hourly in (0.05, 0.10):
            per_iteration = cal.CHECKFREE_HOURLY_TO_ITERATION[hourly]
            schedules = [generate_schedule(7, per_iteration, 500, rng) for _ in range(20)]
            for strategy, times in compare_strategies(schedules).items():
                out[f"test/checkfree_{round(hourly * 100)}pct/{strategy}/time_to_target_iterations"] = float(
                    np.mean(times)
                )
        return out

    # ------------------------------------------------------------------ export
    def export(
        self, directory: str | os.PathLike[str], *, metrics: Mapping[str, float], config: Mapping[str, Any]
    ) -> Path:
        if self.onnx is None:
            raise RuntimeError("fit() first: there is no trained policy to export")
        return write_export(
            directory,
            component=COMPONENT,
            files={tr_export.POLICY_FILE: self.onnx},
            input_schema=tr_export.input_schema(),
            output_schema=tr_export.output_schema(),
            metrics=metrics,
            config=config,
            libraries=("onnx", "onnxruntime", "torch", "stable-baselines3"),
        )
