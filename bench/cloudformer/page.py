"""CloudFormer's results page: error on unseen applications (default split and rotated folds),
training throughput, and the design studies under ``studies/results/``."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from bench._common import STUDIES, ci, load_result, mean_range
from bench.cloudformer.quality import BLACK_BOX_BASELINES, BLENDS
from bench.cloudformer.quality import MODELS as CLOUDFORMER_MODELS

TITLE = "CloudFormer results"


def cloudformer_quality_table(quality: dict) -> str:
    seeds = quality["per_seed"]

    def cell(key: str) -> str:
        return ci([r[key] for r in seeds.values()], ".2f")

    lines = [
        f"Absolute error of P in percentage points, mean [95% bootstrap CI] over seeds {', '.join(seeds)} "
        "(`python train.py experiment=cloudformer`, 206 metrics, unseen applications: "
        "graph_analytics, object_storage, stream_processing; val = held-out tasks of the seen applications, "
        "what the epoch and the tabular baselines' settings were chosen on).",
        "",
        "| model | unseen MAE | unseen p95 | unseen static MAE | unseen dynamic MAE | seen MAE | seen p95 | val MAE |",
        "|---|---|---|---|---|---|---|---|",
    ]
    blends = [b for b in BLENDS if all(f"test_unseen/{b}/mae" in r for r in seeds.values())]
    for m in CLOUDFORMER_MODELS + blends:
        label = f"{m} (blend, reported only)" if m in blends else m
        lines.append(
            f"| {label} | {cell(f'test_unseen/{m}/mae')} | {cell(f'test_unseen/{m}/p95_abs_error')} "
            f"| {cell(f'test_unseen_static/{m}/mae')} | {cell(f'test_unseen_dynamic/{m}/mae')} "
            f"| {cell(f'test_seen/{m}/mae')} | {cell(f'test_seen/{m}/p95_abs_error')} | {cell(f'val/{m}/mae')} |"
        )
    lines.append("| paper: CloudFormer on CloudPerfTrace | 7.8 | | | | | | |")
    margins = [r["test_unseen/cloudformer/margin_vs_best_baseline_pct"] for r in seeds.values()]
    walls = list(quality["wall_s"].values())
    lines += [
        "",
        f"CloudFormer vs the best black-box baseline on unseen applications (mean over seeds: "
        f"{quality['best_black_box_baseline']}): **{quality['margin_vs_best_baseline_pct']:.1f}%** lower MAE "
        f"(per seed vs that seed's best: {', '.join(f'{m:.1f}%' for m in margins)}; paper: >= 28%). "
        f"Lowest unseen MAE (mean over seeds): **{quality['lowest_unseen_mae_model']}**. "
        f"Wall-clock of the whole default run: {', '.join(f'{w:.0f} s' for w in walls)} (goal <= 360 s).",
    ]
    return "\n".join(lines)


def cloudformer_cv_table(cv: dict) -> str:
    """Unseen-application MAE with the unseen applications rotated over folds (every one of the
    13 applications unseen once), per fold and over all runs."""
    folds, runs = cv["folds"], cv["per_run"]
    seeds = cv["seeds"]
    lines = [
        f"Unseen applications rotated over {len(folds)} folds fixed in advance (`python bench/cloudformer/quality.py "
        f"--cv`), seeds {', '.join(map(str, seeds))} per fold, {len(runs)} runs; unseen MAE in pp, mean over the "
        "fold's seeds, and over all runs [min, max]:",
        "",
        "| model | " + " | ".join(f"fold {i}: {', '.join(f)}" for i, f in enumerate(folds)) + " | all runs |",
        "|---|" + "---|" * (len(folds) + 1),
    ]
    blends = [b for b in BLENDS if b in cv["mean_over_runs"]]
    for m in CLOUDFORMER_MODELS + blends:
        values = [r[f"test_unseen/{m}/mae"] for r in runs.values()]
        per_fold = [cv["per_fold"][f"fold{i}"][m]["test_unseen/mae"] for i in range(len(folds))]
        label = f"{m} (blend, reported only)" if m in blends else m
        lines.append(f"| {label} | " + " | ".join(f"{v:.2f}" for v in per_fold) + f" | {mean_range(values, '.2f')} |")
    best = cv["best_black_box_baseline"]
    fold_margins = []
    for i in range(len(folds)):
        summary = cv["per_fold"][f"fold{i}"]
        fold_best = min(BLACK_BOX_BASELINES, key=lambda m: summary[m]["test_unseen/mae"])
        margin = 100.0 * (1.0 - summary["cloudformer"]["test_unseen/mae"] / summary[fold_best]["test_unseen/mae"])
        fold_margins.append(f"fold {i} {margin:+.1f}% vs {fold_best}")
    lines += [
        "",
        f"Over all runs: lowest unseen MAE **{cv['lowest_unseen_mae_model']}**; CloudFormer vs the best "
        f"black-box baseline ({best}): **{cv['margin_vs_best_baseline_pct']:+.1f}%** (paper: >= 28%); per fold: "
        + ", ".join(fold_margins)
        + f". CloudFormer has the lowest unseen MAE in {cv['cloudformer_lowest_in_runs']} of {len(runs)} runs.",
    ]
    if "cloudformer_ridge_blend_lowest_in_runs" in cv:
        lines.append(
            "Blends are the equal-weight mean of a network's and ridge's predictions (`task.blend_with=ridge`); "
            f"cloudformer+ridge has the lowest unseen MAE of all models and blends in "
            f"{cv['cloudformer_ridge_blend_lowest_in_runs']} of {len(runs)} runs."
        )
    return "\n".join(lines)


def cloudformer_throughput_table(throughput: dict) -> str:
    lines = [
        f"Training throughput on CPU ({throughput['torch_threads']} torch threads, batch "
        f"{throughput['batch_size']}, {throughput['window']} s x {throughput['n_metrics']} metrics, "
        "`python bench/cloudformer/throughput.py`); fetching a batch vs the training step "
        "(Lightning SimpleProfiler):",
        "",
        "| network | parameters | windows/s | batch fetching share of the loop |",
        "|---|---|---|---|",
    ]
    for name, r in throughput["models"].items():
        lines.append(f"| {name} | {r['parameters']:,} | {r['windows_per_s']:,.0f} | {100 * r['fetch_share']:.1f}% |")
    lines.append(f"| data pipeline alone | | {throughput['loader_windows_per_s']:,.0f} | |")
    return "\n".join(lines)


def _study_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _study_runs(path: Path, key: Any, runner: str = "plain-loop") -> dict[Any, dict[tuple[int, int], dict]]:
    """A study's jsonl rows produced by ``runner`` (a prefix of the row's ``runner``), grouped by
    ``key(row)``, then by (seed, fold): the row's ``final``."""
    runs: dict[Any, dict[tuple[int, int], dict]] = {}
    for row in _study_rows(path):
        if row.get("runner", "plain-loop").startswith(runner):
            runs.setdefault(key(row), {})[(row["seed"], row["fold"])] = row["final"]
    return runs


