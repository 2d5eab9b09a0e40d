"""Speed of the serving kernel: 1,000,000 BurstGPT-like requests on 8 replicas of
Llama-3.1-8B on H100 (FCFS) on one core. Reports simulated requests per second, which no
published simulator reports, so the figure is ours to set.

    python bench/serving/speed.py [--requests 1000000] [--rate 200] [--router round_robin]
    python bench/serving_speed.py --router least_outstanding     # the same (issue 14's name)

The compiled kernels (numba, cached on disk) are warmed up on a small run first; the warm-up's
seconds are reported apart. The load average is recorded: the machine is shared.
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
# wall time on one core with peak memory <= 2 GB.
GOAL_WALL_S = 30
GOAL_PEAK_MB = 2048
GOAL_SETTING = {"requests": 1_000_000, "replicas": 8, "router": "round_robin", "rate": 200.0}
# Issue 14 (open): the same in <= 20 s and <= 1 GB, for round-robin and least-outstanding routing.
KERNEL_ISSUE = 14
KERNEL_GOAL_WALL_S = 20
KERNEL_GOAL_PEAK_MB = 1024
KERNEL_ROUTERS = ("round_robin", "least_outstanding")


def result_name(router: str, rate: float) -> str:
    return f"serving_speed_{router}" + ("" if rate == 200.0 else f"_rate{rate:g}")


def check(result: dict) -> list[Check]:
    wall, peak = result["wall_s"], result["peak_rss_mb"]
    measured = f"{wall:.1f} s ({result['requests_per_s']:,.0f} requests/s), {peak:.0f} MB"
    scale = ("requests", "replicas", "rate")
    if any(result[k] != GOAL_SETTING[k] for k in scale) or result["router"] not in KERNEL_ROUTERS:
        return [
            Check(
                f"{result['requests']:,} requests, {result['router']}, {result['rate']:g} req/s",
                measured,
                "reported",
                None,
            )
        ]
    router = result["router"].replace("_", "-")
    checks = []
    if result["router"] == GOAL_SETTING["router"]:
        checks.append(
            Check(
                "1M requests, 8 replicas, round-robin, 200 req/s",
                measured,
                f"<= {GOAL_WALL_S} s, <= {GOAL_PEAK_MB / 1024:g} GB",
                wall <= GOAL_WALL_S and peak <= GOAL_PEAK_MB,
            )
        )
    met = wall <= KERNEL_GOAL_WALL_S and peak <= KERNEL_GOAL_PEAK_MB
    checks.append(
        Check(
            f"1M requests, 8 replicas, {router}, 200 req/s (load {result.get('load_average', [float('nan')])[0]:.1f})",
            measured,
            f"<= {KERNEL_GOAL_WALL_S} s, <= {KERNEL_GOAL_PEAK_MB / 1024:g} GB",
            met,
            open_issue=None if met else KERNEL_ISSUE,
        )
    )
    return checks


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
    from infragym.envs.serving.cluster import ServingCluster
    from infragym.envs.serving.simulator import ReplicaConfig

    config = ReplicaConfig(gpu="h100", model="llama3.1_8b")
    started = time.perf_counter()
    ServingCluster(replica=config, n_replicas=2, router=args.router).run(
        burstgpt_like(300, np.random.default_rng(1), rate=args.rate)
    )  # compile (or load) the kernels
    warmup_s = time.perf_counter() - started
    trace = burstgpt_like(args.requests, np.random.default_rng(0), rate=args.rate)
    cluster = ServingCluster(replica=config, n_replicas=args.replicas, router=args.router)
    load_before = os.getloadavg()
    started, cpu_started = time.perf_counter(), time.process_time()
    result = cluster.run(trace)
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    load = os.getloadavg()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    m = result.metrics
    print(
        f"{args.requests:,} requests, {args.replicas} replicas, {args.router}: {seconds:.1f} s "
        f"({args.requests / seconds:,.0f} requests/s simulated, {cpu_seconds:.1f} s CPU), peak RSS {peak_mb:.0f} MB; "
        f"{sum(r.iterations for r in result.replicas):,} iterations, throughput {m['throughput_rps']:.1f} req/s, "
        f"p99 TTFT {m.get('ttft_s_p99', float('nan')):.3f} s, KV mean {m['kv_utilisation_mean']:.2f}; "
        f"load average {load_before[0]:.1f} -> {load[0]:.1f}"
    )
    payload = {
        "requests": args.requests,
        "rate": args.rate,
        "replicas": args.replicas,
        "router": args.router,
        "wall_s": seconds,
        "cpu_s": cpu_seconds,
        "jit_warmup_s": warmup_s,
        "requests_per_s": args.requests / seconds,
        "peak_rss_mb": peak_mb,
        "load_average_before": list(load_before),
        "load_average": list(load),
        "iterations": sum(r.iterations for r in result.replicas),
        "metrics": m,
        "goal_wall_s": GOAL_WALL_S,
        "goal_peak_mb": GOAL_PEAK_MB,
        "kernel_goal_wall_s": KERNEL_GOAL_WALL_S,
        "kernel_goal_peak_mb": KERNEL_GOAL_PEAK_MB,
    }
    name = result_name(args.router, args.rate)
    write_result(name, payload)
    return finish(name, check(payload))


if __name__ == "__main__":
    sys.exit(main())
