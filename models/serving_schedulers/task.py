"""The serving-schedulers Task: fit the JITServe length predictors and train the learned
admission policy (MaskablePPO in ``infragym/LLMAdmission-v0``), then replay every workload at
every load under every scheduler on held-out traces and compare goodput.

Held out: the Azure traces' unseen second half-hour (the predictors and the learned policy see
only the first), other seeds of the generated workloads, and loads outside the training range.
The learned policy is evaluated through its ONNX export (the deployment code path).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from joblib import Parallel, delayed

from infragym.datasets.llm_traces import load_trace
from infragym.envs.serving.policies import ReplicaScheduler
from infragym.envs.serving.simulator import ReplicaConfig
from infragym.envs.serving_schedulers.env import LLMAdmissionEnv
from infragym.evaluation import average_over_seeds, method_metrics, plot_curves, results_table
from infragym.export import write_export
from infragym.logging import RunLogger
from infragym.models.serving_schedulers import export as admission_export
from infragym.models.serving_schedulers.learned import LearnedScheduler
from infragym.models.serving_schedulers.length_predictor import QuantileLengthPredictor, prompt_features
from infragym.models.serving_schedulers.replay import replay
from infragym.models.serving_schedulers.schedulers import PREDICTED, SCHEDULERS, JITServeScheduler
from infragym.models.serving_schedulers.workloads import (
    PAST_FUTURE_DISTRIBUTIONS,
    Workload,
    latency_workload,
    mixed_slo_workload,
    past_future_workload,
)
from infragym.ppo_config import ppo_keywords
from infragym.sb3_callbacks import episode_logger
from infragym.task import EvaluationReport

log = logging.getLogger(__name__)
COMPONENT = "serving_schedulers"
KINDS = ("azure", "past_future", "length_only")
ABLATIONS = {
    "jitserve_static_length": {"refine": False},
    "jitserve_no_grouping": {"grouping": False},
    "jitserve_no_batch_composition": {"batch_composition": False},
}
TABLE_METRICS = (
    "goodput_rps",
    "goodput_tokens_s",
    "slo_attainment",
    "evictions",
    "timed_out",
    "queue_s_mean",
    "kv_utilisation_mean",
)
# The Azure traces hold one hour; the first half hour (the raw-format files) trains, the second
# (seconds 1,800-3,600 of vidur's processed files) tests.
HELD_OUT_START_S = 1800.0
HELD_OUT_STRIDE_S = 240.0  # test seed k starts k x 240 s into the held-out half hour


def make_scheduler(
    name: str, predictor: QuantileLengthPredictor | None, policy_onnx: bytes | None, *, seed: int = 0
) -> ReplicaScheduler:
    """A scheduler by name: the compared policies, JITServe's ablations and ``learned``."""
    if name == "learned":
        if policy_onnx is None:
            raise RuntimeError("the learned scheduler needs a trained policy (fit() first)")
        return LearnedScheduler(admission_export.AdmissionPolicy(policy_onnx).act, seed=seed)
    if name in ABLATIONS:
        return JITServeScheduler(predictor=predictor, seed=seed, **ABLATIONS[name])
    if name == "fcfs":
        return SCHEDULERS[name]()
    cls = SCHEDULERS[name]
    return cls(predictor=predictor, seed=seed) if name in PREDICTED else cls(seed=seed)


class FixedSeeds(gym.Wrapper):
    """Resets cycle through fixed seeds: every periodic evaluation sees the same episodes."""

    def __init__(self, env: gym.Env, seeds: Sequence[int]) -> None:
        super().__init__(env)
        self.seeds = list(seeds)
        self.resets = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
        seed = self.seeds[self.resets % len(self.seeds)]
        self.resets += 1
        return self.env.reset(seed=seed, options=options)

    def action_masks(self) -> np.ndarray:
        return self.env.unwrapped.action_masks()


def _replay_cell(
    workload: Workload,
    schedulers: Sequence[str],
    predictor: QuantileLengthPredictor | None,
    policy_onnx: bytes | None,
    replica: ReplicaConfig,
    queue_timeout_s: float,
    seed: int,
) -> dict[str, dict[str, float]]:
    return {
        name: replay(
            workload,
            make_scheduler(name, predictor, policy_onnx, seed=seed),
            replica=replica,
            queue_timeout_s=queue_timeout_s,
        ).metrics
        for name in schedulers
    }


