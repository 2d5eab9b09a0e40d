"""Deoxys at 100k logged events: fit time (goal <= 5 minutes on 2 cores) and quality.

Runs the whole ``experiment=deoxys_100k`` (baselines, evaluation on 20k fresh events) and
reports the Deoxys fit time on its own, with the quality figures at that size.

    python bench/deoxys_fit_time.py [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from _common import compose_train, write_result

from infragym.runner import run_train


def main() -> None:
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


if __name__ == "__main__":
    main()
