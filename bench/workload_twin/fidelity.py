"""Workload twins (issue 15 section 3): how close a twin fitted on the first half of a trace is to
the second half, against the usual synthetic loads.

For each trace (the Azure 2023 conversation and code traces; four days of a BurstGPT-like
workload with the published Gamma shapes, Zipf lengths, failures and conversations), fit on the
first half by time and draw ``--seeds`` twins as long as the second half. Compared with the second
half: inter-arrival CV per window (mean absolute difference), KS distances of inter-arrival
times, request and response lengths, and the serving simulator's latency percentiles (one H100,
Llama-3.1-8B, vLLM defaults with chunked prefill). Methods:

- ``twin``: ``fit_workload`` (per-window Gamma by moments, Zipf or empirical lengths, response
  given request, conversations, failures), ``twin_mle``: the same with the Gamma fitted by
  maximum likelihood; ``twin_empirical``: with the empirical gap distribution scaled per window
  instead of the Gamma (an extension for on/off traffic);
- ``burstgpt_published``: BurstGPT's generator with its published constants (Gamma shape 0.4,
  in the 0.25-0.5 range; Zipf 1.1 below 4,096/2,048 tokens) at the first half's rate;
- ``poisson``: Poisson arrivals with log-normal lengths at the first half's rate and means (the
  usual synthetic load);
- ``replay``: the first half itself (how much the trace changes between its halves: a twin
  cannot be expected to be closer than this).

Also times the fit and the generation of 1M requests.

    python bench/workload_twin/fidelity.py [--seeds 5]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench._common import Benchmark, Check, data_dir, finish, write_result

BENCHMARKS = (Benchmark("workload_twin", minutes=3),)

RESULT = "workload_twin"
METHODS = ("twin", "twin_mle", "twin_empirical", "burstgpt_published", "poisson", "replay")
STATS = (
    "iat_cv_window_mae",
    "iat_ks",
    "prompt_ks",
    "prompt_ks_window_mean",
    "output_ks",
    "latency/ttft_s_p50/rel_err",
    "latency/ttft_s_p99/rel_err",
    "latency/tbt_s_p99/rel_err",
    "latency/e2e_s_p99/rel_err",
)
# Issue 15 names no number for the twin. Goal checked here: on every trace the fitted twin's
# per-window burstiness (inter-arrival CV by window) is closer to the held-out half than that of
# BurstGPT's generator with its published constants (the point of fitting). Reported beside it:
# Poisson (on a near-Poisson trace it is as close: per-window CVs are noisy) and the replay of
# the first half (how much the halves differ).


def check(result: dict) -> list[Check]:
    import statistics

    checks = []
    for name, trace in result["traces"].items():
        stats = trace["methods"]

        def mean(method: str, key: str, stats: dict = stats) -> float:
            values = [v for v in stats[method][key] if v is not None]
            return statistics.fmean(values) if values else float("nan")

        twin, published = mean("twin", "iat_cv_window_mae"), mean("burstgpt_published", "iat_cv_window_mae")
        checks.append(
            Check(
                f"{name}: inter-arrival CV by window, mean |twin - held-out half|",
                f"{twin:.3f} (published {published:.3f}, poisson {mean('poisson', 'iat_cv_window_mae'):.3f}, "
                f"replay {mean('replay', 'iat_cv_window_mae'):.3f})",
                "below burstgpt_published",
                twin < published,
            )
        )
        for key in ("prompt_ks", "output_ks", "latency/ttft_s_p99/rel_err", "latency/tbt_s_p99/rel_err"):
            checks.append(
                Check(
                    f"{name}: {key}, twin (replay {mean('replay', key):.3f}, poisson {mean('poisson', key):.3f})",
                    f"{mean('twin', key):.3f}",
                    "reported",
                    None,
                )
            )
    return checks


def _halves(name: str, seed: int):  # -> (first, first_conv), (second, second_conv), scale, second's start
    import numpy as np

    from infragym.datasets.llm_traces import load_azure_trace
    from infragym.datasets.workload_twin import burstgpt_reference_model, split_halves

    if name.startswith("azure"):
        trace = load_azure_trace(data_dir() / "llm_traces" / f"{name}_splitwise.csv")
        return (*split_halves(trace), 1.0, trace.duration_s / 2)
    # Four days at 0.4 req/s; replayed 10x faster for the latency comparison (BurstGPT's RPS
    # scaling, applied to trace and twin alike) so that one replica is loaded.
    reference = burstgpt_reference_model(mean_rate=0.4)
    trace, conv = reference.generate_with_conversations(4 * 34_560, np.random.default_rng(seed))
    return (*split_halves(trace, conv), 10.0, trace.duration_s / 2)


def _baseline(method: str, first, second, rng):
    from infragym.datasets.llm_traces import burstgpt_like, poisson_trace

    n = len(second)
    if method == "burstgpt_published":
        return burstgpt_like(n, rng, rate=first.rate, models=first.models, model_mix=_mix(first))
    ok = ~first.failed
    return poisson_trace(
        n,
        rng,
        rate=first.rate,
        prompt_mean=float(first.prompt_tokens.mean()),
        output_mean=float(first.output_tokens[ok].mean()),
    )


def _mix(trace) -> tuple[float, ...]:
    import numpy as np

    counts = np.bincount(trace.model, minlength=len(trace.models)).astype(float)
    return tuple((counts / counts.sum()).tolist())


def trace_fidelity(name: str, n_seeds: int) -> dict:
    import statistics

    import numpy as np

    from infragym.datasets.llm_traces import fit_workload, twin_report
    from infragym.datasets.twin_report import LATENCY_KEYS, default_cluster

    (first, first_conv), (second, second_conv), scale, second_start = _halves(name, 0)
    cluster = default_cluster()
    started = time.perf_counter()
    models = {"twin": fit_workload(first, conversation=first_conv)}
    fit_s = time.perf_counter() - started
    models["twin_mle"] = fit_workload(first, conversation=first_conv, arrival_fit="mle")
    models["twin_empirical"] = fit_workload(first, conversation=first_conv, arrival_fit="empirical")
    reference_latency = cluster.run(second.scaled(scale)).metrics
    out: dict = {
        "requests": [len(first), len(second)],
        "duration_h": [first.duration_s / 3600, second.duration_s / 3600],
        "latency_scale": scale,
        "fit_s": fit_s,
        "fitted": models["twin"].summary(),
        "methods": {},
        "trace_latency": {k: reference_latency.get(k) for k in LATENCY_KEYS},
    }
    for method in METHODS:
        per_stat: dict[str, list[float]] = {}
        conversation: dict[str, float] = {}
        for seed in range(n_seeds if method != "replay" else 1):
            rng = np.random.default_rng(1000 + seed)
            twin_conv = None
            if method in models:
                # The twin starts where the held-out half does (its time of day, or its window).
                start = second_start % models[method].arrivals.period_s if models[method].arrivals.period_s else None
                twin, twin_conv = models[method].generate_with_conversations(len(second), rng, start_s=start)
            elif method == "replay":
                twin, twin_conv = first, first_conv
            else:
                twin = _baseline(method, first, second, rng)
            report = twin_report(
                second,
                twin,
                conversation=second_conv if twin_conv is not None else None,
                twin_conversation=twin_conv,
                cluster=False,
            )
            metrics = cluster.run(twin.scaled(scale)).metrics
            for key in LATENCY_KEYS:
                a, b = reference_latency.get(key, float("nan")), metrics.get(key, float("nan"))
                report[f"latency/{key}/twin"] = b
                report[f"latency/{key}/rel_err"] = abs(b - a) / a if a > 0 else float("nan")
            for key, value in report.items():
                if isinstance(value, float | int):
                    per_stat.setdefault(key, []).append(float(value))
            if seed == 0:
                out.setdefault("iat_cv_by_window", {"trace": report["iat_cv_by_window"]["trace"]})
                out["iat_cv_by_window"][method] = report["iat_cv_by_window"]["twin"]
                conversation = {k: v for k, v in report.items() if k.startswith("conversation/")}
        out["methods"][method] = per_stat
        if conversation:
            out.setdefault("conversation", {})[method] = conversation
        summary = ", ".join(f"{k} {statistics.fmean(per_stat[k]):.3f}" for k in STATS if k in per_stat)
        print(f"{name} {method}: {summary}", flush=True)
    return out


def generation_speed() -> dict:
    import numpy as np

    from infragym.datasets.llm_traces import fit_workload, load_azure_trace

    trace = load_azure_trace(data_dir() / "llm_traces" / "azure_conv_splitwise.csv")
    model = fit_workload(trace)
    best = float("inf")
    for k in range(3):
        started = time.perf_counter()
        twin = model.generate(1_000_000, np.random.default_rng(k))
        best = min(best, time.perf_counter() - started)
    assert len(twin) == 1_000_000
    return {"generate_1m_s": best}


def _finite(value):
    """NaN (a statistic undefined for a trace, e.g. no failures) as null: JSON has no NaN."""
    import math

    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    names = ["burstgpt_like"]
    if (data_dir() / "llm_traces").is_dir():
        names = ["azure_conv", "azure_code", *names]
    result = {
        "seeds": args.seeds,
        "loadavg_start": os.getloadavg(),
        "traces": {name: trace_fidelity(name, args.seeds) for name in names},
    }
    if "azure_conv" in names:
        result["speed"] = generation_speed()
    result["loadavg_end"] = os.getloadavg()
    write_result(RESULT, _finite(result))
    return finish(RESULT, check(result))


if __name__ == "__main__":
    sys.exit(main())
