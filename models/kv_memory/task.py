"""experiment=kv_memory: vAttention's memory study and FastSwitch's context-switching study.

Nothing is learned: both studies compare KV memory mechanisms on the serving kernel.

1. Memory: paged blocks of 16-256 tokens vs vAttention pages of 64 KB-2 MB on one replica, on
   the long-prompt arXiv sample and the Azure conversation trace: usable KV capacity, largest
   batch before preemption, throughput and TTFT/TBT. Each page size runs as designed (decode
   pages mapped in the background, contiguous decode kernel) and with the paged kernel's speed
   (memory effects only: fragmentation, batch size, page mapping), so the table splits the gain
   into its memory and kernel parts; selected page sizes also run with every page mapped on
   the critical path.
2. Context switching: multi-turn conversations under a VTC fair scheduler that preempts by swap,
   with vLLM's swap, FastSwitch (block groups + asynchronous swaps + host copy kept across
   turns) and each mechanism alone; over seeds, with bootstrap intervals; and tail latency
   against the priority-update frequency.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from infragym.datasets.llm_traces import RequestTrace, burstgpt_like
from infragym.envs.serving.kv_memory import PAGED_BLOCK_SIZES, VATTENTION_PAGE_BYTES
from infragym.envs.serving.swap import SWAP_VARIANTS
from infragym.evaluation import average_over_seeds, metric_key, plot_curves
from infragym.logging import RunLogger
from infragym.models.kv_memory.studies import (
    arxiv_trace,
    azure_trace,
    conversation_workload,
    run_memory_variant,
    run_switch_variant,
    single_turn_workload,
)
from infragym.results import ResultsTable
from infragym.seeding import child_seeds
from infragym.task import EvaluationReport

log = logging.getLogger(__name__)

MEMORY_COLUMNS = (
    "capacity_tokens",
    "max_batch_before_preemption",
    "throughput_tok_s",
    "p50_ttft_s",
    "p99_ttft_s",
    "p99_tbt_s",
    "preemptions",
    "map_s",
)
SWITCH_COLUMNS = (
    "p99_ttft_s",
    "p99_tbt_s",
    "p99_max_tbt_s",
    "throughput_tok_s",
    "jain_service_rate",
    "service_spread",
    "gb_swapped",
    "gpu_stall_s",
    "stall_share_of_busy",
    "preemptions",
)
# The metrics shown with a confidence interval over seeds.
CI_METRICS = ("p99_ttft_s", "p99_tbt_s", "throughput_tok_s", "gpu_stall_s", "gb_swapped", "jain_service_rate")


class KVMemoryWorkloads:
    """Where the studies' real traces live (each is skipped with a warning when absent).

    Args:
        arxiv_path: the arXiv summarisation sample of vAttention's artifact.
        azure_conv_path: the Azure 2023 conversation trace.
    """

    def __init__(self, *, arxiv_path: str | None = None, azure_conv_path: str | None = None) -> None:
        self.arxiv_path = arxiv_path
        self.azure_conv_path = azure_conv_path

    def memory_traces(self, n: int, rates: Mapping[str, float], rng: np.random.Generator) -> dict[str, RequestTrace]:
        """The memory study's traces; a BurstGPT-like one when neither file is present."""
        traces: dict[str, RequestTrace] = {}
        for name, path in (("arxiv", self.arxiv_path), ("azure_conv", self.azure_conv_path)):
            if not path or not Path(path).is_file():
                log.warning("kv_memory: skipping the %s workload: %s does not exist", name, path)
                continue
            rate = float(rates[name])
            traces[name] = arxiv_trace(path, n, rate, rng) if name == "arxiv" else azure_trace(path, n, rate)
        if not traces:
            traces["burstgpt_like"] = burstgpt_like(n, rng, rate=float(rates.get("burstgpt_like", 20.0)))
        return traces


def _check_positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"task.{name} must be a whole number >= 1, got {value!r}")
    return value


