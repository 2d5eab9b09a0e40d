"""Calibrate each application's contention exponent to the paper's Table III P minimum.

The one free parameter per application, ``gamma`` (``applications.py``), scales how strongly the
mechanisms' raw slowdown reaches its performance metric. It is set by bisection so that the
minimum simulated P over as many executions as the paper ran of that application (Table III:
2,849-4,862) equals Table III's minimum P. Only P is simulated here (no telemetry), and no model
is trained: the data is calibrated to a published fact, never to a model's score.

    python -m infragym.envs.colocation.calibration          # prints the exponents
"""

from __future__ import annotations

import numpy as np

from infragym.envs.colocation.applications import APPLICATION_NAMES, APPLICATIONS
from infragym.envs.colocation.simulator import ColocationSimulator



def p_minimum(app: str, gamma: float, *, n: int | None = None, seed: int = 0, **simulator: object) -> float:
    """The minimum P over ``n`` executions of ``app`` (default: as many as the paper ran)."""
    n = n or APPLICATIONS[app].runs
    sim = ColocationSimulator(n_executions=n, applications=[app], gamma={app: gamma}, chunk=256, **simulator)  # type: ignore[arg-type]
    return float(sim.simulate(np.random.default_rng(seed), telemetry=False).perf.min())


def calibrate(app: str, *, steps: int = 11, **simulator: object) -> float:
    """gamma in [0.01, 20] whose minimum P matches Table III's (log-space bisection)."""
    target = APPLICATIONS[app].p_range[0]
    lo, hi = np.log(0.01), np.log(20.0)
    for _ in range(steps):
        mid = 0.5 * (lo + hi)
        if p_minimum(app, float(np.exp(mid)), **simulator) > target:
            lo = mid  # not enough slowdown yet
        else:
            hi = mid
    return round(float(np.exp(0.5 * (lo + hi))), 3)


def main() -> None:
    for app in APPLICATION_NAMES:
        gamma = calibrate(app)
        print(f"{app}: gamma {gamma} (P min {p_minimum(app, gamma):.3f}, Table III min {APPLICATIONS[app].p_range[0]})", flush=True)


if __name__ == "__main__":
    main()