def study_reproduction_table(path: Path) -> str:
    """Rows re-run through the Lightning runner next to the plain-loop rows of the same variant,
    data, seed and fold: whether the rewritten study reproduces the stored numbers."""

    def key(row: dict) -> tuple:
        return (row["variant"], row.get("arm", ""), " ".join(row.get("overrides", [])))

    old = _study_runs(path, key)
    new = _study_runs(path, key, runner="lightning")
    if not new:
        return ""
    lines = [
        "| variant | seed, fold | held-out applications MAE: plain loop / Lightning | seen-task val MAE: plain loop "
        "/ Lightning |",
        "|---|---|---|---|",
    ]
    for k in sorted(new):
        variant, arm, data = k
        label = " ".join(x for x in (variant, f"({arm} arm)" if arm else "", data) if x)
        for run, r in sorted(new[k].items()):
            before = old.get(k, {}).get(run)

            def pair(metric: str, before: dict | None = before, r: dict = r) -> str:
                return f"{before[metric]:.2f} / {r[metric]:.2f}" if before else f"- / {r[metric]:.2f}"

            lines.append(f"| {label} | {run[0]}, {run[1]} | {pair('val_apps')} | {pair('val_tasks')} |")
    return "\n".join(lines)


def _runners(path: Path) -> str:
    """Which code produced a study's rows."""
    counts: dict[str, int] = {}
    for row in _study_rows(path):
        runner = row.get("runner", "plain-loop (unlabelled)")
        counts[runner] = counts.get(runner, 0) + 1
    return (
        "Rows by the code that produced them: "
        + ", ".join(f"{n} by {r}" for r, n in counts.items())
        + ". The table shows the plain-loop rows (the complete grid); rows re-run through the shipped "
        "LightningModule are compared with them in the reproduction table."
    )


# What a design-study variant key means (studies/cloudformer_appval.py), for the table's labels.
_VARIANT_NOTES = {
    "skip": "+ linear skip path over the last {value} s: `model.skip_tail={value}`",
    "vrex": "risk extrapolation over the training applications",
    "dann": "application-adversarial training",
    "mse": "squared-error loss, as ridge",
}


