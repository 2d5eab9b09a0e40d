"""Fidelity of the serving cost model: calibrate on each shared GPU profile, report the error.

Goal (issue 5): within 15% mean absolute percentage error on each profile.

    python bench/serving_fidelity.py
"""

from __future__ import annotations

import dataclasses

from _common import ROOT, write_result

from infragym.envs.serving.cost_model import calibrate

PROFILES = {"a100_llama3_8b_mlp": "a100_80gb", "h100_llama2_7b_mlp": "h100"}


def main() -> None:
    folder = ROOT.parent / "shared" / "data" / "gpu_profiles"
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
    write_result("serving_fidelity", {"profiles": results, "goal_mape": 0.15})


if __name__ == "__main__":
    main()
