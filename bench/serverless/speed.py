"""Serverless simulator speed (issue 18): a month of a generated region, millions of requests,
replayed under a fixed keep-alive, the hybrid histogram and the oracle, timed on one core.

    taskset -c 1 python bench/serverless/speed.py [--functions 150] [--days 30]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench._common import Benchmark, Check, finish, write_result

BENCHMARKS = (Benchmark("serverless_speed", minutes=2),)
RESULT = "serverless_speed"
GOAL_S = 60.0  # issue 18: a month of a region's trace (millions of requests) in under a minute on one core


def check(result: dict) -> list[Check]:
    checks = []
    for policy, seconds in result["simulate_s"].items():
        checks.append(
            Check(
                f"simulate {result['requests'] / 1e6:.1f}M requests ({result['days']} days), {policy}",
                f"{seconds:.1f} s",
                f"< {GOAL_S:g} s on one core",
                seconds < GOAL_S,
            )
        )
    return checks


def main() -> int:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import numpy as np

    from infragym.envs.serverless.generator import cold_start_times, generate_region
    from infragym.envs.serverless.policies import POLICIES, run_policy

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--functions", type=int, default=150)
    parser.add_argument("--days", type=int, default=30)
    args = parser.parse_args()
    started = time.perf_counter()
    trace = generate_region(args.functions, args.days, np.random.default_rng(0))
    cold, _ = cold_start_times(trace, np.random.default_rng(1))
    generate_s = time.perf_counter() - started
    run_policy(POLICIES["fixed_1min"], trace.window(0, 3600.0), cold[: len(trace.window(0, 3600.0))])  # compile
    timings, metrics = {}, {}
    for name in ("fixed_1min", "fixed_10min", "hybrid_histogram", "oracle"):
        started = time.perf_counter()
        result = run_policy(POLICIES[name], trace, cold)  # windows + simulation
        timings[name] = time.perf_counter() - started
        metrics[name] = result.metrics()
        print(f"{name}: {len(trace):,} requests in {timings[name]:.1f} s; cold-start rate {result.cold_start_rate:.4f}")
    result = {
        "requests": len(trace),
        "functions": args.functions,
        "days": args.days,
        "generate_s": generate_s,
        "simulate_s": timings,
        "metrics": metrics,
        "cpu_affinity": sorted(os.sched_getaffinity(0)),
        "loadavg": os.getloadavg(),
    }
    write_result(RESULT, result)
    return finish(RESULT, check(result))


if __name__ == "__main__":
    sys.exit(main())
