"""CloudFormer and every baseline on the paper's protocol, as a user runs it
(``python train.py experiment=cloudformer``: simulate 440 executions in the real layout, 6
partitions of 4 unseen applications, train and tune every model, evaluate, export), one run per
seed; the paper's Table IV and V beside it, and the default run's wall-clock.

    python bench/cloudformer/quality.py                 # seed 0
    python bench/cloudformer/quality.py --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench._common import Benchmark, Check, finish, timed_train, write_result

BENCHMARKS = (
    Benchmark("cloudformer_quality", minutes=8),
    # The same with 4x the epochs for every network (the feature baselines unchanged): on
    # partition 0's validation split CloudFormer's MAE fell from 9.2 (12 epochs) to 7.2 (40) and
    # 6.0 pp (80), so the default budget leaves the networks short of convergence.
    Benchmark(
        "cloudformer_quality_long",
        (
            "--result",
            "cloudformer_quality_long",
            "logger=none",
            "trainer.max_epochs=48",
            "callbacks.early_stopping.patience=100",
        ),
        result="cloudformer_quality_long",
        minutes=25,
    ),
)

# Issue 20 goals: CloudFormer has the lowest unseen-application MAE, as in the paper (open: a
# miss is reported, not a regression); the default experiment runs in <= 8 minutes on 2 cores.
GOAL_OPEN_ISSUE = 20
GOAL_WALL_S = 480
MODELS = [
    "cloudformer",
    "cloudformer_temporal",
    "cloudformer_system",
    "lstm",
    "linear_regression",
    "gamma_glm",
    "decision_tree",
    "random_forest",
    "ridge",
]
BASELINES = [m for m in MODELS if m not in ("cloudformer", "cloudformer_temporal", "cloudformer_system")]
FLOOR = "mean"  # the training mean: reads no telemetry; shown, never a baseline to beat
KEYS = [f"test_unseen/{m}/{k}" for m in [*MODELS, FLOOR] for k in ("mae", "mae_std", "mse", "mse_std")]
KEYS += [f"test_seen/{m}/mae" for m in [*MODELS, FLOOR]] + [f"val/{m}/mae" for m in [*MODELS, FLOOR]]


def check(result: dict) -> list[Check]:
    runs = result["per_seed"]
    mean = {m: statistics.fmean(r[f"test_unseen/{m}/mae"] for r in runs.values()) for m in MODELS}
    lowest = min(mean, key=mean.get)
    best_baseline = min(BASELINES, key=mean.get)
    margin = 100.0 * (1.0 - mean["cloudformer"] / mean[best_baseline])
    wall = max(result["wall_s"].values())
    return [
        Check(
            "lowest unseen MAE (6 partitions)",
            f"{lowest} ({mean[lowest]:.2f} pp; CloudFormer {mean['cloudformer']:.2f})",
            "cloudformer",
            lowest == "cloudformer",
            open_issue=GOAL_OPEN_ISSUE,
        ),
        Check("CloudFormer vs best baseline", f"{margin:+.1f}% vs {best_baseline}", "paper: 28% vs RF", None),
        Check(
            "experiment=cloudformer wall-clock",
            f"{wall:.0f} s (load {result['loadavg'][0]:.1f})",
            f"<= {GOAL_WALL_S} s",
            wall <= GOAL_WALL_S if result["overrides"] == ["logger=none"] else None,  # longer runs: reported
        ),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--result", default="cloudformer_quality", help="result name under bench/results/")
    parser.add_argument("overrides", nargs="*", default=["logger=none"])
    args = parser.parse_args()
    per_seed, walls = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            home = Path(tempfile.mkdtemp(dir=tmp))
            wall, metrics = timed_train(["experiment=cloudformer", f"seed={seed}", *args.overrides], home)
            per_seed[str(seed)] = {k: metrics[k] for k in KEYS if k in metrics}
            per_seed[str(seed)].update(
                {k: v for k, v in metrics.items() if k.startswith(("partition", "chosen/", "params/"))}
            )
            walls[str(seed)] = wall
            print(
                f"seed {seed}: {wall:.0f} s, unseen MAE "
                + ", ".join(f"{m} {metrics[f'test_unseen/{m}/mae']:.2f}" for m in MODELS)
            )
    result = {"per_seed": per_seed, "wall_s": walls, "loadavg": list(os.getloadavg()), "overrides": args.overrides}
    write_result(args.result, result)
    return finish(args.result, check(result))


if __name__ == "__main__":
    sys.exit(main())
