"""Deoxys at 100k logged events: fit time and quality.

Runs the whole ``experiment=deoxys_100k`` (baselines, evaluation on 20k fresh events) and
reports the Deoxys fit time on its own, with the quality figures at that size.

    python bench/deoxys/fit_time.py [--seed 0]
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

from bench._common import Benchmark, Check, compose_train, finish, write_result

BENCHMARKS = (Benchmark("deoxys_fit_time", result="deoxys_fit_time_deoxys_100k", minutes=5),)

RESULT = "deoxys_fit_time_deoxys_100k"
GOAL_FIT_S = 300  # issue 2: fit time at 100k logged events <= 5 minutes on 2 cores


def check(result: dict) -> list[Check]:
    fit = result["deoxys_fit_s"]
    m = result["metrics"]
    return [
        Check(
            f"Deoxys fit on {result['n_fit_events']:,} events", f"{fit:.0f} s", f"<= {GOAL_FIT_S} s", fit <= GOAL_FIT_S
        ),
        Check(
            "gap closed at that size (downtime / interruption)",
            f"{m['test/deoxys/downtime_gap_closed']:.2f} / {m['test/deoxys/interruption_gap_closed']:.2f}",
            "reported",
            None,
        ),
    ]


def main() -> int:
    from infragym.runner import run_train

    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--experiment", default="deoxys_100k")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = compose_train([f"experiment={args.experiment}", "logger=none", f"seed={args.seed}"], Path(tmp))
        started = time.perf_counter()
        run_train(cfg)
        total = time.perf_counter() - started
        metrics = json.loads((Path(tmp) / "metrics.json").read_text())
        export_bytes = sum(p.stat().st_size for p in (Path(tmp) / "export").iterdir())
    result = {
        "experiment": args.experiment,
        "seed": args.seed,
        "n_logged_events": cfg.dataset.n_events,
        "n_fit_events": round(cfg.dataset.n_events * (1 - cfg.dataset.holdout_fraction)),
        "deoxys_fit_s": metrics["time/fit_deoxys_s"],
        "all_fits_s": metrics["time/fit_s"],
        "whole_run_s": total,
        "export_bytes": export_bytes,
        "metrics": {k: v for k, v in metrics.items() if k.startswith(("test/", "time/"))},
    }
    print(
        f"{args.experiment}: Deoxys fit {result['deoxys_fit_s']:.0f} s on {result['n_fit_events']} events; "
        f"downtime gap closed {metrics['test/deoxys/downtime_gap_closed']:.3f}, "
        f"interruption gap closed {metrics['test/deoxys/interruption_gap_closed']:.3f}; whole run {total:.0f} s"
    )
    write_result(f"deoxys_fit_time_{args.experiment}", result)
    return finish(f"deoxys_fit_time_{args.experiment}", check(result))


if __name__ == "__main__":
    sys.exit(main())
