"""Speed of the serving simulator: 1,000,000 BurstGPT-like requests on 8 replicas of
Llama-3.1-8B on H100 (FCFS, round-robin). Goal (issue 5): <= 30 s of wall time on one core,
peak memory <= 2 GB. Reports simulated requests per second.

    python bench/serving_speed.py [--requests 1000000] [--rate 200]
"""

from __future__ import annotations

import argparse
import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # one core

import resource  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from _common import write_result  # noqa: E402

from infragym.datasets.llm_traces import burstgpt_like  # noqa: E402
from infragym.envs.serving.simulator import ReplicaConfig, ServingCluster  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--replicas", type=int, default=8)
    parser.add_argument("--router", default="round_robin")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
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
    write_result(
        f"serving_speed_{args.router}" + ("" if args.rate == 200.0 else f"_rate{args.rate:g}"),
        {
            "requests": args.requests,
            "rate": args.rate,
            "replicas": args.replicas,
            "router": args.router,
            "wall_s": seconds,
            "requests_per_s": args.requests / seconds,
            "peak_rss_mb": peak_mb,
            "iterations": sum(r.iterations for r in result.replicas),
            "metrics": m,
            "goal_wall_s": 30,
            "goal_peak_mb": 2048,
        },
    )


if __name__ == "__main__":
    main()
