"""The simulator beside the paper's facts about CloudPerfTrace (Table III): each application's
P range (min, max) and static share, at the paper's scale of runs per application (P only, no
telemetry: the calibration's own sample is different, seed 1 here vs 0 there), and the execution
lengths. The baselines' error regime (linear regression far worse than trees, random forest near
11 pp) is read from ``cloudformer_quality`` by the page. Nothing here trains a model.

    python bench/cloudformer/fidelity.py                 # 38,704 executions, about a minute
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np

from bench._common import Benchmark, Check, finish, write_result

BENCHMARKS = (Benchmark("cloudformer_fidelity", minutes=2),)
P_TOLERANCE = 0.05  # |simulated - paper| of an application's P min or max (P units)
SHARE_TOLERANCE = 0.05


def check(result: dict) -> list[Check]:
    """P min: the median over applications of |simulated - Table III| within the tolerance (the
    sample minimum of a long tail varies between samples, so the worst application is reported,
    not judged); P max is not calibrated (reported); static shares within their tolerance."""
    apps = result["applications"]
    p_min_off = {a: abs(v["p_min"] - v["paper_p_min"]) for a, v in apps.items()}
    p_max_off = {a: abs(v["p_max"] - v["paper_p_max"]) for a, v in apps.items()}
    share_off = max(abs(a["static_share"] - a["paper_static_share"]) for a in apps.values())
    median_min = float(np.median(list(p_min_off.values())))
    worst_min, worst_max = max(p_min_off, key=p_min_off.get), max(p_max_off, key=p_max_off.get)
    tolerance = f"<= {P_TOLERANCE}"
    return [
        Check(
            "P min vs Table III, median over applications", f"{median_min:.3f}", tolerance, median_min <= P_TOLERANCE
        ),
        Check("P min vs Table III, worst application", f"{p_min_off[worst_min]:.3f} ({worst_min})", tolerance, None),
        Check(
            "P max vs Table III (not calibrated)",
            f"max |diff| {p_max_off[worst_max]:.3f} ({worst_max})",
            tolerance,
            None,
        ),
        Check(
            "static share vs Table III",
            f"max |diff| {share_off:.3f}",
            f"<= {SHARE_TOLERANCE}",
            share_off <= SHARE_TOLERANCE,
        ),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--executions", type=int, default=38704)  # paper: 38,704 runs
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    from infragym.envs.colocation import APPLICATIONS, ColocationSimulator

    started = time.perf_counter()
    sim = ColocationSimulator(n_executions=args.executions, min_seconds=60, max_seconds=180, chunk=256)
    ex = sim.simulate(np.random.default_rng(args.seed), telemetry=False)
    apps = {}
    for name, app in APPLICATIONS.items():
        p = ex.perf[ex.application == name]
        apps[name] = {
            "runs": len(p),
            "paper_runs": app.runs,
            "p_min": float(p.min()),
            "p_q01": float(np.quantile(p, 0.01)),
            "p_median": float(np.median(p)),
            "p_q99": float(np.quantile(p, 0.99)),
            "p_max": float(p.max()),
            "paper_p_min": app.p_range[0],
            "paper_p_max": app.p_range[1],
            "static_share": float(np.mean(ex.scenario[ex.application == name] == "static")),
            "paper_static_share": app.static_share,
            "metric": app.metric,
        }
    result = {
        "applications": apps,
        "executions": args.executions,
        "p_overall": {"mean": float(ex.perf.mean()), "median": float(np.median(ex.perf))},
        "seconds": time.perf_counter() - started,
        "loadavg": list(os.getloadavg()),
    }
    write_result("cloudformer_fidelity", result)
    return finish("cloudformer_fidelity", check(result))


if __name__ == "__main__":
    sys.exit(main())
