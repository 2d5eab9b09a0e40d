"""Continuum: tool-duration predictors and KV-cache TTL policies for multi-turn agents.

``fit`` trains the tool-duration predictors on generated training programs, selects the one
with the lowest pinball loss on validation programs (never on test), estimates the paper's
eta, and trains the learned TTL policy in ``infragym/KVCacheTTL-v0`` on training workloads.
``evaluate`` scores the predictors on held-out programs (and on the real trajectories when
present) and replays held-out workloads at increasing load under every TTL policy and
scheduler: vLLM (evict at once, request FCFS), the ablations (TTL alone, program FCFS alone)
and the full policies with program FCFS.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from infragym.datasets.agent_programs import AgentPrograms, bfcl_like, load_agent_trajectories, swe_bench_like
from infragym.envs.serving.programs import ProgramSimulation
from infragym.envs.serving.ttl_env import KVCacheTTLEnv
from infragym.evaluation import (
    add_method_rows,
    average_over_seeds,
    best_method,
    compare_methods,
    improvement,
    method_metrics,
    plot_curves,
)
from infragym.export import write_export
from infragym.logging import RunLogger
from infragym.models.continuum.predictors import (
    PREDICTORS,
    DurationPredictor,
    evaluate_predictor,
    predictor_state,
)
from infragym.models.continuum.ttl import (
    ContinuumRule,
    DurationOracle,
    FixedTTL,
    LearnedTTL,
    NoTTL,
    PredictedMean,
    TTLPolicy,
    program_eta,
    train_learned,
)
from infragym.results import ResultsTable
from infragym.seeding import child_seeds
from infragym.task import EvaluationReport

log = logging.getLogger(__name__)

# policy name -> (TTL policy kind, scheduler). "vllm" is the baseline; "ttl_only" and
# "program_fcfs_only" are the ablations of "continuum".
POLICIES: dict[str, tuple[str, str]] = {
    "vllm": ("none", "request_fcfs"),
    "ttl_only": ("continuum", "request_fcfs"),
    "program_fcfs_only": ("none", "program_fcfs"),
    "fixed_2s": ("fixed", "program_fcfs"),
    "predicted_mean": ("predicted_mean", "program_fcfs"),
    "continuum": ("continuum", "program_fcfs"),
    "learned": ("learned", "program_fcfs"),
    "oracle_duration": ("oracle_duration", "program_fcfs"),  # reference: TTL = the true duration
}
TABLE_METRICS = ("mean_jct_s", "p95_jct_s", "throughput_programs_s", "mean_ttft_s", "p95_ttft_s", "context_reuse")
TABLE_METRICS += ("pinned_memory_fraction", "preemptions")


class AgentWorkloads:
    """Generated SWE-bench-like and BFCL-like programs (train / validation / test, from
    separate seeds) and the real SWE-agent trajectories when their file exists.

    Args:
        trajectories_path: the real trajectories JSON (skipped with a warning if missing).
        swe_train, bfcl_train: training programs of each kind (predictors and the learned
            policy); a fifth of them is held out for validation.
        swe_test, bfcl_test: held-out programs per evaluation run (and for the predictors).
        real_programs: programs resampled from the real trajectories per evaluation run.
    """

    def __init__(
        self,
        *,
        trajectories_path: str | None = None,
        swe_train: int = 1500,
        bfcl_train: int = 1500,
        swe_test: int = 200,
        bfcl_test: int = 400,
        real_programs: int = 100,
    ) -> None:
        if min(swe_train, bfcl_train, swe_test, bfcl_test, real_programs) <= 0:
            raise ValueError("every workload size must be positive")
        self.trajectories_path = trajectories_path
        self.swe_train, self.bfcl_train = swe_train, bfcl_train
        self.swe_test, self.bfcl_test = swe_test, bfcl_test
        self.real_programs = real_programs
        self._real: AgentPrograms | None = None

    def real(self) -> AgentPrograms | None:
        """The real trajectories (read once; ``AgentPrograms`` is immutable), or None."""
        if self._real is None and self.trajectories_path and Path(self.trajectories_path).is_file():
            self._real = load_agent_trajectories(self.trajectories_path)
        elif self._real is None and self.trajectories_path:
            log.warning("skipping the real trajectories: %s does not exist", self.trajectories_path)
        return self._real


@dataclass
class ContinuumModel:
    """What to train: the predictors, the TTL policies' parameters, the learned policy's
    training budget (``conf/model/continuum.yaml``)."""

    predictors: Sequence[str] = ("global_mean", "running_mean", "empirical", "quantile_gbm")
    fixed_ttl_s: float = 2.0
    pin_cost: float = 1.0
    learned_rounds: int = 3
    learned_programs: int = 150
    learned_rates: Sequence[float] = (0.15, 0.2, 0.25)
    epsilon: float = 0.3
    gbm: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = [p for p in self.predictors if p not in PREDICTORS]
        if unknown or not self.predictors:
            raise ValueError(f"model.predictors: unknown {unknown}; choose from {sorted(PREDICTORS)}")


def _calls(programs: AgentPrograms, offset: int) -> pd.DataFrame:
    calls = programs.tool_calls()
    calls["program"] += offset  # keep programs of different workloads apart
    return calls


class ContinuumTask:
    """Train and compare tool-duration predictors and KV-cache TTL policies.

    Args:
        env: ``KVCacheTTL-v0`` (its replica, cluster and memory cost define the serving side).
        dataset: the workloads.
        model: predictor list and policy parameters.
        seed: root seed (workload, split and training seeds derive from it).
        loads: arrival rates (programs/s) per workload, low to high.
        policies: names from ``POLICIES`` to compare.
        headline: the workload whose highest load gives ``test/<policy>/mean_jct_s``.
        eval_seeds: held-out workloads per (workload, load); metrics are their averages.
    """

    def __init__(
        self,
        *,
        env: KVCacheTTLEnv,
        dataset: AgentWorkloads,
        model: ContinuumModel,
        seed: int = 0,
        loads: Mapping[str, Sequence[float]] | None = None,
        policies: Sequence[str] = tuple(POLICIES),
        headline: str = "swe_like",
        eval_seeds: int = 2,
    ) -> None:
        if isinstance(eval_seeds, bool) or not isinstance(eval_seeds, int) or eval_seeds < 1:
            raise ValueError(f"task.eval_seeds must be a whole number >= 1, got {eval_seeds!r}")
        if not len(policies):
            raise ValueError(f"task.policies is empty: name at least one of {sorted(POLICIES)}")
        if loads is not None and not len(loads):
            raise ValueError("task.loads is empty: give at least one workload and its loads")
        for workload, rates in (loads or {}).items():
            bad = [
                r for r in rates if isinstance(r, bool) or not isinstance(r, int | float) or not 0 < r < float("inf")
            ]
            if not len(rates) or bad:
                raise ValueError(f"task.loads.{workload} must be a non-empty list of positive loads, got {list(rates)}")
        self.eval_seeds = eval_seeds
        unknown = [p for p in policies if p not in POLICIES]
        if unknown:
            raise ValueError(f"task.policies: unknown {unknown}; choose from {sorted(POLICIES)}")
        self.env = env
        self.dataset = dataset
        self.model = model
        self.seed = seed
        self.loads = {k: [float(x) for x in v] for k, v in (loads or {"swe_like": [0.05, 0.1, 0.15, 0.2]}).items()}
        unknown_w = [w for w in self.loads if w not in ("swe_like", "bfcl_like", "real")]
        if unknown_w:
            raise ValueError(f"task.loads: unknown workload(s) {unknown_w}; use swe_like, bfcl_like, real")
        if headline not in self.loads:
            raise ValueError(f"task.headline {headline!r} must be one of task.loads' workloads")
        self.policies = list(policies)
        self.headline = headline
        s = child_seeds(seed, 8)
        self._seeds = {"train": s[0], "val": s[1], "test": s[2], "learn": s[3], "eval": s[4]}
        self.predictors: dict[str, DurationPredictor] = {}
        self.best: str | None = None
        self.eta = 1.0
        self.learned: LearnedTTL | None = None
        self.fit_metrics: dict[str, float] = {}

    def metric_patterns(self) -> list[str]:
        """The metrics ``evaluate`` produces (``fnmatch`` patterns), known before training."""
        out = ["train/*", "test/best_predictor_pinball_gain_vs_running_mean"]
        for name in self.model.predictors:
            out += [f"val/{name}/*", f"test/{name}/*", f"test_real/{name}/*"]  # test_real: the real sample
        for policy in self.policies:
            out.append(f"test/{policy}/*")
            out += [f"test/{workload}@*/{policy}/*" for workload in self.loads]
        return out

    # ------------------------------------------------------------------ data
    def _generate(self, kind: str, n: int, seed: int, rate: float = 1.0) -> AgentPrograms:
        generator = swe_bench_like if kind == "swe_like" else bfcl_like
        return generator(n, np.random.default_rng(seed), rate=rate)

    def _train_calls(self) -> tuple[pd.DataFrame, pd.DataFrame, AgentPrograms]:
        d = self.dataset
        swe = self._generate("swe_like", d.swe_train, self._seeds["train"])
        bfcl = self._generate("bfcl_like", d.bfcl_train, self._seeds["train"] + 1)
        rng = np.random.default_rng(self._seeds["val"])
        swe_fit, swe_val = swe.split(0.2, rng)
        bfcl_fit, bfcl_val = bfcl.split(0.2, rng)
        fit = pd.concat([_calls(swe_fit, 0), _calls(bfcl_fit, len(swe_fit))], ignore_index=True)
        val = pd.concat([_calls(swe_val, 0), _calls(bfcl_val, len(swe_val))], ignore_index=True)
        return fit, val, swe

    def _test_calls(self) -> dict[str, pd.DataFrame]:
        d = self.dataset
        s = self._seeds["test"]
        swe = self._generate("swe_like", d.swe_test * 2, s)
        bfcl = self._generate("bfcl_like", d.bfcl_test * 2, s + 1)
        calls = {"test": pd.concat([_calls(swe, 0), _calls(bfcl, len(swe))], ignore_index=True)}
        real = self.dataset.real()
        if real is not None:
            calls["test_real"] = real.tool_calls()
        return calls

    # ------------------------------------------------------------------ fit
    def fit(self, logger: RunLogger) -> None:
        start = time.perf_counter()
        fit_calls, val_calls, swe_train = self._train_calls()
        for name in tqdm(self.model.predictors, desc="predictors", unit="model"):
            predictor = PREDICTORS[name](**(self.model.gbm if name == "quantile_gbm" else {}))
            self.predictors[name] = predictor.fit(fit_calls)
            pinball = evaluate_predictor(predictor, val_calls)["pinball"]
            self.fit_metrics.update(method_metrics("val", name, {"pinball": pinball}))
        self.best = best_method(self.fit_metrics, "val", "pinball", among=list(self.predictors))
        self.eta = program_eta(swe_train)
        self.fit_metrics["train/eta"] = self.eta
        log.info("predictor with the lowest validation pinball loss: %s; eta = %.3f", self.best, self.eta)
        if "learned" in self.policies:
            envs = [
                KVCacheTTLEnv(
                    workload="swe_like",
                    n_programs=self.model.learned_programs,
                    rate=rate,
                    gpu=self.env.replica_config.gpu,
                    model=self.env.replica_config.model,
                    tp=self.env.replica_config.tp,
                    max_batched_tokens=self.env.replica_config.max_batched_tokens,
                    n_replicas=self.env.n_replicas,
                    memory_cost=self.env.memory_cost,
                    predictor=self.predictors[self.best],
                )
                for rate in self.model.learned_rates
            ]
            with tqdm(total=len(envs) * self.model.learned_rounds, desc="learned TTL", unit="episode") as bar:
                self.learned, stats = train_learned(
                    envs,
                    self.predictors[self.best],
                    rounds=self.model.learned_rounds,
                    epsilon=self.model.epsilon,
                    seed=self._seeds["learn"],
                    progress=bar,
                )
            self.fit_metrics.update({f"train/learned/{k}": v for k, v in stats.items()})
        self.fit_metrics["train/fit_seconds"] = time.perf_counter() - start
        logger.log_metrics(self.fit_metrics)

    # ------------------------------------------------------------------ policies
    def _policy(self, kind: str) -> TTLPolicy:
        best = self.predictors[self.best] if self.best else None
        if kind == "none":
            return NoTTL()
        if kind == "oracle_duration":
            return DurationOracle()
        if kind == "fixed":
            return FixedTTL(self.predictors.get("running_mean"), ttl_s=self.model.fixed_ttl_s)
        if best is None:
            raise RuntimeError("fit() must run before evaluate()")
        if kind == "predicted_mean":
            return PredictedMean(best)
        if kind == "continuum":
            return ContinuumRule(best, eta=self.eta, pin_cost=self.model.pin_cost)
        if kind == "learned":
            if self.learned is None:
                raise RuntimeError("the learned policy was not trained")
            return LearnedTTL(best, self.learned.model)
        raise ValueError(f"unknown TTL policy kind {kind!r}")

    def _workload(self, kind: str, rate: float, seed: int) -> AgentPrograms | None:
        if kind == "real":
            real = self.dataset.real()
            if real is None:
                return None
            return real.resampled(self.dataset.real_programs, rate, np.random.default_rng(seed))
        n = self.dataset.swe_test if kind == "swe_like" else self.dataset.bfcl_test
        return self._generate(kind, n, seed, rate)

    def simulate(self, programs: AgentPrograms, policy_name: str) -> dict[str, float]:
        """One held-out run under a named policy (``POLICIES``)."""
        kind, scheduler = POLICIES[policy_name]
        policy = self._policy(kind).prepare(programs)
        sim = ProgramSimulation(
            programs,
            replica=self.env.replica_config,
            n_replicas=self.env.n_replicas,
            scheduler=scheduler,
        )
        return sim.run(policy)

    # ------------------------------------------------------------------ evaluate
    def evaluate(self) -> EvaluationReport:
        metrics: dict[str, float] = dict(self.fit_metrics)
        tables: dict[str, ResultsTable] = {}
        pred_table = ResultsTable(
            "Tool-duration predictors on held-out programs (seconds)",
            ["mae_s", "mae_mean_s", "pinball", "calibration_error", "coverage_q0.5", "coverage_q0.9"],
        )
        for split, calls in self._test_calls().items():
            scorers = {name: lambda p=p, c=calls: evaluate_predictor(p, c) for name, p in self.predictors.items()}
            metrics.update(compare_methods(split, scorers))
            add_method_rows(pred_table, metrics, list(scorers), split=split, label=lambda n, s=split: f"{n} ({s})")
        tables["predictors"] = pred_table
        if self.best is not None:
            ref = metrics.get("test/running_mean/pinball")
            if ref:
                gain = improvement(metrics[f"test/{self.best}/pinball"], ref)
                metrics["test/best_predictor_pinball_gain_vs_running_mean"] = gain
        curves: dict[str, dict[str, list[tuple[float, dict[str, float]]]]] = {}
        runs = [(w, r, p) for w, rates in self.loads.items() for r in rates for p in self.policies]
        serving = ResultsTable(
            f"Agent programs on {self.env.n_replicas} x {self.env.replica_config.model} "
            f"(TP{self.env.replica_config.tp}, {self.env.replica_config.gpu})",
            list(TABLE_METRICS),
        )
        workload_ids = {w: i for i, w in enumerate(self.loads)}
        for workload, rate, policy in tqdm(runs, desc="simulating", unit="run"):
            # Every policy sees the same programs at a given workload and load.
            results = []
            for k in range(self.eval_seeds):
                seed = self._seeds["eval"] + 1000 * workload_ids[workload] + 10 * self.loads[workload].index(rate) + k
                programs = self._workload(workload, rate, seed)
                if programs is not None:
                    results.append(self.simulate(programs, policy))
            if not results:
                continue
            # The mean over the held-out workloads, with a bootstrap interval for the table's metrics.
            result = average_over_seeds(results, ci_for=TABLE_METRICS)
            split = f"test/{workload}@{rate:g}"
            metrics.update(method_metrics(split, policy, result))
            row = f"{workload} @{rate:g}/s"
            add_method_rows(serving, metrics, [policy], split=split, label=lambda p, row=row: f"{row} {p}")
            curves.setdefault(workload, {}).setdefault(policy, []).append((rate, result))
        tables["serving"] = serving
        top = max(self.loads[self.headline])
        for policy, points in curves.get(self.headline, {}).items():
            at_top = dict(points)[top]
            for key in ("mean_jct_s", "p95_jct_s"):
                interval = (f"{key}/ci_low", f"{key}/ci_high")
                metrics.update({f"test/{policy}/{k}": at_top[k] for k in (key, *interval) if k in at_top})
        base = metrics.get("test/vllm/mean_jct_s")
        if base:
            for policy in self.policies:
                value = metrics.get(f"test/{policy}/mean_jct_s")
                if value:
                    metrics[f"test/{policy}/jct_speedup_vs_vllm"] = base / value
        figures = {"jct_vs_load": self._plot_jct(curves), "predictor_calibration": self._plot_coverage(metrics)}
        return EvaluationReport(metrics=metrics, tables=tables, figures=figures)

    def _plot_jct(self, curves: Mapping[str, Mapping[str, list[tuple[float, dict[str, float]]]]]) -> Any:
        jct = {
            workload: {policy: [(rate, r["mean_jct_s"]) for rate, r in points] for policy, points in per_policy.items()}
            for workload, per_policy in curves.items()
        }
        # request-FCFS policies (vLLM and the TTL-only ablation) dashed
        styles = {p: "o--" if scheduler == "request_fcfs" else "o-" for p, (_, scheduler) in POLICIES.items()}
        return plot_curves(
            jct,
            xlabel="program arrival rate (programs/s)",
            ylabel="mean job completion time (s)",
            styles=styles,
            yscale="log",
        )

    def _plot_coverage(self, metrics: Mapping[str, float]) -> Any:
        """Held-out coverage of each predictor's quantiles on the generated test programs."""
        fig, ax = plt.subplots(figsize=(4.5, 4))
        for name, predictor in self.predictors.items():
            levels = predictor.levels
            ax.plot(levels, [metrics[f"test/{name}/coverage_q{lv:g}"] for lv in levels], "o-", label=name)
        ax.plot([0, 1], [0, 1], "k:", lw=0.8)
        ax.set_xlabel("quantile level")
        ax.set_ylabel("held-out coverage")
        ax.set_title("predictor calibration")
        ax.legend(fontsize=7)
        return fig

    def evaluate_export(self, predictor: Any) -> EvaluationReport:
        """Evaluate a loaded export (``evaluate.py``): its predictors, eta and learned policy
        replace the fitted ones; the held-out workloads are regenerated from the seed, so the
        training run's seed reproduces its numbers. The policies that need no training are
        rebuilt from the export's predictors: nothing to refit, so there are no options."""
        self.predictors = dict(predictor.predictors)
        self.best = predictor.best
        self.eta = predictor.eta
        self.learned = None
        if predictor.learned_model is not None:
            self.learned = LearnedTTL(self.predictors[self.best], predictor.learned_model)
        elif "learned" in self.policies:
            self.policies.remove("learned")
        return self.evaluate()

    # ------------------------------------------------------------------ export
    def export(
        self, directory: str | os.PathLike[str], *, metrics: Mapping[str, float], config: Mapping[str, Any]
    ) -> Path:
        """The predictors (JSON tables and LightGBM text models: no pickle), the selected one,
        the TTL rule's parameters and the learned policy's reward model."""
        if self.best is None:
            raise RuntimeError("fit() must run before export()")
        files: dict[str, bytes] = {}
        states: dict[str, Any] = {}
        for name, predictor in self.predictors.items():
            state, extra = predictor_state(predictor)
            renamed = {f"{name}__{k}": v for k, v in extra.items()}
            if "model_files" in state:
                state["model_files"] = [f"{name}__{k}" for k in state["model_files"]]
            states[name] = state
            files.update(renamed)
        ttl = {"eta": self.eta, "pin_cost": self.model.pin_cost, "fixed_ttl_s": self.model.fixed_ttl_s}
        if self.learned is not None:
            files["learned_ttl_reward.txt"] = self.learned.model.booster_.model_to_string().encode()
            ttl["learned_model_file"] = "learned_ttl_reward.txt"
        files["predictors.json"] = json.dumps({"best": self.best, "predictors": states, "ttl": ttl}, indent=1).encode()
        from infragym.models.continuum.export import input_schema, output_schema

        return write_export(
            directory,
            component="continuum",
            files=files,
            input_schema=input_schema(),
            output_schema=output_schema(self.predictors[self.best].levels),
            metrics=metrics,
            config=config,
            libraries=("numpy", "pandas", "lightgbm"),
        )


__all__ = ["POLICIES", "AgentWorkloads", "ContinuumModel", "ContinuumTask"]
