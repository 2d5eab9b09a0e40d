"""Speed of the serving simulator: 1,000,000 BurstGPT-like requests on 8 replicas of
Llama-3.1-8B on H100 (FCFS) on one core. Reports simulated requests per second, which no
published simulator reports, so the figure is ours to set.

    python bench/serving/speed.py [--requests 1000000] [--rate 200] [--router round_robin]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

# Run as a script, this file's folder is on sys.path, not the checkout: put the checkout there
# so that the suite's shared helpers import as ``bench._common``.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench._common import Benchmark, Check, finish, write_result

BENCHMARKS = (
    Benchmark("serving_speed", result="serving_speed_round_robin", minutes=0.7),
    Benchmark(
        "serving_speed_least_outstanding",
        ("--router", "least_outstanding"),
        result="serving_speed_least_outstanding",
        minutes=0.8,
    ),
    Benchmark("serving_speed_rate600", ("--rate", "600"), result="serving_speed_round_robin_rate600"),
)

# Issue 5: 1M requests, 8 replicas, FCFS, round-robin, about half load (200 req/s), in <= 30 s of
# wall time on one core with peak memory <= 2 GB. Other routers and loads are reported.
GOAL_WALL_S = 30
GOAL_PEAK_MB = 2048
GOAL_SETTING = {"requests": 1_000_000, "replicas": 8, "router": "round_robin", "rate": 200.0}


def result_name(router: str, rate: float) -> str:
    return f"serving_speed_{router}" + ("" if rate == 200.0 else f"_rate{rate:g}")


def check(result: dict) -> list[Check]:
    wall, peak = result["wall_s"], result["peak_rss_mb"]
    measured = f"{wall:.1f} s ({result['requests_per_s']:,.0f} requests/s), {peak:.0f} MB"
    if any(result[k] != v for k, v in GOAL_SETTING.items()):
        return [
            Check(
                f"{result['requests']:,} requests, {result['router']}, {result['rate']:g} req/s",
                measured,
                "reported",
                None,
            )
        ]
    return [
        Check(
            "1M requests, 8 replicas, round-robin, 200 req/s",
            measured,
            f"<= {GOAL_WALL_S} s, <= {GOAL_PEAK_MB / 1024:g} GB",
            wall <= GOAL_WALL_S and peak <= GOAL_PEAK_MB,
        )
    ]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--replicas", type=int, default=8)
    parser.add_argument("--router", default="round_robin")
    args = parser.parse_args()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"  # one core; set before numpy is imported
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    import resource
    import time

    import numpy as np

    from infragym.datasets.llm_traces import burstgpt_like
    from infragym.envs.serving.simulator import ReplicaConfig, ServingCluster

    trace = burstgpt_like(args.requests, np.random.default_rng(0), rate=args.rate)
    cluster = ServingCluster(
        replica=ReplicaConfig(gpu="h100", model="llama3.1_8b"), n_replicas=args.replicas, router=args.router
    )
    started = time.perf_counter()
    result = cluster.run(trace)
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    m = result.metrics
    print(
        f"{args.requests:,} requests, {args.replicas} replicas, {args.router}: {seconds:.1f} s "
        f"({args.requests / seconds:,.0f} requests/s simulated), peak RSS {peak_mb:.0f} MB; "
        f"{sum(r.iterations for r in result.replicas):,} iterations, throughput {m['throughput_rps']:.1f} req/s, "
        f"p99 TTFT {m.get('ttft_s_p99', float('nan')):.3f} s, KV mean {m['kv_utilisation_mean']:.2f}"
    )
    payload = {
        "requests": args.requests,
        "rate": args.rate,
        "replicas": args.replicas,
        "router": args.router,
        "wall_s": seconds,
        "requests_per_s": args.requests / seconds,
        "peak_rss_mb": peak_mb,
        "iterations": sum(r.iterations for r in result.replicas),
        "metrics": m,
        "goal_wall_s": GOAL_WALL_S,
        "goal_peak_mb": GOAL_PEAK_MB,
    }
    name = result_name(args.router, args.rate)
    write_result(name, payload)
    return finish(name, check(payload))


if __name__ == "__main__":
    sys.exit(main())
