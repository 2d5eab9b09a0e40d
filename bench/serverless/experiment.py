"""``python train.py experiment=serverless`` end to end, timed (issue 18: <= 10 minutes on 2 cores).

python bench/serverless/experiment.py
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench._common import Benchmark, Check, finish, timed_train, write_result

BENCHMARKS = (Benchmark("serverless_experiment", minutes=8),)
RESULT = "serverless_experiment"
GOAL_WALL_S = 600.0
POLICIES = ("fixed_1min", "fixed_10min", "fixed_20min", "hybrid_histogram", "oracle", "learned", "ppo")


def check(result: dict) -> list[Check]:
    wall = result["wall_s"]
    return [
        Check("python train.py experiment=serverless", f"{wall:.0f} s", f"<= {GOAL_WALL_S:.0f} s", wall <= GOAL_WALL_S)
    ]


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        seconds, metrics = timed_train(["experiment=serverless"], Path(tmp))
    headline = {
        f"test/{p}/{k}": metrics[f"test/{p}/{k}"]
        for p in POLICIES
        for k in ("cold_start_rate", "wasted_gb_s", "cold_start_rate/ci_low", "cold_start_rate/ci_high")
        if f"test/{p}/{k}" in metrics
    }
    analysis = {k: v for k, v in metrics.items() if k.startswith("test/analysis/")}
    print(f"python train.py experiment=serverless: {seconds:.0f} s")
    result = {"wall_s": seconds, "metrics": headline, "analysis": analysis, "loadavg": os.getloadavg()}
    write_result(RESULT, result)
    return finish(RESULT, check(result))


if __name__ == "__main__":
    sys.exit(main())
