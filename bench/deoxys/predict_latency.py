"""Deoxys prediction latency: one event (and a batch of 1000) through a loaded export's
``predict``, one thread, as the decision service calls it (one-event frames of plain values,
``set_prediction_jobs(1)``); for the debug-size model (20 trees per forest) and the default
experiment's (100). The same calls through econml's own prediction API (``econml_predict``)
are timed too, and their decisions compared with the numpy path's.

    python bench/deoxys/predict_latency.py [--calls 500] [--runs DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# Run as a script, this file's folder is on sys.path, not the checkout: put the checkout there
# so that the suite's shared helpers import as ``bench._common``.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench._common import Benchmark, Check, compose_train, finish, write_result

BENCHMARKS = (Benchmark("deoxys_predict_latency", minutes=5),)

RESULT = "deoxys_predict_latency"
# Issue 13: the decision service answers one event with p99 <= 50 ms at concurrency 8 on 2 cores.
# Of that, one predict of the default experiment's model (100 trees per forest) gets <= 10 ms
# (p50, one thread), leaving the rest to HTTP, validation of the request and queueing.
GOAL_SINGLE_MS = 10.0
# The numpy prediction reproduces econml's: same decisions, effects and intervals to rounding.
GOAL_MAX_DIFF = 1e-12

SCALES = {"debug": ("experiment=deoxys", "debug=deoxys"), "default": ("experiment=deoxys",)}


def check(result: dict) -> list[Check]:
    checks = []
    for scale, r in result["models"].items():
        single = r["single_ms"]
        checks.append(
            Check(
                f"{scale} model ({r['n_trees']} trees/forest): one-event predict p50 / p99, one thread",
                f"{single['p50']:.1f} / {single['p99']:.1f} ms",
                f"<= {GOAL_SINGLE_MS:.0f} ms p50" if scale == "default" else "reported",
                single["p50"] <= GOAL_SINGLE_MS if scale == "default" else None,
            )
        )
        checks.append(
            Check(
                f"{scale} model: batch of 1000 events",
                f"{r['batch_ms']:.0f} ms (econml's API: {r['econml_batch_ms']:.0f} ms)",
                "reported",
                None,
            )
        )
        checks.append(
            Check(
                f"{scale} model: numpy vs econml's prediction (decisions; largest effect/interval difference)",
                f"{'identical' if r['decisions_identical'] else 'DIFFERENT'}; {r['max_abs_diff']:.1e}",
                f"identical; <= {GOAL_MAX_DIFF:.0e}",
                r["decisions_identical"] and r["max_abs_diff"] <= GOAL_MAX_DIFF,
            )
        )
    return checks


def _timings(predict: Any, frames: list[Any]) -> dict[str, float]:
    import numpy as np

    for frame in frames[:20]:  # warm-up: first-call caches (the flattened forests), allocator
        predict(frame)
    seconds = []
    for frame in frames:
        started = time.perf_counter()
        predict(frame)
        seconds.append(time.perf_counter() - started)
    ms = 1e3 * np.asarray(seconds)
    return {"p50": float(np.percentile(ms, 50)), "p99": float(np.percentile(ms, 99)), "mean": float(ms.mean())}


def _batch_ms(predict: Any, frame: Any, repeats: int) -> float:
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        predict(frame)
        seconds.append(time.perf_counter() - started)
    return 1e3 * sorted(seconds)[len(seconds) // 2]


def _max_diff(fast: Any, reference: Any) -> tuple[bool, float]:
    import numpy as np

    identical = all(
        np.array_equal(getattr(fast, k), getattr(reference, k))
        for k in ("action", "model_action", "legacy_action", "fallback", "overridden")
    )
    diff = max(
        float(np.max(np.abs(getattr(fast, k) - getattr(reference, k)), initial=0.0))
        for k in ("effects", "objective_change_lower", "objective_change_upper")
    )
    return identical, diff


def measure(predictor: Any, calls: int, seed: int) -> dict[str, Any]:
    import numpy as np
    import pandas as pd
    from threadpoolctl import threadpool_limits

    from infragym.envs.health import UnhealthyNodeSimulator

    model = predictor.model
    model.set_prediction_jobs(1)  # as the decision service does
    events = UnhealthyNodeSimulator().sample_events(max(calls, 1000), np.random.default_rng(seed)).features
    # one-event frames of plain values, as the service builds them from a request
    frames = [pd.DataFrame([record]) for record in events.iloc[:calls].to_dict("records")]
    batch = events.iloc[:1000]
    result: dict[str, Any] = {"n_trees": model.n_estimators}
    with threadpool_limits(1):
        result["single_ms"] = _timings(predictor.predict, frames)
        result["batch_ms"] = _batch_ms(predictor.predict, batch, 5)
        fast = [model.decide(f) for f in (batch, *frames[:50])]
        model.econml_predict = True
        try:
            result["econml_single_ms"] = _timings(predictor.predict, frames[: max(calls // 5, 20)])
            result["econml_batch_ms"] = _batch_ms(predictor.predict, batch, 1)
            reference = [model.decide(f) for f in (batch, *frames[:50])]
        finally:
            del model.econml_predict  # back to the class default
    compared = [_max_diff(a, b) for a, b in zip(fast, reference, strict=True)]
    result["decisions_identical"] = all(same for same, _ in compared)
    result["max_abs_diff"] = max(diff for _, diff in compared)
    return result


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=500, help="one-event predicts timed per model")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--runs", type=Path, default=None, help="keep the training runs here (an existing run's export is reused)"
    )
    parser.add_argument("--scales", nargs="+", default=list(SCALES), choices=list(SCALES))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        runs = args.runs or Path(tmp)
        if args.runs is None:
            os.environ["INFRAGYM_HOME"] = str(Path(tmp) / "home")  # a private signing key
        import infragym
        from infragym.runner import run_train

        models = {}
        for scale in args.scales:
            run = runs / scale
            if not (run / "export").is_dir():
                run_train(compose_train([*SCALES[scale], "logger=none", f"seed={args.seed}"], run))
            models[scale] = measure(infragym.load(run / "export"), args.calls, args.seed)
            r = models[scale]
            print(
                f"{scale} ({r['n_trees']} trees/forest): one event p50 {r['single_ms']['p50']:.2f} ms, "
                f"p99 {r['single_ms']['p99']:.2f} ms (econml's API: p50 {r['econml_single_ms']['p50']:.1f} ms); "
                f"1000 events {r['batch_ms']:.0f} ms (econml's API: {r['econml_batch_ms']:.0f} ms); "
                f"decisions identical: {r['decisions_identical']}, max difference {r['max_abs_diff']:.1e}"
            )
    result = {"calls": args.calls, "seed": args.seed, "threads": 1, "models": models}
    write_result(RESULT, result)
    return finish(RESULT, check(result))


if __name__ == "__main__":
    sys.exit(main())
