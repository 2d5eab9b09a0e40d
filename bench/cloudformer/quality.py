"""CloudFormer vs every baseline on unseen and seen applications, and the wall-clock of the
default experiment, as a user runs it (``python train.py experiment=cloudformer``: simulate,
train all models, evaluate, plots, offline W&B, ONNX export), one run per seed (and fold).

With ``--cv`` the unseen applications rotate: the 13 applications are split into 4 folds fixed
in advance (the default experiment's unseen three, then the other ten in catalogue order, in
groups of 3, 3 and 4), and each fold is the unseen set of its own runs, so every application
is unseen once. Three unseen applications per run make the default split's ranking depend on
which three they are; the cross-validated mean is over all 13.

    python bench/cloudformer/quality.py                         # default split, seeds 0 1 2
    python bench/cloudformer/quality.py --cv --seeds 0 1 --jobs 2   # 4 folds x 2 seeds
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

# Run as a script, this file's folder is on sys.path, not the checkout: put the checkout there
# so that the suite's shared helpers import as ``bench._common``.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench._common import Benchmark, Check, finish, seed_summary, timed_train, write_result

BENCHMARKS = (
    Benchmark("cloudformer_quality", minutes=8),
    Benchmark(
        "cloudformer_quality_cv",
        ("--cv", "--jobs", "2", "logger=none"),
        result="cloudformer_quality_cv",
        minutes=50,
    ),
)

# Issue 3 goals. CloudFormer has the lowest unseen-application MAE (paper: 7.8 %, >= 28 % below the
# best baseline): never met at CPU scale, the issue is open (blocked on a GPU run and the real
# trace), so a miss is reported, not a regression; the margin is reported.
GOAL_OPEN_ISSUE = 3
GOAL_WALL_S = 360  # the default experiment trains and evaluates in <= 6 minutes on 2 CPU cores
PAPER_MARGIN_PCT = 28.0

MODELS = [
    "cloudformer",
    "lstm",
    "temporal_transformer",
    "metric_transformer",
    "ridge",
    "hist_gradient_boosting",
    "persistence",
    "mean",
]
BLACK_BOX_BASELINES = [m for m in MODELS if m not in ("cloudformer", "persistence")]
# Each network's equal-weight blend with ridge (task.blend_with): reported, never a baseline.
BLENDS = [f"{m}+ridge" for m in ("cloudformer", "lstm", "temporal_transformer", "metric_transformer")]
DEFAULT_UNSEEN = ["graph_analytics", "object_storage", "stream_processing"]


def cv_folds() -> list[list[str]]:
    """The default unseen applications, then the other ten in catalogue order in 3, 3, 4."""
    from infragym.envs.colocation.simulator import WORKLOADS

    rest = [w for w in WORKLOADS if w not in DEFAULT_UNSEEN]
    return [DEFAULT_UNSEEN, rest[:3], rest[3:6], rest[6:]]


def run(seed: int, fold: list[str] | None, tmp: Path, extra: list[str]) -> tuple[dict[str, float], float]:
    home = Path(tempfile.mkdtemp(dir=tmp))
    overrides = ["experiment=cloudformer", f"seed={seed}", *extra]
    if fold is not None:
        overrides.append(f"dataset.unseen_workloads=[{','.join(fold)}]")
    wall, metrics = timed_train(overrides, home)
    return metrics, wall


def summarise(runs: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """Mean over runs per model (and per blend, where every run has it)."""
    keys = [f"{s}/{k}" for s in ("test_unseen", "test_seen") for k in ("mae", "p95_abs_error")]
    models = MODELS + [b for b in BLENDS if all(f"test_unseen/{b}/mae" in r for r in runs)]
    return {m: {key: statistics.fmean(r[key.replace("/", f"/{m}/")] for r in runs) for key in keys} for m in models}


def check(result: dict) -> list[Check]:
    cv = "per_run" in result
    runs = result["per_run" if cv else "per_seed"]
    unseen = {m: statistics.fmean(r[f"test_unseen/{m}/mae"] for r in runs.values()) for m in MODELS}
    lowest = min(unseen, key=unseen.get)
    split = f"{len(result['folds'])} folds x {len(result['seeds'])} seeds" if cv else f"{len(runs)} seeds"
    checks = [
        Check(
            f"lowest unseen-application MAE ({split})",
            f"{lowest} {unseen[lowest]:.2f} pp; cloudformer {unseen['cloudformer']:.2f} pp",
            "cloudformer",
            lowest == "cloudformer",
            open_issue=GOAL_OPEN_ISSUE,
        ),
        Check(
            f"cloudformer vs best black-box baseline ({result['best_black_box_baseline']})",
            f"{result['margin_vs_best_baseline_pct']:+.1f}% lower MAE",
            f"reported (paper >= {PAPER_MARGIN_PCT:g}%)",
            None,
        ),
    ]
    slowest = max(result["wall_s"].values())
    if result.get("jobs", 1) == 1:
        checks.append(
            Check(
                "default run wall-clock, slowest seed",
                f"{slowest:.0f} s",
                f"<= {GOAL_WALL_S} s",
                slowest <= GOAL_WALL_S,
            )
        )
    return checks


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--cv", action="store_true", help="rotate the unseen applications over 4 folds")
    parser.add_argument(
        "--jobs", type=int, default=1, help="runs at once (each with one torch thread; wall-clock is then inflated)"
    )
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides")
    args = parser.parse_args()
    if args.jobs > 1:
        os.environ["OMP_NUM_THREADS"] = "1"
    folds: list[list[str] | None] = cv_folds() if args.cv else [None]
    plan = [(fold_id, fold, seed) for fold_id, fold in enumerate(folds) for seed in args.seeds]
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(args.jobs) as pool:
        outcomes = list(pool.map(lambda p: run(p[2], p[1], Path(tmp), args.overrides), plan))
    per_run, walls = {}, {}
    for (fold_id, fold, seed), (metrics, wall) in zip(plan, outcomes, strict=True):
        key = f"fold{fold_id}/seed{seed}" if args.cv else str(seed)
        walls[key] = wall
        per_run[key] = {k: v for k, v in metrics.items() if k.startswith(("test_", "val/", "time/", "chosen/"))}
        cf = metrics["test_unseen/cloudformer/mae"]
        best = min(BLACK_BOX_BASELINES, key=lambda m: metrics[f"test_unseen/{m}/mae"])
        print(
            f"{key} (unseen {fold or DEFAULT_UNSEEN}): {wall:.0f} s, unseen MAE cloudformer {cf:.2f} pp, "
            f"best baseline {best} {metrics[f'test_unseen/{best}/mae']:.2f} pp"
        )
    summary = summarise(list(per_run.values()))
    best = min(BLACK_BOX_BASELINES, key=lambda m: summary[m]["test_unseen/mae"])
    margin = 100.0 * (1.0 - summary["cloudformer"]["test_unseen/mae"] / summary[best]["test_unseen/mae"])
    lowest = min(MODELS, key=lambda m: summary[m]["test_unseen/mae"])
    payload = {
        "command": "python train.py experiment=cloudformer seed=<seed> "
        + ("dataset.unseen_workloads=<fold> " if args.cv else "")
        + " ".join(args.overrides),
        "seeds": args.seeds,
        "jobs": args.jobs,
        "wall_s": walls,
        "goal_wall_s": 360,
        "per_seed" if not args.cv else "per_run": per_run,
        "mean_over_seeds" if not args.cv else "mean_over_runs": summary,
        "best_black_box_baseline": best,
        "margin_vs_best_baseline_pct": margin,
        "lowest_unseen_mae_model": lowest,
        "paper": {"unseen_mae_pct": 7.8, "margin_pct": 28.0},
    }
    blends = [b for b in BLENDS if b in summary]
    if blends:
        payload["cloudformer_ridge_blend_lowest_in_runs"] = sum(
            min(MODELS + blends, key=lambda m: r[f"test_unseen/{m}/mae"]) == "cloudformer+ridge"
            for r in per_run.values()
        )
    if args.cv:
        payload["folds"] = folds
        payload["per_fold"] = {
            f"fold{i}": summarise([per_run[f"fold{i}/seed{s}"] for s in args.seeds]) for i in range(len(folds))
        }
        payload["cloudformer_lowest_in_runs"] = sum(
            min(MODELS, key=lambda m: r[f"test_unseen/{m}/mae"]) == "cloudformer" for r in per_run.values()
        )
    payload["over_runs"] = seed_summary(
        {k: {m: v for m, v in r.items() if m.startswith("test_unseen/")} for k, r in per_run.items()}
    )
    name = "cloudformer_quality_cv" if args.cv else "cloudformer_quality"
    write_result(name, payload)
    print(f"margin vs best baseline ({best}): {margin:.1f}% (paper >= 28%); lowest unseen MAE: {lowest}")
    return finish(name, check(payload))


if __name__ == "__main__":
    sys.exit(main())
