"""Deoxys quality on 5 seeds of the default experiment (20k logged events, 20k test events),
with the mean and 95% bootstrap interval over seeds of every metric.

    python bench/deoxys/quality.py [--seeds 0 1 2 3 4]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

# Run as a script, this file's folder is on sys.path, not the checkout: put the checkout there
# so that the suite's shared helpers import as ``bench._common``.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench._common import Benchmark, Check, compose_train, finish, seed_summary, write_result

BENCHMARKS = (Benchmark("deoxys_quality", minutes=6),)

RESULT = "deoxys_quality"
# Issue 2: Deoxys removes >= 75% of the legacy-to-oracle gap in mean downtime and in interruption
# rate on every seed, and with the fallback on it is never worse than legacy.
GOAL_GAP_CLOSED = 0.75

POLICIES = ("legacy", "deoxys", "deoxys_no_fallback", "s_learner", "t_learner", "dr_policy_forest", "oracle")


def check(result: dict) -> list[Check]:
    seeds = result["per_seed"].values()
    checks = []
    for metric in ("downtime", "interruption"):
        values = [r[f"deoxys/{metric}_gap_closed"] for r in seeds]
        checks.append(
            Check(
                f"{metric} gap closed, worst seed of {len(values)}",
                f"{min(values):.3f} (mean {sum(values) / len(values):.3f})",
                f">= {GOAL_GAP_CLOSED} on every seed",
                min(values) >= GOAL_GAP_CLOSED,
            )
        )
    worse = [
        seed
        for seed, r in result["per_seed"].items()
        if r["deoxys/downtime_min"] > r["legacy/downtime_min"]
        or r["deoxys/interruption_rate"] > r["legacy/interruption_rate"]
        or r["deoxys/objective"] > r["legacy/objective"]
    ]
    checks.append(
        Check(
            "with the fallback, never worse than legacy",
            f"worse on seeds {worse}" if worse else "never worse",
            "never worse on any seed",
            not worse,
        )
    )
    return checks


def main() -> int:
    from infragym.models.deoxys.task import TEST_COLUMNS as KEYS
    from infragym.runner import run_train

    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    args = parser.parse_args()
    per_seed = {}
    for seed in args.seeds:
        with tempfile.TemporaryDirectory() as tmp:
            cfg = compose_train(["experiment=deoxys", "logger=none", "export=false", f"seed={seed}"], Path(tmp))
            started = time.perf_counter()
            run_train(cfg)
            seconds = time.perf_counter() - started
            metrics = json.loads((Path(tmp) / "metrics.json").read_text())
        row = {f"{p}/{k}": metrics[f"test/{p}/{k}"] for p in POLICIES for k in KEYS}
        row |= {k: v for k, v in metrics.items() if k.startswith(("val/", "time/"))}
        row["test/deoxys/fallback_rate"] = metrics["test/deoxys/fallback_rate"]
        row["run_seconds"] = seconds
        per_seed[seed] = row
        print(
            f"seed {seed}: downtime gap closed {row['deoxys/downtime_gap_closed']:.3f}, "
            f"interruption gap closed {row['deoxys/interruption_gap_closed']:.3f}, "
            f"objective deoxys {row['deoxys/objective']:.2f} vs legacy {row['legacy/objective']:.2f} "
            f"({seconds:.0f} s)",
            flush=True,
        )
    result = {"per_seed": per_seed, "over_seeds": seed_summary(per_seed)}
    write_result(RESULT, result)
    return finish(RESULT, check(result))


if __name__ == "__main__":
    sys.exit(main())
