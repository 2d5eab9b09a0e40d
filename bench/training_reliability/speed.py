"""Simulator speed (issue 17): 54 days of a 16,384-GPU job under Llama 3's failure rates, one
run per strategy on one core (pinned when ``taskset`` is available), with the load average.

    taskset -c 1 python bench/training_reliability/speed.py
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench._common import Benchmark, Check, finish, write_result

BENCHMARKS = (Benchmark("training_reliability_speed", minutes=1),)
RESULT = "training_reliability_speed"
GOAL_S = 10.0  # simulating 54 days of a 16,384-GPU job takes <= 10 s on one core


def check(result: dict) -> list[Check]:
    worst = max(result["seconds"], key=result["seconds"].__getitem__)
    seconds = result["seconds"][worst]
    return [
        Check(
            f"54 days x 16,384 GPUs, slowest strategy ({worst})",
            f"{seconds:.2f} s (load {result['loadavg'][0]:.1f})",
            f"<= {GOAL_S:g} s",
            seconds <= GOAL_S,
        )
    ]


def main() -> int:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from infragym.envs.training import calibration as cal
    from infragym.envs.training.failures import SCENARIOS
    from infragym.envs.training.strategies import make_simulator, run_rule, strategies

    job = cal.JobSpec()
    named = strategies(job)
    seconds, ettr, events = {}, {}, {}
    for scenario in ("llama3", "weibull_hetero"):
        for name, strategy in named.items():
            started = time.perf_counter()
            sim = make_simulator(job, SCENARIOS[scenario], strategy, horizon_s=cal.LLAMA3_DAYS * cal.DAY, seed=123)
            result = run_rule(sim, strategy.rule)
            key = f"{scenario}/{name}"
            seconds[key] = time.perf_counter() - started
            ettr[key] = result["ettr"]
            events[key] = result["failures"] + result["checkpoints"]
    affinity = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    result = {"seconds": seconds, "ettr": ettr, "events": events, "loadavg": os.getloadavg(), "cpus": affinity}
    write_result(RESULT, result)
    return finish(RESULT, check(result))


if __name__ == "__main__":
    sys.exit(main())