class ServingSchedulersTask:
    """Reinforcement-learning Task for LLM serving admission, with Past-Future and JITServe.

    Args:
        env: the training env (``LLMAdmission-v0``; its settings are copied into every worker).
        seed: the run seed.
        trace_dir: folder of the shared LLM traces (``../shared/data/llm_traces``); workloads
            that need a missing file are skipped with a warning.
        workloads: name -> {kind: azure | past_future | length_only, loads: [...], requests: int,
            replica: key of ``replicas``, file: trace file (azure, length_only), train_file:
            the first half hour (azure), distribution (past_future), slo: {...}}.
        replicas: name -> ReplicaConfig keywords.
        headline: the main workload (``test/<scheduler>/goodput_rps`` at its heaviest load).
        schedulers: the compared schedulers (``learned`` is the trained policy).
        ablations: JITServe's mechanism ablations, run on the headline workload.
        eval_seeds: held-out workloads per load.
        queue_timeout_s: a request not started within this is dropped.
        ppo: MaskablePPO settings (total_steps, n_envs, n_steps, batch_size, n_epochs,
            learning_rate, gamma, ent_coef, net_arch, eval_freq, checkpoint_freq).
        predictor: QuantileLengthPredictor keywords (tau, n_estimators, num_leaves).
        asynchronous: AsyncVectorEnv rollouts (else SyncVectorEnv).
        eval_workers: processes replaying the evaluation cells.
        progress_bar: SB3's progress bar during training.
        torch_threads: threads for training.
    """

    def __init__(
        self,
        *,
        env: LLMAdmissionEnv,
        seed: int = 0,
        trace_dir: str | None = None,
        workloads: Mapping[str, Mapping[str, Any]],
        replicas: Mapping[str, Mapping[str, Any]],
        headline: str,
        schedulers: Sequence[str] = ("fcfs", "conservative", "past_future", "edf", "sjf", "jitserve", "learned"),
        ablations: Sequence[str] = tuple(ABLATIONS),
        eval_seeds: int = 2,
        queue_timeout_s: float = 60.0,
        ppo: Mapping[str, Any] | None = None,
        predictor: Mapping[str, Any] | None = None,
        asynchronous: bool = True,
        eval_workers: int = 2,
        progress_bar: bool = True,
        torch_threads: int = 1,
        output_dir: str | None = None,
    ) -> None:
        known = set(SCHEDULERS) | {"learned"}
        unknown = set(schedulers) - known
        if unknown:
            raise ValueError(f"task.schedulers: unknown {sorted(unknown)}; choose from {sorted(known)}")
        unknown = set(ablations) - set(ABLATIONS)
        if unknown:
            raise ValueError(f"task.ablations: unknown {sorted(unknown)}; choose from {sorted(ABLATIONS)}")
        for name, spec in workloads.items():
            if spec.get("kind") not in KINDS:
                raise ValueError(f"task.workloads.{name}.kind must be one of {KINDS}, got {spec.get('kind')!r}")
            if not spec.get("loads") or any(float(x) <= 0 for x in spec["loads"]):
                raise ValueError(f"task.workloads.{name}.loads must be a non-empty list of positive rates")
            if spec.get("replica") not in replicas:
                raise ValueError(f"task.workloads.{name}.replica must be one of {sorted(replicas)}")
        if headline not in workloads:
            raise ValueError(f"task.headline {headline!r} is not one of the workloads {sorted(workloads)}")
        if eval_seeds < 1:
            raise ValueError("task.eval_seeds must be >= 1")
        self.env = env
        self.seed = int(seed)
        self.trace_dir = Path(trace_dir) if trace_dir else None
        self.workloads = {k: dict(v) for k, v in workloads.items()}
        self.replicas = {k: ReplicaConfig(**dict(v)) for k, v in replicas.items()}
        self.headline = headline
        self.schedulers = list(schedulers)
        self.ablations = list(ablations)
        self.eval_seeds = int(eval_seeds)
        self.queue_timeout_s = float(queue_timeout_s)
        self.ppo = {
            "total_steps": 40_000,
            "n_envs": 2,
            "n_steps": 512,
            "batch_size": 256,
            "n_epochs": 5,
            "learning_rate": 3e-4,
            "gamma": 0.99,
            "ent_coef": 0.01,
            "net_arch": [64, 64],
            "eval_freq": 5000,
            "checkpoint_freq": 10000,
            "warm_start_episodes": 0,
            "warm_start_epochs": 10,
            **dict(ppo or {}),
        }
        self.predictor_args = dict(predictor or {})
        self.asynchronous = asynchronous
        self.eval_workers = int(eval_workers)
        self.progress_bar = progress_bar
        self.torch_threads = torch_threads
        self.output_dir = Path(output_dir) if output_dir else None
        self.onnx: bytes | None = None
        self.predictors: dict[str, QuantileLengthPredictor] = {}
        self.history: list[tuple[int, float]] = []
        self._skip_missing()

    # ------------------------------------------------------------------ data
    def _path(self, name: str) -> Path | None:
        return None if self.trace_dir is None else self.trace_dir / name

    def _skip_missing(self) -> None:
        for name in list(self.workloads):
            spec = self.workloads[name]
            files = [spec[k] for k in ("file", "train_file") if k in spec]
            missing = [f for f in files if self._path(f) is None or not self._path(f).is_file()]
            if missing:
                if name == self.headline:
                    raise FileNotFoundError(
                        f"task.workloads.{name}: the headline workload needs {missing} in {self.trace_dir} "
                        "(set INFRAGYM_DATA to the shared data folder)"
                    )
                log.warning("skipping workload %s: %s not found in %s", name, missing, self.trace_dir)
                del self.workloads[name]

    def workload(self, name: str, load: float, seed: int) -> Workload:
        """The held-out workload ``name`` at ``load`` requests/s, test seed ``seed``."""
        spec = self.workloads[name]
        n = int(spec.get("requests", 300))
        slo = dict(spec.get("slo", {}))
        rng = np.random.default_rng([self.seed, seed, 7])
        if spec["kind"] == "past_future":
            return past_future_workload(spec["distribution"], n, rng, rate=load, **slo)
        if spec["kind"] == "length_only":
            trace = load_trace(self._path(spec["file"]), rate=load, rng=rng)
            start = seed * n
            if start + n > len(trace) - int(spec.get("train_rows", 0)):
                raise ValueError(f"task.workloads.{name}: too few rows for test seed {seed} of {n} requests")
            chunk = trace._take(slice(start, start + n))
            chunk = chunk._take(slice(None), chunk.arrival_s - chunk.arrival_s[0])
            return latency_workload(name, chunk, **slo)
        trace = load_trace(self._path(spec["file"]))
        start = HELD_OUT_START_S + seed * HELD_OUT_STRIDE_S
        window = trace.window(start, trace.arrival_s[-1] + 1.0).head(n)
        if len(window) < n:
            raise ValueError(f"task.workloads.{name}: the held-out half hour has < {n} requests after {start} s")
        window = window.scaled(load / window.rate)
        return mixed_slo_workload(name, window, rng, **slo)

    def _training_lengths(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Prompt and output lengths the predictor of workload ``name`` learns from (never its test data)."""
        spec = self.workloads[name]
        if spec["kind"] == "azure":
            trace = load_trace(self._path(spec["train_file"]))
        elif spec["kind"] == "length_only":
            rows = int(spec.get("train_rows", 0))
            if rows < 20:
                raise ValueError(f"task.workloads.{name}.train_rows must be >= 20 (the last rows train)")
            trace = load_trace(self._path(spec["file"]), rate=1.0)
            trace = trace._take(slice(len(trace) - rows, None))
        else:
            rng = np.random.default_rng([self.seed, 999])
            trace = past_future_workload(spec["distribution"], 2000, rng, rate=1.0, ttft_s=1.0, tbt_s=1.0).trace
        return trace.prompt_tokens, trace.output_tokens

    def fit_predictors(self) -> None:
        for name, spec in self.workloads.items():
            if spec["kind"] == "past_future" and spec["distribution"] not in PAST_FUTURE_DISTRIBUTIONS:
                raise ValueError(f"task.workloads.{name}.distribution: unknown {spec['distribution']!r}")
            prompt, output = self._training_lengths(name)
            # the SLO type is assigned independently of the lengths: a constant feature in training
            features = prompt_features(prompt, np.zeros(len(prompt)))
            args = {"seed": self.seed, **self.predictor_args}
            self.predictors[name] = QuantileLengthPredictor(**args).fit(features, output)

    # ------------------------------------------------------------------ training
    def make_env(self) -> LLMAdmissionEnv:
        return LLMAdmissionEnv(**self.env.kwargs)

    def fit(self, logger: RunLogger) -> None:
        self.fit_predictors()
        if "learned" not in self.schedulers:
            return
        import torch
        from sb3_contrib import MaskablePPO
        from sb3_contrib.common.maskable.callbacks import MaskableEvalCallback
        from stable_baselines3.common.callbacks import BaseCallback, CallbackList, CheckpointCallback
        from stable_baselines3.common.monitor import Monitor
        from stable_baselines3.common.vec_env import DummyVecEnv

        from infragym.models.serving_schedulers.vector_env import GymnasiumVecEnv

        torch.set_num_threads(self.torch_threads)
        args = self.ppo
        vec = GymnasiumVecEnv([self.make_env] * int(args["n_envs"]), asynchronous=self.asynchronous)
        vec.seed(self.seed)
        history = self.history

        model = MaskablePPO(
            "MlpPolicy",
            vec,
            **ppo_keywords(args, self.seed),
        )
        out = self.output_dir or Path(os.getcwd())
        warm = int(args["warm_start_episodes"])
        if warm > 0:
            from infragym.models.serving_schedulers import warm_start

            data = warm_start.collect(self.make_env, warm, self.seed + 20_000, warm_start.batch_composition_rule)
            accuracy = warm_start.clone(model.policy, *data, epochs=int(args["warm_start_epochs"]), seed=self.seed)
            log.info("behaviour cloning on %d teacher decisions: accuracy %.3f", len(data[2]), accuracy)
            logger.log_metrics({"train/clone_accuracy": accuracy}, step=0)
        callbacks: list[BaseCallback] = [episode_logger(history, logger)]
        n_envs = int(args["n_envs"])
        # periodic evaluation on fixed validation episodes (seeds apart from training's), keeping the best;
        # validation at the heavy end of the training range, where admission decisions matter
        low, high = self.env.rate_range
        heavy = {**self.env.kwargs, "rate_range": (low + 2.0 * (high - low) / 3.0, high)}
        seeds = [self.seed + 10_000 + i for i in range(3)]
        eval_env = DummyVecEnv([lambda: Monitor(FixedSeeds(LLMAdmissionEnv(**heavy), seeds))])
        evaluation = MaskableEvalCallback(
            eval_env,
            n_eval_episodes=3,
            eval_freq=max(int(args["eval_freq"]) // n_envs, 1),
            best_model_save_path=str(out / "checkpoints" / "best"),
            log_path=str(out / "checkpoints" / "eval"),
            deterministic=True,
            verbose=0,
        )
        if warm > 0:
            # the clone is a candidate too: evaluated (and saved) before PPO changes it
            from sb3_contrib.common.maskable.evaluation import evaluate_policy

            clone_return, _ = evaluate_policy(model, eval_env, n_eval_episodes=3, deterministic=True)
            (out / "checkpoints" / "best").mkdir(parents=True, exist_ok=True)
            model.save(str(out / "checkpoints" / "best" / "best_model"))
            evaluation.best_mean_reward = float(clone_return)
            log.info("the cloned policy's validation return: %.1f", clone_return)
        callbacks.append(evaluation)
        callbacks.append(
            CheckpointCallback(
                save_freq=max(int(args["checkpoint_freq"]) // n_envs, 1),
                save_path=str(out / "checkpoints"),
                name_prefix="admission_ppo",
            )
        )
        log.info("training MaskablePPO for %d steps on %d envs", args["total_steps"], n_envs)
        model.learn(
            total_timesteps=int(args["total_steps"]), progress_bar=self.progress_bar, callback=CallbackList(callbacks)
        )
        vec.close()
        eval_env.close()
        best = out / "checkpoints" / "best" / "best_model.zip"
        if best.is_file():
            model = MaskablePPO.load(str(best), device="cpu")
        self.onnx = admission_export.export_onnx(model.policy)

    # ------------------------------------------------------------------ evaluation
    def evaluate(self) -> EvaluationReport:
        if "learned" in self.schedulers and self.onnx is None:
            raise RuntimeError("fit() first: there is no trained policy to evaluate")
        if not self.predictors:
            self.fit_predictors()
        return self._evaluate(self.onnx)

    def evaluate_export(self, predictor: admission_export.AdmissionPolicy) -> EvaluationReport:
        if not self.predictors:
            self.fit_predictors()
        return self._evaluate(predictor.onnx)

    def _cells(self) -> list[tuple[str, float, int, list[str]]]:
        cells = []
        for name, spec in self.workloads.items():
            methods = self.schedulers + (self.ablations if name == self.headline else [])
            for load in spec["loads"]:
                for seed in range(self.eval_seeds):
                    cells.append((name, float(load), seed, methods))
        return cells

    def _evaluate(self, policy_onnx: bytes | None) -> EvaluationReport:
        cells = self._cells()
        log.info("replaying %d workload cells x schedulers", len(cells))
        jobs = (
            delayed(_replay_cell)(
                self.workload(name, load, seed),
                methods,
                self.predictors[name],
                policy_onnx,
                self.replicas[self.workloads[name]["replica"]],
                self.queue_timeout_s,
                seed,
            )
            for name, load, seed, methods in cells
        )
        results = (
            Parallel(n_jobs=self.eval_workers)(jobs) if self.eval_workers > 1 else [f(*a, **k) for f, a, k in jobs]
        )
        runs: dict[tuple[str, float], list[dict[str, dict[str, float]]]] = {}
        for (name, load, _, _), result in zip(cells, results, strict=True):
            runs.setdefault((name, load), []).append(result)
        metrics: dict[str, float] = {}
        curves: dict[str, dict[str, list[tuple[float, float]]]] = {}
        for (name, load), seeds in runs.items():
            split = f"test/{name}@{load:g}"
            for method in seeds[0]:
                per_seed = [{k: seed[method][k] for k in TABLE_METRICS if k in seeds[0][method]} for seed in seeds]
                shared = set.intersection(*(set(s) for s in per_seed))
                averaged = average_over_seeds(
                    [{k: s[k] for k in sorted(shared)} for s in per_seed], ci_for=("goodput_rps", "goodput_tokens_s")
                )
                metrics.update(method_metrics(split, method, averaged))
                curves.setdefault(name, {}).setdefault(method, []).append((load, averaged["goodput_rps"]))
        heaviest = max(float(x) for x in self.workloads[self.headline]["loads"])
        head_split = f"test/{self.headline}@{heaviest:g}"
        for method in self.schedulers + self.ablations:
            for k in ("goodput_rps", "goodput_tokens_s", "slo_attainment"):
                key = f"{head_split}/{method}/{k}"
                if key in metrics:
                    metrics[f"test/{method}/{k}"] = metrics[key]
        tables = {}
        for name, spec in self.workloads.items():
            top = max(float(x) for x in spec["loads"])
            methods = self.schedulers + (self.ablations if name == self.headline else [])
            tables[f"{name}_heaviest"] = results_table(
                f"{name} at {top:g} req/s (held-out, mean of {self.eval_seeds} seeds)",
                metrics,
                methods,
                list(TABLE_METRICS),
                split=f"test/{name}@{top:g}",
            )
        for table in tables.values():
            log.info("\n%s", table.to_text())
        figure = plot_curves(
            {k: dict(v) for k, v in curves.items()}, xlabel="load (requests/s)", ylabel="goodput (requests/s)"
        )
        return EvaluationReport(metrics=metrics, tables=tables, figures={"goodput_vs_load": figure})

    # ------------------------------------------------------------------ export
    def export(
        self, directory: str | os.PathLike[str], *, metrics: Mapping[str, float], config: Mapping[str, Any]
    ) -> Path:
        if self.onnx is None:
            raise RuntimeError("fit() first: there is no trained policy to export")
        return write_export(
            directory,
            component=COMPONENT,
            files={admission_export.POLICY_FILE: self.onnx},
            input_schema=admission_export.input_schema(),
            output_schema=admission_export.output_schema(),
            metrics=metrics,
            config=config,
            libraries=("onnx", "onnxruntime", "torch", "stable-baselines3", "sb3-contrib"),
        )
