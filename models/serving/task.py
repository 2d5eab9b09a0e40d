"""Serving baselines: FCFS behind each router at increasing load, on real and generated traces."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from tqdm.auto import tqdm

from infragym.datasets.llm_traces import RequestTrace, burstgpt_like, load_azure_trace
from infragym.envs.serving.cluster import ROUTERS, ServingCluster, SimulationResult
from infragym.envs.serving.env import LLMServingEnv
from infragym.envs.serving.kv import KVManager
from infragym.envs.serving.policies import ReplicaScheduler, make_router
from infragym.evaluation import method_metrics, plot_curves
from infragym.logging import RunLogger
from infragym.results import ResultsTable
from infragym.seeding import child_seeds
from infragym.task import EvaluationReport

log = logging.getLogger(__name__)
TABLE_METRICS = (
    "throughput_rps",
    "goodput_rps",
    "slo_attainment",
    "ttft_s_p50",
    "ttft_s_p99",
    "tbt_s_p50",
    "tbt_s_p99",
    "e2e_s_p99",
    "preemptions",
    "timed_out",
    "kv_utilisation_mean",
)


class ServingWorkloads:
    """The traces to replay: the Azure conversation trace (if its file exists) and a
    BurstGPT-like generated one.

    Args:
        azure_conv_path: the Azure 2023 conversation trace CSV (../shared/data/llm_traces/).
        max_requests: replay at most this many requests of each trace.
        burstgpt_rate: base arrival rate of the generated trace (requests/s).
        burstgpt_requests: its length.
    """

    def __init__(
        self,
        *,
        azure_conv_path: str | None = None,
        max_requests: int = 20_000,
        burstgpt_rate: float = 5.0,
        burstgpt_requests: int = 20_000,
    ) -> None:
        if max_requests <= 0 or burstgpt_requests <= 0 or burstgpt_rate <= 0:
            raise ValueError("max_requests, burstgpt_requests and burstgpt_rate must be positive")
        self.azure_conv_path = azure_conv_path
        self.max_requests = max_requests
        self.burstgpt_rate = burstgpt_rate
        self.burstgpt_requests = burstgpt_requests

    def traces(self, rng: np.random.Generator) -> dict[str, RequestTrace]:
        traces: dict[str, RequestTrace] = {}
        if self.azure_conv_path and Path(self.azure_conv_path).is_file():
            traces["azure_conv"] = load_azure_trace(self.azure_conv_path).head(self.max_requests)
        elif self.azure_conv_path:
            log.warning("skipping the Azure trace: %s does not exist", self.azure_conv_path)
        traces["burstgpt_like"] = burstgpt_like(self.burstgpt_requests, rng, rate=self.burstgpt_rate).head(
            self.max_requests
        )
        return traces


class ServingBaselinesTask:
    """No learning: replay each workload at each rate factor through each router.

    Args:
        env: the serving env (its replica config and SLO are used).
        dataset: the workloads.
        model: the replica scheduler (a ``ReplicaScheduler``: FCFS).
        n_replicas: replicas behind the router.
        routers: registered router names (``conf/router``; the built-ins are ``ROUTERS``).
        rate_factors: replay speeds (1 = the trace's own rate).
        kv_manager: the replicas' KV manager factory (``conf/kv_manager``; None: paged).
    """

    def __init__(
        self,
        *,
        env: LLMServingEnv,
        dataset: ServingWorkloads,
        model: ReplicaScheduler,
        seed: int = 0,
        n_replicas: int = 2,
        routers: Sequence[str] = ROUTERS,
        rate_factors: Sequence[float] = (1.0, 2.0, 4.0, 8.0, 16.0),
        kv_manager: Callable[[int, int, float], KVManager] | None = None,
    ) -> None:
        if not len(routers):
            raise ValueError(f"task.routers is empty: name at least one of {ROUTERS}")
        for router in routers:
            try:
                make_router(router)
            except ValueError as err:
                raise ValueError(f"task.routers: unknown {router!r}; choose from {ROUTERS}") from err
        if not len(rate_factors):
            raise ValueError("task.rate_factors is empty: give at least one replay speed (1 = the trace's own rate)")
        bad = [
            f for f in rate_factors if isinstance(f, bool) or not isinstance(f, int | float) or not 0 < f < float("inf")
        ]
        if bad:
            raise ValueError(f"task.rate_factors must be positive numbers, got {bad}")
        if isinstance(n_replicas, bool) or not isinstance(n_replicas, int) or n_replicas < 1:
            raise ValueError(f"task.n_replicas must be a whole number >= 1, got {n_replicas!r}")
        self.env = env
        self.dataset = dataset
        self.scheduler = model
        self.seed = seed
        self.n_replicas = n_replicas
        self.routers = list(routers)
        self.rate_factors = [float(f) for f in rate_factors]
        self.kv_manager = kv_manager
        self._trace_seed = child_seeds(seed, 1)[0]

    def metric_patterns(self) -> list[str]:
        """The metrics ``evaluate`` produces (``fnmatch`` patterns), known before it runs."""
        return [f"test/{self.scheduler.name}_{router}/*" for router in self.routers]

    def fit(self, logger: RunLogger) -> None:
        """Nothing to learn: the baselines are fixed policies."""

    def _cluster(self, router: str) -> ServingCluster:
        return ServingCluster(
            replica=self.env.replica_config,
            n_replicas=self.n_replicas,
            router=router,
            slo=self.env.slo,
            scheduler=self.scheduler,
            kv_manager=self.kv_manager,
        )

    def evaluate(self) -> EvaluationReport:
        traces = self.dataset.traces(np.random.default_rng(self._trace_seed))
        metrics: dict[str, float] = {}
        table = ResultsTable(
            f"FCFS on {self.n_replicas} x {self.env.replica_config.model} / {self.env.replica_config.gpu} "
            f"(SLO: TTFT <= {self.env.slo.ttft_s} s, mean TBT <= {self.env.slo.tbt_s} s)",
            list(TABLE_METRICS),
        )
        curves: dict[tuple[str, str], list[tuple[float, dict[str, float]]]] = {}
        busiest: dict[str, SimulationResult] = {}
        runs = [(w, r, f) for w in traces for r in self.routers for f in self.rate_factors]
        for workload, router, factor in tqdm(runs, desc="simulating", unit="run"):
            trace = traces[workload].scaled(factor)
            result = self._cluster(router).run(trace)
            name = f"{self.scheduler.name}_{router}"
            metrics.update(method_metrics("test", name, result.metrics, condition=f"{workload}@{factor:g}x"))
            table.add_row(
                f"{name} {workload} x{factor:g} ({trace.rate:.1f} req/s)",
                {k: result.metrics.get(k, float("nan")) for k in TABLE_METRICS},
            )
            curves.setdefault((workload, name), []).append((trace.rate, result.metrics))
            if factor == max(self.rate_factors) and router == self.routers[0]:
                busiest[workload] = result
        return EvaluationReport(metrics=metrics, tables={"serving": table}, figures=self._plots(curves, busiest))

    def _plots(
        self,
        curves: Mapping[tuple[str, str], list[tuple[float, dict[str, float]]]],
        busiest: Mapping[str, SimulationResult],
    ) -> dict[str, Any]:
        lines: dict[str, dict[str, list[tuple[float, float]]]] = {w: {} for w in sorted({w for w, _ in curves})}
        styles: dict[str, str] = {}
        for (workload, name), points in curves.items():
            for metric, label, style in (("ttft_s_p99", "p99 TTFT", "o-"), ("e2e_s_p50", "median E2E", "s--")):
                lines[workload][f"{name} {label}"] = [(rate, m.get(metric, np.nan)) for rate, m in points]
                styles[f"{name} {label}"] = style
        fig = plot_curves(
            lines,
            xlabel="arrival rate (requests/s)",
            ylabel="seconds",
            styles=styles,
            xscale="log",
            yscale="log",
            panel_size=(6.0, 4.0),
        )
        fig2, axes2 = plt.subplots(1, len(busiest), figsize=(6 * len(busiest), 3.5), squeeze=False)
        for ax, (workload, result) in zip(axes2[0], sorted(busiest.items()), strict=True):
            for replica in result.replicas:
                t = np.frombuffer(replica.kv_log_t)
                used = np.frombuffer(replica.kv_log_used)
                step = max(1, len(t) // 2000)
                ax.plot(t[::step], used[::step], lw=0.8, label=f"replica {replica.index}")
            ax.set_xlabel("time (s)")
            ax.set_ylabel("KV cache used (fraction)")
            ax.set_title(f"{workload}, highest rate")
            ax.legend(fontsize=7)
        return {"latency_vs_load": fig, "kv_utilisation": fig2}

    def export(
        self, directory: str | os.PathLike[str], *, metrics: Mapping[str, float], config: Mapping[str, Any]
    ) -> Path:
        raise RuntimeError("serving_baselines has no learned model to export; run it with export=false")
