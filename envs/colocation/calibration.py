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


def calibrate(app: str, *, steps: int = 11, bracket: tuple[float, float] = (0.01, 20.0), **simulator: object) -> float:
    """gamma in ``bracket`` whose minimum P matches Table III's (log-space bisection)."""
    target = APPLICATIONS[app].p_range[0]
    lo, hi = np.log(bracket[0]), np.log(bracket[1])
    for _ in range(steps):
        mid = 0.5 * (lo + hi)
        if p_minimum(app, float(np.exp(mid)), **simulator) > target:
            lo = mid  # not enough slowdown yet
        else:
            hi = mid
    return round(float(np.exp(0.5 * (lo + hi))), 3)


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("apps", nargs="*", default=list(APPLICATION_NAMES))
    parser.add_argument("--around", action="store_true", help="search [gamma / 6, gamma] around the table's value")
    parser.add_argument("--steps", type=int, default=11)
    args = parser.parse_args(argv)
    for app in args.apps:
        current = APPLICATIONS[app].gamma
        bracket = (current / 6.0, current) if args.around else (0.01, 20.0)
        gamma = calibrate(app, steps=args.steps, bracket=bracket)
        print(
            f"{app}: gamma {gamma} (P min {p_minimum(app, gamma):.3f}, Table III min {APPLICATIONS[app].p_range[0]})",
            flush=True,
        )


if __name__ == "__main__":
    main()
