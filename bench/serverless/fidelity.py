"""Serverless generator fidelity (issue 18): the distributions the generator is calibrated on,
each next to the paper's value.

    python bench/serverless/fidelity.py
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench._common import Benchmark, Check, finish, write_result

BENCHMARKS = (Benchmark("serverless_fidelity", minutes=1),)
RESULT = "serverless_fidelity"
# (measured key, paper value, relative tolerance or None: reported only, source)
TARGETS = {
    "cold_start_mean_s": (3.24, 0.05, "EuroSys'25: cold-start time LogNormal, mean 3.24 s"),
    "cold_start_sd_s": (7.10, 0.15, "EuroSys'25: sd 7.10 s"),
    "region1_p90_s": (7.0, 0.05, "EuroSys'25: Region 1 up to ~7 s (read as the 90th percentile)"),
    "region2_p90_s": (3.0, 0.05, "EuroSys'25: Region 2 up to ~3 s"),
    "region1_dependency_plus_scheduling_share": (
        0.5,
        None,
        "EuroSys'25: Region 1 dominated by dependency deployment and scheduling (> half)",
    ),
    "region2_pod_allocation_share": (0.5, None, "EuroSys'25: Region 2 dominated by pod allocation (> half)"),
    "share_functions_at_most_hourly": (0.45, 0.1, "ATC'20: 45% of apps invoked at most once per hour"),
    "share_functions_at_most_per_minute": (0.81, 0.1, "ATC'20: 81% at most once per minute"),
    "cold_start_iat_mean_s": (1.25, None, "EuroSys'25: cold-start inter-arrival Weibull, mean 1.25 s (a whole region)"),
    "cold_start_iat_cv": (3.66 / 1.25, None, "EuroSys'25: sd 3.66 s / mean 1.25 s"),
    "pod_utility_median_1min": (4.0, None, "EuroSys'25: pod utility ratio median ~4 (1-minute keep-alive)"),
    "pod_utility_below_1_1min": (0.2, None, "EuroSys'25: ~20% of pods below 1"),
}


def check(result: dict) -> list[Check]:
    out = []
    for key, (paper, tolerance, source) in TARGETS.items():
        value = result["measured"][key]
        if tolerance is None:
            met = None
            if key.endswith("_share"):
                met = value > 0.5
            goal = f"paper {paper:g}" + (" (> 0.5)" if met is not None else " (reported)")
        else:
            met = abs(value - paper) <= tolerance * paper
            goal = f"paper {paper:g} +-{100 * tolerance:.0f}%"
        out.append(Check(f"{key}: {source}", f"{value:.3g}", goal, met))
    return out


def main() -> int:
    import numpy as np

    from infragym.datasets.serverless import InvocationTrace
    from infragym.envs.serverless.generator import cold_start_times, generate_region
    from infragym.envs.serverless.policies import POLICIES, run_policy

    n = 1_000_000
    one = InvocationTrace(
        np.zeros(n), np.zeros(n, np.int64), np.zeros(n), ("f",), np.array([128.0]), runtime=("python",)
    )
    total, _ = cold_start_times(one, np.random.default_rng(0))
    r1, p1 = cold_start_times(one, np.random.default_rng(1), "region1")
    r2, p2 = cold_start_times(one, np.random.default_rng(2), "region2")
    shares1, shares2 = p1.sum(0) / p1.sum(), p2.sum(0) / p2.sum()
    popularity = generate_region(5000, 1, np.random.default_rng(3)).invocations_per_function()
    region = generate_region(150, 7, np.random.default_rng(4))
    cold, _ = cold_start_times(region, np.random.default_rng(5))
    result = run_policy(POLICIES["fixed_1min"], region, cold, measure_from_s=86_400.0)
    cold_times = np.sort(region.arrival_s[result.cold & result.measured])
    iat = np.diff(cold_times)
    ratio = result.pod_utility_ratio()
    measured = {
        "cold_start_mean_s": float(total.mean()),
        "cold_start_sd_s": float(total.std()),
        "region1_p90_s": float(np.quantile(r1, 0.9)),
        "region2_p90_s": float(np.quantile(r2, 0.9)),
        "region1_dependency_plus_scheduling_share": float(shares1[2] + shares1[3]),
        "region2_pod_allocation_share": float(shares2[0]),
        "share_functions_at_most_hourly": float(np.mean(popularity <= 24)),
        "share_functions_at_most_per_minute": float(np.mean(popularity <= 1440)),
        "cold_start_iat_mean_s": float(iat.mean()),
        "cold_start_iat_cv": float(iat.std() / iat.mean()),
        "pod_utility_median_1min": float(np.median(ratio)),
        "pod_utility_below_1_1min": float(np.mean(ratio < 1)),
    }
    for key, value in measured.items():
        print(f"{key}: {value:.4g} (paper {TARGETS[key][0]:.4g})")
    out = {
        "measured": measured,
        "paper": {k: v[0] for k, v in TARGETS.items()},
        "sources": {k: v[2] for k, v in TARGETS.items()},
        "region": {
            "functions": 150,
            "days": 7,
            "requests": len(region),
            "cold_start_rate_1min": result.cold_start_rate,
        },
    }
    write_result(RESULT, out)
    return finish(RESULT, check(out))


if __name__ == "__main__":
    sys.exit(main())
