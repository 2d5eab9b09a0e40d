"""Calibrate each application's contention exponent to the paper's Table III P minimum.

The one free parameter per application, ``gamma`` (``applications.py``), scales how strongly the
mechanisms' raw slowdown reaches its performance metric. It is set by bisection so that the
0.5th percentile of the simulated P of the application's executions equals Table III's minimum
P (the minimum over ~3,000-4,800 runs in the paper; a low percentile of a smaller sample is the
stable counterpart). Only P is simulated here (no telemetry), and no model is trained: the data
is calibrated to a published fact, never to a model's score.

    python -m infragym.envs.colocation.calibration          # prints the exponents
"""

from __future__ import annotations

import numpy as np

from infragym.envs.colocation.applications import APPLICATION_NAMES, APPLICATIONS
from infragym.envs.colocation.simulator import ColocationSimulator

QUANTILE = 0.005


def p_quantile(app: str, gamma: float, *, n: int = 600, seed: int = 0, **simulator: object) -> float:
    sim = ColocationSimulator(n_executions=n, applications=[app], gamma={app: gamma}, **simulator)  # type: ignore[arg-type]
    return float(np.quantile(sim.simulate(np.random.default_rng(seed), telemetry=False).perf, QUANTILE))


def calibrate(app: str, *, steps: int = 14, **simulator: object) -> float:
    """gamma in [0.01, 20] whose P quantile matches Table III's P minimum (log-space bisection)."""
    target = APPLICATIONS[app].p_range[0]
    lo, hi = np.log(0.01), np.log(20.0)
    for _ in range(steps):
        mid = 0.5 * (lo + hi)
        if p_quantile(app, float(np.exp(mid)), **simulator) > target:
            lo = mid  # not enough slowdown yet
        else:
            hi = mid
    return round(float(np.exp(0.5 * (lo + hi))), 3)


def main() -> None:
    for app in APPLICATION_NAMES:
        gamma = calibrate(app)
        print(f"{app}: gamma {gamma} (P quantile {p_quantile(app, gamma):.3f}, Table III min {APPLICATIONS[app].p_range[0]})")


if __name__ == "__main__":
    main()
