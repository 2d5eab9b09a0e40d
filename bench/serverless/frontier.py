"""Serverless keep-alive frontier (issue 18): cold-start rate vs wasted memory of every policy on
held-out functions and days, and the learned policy vs the hybrid histogram at equal memory.

Fits ``experiment=serverless`` once, then replays the held-out functions of ``--seeds`` test
regions (the training region's, then fresh regions') over the held-out days under: fixed
keep-alive from 1 to 240 minutes, the hybrid histogram, the oracle, PPO, and the learned
predictor through every candidate rule (its frontier; the experiment's ``learned`` is the rule
chosen on validation). The learned frontier's cold-start rate at the hybrid's wasted memory is
interpolated (log memory) per region.

    python bench/serverless/frontier.py [--seeds 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench._common import Benchmark, Check, compose_train, finish, write_result

BENCHMARKS = (Benchmark("serverless_frontier", minutes=8),)
RESULT = "serverless_frontier"
FIXED_MINUTES = (1, 2, 5, 10, 20, 30, 60, 120, 240)


def check(result: dict) -> list[Check]:
    from infragym.evaluation import bootstrap_ci

    ratio = bootstrap_ci(result["learned_vs_hybrid_at_equal_memory"])
    chosen = bootstrap_ci(result["chosen_learned_vs_hybrid"]["cold_start_rate"])
    memory = bootstrap_ci(result["chosen_learned_vs_hybrid"]["wasted_gb_s"])
    return [
        Check(
            "learned frontier's cold-start rate at the hybrid histogram's wasted memory, / hybrid's",
            f"{ratio.mean:.2f} [{ratio.low:.2f}, {ratio.high:.2f}]",
            "< 1 (fewer cold starts at equal memory)",
            ratio.high < 1.0,
            open_issue=18,
        ),
        Check(
            "the experiment's learned rule vs hybrid: cold-start rate ratio (wasted-memory ratio)",
            f"{chosen.mean:.2f} [{chosen.low:.2f}, {chosen.high:.2f}] ({memory.mean:.2f})",
            "reported",
            None,
        ),
    ]


def frontier_rate_at(points: list[tuple[float, float]], memory: float) -> float:
    """The lower envelope's cold-start rate at ``memory`` (interpolated in log memory); beyond
    the points' range, the nearest end."""
    import numpy as np

    pts = sorted(points)
    envelope: list[tuple[float, float]] = []
    for waste, rate in pts:  # Pareto: keep points that lower the rate as memory grows
        if not envelope or rate < envelope[-1][1]:
            envelope.append((waste, rate))
    xs = np.log(np.maximum([p[0] for p in envelope], 1e-9))
    ys = np.array([p[1] for p in envelope])
    return float(np.interp(np.log(max(memory, 1e-9)), xs, ys))


def main() -> int:
    from infragym.envs.serverless.policies import POLICIES, FixedKeepAlive, run_policy, trace_features
    from infragym.envs.serverless.simulator import simulate
    from infragym.logging import RunLogger
    from infragym.models.serverless.learned import candidate_rules
    from infragym.runner import build_task

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = compose_train(["experiment=serverless", "logger=none", f"task.eval_seeds={args.seeds}"], Path(tmp))
        task = build_task(cfg)
        task.fit(RunLogger())
    start = task.dataset.test_start_s
    regions, ratios, chosen_rate, chosen_waste = [], [], [], []
    predictor = task.learned.predictor
    for k in range(args.seeds):
        trace, cold = task.test_trace(k)
        points: dict[str, dict] = {}

        def record(name: str, result, points: dict = points) -> None:
            points[name] = {"cold_start_rate": result.cold_start_rate, "wasted_gb_s": result.wasted_gb_s}

        for minutes in FIXED_MINUTES:
            record(f"fixed_{minutes}min", run_policy(FixedKeepAlive(60.0 * minutes), trace, cold, measure_from_s=start))
        for name in ("hybrid_histogram", "oracle"):
            record(name, run_policy(POLICIES[name], trace, cold, measure_from_s=start))
        record("learned", run_policy(task.learned, trace, cold, measure_from_s=start))
        if task.ppo is not None:
            record("ppo", run_policy(task.ppo, trace, cold, measure_from_s=start))
        quantiles = predictor.quantiles(trace_features(trace))
        memory_gb = trace.memory_mb[trace.function] / 1024.0
        learned_points = []
        for rule in candidate_rules(predictor.levels):
            prewarm, keep = rule.windows(quantiles, predictor.levels, memory_gb)
            r = simulate(trace, cold, prewarm_s=prewarm, keep_alive_s=keep, measure_from_s=start)
            learned_points.append((r.wasted_gb_s, r.cold_start_rate))
            label = ",".join(f"{v}" for k, v in rule.as_dict().items() if k != "kind")
            points[f"learned[{label}]"] = {
                "cold_start_rate": r.cold_start_rate,
                "wasted_gb_s": r.wasted_gb_s,
            }
        hybrid = points["hybrid_histogram"]
        at_equal = frontier_rate_at(learned_points, hybrid["wasted_gb_s"])
        fixed_at_equal = frontier_rate_at(
            [
                (points[f"fixed_{m}min"]["wasted_gb_s"], points[f"fixed_{m}min"]["cold_start_rate"])
                for m in FIXED_MINUTES
            ],
            hybrid["wasted_gb_s"],
        )
        ratios.append(at_equal / hybrid["cold_start_rate"])
        chosen_rate.append(points["learned"]["cold_start_rate"] / hybrid["cold_start_rate"])
        chosen_waste.append(points["learned"]["wasted_gb_s"] / hybrid["wasted_gb_s"])
        regions.append(
            {
                "requests": len(trace),
                "points": points,
                "learned_frontier_at_hybrid_memory": at_equal,
                "fixed_frontier_at_hybrid_memory": fixed_at_equal,
            }
        )
        print(
            f"region {k}: hybrid {hybrid['cold_start_rate']:.4f} at {hybrid['wasted_gb_s']:.3g} GB-s; learned frontier "
            f"there {at_equal:.4f}; fixed frontier there {fixed_at_equal:.4f}; chosen learned "
            f"{points['learned']['cold_start_rate']:.4f} at {points['learned']['wasted_gb_s']:.3g} GB-s"
        )
    result = {
        "seeds": args.seeds,
        "rule": task.learned.rule.as_dict(),
        "regions": regions,
        "learned_vs_hybrid_at_equal_memory": ratios,
        "chosen_learned_vs_hybrid": {"cold_start_rate": chosen_rate, "wasted_gb_s": chosen_waste},
    }
    write_result(RESULT, result)
    return finish(RESULT, check(result))


if __name__ == "__main__":
    sys.exit(main())
