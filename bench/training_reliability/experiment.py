"""``python train.py experiment=training_reliability`` end to end, timed (goal <= 10 minutes on 2
cores), and the learned policy against Young/Daly on the held-out seeds it evaluates (3 seeds of
54 days per scenario; means with 95% bootstrap intervals from ``metrics.json``).

    python bench/training_reliability/experiment.py
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench._common import Benchmark, Check, finish, timed_train, write_result
from infragym.envs.training.strategies import POLICIES as NAMED_POLICIES

BENCHMARKS = (Benchmark("training_reliability_experiment", minutes=8),)
RESULT = "training_reliability_experiment"
GOAL_WALL_S = 600
ISSUE = 17
SCENARIOS = ("llama3", "weibull_hetero")
POLICIES = (*NAMED_POLICIES, "daly_two_stage", "daly_lazy", "daly_inmemory_ec", "learned")
YOUNG_DALY = ("young_daly", "daly_two_stage", "daly_lazy", "daly_inmemory_ec")


def check(result: dict) -> list[Check]:
    checks = [
        Check(
            "python train.py experiment=training_reliability",
            f"{result['wall_s']:.0f} s (load {result['loadavg'][0]:.1f})",
            f"<= {GOAL_WALL_S} s",
            result["wall_s"] <= GOAL_WALL_S,
        )
    ]
    for scenario in SCENARIOS:
        r = result["scenarios"][scenario]
        best = max(YOUNG_DALY, key=lambda p: r[p]["ettr"])
        checks.append(
            Check(
                f"learned vs best Young/Daly tier ({best}), {scenario}, held-out seeds",
                f"{r['learned']['ettr']:.4f} vs {r[best]['ettr']:.4f}",
                "learned >= Young/Daly (reported)",
                r["learned"]["ettr"] >= r[best]["ettr"],
                open_issue=ISSUE,
            )
        )
    return checks


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        seconds, metrics = timed_train(["experiment=training_reliability"], Path(tmp))
    scenarios = {}
    for scenario in SCENARIOS:
        scenarios[scenario] = {
            policy: {
                key: metrics[f"test/{scenario}/{policy}/{key}"]
                for key in ("ettr", "ettr/ci_low", "ettr/ci_high", "goodput")
                if f"test/{scenario}/{policy}/{key}" in metrics
            }
            | {
                k.rsplit("/", 1)[1]: v
                for k, v in metrics.items()
                if k.startswith(f"test/{scenario}/{policy}/lost_hours_") and "/ci_" not in k
            }
            for policy in POLICIES
        }
    result = {
        "command": "python train.py experiment=training_reliability",
        "wall_s": seconds,
        "fit_s": metrics.get("time/fit_s"),
        "loadavg": os.getloadavg(),
        "scenarios": scenarios,
    }
    write_result(RESULT, result)
    return finish(RESULT, check(result))


if __name__ == "__main__":
    sys.exit(main())
