"""Serverless cold starts: keep-alive policies trained on some functions and days, tested on others.

``fit`` generates a region (``ServerlessRegion``), holds out a share of its functions, trains the
idle-time predictor on the other functions' first training days, picks the learned rule on their
last training day (validation: the fewest cold starts at no more idle memory than the hybrid
histogram), and trains a PPO policy in ``infragym/ServerlessKeepAlive-v0`` on the training
functions and days. ``evaluate`` replays the held-out functions over the held-out days (earlier
days only warm the online policies up) under every policy: fixed 1/10/20 min, the hybrid
histogram, the oracle bound, the learned policy and PPO; over ``eval_seeds`` regions (the
training region's held-out functions, then the held-out functions of freshly generated regions),
with bootstrap intervals. It also writes the paper's analyses under Huawei's default 1-minute
keep-alive: cold-start share and time by trigger, runtime and pod size; the pod utility ratio.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from infragym.datasets.serverless import SECONDS_PER_DAY, InvocationTrace, load_azure_functions_2021
from infragym.envs.serverless.env import WINDOWS, ServerlessKeepAliveEnv, observations
from infragym.envs.serverless.generator import cold_start_times, generate_region
from infragym.envs.serverless.policies import POLICIES, run_policy, trace_features
from infragym.envs.serverless.simulator import simulate
from infragym.evaluation import add_method_rows, average_over_seeds, method_metrics
from infragym.export import write_export
from infragym.logging import RunLogger
from infragym.models.serverless.learned import (
    CostRule,
    IdleTimePredictor,
    LearnedKeepAlive,
    WindowRule,
    candidate_rules,
    training_rows,
)
from infragym.results import ResultsTable
from infragym.seeding import child_seeds
from infragym.task import EvaluationReport

log = logging.getLogger(__name__)

ALL_POLICIES = ("fixed_1min", "fixed_10min", "fixed_20min", "hybrid_histogram", "oracle", "learned", "ppo")
TABLE_METRICS = ("cold_start_rate", "wasted_gb_s", "cold_start_seconds", "pod_utility_median", "pod_utility_below_1")


class ServerlessRegion:
    """The generated region the experiment trains and tests on, and its split.

    Args:
        n_functions, days: size of a generated region (``generator.generate_region``).
        train_days: days ``[0, train_days)`` are for training; the rest is the test period.
        test_function_share: share of the functions held out for test.
        region: the cold-start profile (``generator.REGIONS``).
        trigger_mix: share of functions by trigger (None: Shahrad et al.'s).
        azure_2021_path: the real Azure Functions 2021 sample, replayed under every policy
            (skipped with a warning when absent).
    """

    def __init__(
        self,
        *,
        n_functions: int = 150,
        days: int = 7,
        train_days: int = 5,
        test_function_share: float = 0.3,
        region: str = "all",
        trigger_mix: Mapping[str, float] | None = None,
        azure_2021_path: str | None = None,
    ) -> None:
        if not 2 <= train_days < days:
            raise ValueError("need 2 <= train_days < days (the last training day validates)")
        if not 0 < test_function_share < 1:
            raise ValueError("test_function_share must be in (0, 1)")
        self.n_functions, self.days, self.train_days = n_functions, days, train_days
        self.test_function_share = test_function_share
        self.region = region
        self.trigger_mix = dict(trigger_mix) if trigger_mix else None
        self.azure_2021_path = azure_2021_path

    def generate(self, seed: int) -> tuple[InvocationTrace, np.ndarray, np.ndarray, np.ndarray]:
        """A region, its cold-start times, and its training and test function indices."""
        rng = np.random.default_rng(seed)
        trace = generate_region(self.n_functions, self.days, rng, trigger_mix=self.trigger_mix)
        cold, _ = cold_start_times(trace, rng, self.region)
        functions = rng.permutation(trace.n_functions)
        n_test = max(1, round(self.test_function_share * trace.n_functions))
        return trace, cold, np.sort(functions[n_test:]), np.sort(functions[:n_test])

    @property
    def test_start_s(self) -> float:
        return self.train_days * SECONDS_PER_DAY


@dataclass
class ServerlessModel:
    """The learned policies' training budget (``conf/model/serverless.yaml``)."""

    n_estimators: int = 80
    learning_rate: float = 0.1
    num_leaves: int = 31
    max_rows: int = 200_000
    ppo_timesteps: int = 30_000
    ppo_n_steps: int = 1024
    ppo_batch_size: int = 256
    ppo_learning_rate: float = 3e-4
    ppo_gamma: float = 0.9


class PPOKeepAlive:
    """A PPO policy trained in the env, applied to every invocation of a trace at once (its
    observations are the invocation's features, which no action changes)."""

    name = "ppo"
    oracle = False

    def __init__(self, model: Any, normalizer: Any = None) -> None:
        self.model = model
        self.normalizer = normalizer  # the training VecNormalize (its observation statistics)

    def windows(self, trace: InvocationTrace) -> tuple[np.ndarray, np.ndarray]:
        obs = observations(trace_features(trace))
        if self.normalizer is not None:
            obs = self.normalizer.normalize_obs(obs)
        actions, _ = self.model.predict(obs, deterministic=True)
        grid = np.asarray(WINDOWS)[np.asarray(actions, dtype=np.int64)]
        return grid[:, 0].copy(), grid[:, 1].copy()


def _function_mask(trace: InvocationTrace, functions: np.ndarray) -> np.ndarray:
    keep = np.zeros(trace.n_functions, dtype=bool)
    keep[functions] = True
    return keep[trace.function]


class ServerlessTask:
    """Train and compare keep-alive policies (see the module docstring).

    Args:
        env: ``ServerlessKeepAlive-v0``: its ``idle_weight``, ``functions_per_episode``,
            ``hours`` and ``concurrency`` configure PPO's training and the simulator.
        dataset: the region and its split.
        model: the learned policies' budget.
        seed: root seed.
        policies: names from ``ALL_POLICIES`` to compare.
        eval_seeds: test regions (the first: the training region's held-out functions).
    """

    def __init__(
        self,
        *,
        env: ServerlessKeepAliveEnv,
        dataset: ServerlessRegion,
        model: ServerlessModel,
        seed: int = 0,
        policies: Sequence[str] = ALL_POLICIES,
        eval_seeds: int = 3,
    ) -> None:
        unknown = [p for p in policies if p not in ALL_POLICIES]
        if unknown:
            raise ValueError(f"task.policies: unknown {unknown}; choose from {list(ALL_POLICIES)}")
        if eval_seeds < 1:
            raise ValueError("task.eval_seeds must be >= 1")
        self.env, self.dataset, self.model = env, dataset, model
        self.seed = seed
        self.policies = list(policies)
        self.eval_seeds = eval_seeds
        self._seeds = child_seeds(seed, 4 + eval_seeds)
        self.learned: LearnedKeepAlive | None = None
        self.ppo: PPOKeepAlive | None = None
        self.fit_metrics: dict[str, float] = {}

    # ------------------------------------------------------------------ fit
    def fit(self, logger: RunLogger) -> None:
        started = time.perf_counter()
        d = self.dataset
        trace, cold, train_functions, _ = d.generate(self._seeds[0])
        train = trace.select(_function_mask(trace, train_functions) & (trace.arrival_s < d.test_start_s))
        train_cold = cold[_function_mask(trace, train_functions) & (trace.arrival_s < d.test_start_s)]
        val_start = (d.train_days - 1) * SECONDS_PER_DAY
        features, after = training_rows(train, train_cold, concurrency=self.env.concurrency)
        # fit on the invocations whose following pod idle time ends before validation starts
        fit_rows = train.arrival_s + train.duration_s + after < val_start
        predictor = IdleTimePredictor(
            n_estimators=self.model.n_estimators,
            learning_rate=self.model.learning_rate,
            num_leaves=self.model.num_leaves,
            max_rows=self.model.max_rows,
            seed=self._seeds[1],
        ).fit(features[fit_rows], after[fit_rows])
        # validation: the last training day, after one day that warms the policies' histories up
        recent = train.arrival_s >= val_start - SECONDS_PER_DAY
        val, val_cold = train.select(recent), train_cold[recent]
        quantiles = predictor.quantiles(features[recent])
        memory_gb = val.memory_mb[val.function] / 1024.0
        conc = self.env.concurrency
        hybrid = run_policy(POLICIES["hybrid_histogram"], val, val_cold, concurrency=conc, measure_from_s=val_start)
        budget = hybrid.wasted_gb_s
        self.fit_metrics.update(method_metrics("val", "hybrid_histogram", hybrid.metrics()))
        scored: list[tuple[WindowRule | CostRule, float, float]] = []
        for rule in candidate_rules(predictor.levels):
            prewarm, keep = rule.windows(quantiles, predictor.levels, memory_gb)
            r = simulate(
                val, val_cold, prewarm_s=prewarm, keep_alive_s=keep, concurrency=conc, measure_from_s=val_start
            )
            scored.append((rule, r.cold_start_rate, r.wasted_gb_s))
        within = [s for s in scored if s[2] <= budget]
        rule, val_rate, val_waste = min(within, key=lambda s: s[1]) if within else min(scored, key=lambda s: s[2])
        log.info("learned rule %s: validation cold-start rate %.4f at %.0f GB-s (hybrid: %.4f at %.0f GB-s)",
                 rule, val_rate, val_waste, hybrid.cold_start_rate, budget)  # fmt: skip
        self.learned = LearnedKeepAlive(predictor, rule)
        self.fit_metrics.update(
            {
                "val/learned/cold_start_rate": val_rate,
                "val/learned/wasted_gb_s": val_waste,
                "train/rows": float(fit_rows.sum()),
                "train/functions": float(len(train_functions)),
            }
        )
        if "ppo" in self.policies:
            self.ppo = self._train_ppo(train, train_cold)
        self.fit_metrics["train/fit_seconds"] = time.perf_counter() - started
        logger.log_metrics(self.fit_metrics)

    def _train_ppo(self, train: InvocationTrace, train_cold: np.ndarray) -> PPOKeepAlive:
        from stable_baselines3 import PPO
        from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

        env = ServerlessKeepAliveEnv(
            trace=train,
            cold_start_s=train_cold,
            functions_per_episode=self.env.functions_per_episode,
            hours=self.env.hours,
            idle_weight=self.env.idle_weight,
            concurrency=self.env.concurrency,
            max_function_requests=self.env.max_function_requests,
        )
        env.reset(seed=self._seeds[2])
        # rewards are heavy-tailed (a cold start costs seconds, a long idle window many GB-s):
        # normalise observations and returns; a window's cost lands within the next few steps
        vec = VecNormalize(DummyVecEnv([lambda: env]), norm_obs=True, norm_reward=True, gamma=self.model.ppo_gamma)
        model = PPO(
            "MlpPolicy",
            vec,
            n_steps=self.model.ppo_n_steps,
            batch_size=self.model.ppo_batch_size,
            learning_rate=self.model.ppo_learning_rate,
            gamma=self.model.ppo_gamma,
            seed=self._seeds[2],
            device="cpu",
            verbose=0,
        )
        model.learn(total_timesteps=self.model.ppo_timesteps)
        vec.training = False
        return PPOKeepAlive(model, vec)

    # ------------------------------------------------------------------ evaluate
    def _policy(self, name: str) -> Any:
        if name == "learned":
            if self.learned is None:
                raise RuntimeError("fit() must run before evaluate()")
            return self.learned
        if name == "ppo":
            if self.ppo is None:
                raise RuntimeError("the PPO policy was not trained")
            return self.ppo
        return POLICIES[name]

    def test_trace(self, k: int) -> tuple[InvocationTrace, np.ndarray]:
        """Test region ``k``'s held-out functions (all days; measure from ``dataset.test_start_s``)
        and their cold-start times."""
        trace, cold, _, test_functions = self.dataset.generate(self._seeds[0] if k == 0 else self._seeds[4 + k])
        rows = _function_mask(trace, test_functions)
        return trace.select(rows), cold[rows]

    def evaluate(self) -> EvaluationReport:
        metrics: dict[str, float] = dict(self.fit_metrics)
        start = self.dataset.test_start_s
        conc = self.env.concurrency
        runs: dict[str, list[dict[str, float]]] = {p: [] for p in self.policies}
        analysis: dict[str, float] = {}
        for k in range(self.eval_seeds):
            test, cold = self.test_trace(k)
            for name in self.policies:
                result = run_policy(self._policy(name), test, cold, concurrency=conc, measure_from_s=start)
                runs[name].append(result.metrics())
                if k == 0 and name == "fixed_1min":
                    analysis = cold_start_analysis(test, result)
        table = ResultsTable(
            f"Keep-alive policies on held-out functions and days ({self.eval_seeds} regions)", list(TABLE_METRICS)
        )
        for name, results in runs.items():
            metrics.update(method_metrics("test", name, average_over_seeds(results, ci_for=TABLE_METRICS)))
        add_method_rows(table, metrics, list(runs), split="test")
        metrics.update({f"test/analysis/{k}": v for k, v in analysis.items()})
        hybrid = metrics.get("test/hybrid_histogram/cold_start_rate")
        if hybrid and "learned" in runs:
            metrics["test/learned/cold_start_rate_vs_hybrid"] = metrics["test/learned/cold_start_rate"] / hybrid
            metrics["test/learned/wasted_gb_s_vs_hybrid"] = (
                metrics["test/learned/wasted_gb_s"] / metrics["test/hybrid_histogram/wasted_gb_s"]
            )
        tables = {"policies": table}
        real = self._real_trace_metrics()
        if real:
            metrics.update(real)
            real_table = ResultsTable(
                "Keep-alive policies on the real Azure Functions 2021 sample", list(TABLE_METRICS)
            )
            add_method_rows(real_table, metrics, self.policies, split="test_azure2021")
            tables["azure2021"] = real_table
        figures = {"frontier": self._plot_frontier(metrics)}
        return EvaluationReport(metrics=metrics, tables=tables, figures=figures)

    def _real_trace_metrics(self) -> dict[str, float]:
        path = self.dataset.azure_2021_path
        if not path or not Path(path).is_file():
            if path:
                log.warning("skipping the real Azure Functions 2021 sample: %s does not exist", path)
            return {}
        trace = load_azure_functions_2021(path)
        cold, _ = cold_start_times(trace, np.random.default_rng(self._seeds[3]), self.dataset.region)
        out: dict[str, float] = {}
        for name in self.policies:
            result = run_policy(self._policy(name), trace, cold, concurrency=self.env.concurrency)
            out.update(method_metrics("test_azure2021", name, result.metrics()))
        return out

    def _plot_frontier(self, metrics: Mapping[str, float]) -> Any:
        fig, ax = plt.subplots(figsize=(5, 4))
        for name in self.policies:
            x, y = metrics[f"test/{name}/wasted_gb_s"], metrics[f"test/{name}/cold_start_rate"]
            ax.scatter(x, y, label=name)
        ax.set_xlabel("idle memory (GB-s), held-out functions and days")
        ax.set_ylabel("cold-start rate")
        ax.set_yscale("symlog", linthresh=1e-3)
        ax.legend(fontsize=7)
        ax.set_title("cold starts vs wasted memory")
        return fig

    def evaluate_export(self, predictor: Any) -> EvaluationReport:
        """Evaluate a loaded export: its learned policy against the baselines on the held-out
        functions and days regenerated from the seed (PPO is not exported; it is left out)."""
        self.learned = LearnedKeepAlive(predictor.predictor, predictor.rule)
        if "ppo" in self.policies:
            self.policies.remove("ppo")
        return self.evaluate()

    # ------------------------------------------------------------------ export
    def export(
        self, directory: str | os.PathLike[str], *, metrics: Mapping[str, float], config: Mapping[str, Any]
    ) -> Path:
        """The learned policy: the predictor's LightGBM text models and the rule (JSON; no pickle)."""
        if self.learned is None:
            raise RuntimeError("fit() must run before export()")
        from infragym.models.serverless.export import input_schema, output_schema

        state, files = self.learned.predictor.state()
        spec = {"predictor": state, "rule": self.learned.rule.as_dict()}
        files = {**files, "policy.json": json.dumps(spec, indent=1).encode()}
        return write_export(
            directory,
            component="serverless",
            files=files,
            input_schema=input_schema(),
            output_schema=output_schema(self.learned.predictor.levels),
            metrics=metrics,
            config=config,
            libraries=("numpy", "lightgbm"),
        )


def cold_start_analysis(trace: InvocationTrace, result: Any) -> dict[str, float]:
    """The paper's breakdowns: cold-start share of invocations and mean cold-start time by
    trigger, runtime and pod memory; the pod utility ratio (EuroSys'25 Sec. 5-6)."""
    out: dict[str, float] = {}
    measured = result.measured
    groups = {
        "trigger": np.asarray(trace.trigger)[trace.function],
        "runtime": np.asarray(trace.runtime)[trace.function],
        "pod_mb": trace.memory_mb[trace.function].astype(int).astype(str),
    }
    for key, labels in groups.items():
        for label in np.unique(labels[measured]):
            rows = measured & (labels == label)
            cold = rows & result.cold
            out[f"cold_start_share/{key}={label}"] = float(result.cold[rows].mean())
            if cold.any():
                out[f"mean_cold_start_s/{key}={label}"] = float(result.cold_start_s[cold].mean())
    ratio = result.pod_utility_ratio()
    if ratio.size:
        out["pod_utility_median"] = float(np.median(ratio))
        out["pod_utility_below_1"] = float(np.mean(ratio < 1))
    return out


__all__ = [
    "ALL_POLICIES",
    "PPOKeepAlive",
    "ServerlessModel",
    "ServerlessRegion",
    "ServerlessTask",
    "cold_start_analysis",
]