def cloudformer_appval_table(path: Path) -> str:
    """The leave-applications-out design study: validation MAE on held-out training applications
    per recipe variant, next to the shipped recipe and ridge on the same folds."""
    runs = _study_runs(path, lambda row: (" ".join(row["overrides"]), row["variant"]))
    lines = [
        "| variant | data overrides | folds | held-out applications MAE | seen-task val MAE "
        "| shipped recipe, same folds | ridge, same data and folds: whole window / shipped (span chosen) |",
        "|---|---|---|---|---|---|---|",
    ]
    order = sorted(runs, key=lambda k: (k[0] != "", k[0], k[1] not in ("ridge", "ridge_span", "base", "ens=3"), k[1]))
    for data, variant in order:
        by_fold = runs[(data, variant)]
        folds = sorted(by_fold)
        base, ridge = runs.get(("", "base"), {}), runs.get((data, "ridge"), {})
        ridge_span = runs.get((data, "ridge_span"), {})

        def mean(source: dict, key: str = "val_apps", folds: list = folds) -> str:
            if not all(f in source for f in folds):
                return ""
            return f"{statistics.fmean(source[f][key] for f in folds):.2f}"

        label = {
            "ridge": "ridge (statistics over the whole window)",
            "ridge_span": "ridge (whole window or last 10 s, chosen on seen-task validation; shipped)",
            "ens=3": "base, mean of 3 initialisations (deep ensemble)",
        }.get(variant, variant)
        key, _, value = variant.partition("=")
        if "," not in variant and key in _VARIANT_NOTES:
            label = f"{variant} ({_VARIANT_NOTES[key].format(value=value)})"
        if variant.endswith("+ridge"):
            label = f"{variant} (mean of that network's and the shipped ridge's predictions)"
        lines.append(
            f"| {label} | {data} | {len(folds)} | {mean(by_fold)} | {mean(by_fold, 'val_tasks')} "
            f"| {mean(base)} | {mean(ridge) or '-'} / {mean(ridge_span) or '-'} |"
        )
    return "\n".join(lines)


def cloudformer_diversity_table(path: Path) -> str:
    """The training-application diversity study: MAE on the held-out named applications after
    training on 7 named or 42 random families."""
    runs = _study_runs(path, lambda row: (row["variant"], row["arm"]))
    label = {"ridge_span": "ridge (shipped: span and alpha chosen on held-out tasks)", "base": "CloudFormer",
             "arch=temporal": "temporal-only Transformer", "arch=lstm,d=64": "LSTM"}  # fmt: skip
    lines = [
        "| model | trained on 7 named applications: held-out applications MAE [min, max] "
        "| on 42 random families: held-out applications MAE [min, max] "
        "| the arm's validation tasks (named: other tasks of the 7; random: 14 other random families) |",
        "|---|---|---|---|",
    ]
    for variant in label:
        cells, own = [], []
        for arm in ("named", "random"):
            by_fold = runs.get((variant, arm), {})
            values = [r["val_apps"] for r in by_fold.values()]
            cells.append(mean_range(values, ".2f") if values else "")
            own.append(f"{statistics.fmean(r['val_tasks'] for r in by_fold.values()):.2f}" if by_fold else "")
        lines.append(f"| {label[variant]} | {cells[0]} | {cells[1]} | {' / '.join(own)} |")
    return "\n".join(lines)


def render() -> str:
    parts = []
    quality = load_result("cloudformer_quality")
    if quality:
        parts.append("## Unseen applications, default split\n\n" + cloudformer_quality_table(quality))
    cv = load_result("cloudformer_quality_cv")
    if cv:
        parts.append("## Unseen applications, rotated over folds\n\n" + cloudformer_cv_table(cv))
    throughputs = [
        t for t in (load_result(n) for n in ("cloudformer_throughput", "cloudformer_throughput_1thread")) if t
    ]
    if throughputs:
        parts.append("## Training throughput\n\n" + "\n\n".join(map(cloudformer_throughput_table, throughputs)))
    appval = STUDIES / "cloudformer_appval.jsonl"
    if appval.exists():
        parts.append(
            "## Study: leave-applications-out design validation\n\n"
            "`OMP_NUM_THREADS=1 python studies/cloudformer_appval.py`: per fold, 3 of the 10 training "
            "applications are held out and the networks train on the other 7 with the shipped recipe; MAE in pp, "
            "mean over the folds each variant ran on (seeds 0 and 1 x folds 0 and 1); the test applications are "
            "never loaded. A study, not a goal. " + _runners(appval) + "\n\n" + cloudformer_appval_table(appval)
        )
        reproduction = study_reproduction_table(appval)
        if reproduction:
            parts.append(
                "### Reproduction through the shipped LightningModule\n\n"
                "The study trains through `InterferenceRegressor` and a Lightning Trainer; a subset re-run "
                "that way (one torch thread, on a machine shared with other jobs), next to the plain loop's "
                "numbers for the same variant, seed and fold. The plain loop's spread over three initialisations "
                "of `base` on seed 0, fold 0 was 2.19-2.47 pp (held-out applications) and 1.88-2.27 pp (seen "
                "tasks).\n\n" + reproduction
            )
    diversity = STUDIES / "cloudformer_diversity.jsonl"
    if diversity.exists():
        parts.append(
            "## Study: training-application diversity\n\n"
            "`OMP_NUM_THREADS=1 python studies/cloudformer_diversity.py`: the same held-out named applications "
            "and folds as the design study (seeds 0 and 1 x folds 0 and 1), 42 training tasks either way (5,712 "
            "windows); MAE in pp; the unseen test applications are never simulated. "
            + _runners(diversity)
            + "\n\n"
            + cloudformer_diversity_table(diversity)
        )
        reproduction = study_reproduction_table(diversity)
        if reproduction:
            parts.append("### Diversity study: reproduction through the shipped LightningModule\n\n" + reproduction)
    return "\n\n".join(parts)
