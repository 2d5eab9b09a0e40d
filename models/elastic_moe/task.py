"""ElasticMoE's experiment: autoscaling an MoE deployment on bursty traffic.

``fit`` chooses each baseline's parameters on training traces (the first 60% of the Azure
code trace; BurstGPT-like seeds below ``TEST_SEED_BASE``): the static level (the fewest
devices reaching ``slo_target``), the reactive thresholds and the predictive autoscaler's
target utilisation (the best mean env reward), then trains MaskablePPO (sb3-contrib; the mask
forbids a step while one runs) with the env's scaling method, and exports it to ONNX.
``evaluate`` replays held-out windows (the last 40% of the trace) and held-out BurstGPT-like
seeds under every policy and reports SLO attainment, device-hours, scale-up latency and
throughput during scaling; the reactive autoscaler is also run under the ``restart`` and
``replica`` methods (the paper's baselines), and the scale-up latency per method is derived
from ``envs.elastic.scaling`` (ElasticMoE reports up to ~9x lower scale-up latency).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from infragym.envs.elastic.env import OBS_NAMES, TEST_SEED_BASE, ElasticServingEnv
from infragym.envs.elastic.policies import PredictiveMA, ReactiveThreshold, StaticPeak
from infragym.envs.elastic.scaling import METHODS, scale_step
from infragym.evaluation import average_over_seeds, method_metrics, results_table
from infragym.export import write_export
from infragym.logging import RunLogger
from infragym.models.power_capping.export import DiscretePolicy, export_onnx, schemas
from infragym.ppo_config import ppo_keywords
from infragym.task import EvaluationReport

log = logging.getLogger(__name__)
COMPONENT = "elastic_moe"
POLICIES = ("static_peak", "reactive", "predictive", "learned", "reactive_restart", "reactive_replica")
METRICS = ("slo_attainment", "device_hours", "scale_up_latency_s", "throughput_during_scaling_rps", "p99_ttft_s")
TRAIN_SPLIT, TEST_SPLIT = (0.0, 0.6), (0.6, 1.0)


def env_like(env: ElasticServingEnv, **changes: Any) -> ElasticServingEnv:
    kwargs = {
        "model": env.model,
        "gpu": env.gpu,
        "pool_devices": env.pool,
        "method": env.method,
        "device_step": env.device_step,
        "replica_devices": env.replica_devices,
        "initial_devices": env.initial_devices,
        "workload": env.workload,
        "code_speedup": env.code_speedup,
        "burst_rate": env.burst_rate,
        "burst_gamma_shape": env.burst_gamma_shape,
        "horizon_s": env.horizon_s,
        "tick_s": env.tick_s,
        "decision_s": env.decision_s,
        "split": env.split,
        "ttft_slo_s": env.ttft_slo_s,
        "tpot_slo_s": env.tpot_slo_s,
        "violation_weight": env.violation_weight,
        "device_cost": env.device_cost,
        "data_dir": env.data_dir,
    }
    kwargs.update(changes)
    return ElasticServingEnv(**kwargs)


def run_episode(env: ElasticServingEnv, policy: Any, seed: int) -> dict[str, float]:
    obs, _ = env.reset(seed=seed)
    policy.reset()
    total, done = 0.0, False
    while not done:
        obs, reward, terminated, truncated, _ = env.step(policy.act(obs))
        total += reward
        done = terminated or truncated
    out = env.metrics()
    out["return"] = total
    return out


class ElasticMoETask:
    """Reinforcement-learning Task for elastic MoE serving (see the module docstring).

    Args:
        env: the training env (model, pool, method, workload, reward weights).
        seed: the run seed.
        ppo: MaskablePPO settings.
        policies: which of ``POLICIES`` to evaluate.
        eval_seeds: held-out windows / BurstGPT-like seeds per workload.
        tune_seeds: training episodes each baseline candidate is scored on.
        slo_target: the SLO attainment the static level must reach on training traces.
        workloads: test workloads (the first one gives the ``test/<policy>/...`` keys).
    """

    def __init__(
        self,
        *,
        env: ElasticServingEnv,
        seed: int = 0,
        ppo: Mapping[str, Any] | None = None,
        policies: Sequence[str] = POLICIES,
        eval_seeds: int = 4,
        tune_seeds: int = 3,
        slo_target: float = 0.9,
        workloads: Sequence[str] = ("azure_code", "burstgpt"),
        torch_threads: int = 1,
        progress_bar: bool = True,
    ) -> None:
        unknown = set(policies) - set(POLICIES)
        if unknown:
            raise ValueError(f"task.policies: unknown {sorted(unknown)}; choose from {list(POLICIES)}")
        if eval_seeds < 1 or tune_seeds < 1 or not workloads:
            raise ValueError("task.eval_seeds, task.tune_seeds and task.workloads must be non-empty")
        self.env, self.seed = env, int(seed)
        self.ppo = {
            "total_steps": 30_000,
            "n_envs": 4,
            "n_steps": 256,
            "batch_size": 256,
            "n_epochs": 5,
            "learning_rate": 3e-4,
            "gamma": 0.97,
            "ent_coef": 0.01,
            "net_arch": [64, 64],
            **dict(ppo or {}),
        }
        self.policies, self.eval_seeds, self.tune_seeds = list(policies), int(eval_seeds), int(tune_seeds)
        self.slo_target, self.workloads = float(slo_target), list(workloads)
        self.torch_threads, self.progress_bar = torch_threads, progress_bar
        self.static_devices = env.pool
        self.reactive = ReactiveThreshold()
        self.predictive_params: dict[str, float] = {}
        self.onnx: bytes | None = None
        self.fit_metrics: dict[str, float] = {}
        self._tuned = False

    # ------------------------------------------------------------------ fit
    def _score(self, env: ElasticServingEnv, policy: Any) -> dict[str, float]:
        runs = [run_episode(env, policy, self.seed * 1000 + i) for i in range(self.tune_seeds)]
        return {k: float(np.mean([r[k] for r in runs])) for k in ("return", "slo_attainment", "device_hours")}

    def fit(self, logger: RunLogger) -> None:
        self.tune_baselines()
        if "learned" in self.policies:
            self._train_ppo(logger)
        logger.log_metrics(self.fit_metrics)

    def tune_baselines(self) -> None:
        """Choose the baselines' parameters on training traces (deterministic given the seed:
        an export's evaluation repeats it)."""
        self._tuned = True
        train = env_like(self.env, split=TRAIN_SPLIT)
        for level in train.levels:  # the fewest devices reaching the SLO target: static peak
            score = self._score(env_like(train, initial_devices=level), StaticPeak(level))
            self.static_devices = level
            if score["slo_attainment"] >= self.slo_target:
                break
        self.fit_metrics["train/static_peak/devices"] = float(self.static_devices)
        candidates = [
            ReactiveThreshold(up_busy=u, up_queue=q, down_busy=d, patience=p)
            for u in (0.7, 0.85)
            for q in (0.5, 2.0)
            for d in (0.3, 0.5)
            for p in (3, 8)
        ]
        self.reactive = max(candidates, key=lambda c: self._score(train, c)["return"])
        best = None
        for util in (0.3, 0.45, 0.6, 0.8):
            for window in (3, 6, 12):
                params = {"target_utilisation": util, "window": window}
                score = self._score(train, self._predictive(train, params))["return"]
                if best is None or score > best[0]:
                    best = (score, params)
        self.predictive_params = best[1]
        log.info(
            "baselines chosen on training traces: static %d devices, %s, predictive %s",
            self.static_devices,
            self.reactive,
            self.predictive_params,
        )

    @staticmethod
    def _predictive(env: ElasticServingEnv, params: Mapping[str, float]) -> PredictiveMA:
        return PredictiveMA(env.capacity_tokens_s, env.pool, decision_s=env.decision_s, **params)

    def _train_ppo(self, logger: RunLogger) -> None:
        import torch
        from sb3_contrib import MaskablePPO
        from stable_baselines3.common.env_util import make_vec_env

        torch.set_num_threads(self.torch_threads)
        args = self.ppo
        vec = make_vec_env(lambda: env_like(self.env, split=TRAIN_SPLIT), n_envs=int(args["n_envs"]), seed=self.seed)
        model = MaskablePPO(
            "MlpPolicy",
            vec,
            **ppo_keywords(args, self.seed),
        )
        log.info("training MaskablePPO for %d steps on %d envs", args["total_steps"], args["n_envs"])
        model.learn(total_timesteps=int(args["total_steps"]), progress_bar=self.progress_bar)
        vec.close()
        self.onnx = export_onnx(model.policy, len(OBS_NAMES))

    # ------------------------------------------------------------------ evaluate
    def evaluate(self) -> EvaluationReport:
        learned = DiscretePolicy(self.onnx, [3], len(OBS_NAMES)) if self.onnx else None
        return self._evaluate(learned)

    def evaluate_export(self, predictor: DiscretePolicy) -> EvaluationReport:
        """Evaluate a loaded export (the baselines are tuned again: same seed, same parameters)."""
        if not self._tuned:
            self.tune_baselines()
        return self._evaluate(predictor)

    def _policy_env(self, name: str, workload: str, learned: DiscretePolicy | None) -> tuple[Any, ElasticServingEnv]:
        test = env_like(self.env, split=TEST_SPLIT, workload=workload)
        if name == "static_peak":
            return StaticPeak(self.static_devices), env_like(test, initial_devices=self.static_devices)
        if name == "reactive":
            return self.reactive, test
        if name.startswith("reactive_"):
            method = name.removeprefix("reactive_")
            if method == "replica":
                start = max(test.replica_devices, test.initial_devices // test.replica_devices * test.replica_devices)
                return self.reactive, env_like(test, method=method, initial_devices=start)
            return self.reactive, env_like(test, method=method)
        if name == "predictive":
            return self._predictive(test, self.predictive_params), test
        if learned is None:
            raise RuntimeError("fit() first: there is no learned policy")
        return learned, test

    def _evaluate(self, learned: DiscretePolicy | None) -> EvaluationReport:
        metrics: dict[str, float] = dict(self.fit_metrics)
        methods = [p for p in self.policies if p != "learned" or learned is not None]
        for k, workload in enumerate(self.workloads):
            split = "test" if k == 0 else f"test_{workload}"
            for name in methods:
                policy, env = self._policy_env(name, workload, learned)
                runs = [run_episode(env, policy, TEST_SEED_BASE + self.seed * 1000 + i) for i in range(self.eval_seeds)]
                metrics.update(method_metrics(split, name, average_over_seeds(runs, ci_for=METRICS)))
        for method in METHODS:  # the scale-up latency of one step from the initial layout
            to = self.env.initial_devices + (self.env.replica_devices if method == "replica" else 2)
            step = scale_step(method, self.env.model, self.env.gpu, self.env.initial_devices, to)
            metrics[f"test/scaling/{method}/scale_up_latency_s"] = step.latency_s
        elastic = metrics["test/scaling/elastic/scale_up_latency_s"]
        metrics["test/scaling/restart_over_elastic"] = metrics["test/scaling/restart/scale_up_latency_s"] / elastic
        metrics["test/scaling/replica_over_elastic"] = metrics["test/scaling/replica/scale_up_latency_s"] / elastic
        metrics["test/paper/scale_up_latency_ratio_max"] = 9.0
        tables = {
            f"elastic_moe_{w}": results_table(
                f"{self.env.model} on up to {self.env.pool} {self.env.gpu}, {w}: {self.eval_seeds} held-out episodes",
                metrics,
                methods,
                list(METRICS),
                split="test" if i == 0 else f"test_{w}",
            )
            for i, w in enumerate(self.workloads)
        }
        fig, ax = plt.subplots(figsize=(5.5, 3.8))
        for name in methods:
            ax.scatter(metrics[f"test/{name}/device_hours"], metrics[f"test/{name}/slo_attainment"], label=name)
        ax.set_xlabel("device-hours per episode")
        ax.set_ylabel("SLO attainment")
        ax.legend(fontsize=7)
        ax.set_title(f"held-out {self.workloads[0]} windows")
        return EvaluationReport(metrics=metrics, tables=tables, figures={"frontier": fig})

    # ------------------------------------------------------------------ export
    def export(
        self, directory: str | os.PathLike[str], *, metrics: Mapping[str, float], config: Mapping[str, Any]
    ) -> Path:
        if self.onnx is None:
            raise RuntimeError("fit() first: there is no trained policy to export")
        inp, out = schemas(OBS_NAMES, [3], {"actions": ["hold", "scale_up", "scale_down"]})
        return write_export(
            directory,
            component=COMPONENT,
            files={"policy.onnx": self.onnx},
            input_schema=inp,
            output_schema=out,
            metrics=metrics,
            config=config,
            libraries=("onnx", "onnxruntime", "torch", "stable-baselines3", "sb3-contrib"),
        )


__all__ = ["POLICIES", "ElasticMoETask", "env_like", "run_episode"]