class KVMemoryTask:
    """Both studies of issue 15, end to end.

    Args:
        dataset: the real traces (``KVMemoryWorkloads``).
        gpu, model, tp: the memory study's replica.
        memory_requests: requests per memory-study trace.
        memory_rates: arrival rate (requests/s) of each memory workload (one replica runs short
            of KV memory at these rates).
        block_sizes, page_sizes: the variants (``paged_<block>``, ``vattention_<page>``).
        critical_path_pages: pages also run with decode pages mapped on the critical path
            (variant ``vattention_<page>_sync``), to show what background mapping hides.
        switch_gpu, switch_model: the context-switching study's replica.
        switch_memory_utilisation: its ``gpu_memory_utilisation`` (memory pressure).
        switch_requests, switch_rate: conversation requests per run, sessions/s.
        update_every: iterations between priority updates for the ablation.
        update_sweep: the priority-update periods swept (vLLM's swap and FastSwitch).
        seeds: conversation workloads per variant (bootstrap intervals over them).
        switch_azure_rate: the Azure conversation trace replayed at this rate (requests/s) for
            the switching study too (every request its own client; None or no file: skipped).
        variants: the swap variants (``swap.SWAP_VARIANTS`` names).
    """

    def __init__(
        self,
        *,
        dataset: KVMemoryWorkloads,
        seed: int = 0,
        gpu: str = "h100",
        model: str = "llama3.1_8b",
        tp: int = 1,
        memory_requests: int = 1500,
        memory_rates: Mapping[str, float] | None = None,
        block_sizes: Sequence[int] = PAGED_BLOCK_SIZES,
        page_sizes: Sequence[str] = tuple(VATTENTION_PAGE_BYTES),
        critical_path_pages: Sequence[str] = ("64kb", "2mb"),
        switch_gpu: str = "a100_80gb",
        switch_model: str = "llama3.1_8b",
        switch_memory_utilisation: float = 0.3,
        switch_requests: int = 3000,
        switch_rate: float = 3.0,
        update_every: int = 10,
        update_sweep: Sequence[int] = (1, 5, 10, 50, 200),
        seeds: int = 3,
        variants: Sequence[str] = tuple(SWAP_VARIANTS),
        switch_azure_rate: float | None = 3.5,
    ) -> None:
        self.dataset = dataset
        self.seed = seed
        self.gpu, self.model, self.tp = gpu, model, _check_positive_int("tp", tp)
        self.memory_requests = _check_positive_int("memory_requests", memory_requests)
        self.memory_rates = dict(memory_rates or {"arxiv": 1.5, "azure_conv": 20.0, "burstgpt_like": 20.0})
        for size in block_sizes:
            _check_positive_int("block_sizes[]", size)
        bad = [p for p in [*page_sizes, *critical_path_pages] if p not in VATTENTION_PAGE_BYTES]
        if bad:
            raise ValueError(f"task.page_sizes: unknown {bad}; choose from {sorted(VATTENTION_PAGE_BYTES)}")
        self.block_sizes = [int(b) for b in block_sizes]
        self.page_sizes = list(page_sizes)
        self.critical_path_pages = list(critical_path_pages)
        self.switch_gpu, self.switch_model = switch_gpu, switch_model
        if not 0 < switch_memory_utilisation <= 1:
            raise ValueError(f"task.switch_memory_utilisation must be in (0, 1], got {switch_memory_utilisation}")
        self.switch_memory_utilisation = float(switch_memory_utilisation)
        self.switch_requests = _check_positive_int("switch_requests", switch_requests)
        if not switch_rate > 0:
            raise ValueError(f"task.switch_rate must be > 0 sessions/s, got {switch_rate}")
        self.switch_rate = float(switch_rate)
        self.update_every = _check_positive_int("update_every", update_every)
        self.update_sweep = [_check_positive_int("update_sweep[]", k) for k in update_sweep]
        self.seeds = _check_positive_int("seeds", seeds)
        unknown = [v for v in variants if v not in SWAP_VARIANTS]
        if unknown or not variants:
            raise ValueError(f"task.variants: unknown {unknown}; choose from {sorted(SWAP_VARIANTS)}")
        self.variants = list(variants)
        if switch_azure_rate is not None and not switch_azure_rate > 0:
            raise ValueError(f"task.switch_azure_rate must be > 0 requests/s or null, got {switch_azure_rate}")
        self.switch_azure_rate = switch_azure_rate
        self._seeds = child_seeds(seed, self.seeds + 1)

    @property
    def memory_variants(self) -> list[str]:
        return [f"paged_{b}" for b in self.block_sizes] + [f"vattention_{p}" for p in self.page_sizes]

    def metric_patterns(self) -> list[str]:
        """The metrics ``evaluate`` produces (``fnmatch`` patterns)."""
        names = self.memory_variants + [f"vattention_{p}_memory" for p in self.page_sizes]
        names += [f"vattention_{p}_sync" for p in self.critical_path_pages] + self.variants
        return [f"test/{name}/*" for name in names]

    def fit(self, logger: RunLogger) -> None:
        """Nothing to learn."""

    # ------------------------------------------------------------------ evaluation
    def evaluate(self) -> EvaluationReport:
        metrics: dict[str, float] = {}
        tables: dict[str, ResultsTable] = {}
        memory_rows = self._memory_study(metrics, tables)
        sweep = self._switch_study(metrics, tables)
        figures = {"throughput_vs_page_size": self._memory_plot(memory_rows), "tail_vs_update_frequency": sweep}
        return EvaluationReport(metrics=metrics, tables=tables, figures=figures)

    def _memory_study(self, metrics: dict[str, float], tables: dict[str, ResultsTable]) -> dict[str, dict]:
        traces = self.dataset.memory_traces(
            self.memory_requests, self.memory_rates, np.random.default_rng(self._seeds[-1])
        )
        # (row name, variant, background mapping, contiguous decode kernels)
        variants = [(f"paged_{b}", f"paged_{b}", True, False) for b in self.block_sizes]
        for p in self.page_sizes:
            variants.append((f"vattention_{p}", f"vattention_{p}", True, True))  # vAttention as designed
            variants.append((f"vattention_{p}_memory", f"vattention_{p}", True, False))  # memory effects only
        variants += [(f"vattention_{p}_sync", f"vattention_{p}", False, True) for p in self.critical_path_pages]
        rows: dict[str, dict[str, dict[str, float]]] = {}
        primary = next(iter(traces))
        runs = [(w, *v) for w in traces for v in variants]
        for workload, name, variant, background, kernels in tqdm(runs, desc="kv memory", unit="run"):
            row = run_memory_variant(
                variant,
                traces[workload],
                gpu=self.gpu,
                model=self.model,
                tp=self.tp,
                background=background,
                contiguous_kernels=kernels,
            )
            rows.setdefault(workload, {})[name] = row
            for key, value in row.items():
                metrics[metric_key("test", name, key, condition=workload)] = float(value)
                if workload == primary:
                    metrics[metric_key("test", name, key)] = float(value)
        for workload, by_variant in rows.items():
            base = by_variant.get("paged_16")
            table = ResultsTable(
                f"KV memory on {workload} ({traces[workload].rate:.2f} req/s), {self.model} on {self.gpu} TP{self.tp}. "
                "vattention_<page>: as designed (decode pages mapped in the background, contiguous decode kernel at "
                "1/1.23 of paged); _memory: paged kernel speed (memory effects only); _sync: every page mapped on the "
                "critical path. memory_gain = _memory / paged_16 throughput; kernel_gain = vattention / _memory",
                [*MEMORY_COLUMNS, "vs_paged_16", "memory_gain", "kernel_gain"],
            )
            for name, row in by_variant.items():
                values = {k: row[k] for k in MEMORY_COLUMNS}
                values["vs_paged_16"] = row["throughput_tok_s"] / base["throughput_tok_s"] if base else float("nan")
                memory_only = by_variant.get(f"{name}_memory")
                if memory_only is not None:
                    values["memory_gain"] = (
                        memory_only["throughput_tok_s"] / base["throughput_tok_s"] if base else float("nan")
                    )
                    values["kernel_gain"] = row["throughput_tok_s"] / memory_only["throughput_tok_s"]
                    for key in ("memory_gain", "kernel_gain"):
                        metrics[metric_key("test", name, key, condition=workload)] = values[key]
                        if workload == primary:
                            metrics[metric_key("test", name, key)] = values[key]
                table.add_row(name, values)
            tables[f"memory_{workload}"] = table
        return rows

    def _switch_study(self, metrics: dict[str, float], tables: dict[str, ResultsTable]) -> Any:
        workloads = [
            conversation_workload(self.switch_requests, self.switch_rate, np.random.default_rng(s))
            for s in self._seeds[: self.seeds]
        ]
        common = {
            "gpu": self.switch_gpu,
            "model": self.switch_model,
            "gpu_memory_utilisation": self.switch_memory_utilisation,
        }
        table = ResultsTable(
            f"Context switching: {self.switch_requests} conversation requests at {self.switch_rate:g} sessions/s, "
            f"{self.switch_model} on {self.switch_gpu} (KV memory {self.switch_memory_utilisation:g} of the GPU), "
            f"VTC fair scheduler, priority update every {self.update_every} iterations; mean over {self.seeds} seeds",
            list(SWITCH_COLUMNS),
        )
        runs = [(v, i) for v in self.variants for i in range(self.seeds)]
        per_variant: dict[str, list[dict[str, float]]] = {}
        for variant, i in tqdm(runs, desc="context switching", unit="run"):
            per_variant.setdefault(variant, []).append(
                run_switch_variant(variant, workloads[i], update_every=self.update_every, **common)
            )
        for variant, results in per_variant.items():
            summary = average_over_seeds(results, ci_for=CI_METRICS)
            for key, value in summary.items():
                metrics[f"test/{variant}/{key}"] = value
            table.add_row(variant, {k: summary[k] for k in SWITCH_COLUMNS})
        tables["context_switching"] = table
        azure = self.dataset.azure_conv_path
        if self.switch_azure_rate is not None and azure and Path(azure).is_file():
            trace = azure_trace(azure, self.switch_requests, self.switch_azure_rate)
            requests = single_turn_workload(trace)
            azure_table = ResultsTable(
                f"Context switching on the Azure conversation trace at {self.switch_azure_rate:g} req/s "
                "(every request its own client; no turns to reuse), same replica and scheduler",
                list(SWITCH_COLUMNS),
            )
            for variant in tqdm(self.variants, desc="context switching (azure)", unit="run"):
                row = run_switch_variant(variant, requests, update_every=self.update_every, **common)
                for key, value in row.items():
                    metrics[metric_key("test", variant, key, condition="azure_conv")] = float(value)
                azure_table.add_row(variant, {k: row[k] for k in SWITCH_COLUMNS})
            tables["context_switching_azure"] = azure_table
        # Tail latency against the priority-update frequency (first seed's workload).
        curves: dict[str, dict[str, list[tuple[float, float]]]] = {"p99 TTFT": {}, "p99 TBT": {}}
        sweep_variants = [v for v in ("vllm_swap", "fastswitch") if v in self.variants]
        sweep = ResultsTable(
            "Tail latency vs priority-update period (iterations between updates), seed 0",
            ["update_every", "p99_ttft_s", "p99_tbt_s", "preemptions", "gpu_stall_s", "jain_service_rate"],
        )
        for variant in sweep_variants:
            for k in tqdm(self.update_sweep, desc=f"update sweep {variant}", unit="run"):
                row = run_switch_variant(variant, workloads[0], update_every=k, **common)
                for key, value in row.items():
                    metrics[metric_key("test", variant, key, condition=f"update_every={k}")] = float(value)
                curves["p99 TTFT"].setdefault(variant, []).append((k, row["p99_ttft_s"]))
                curves["p99 TBT"].setdefault(variant, []).append((k, row["p99_tbt_s"]))
                values = {c: row[c] for c in sweep.columns[1:]}
                sweep.add_row(f"{variant} every {k}", {"update_every": float(k), **values})
        tables["update_frequency"] = sweep
        return plot_curves(
            curves,
            xlabel="iterations between priority updates (log)",
            ylabel="seconds",
            xscale="log",
            yscale="log",
        )

    def _memory_plot(self, rows: Mapping[str, Mapping[str, Mapping[str, float]]]) -> Any:
        curves: dict[str, dict[str, list[tuple[float, float]]]] = {}
        for workload, by_variant in rows.items():
            lines: dict[str, list[tuple[float, float]]] = {}
            for name, row in by_variant.items():
                kind = "paged" if name.startswith("paged_") else "vattention"
                if name.endswith("_sync"):
                    kind += " (pages mapped on the critical path)"
                elif name.endswith("_memory"):
                    kind += " (paged kernel speed: memory only)"
                lines.setdefault(kind, []).append((row["block_tokens"], row["throughput_tok_s"]))
            curves[workload] = {k: sorted(v) for k, v in lines.items()}
        return plot_curves(curves, xlabel="tokens per block / page (log)", ylabel="output tokens/s", xscale="log")

    def export(
        self, directory: str | os.PathLike[str], *, metrics: Mapping[str, float], config: Mapping[str, Any]
    ) -> Path:
        raise RuntimeError("kv_memory has no learned model to export; run it with export=false")
