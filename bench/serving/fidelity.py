"""Fidelity of the serving cost model: calibrate on each shared GPU profile, report the error.

python bench/serving/fidelity.py
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

# Run as a script, this file's folder is on sys.path, not the checkout: put the checkout there
# so that the suite's shared helpers import as ``bench._common``.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench._common import Benchmark, Check, data_dir, finish, write_result

BENCHMARKS = (Benchmark("serving_fidelity", minutes=0.2),)

RESULT = "serving_fidelity"
# Issue 5: the calibrated cost model predicts the profiled per-iteration times within 15% mean
# absolute percentage error on each profile.
GOAL_MAPE = 0.15
PROFILES = {"a100_llama3_8b_mlp": "a100_80gb", "h100_llama2_7b_mlp": "h100"}


def check(result: dict) -> list[Check]:
    return [
        Check(
            f"cost-model MAPE on {name}",
            f"{100 * r['mape']:.1f}%",
            f"<= {100 * GOAL_MAPE:.0f}%",
            r["mape"] <= GOAL_MAPE,
        )
        for name, r in result["profiles"].items()
    ]


def main() -> int:
    from infragym.envs.serving.cost_model import calibrate

    folder = data_dir() / "gpu_profiles"
    results = {}
    for name, gpu in PROFILES.items():
        fit = calibrate(folder / f"{name}.csv", gpu)
        results[name] = {
            "gpu": gpu,
            "rows": fit.rows,
            "mape": fit.mape,
            "mape_uncalibrated": fit.mape_uncalibrated,
            "per_tp_mape": fit.per_tp_mape,
            "efficiency": dataclasses.asdict(fit.efficiency),
        }
        before = 100 * fit.mape_uncalibrated
        print(f"{name} on {gpu}: MAPE {100 * fit.mape:.1f}% (uncalibrated {before:.1f}%), {fit.efficiency}")
    result = {"profiles": results, "goal_mape": GOAL_MAPE}
    write_result(RESULT, result)
    return finish(RESULT, check(result))


if __name__ == "__main__":
    sys.exit(main())
