"""Deoxys quality on 5 seeds of the default experiment (20k logged events, 20k test events).

Goal (issue): Deoxys removes >= 75% of the legacy-to-oracle gap in mean downtime and in
interruption rate on every seed, and with the fallback on it is never worse than legacy.

    python bench/deoxys_quality.py [--seeds 0 1 2 3 4]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from _common import compose_train, write_result

from infragym.models.deoxys.task import TEST_COLUMNS
from infragym.runner import run_train

KEYS = TEST_COLUMNS
POLICIES = ("legacy", "deoxys", "deoxys_no_fallback", "s_learner", "t_learner", "dr_policy_forest", "oracle")


def main() -> None:
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
    checks = {
        "downtime_gap_closed_min": min(r["deoxys/downtime_gap_closed"] for r in per_seed.values()),
        "interruption_gap_closed_min": min(r["deoxys/interruption_gap_closed"] for r in per_seed.values()),
        "fallback_never_worse_than_legacy": all(
            r["deoxys/downtime_min"] <= r["legacy/downtime_min"]
            and r["deoxys/interruption_rate"] <= r["legacy/interruption_rate"]
            and r["deoxys/objective"] <= r["legacy/objective"]
            for r in per_seed.values()
        ),
    }
    checks["goal_met"] = (
        checks["downtime_gap_closed_min"] >= 0.75
        and checks["interruption_gap_closed_min"] >= 0.75
        and checks["fallback_never_worse_than_legacy"]
    )
    print(json.dumps(checks, indent=2))
    write_result("deoxys_quality", {"per_seed": per_seed, "checks": checks})


if __name__ == "__main__":
    main()
