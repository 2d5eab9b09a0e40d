"""Results pages, generated from the stored results: ``bench/results/*.json`` (the benchmark
suite) and ``studies/results/*`` (the research studies). Nothing here runs a benchmark.

    python bench/report.py                      # every page, as one markdown document
    python bench/report.py --out outputs/results # one file per page

``render_pages()`` returns one markdown page per component plus an index; the docs build
(mkdocs-gen-files) writes them under ``results/``. This file can be imported by path: it puts
its own folder on ``sys.path`` for its sibling modules.
"""

from __future__ import annotations

import datetime
import json
import statistics
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS, ROOT
from cloudformer_quality import BLACK_BOX_BASELINES, BLENDS
from cloudformer_quality import MODELS as CLOUDFORMER_MODELS

STUDIES = ROOT / "studies" / "results"

# Page path -> its title.
COMPONENT_PAGES = {
    "results/deoxys.md": "Deoxys results",
    "results/cloudformer.md": "CloudFormer results",
    "results/vm2rl.md": "VM2RL results",
    "results/serving.md": "Serving simulator results",
    "results/continuum.md": "Continuum results",
}
POLICIES = ("legacy", "deoxys", "deoxys_no_fallback", "s_learner", "t_learner", "dr_policy_forest", "oracle")


def _load(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _ci(values: Sequence[float], fmt: str) -> str:
    """Mean and 95% bootstrap interval over seeds (the framework's ``bootstrap_ci``)."""
    from infragym.evaluation import bootstrap_ci

    s = bootstrap_ci(list(values))
    return f"{s.mean:{fmt}} [{s.low:{fmt}}, {s.high:{fmt}}]"


def _range(values: Sequence[float], fmt: str) -> str:
    return f"{statistics.fmean(values):{fmt}} [{min(values):{fmt}}, {max(values):{fmt}}]"


# --- Deoxys ----------------------------------------------------------------------------------


def quality_table(result: dict) -> str:
    seeds = result["per_seed"]
    lines = [
        f"Test events with ground truth, mean [95% bootstrap CI] over seeds {', '.join(seeds)}; 20k logged "
        "events (14k fit, 6k held out), 20k fresh test events per seed.",
        "",
        "| policy | downtime (min) | interruption rate | node-hours | downtime vs legacy (%)"
        " | interruption vs legacy (%) | downtime gap closed | interruption gap closed |",
        "|---|---|---|---|---|---|---|---|",
    ]

    def cell(policy: str, key: str, fmt: str) -> str:
        return _ci([r[f"{policy}/{key}"] for r in seeds.values()], fmt)

    for policy in POLICIES:
        lines.append(
            f"| {policy} | {cell(policy, 'downtime_min', '.2f')} | {cell(policy, 'interruption_rate', '.3f')} "
            f"| {cell(policy, 'cost_node_hours', '.1f')} | {cell(policy, 'downtime_vs_legacy_pct', '.1f')} "
            f"| {cell(policy, 'interruption_vs_legacy_pct', '.1f')} | {cell(policy, 'downtime_gap_closed', '.2f')} "
            f"| {cell(policy, 'interruption_gap_closed', '.2f')} |"
        )
    lines.append("| paper: Deoxys deployed (SoCC'24) | | | | -53% | -49.5% | | |")
    fallback = [r["test/deoxys/fallback_rate"] for r in seeds.values()]
    dr = [(r["val/deoxys/dr_objective"], r["val/deoxys/true_objective"]) for r in seeds.values()]
    downtime = min(r["deoxys/downtime_gap_closed"] for r in seeds.values())
    interruption = min(r["deoxys/interruption_gap_closed"] for r in seeds.values())
    lines += [
        "",
        f"Goal: >= 75% of both gaps on every seed, never worse than legacy with the fallback: min downtime gap "
        f"closed {downtime:.3f}, min interruption gap closed {interruption:.3f}. Fallback fires on "
        f"{100 * min(fallback):.0f}-{100 * max(fallback):.0f}% of events. Doubly robust estimate of Deoxys' "
        "objective from the held-out log vs truth on the same events: "
        + ", ".join(f"{e:.1f} vs {t:.1f}" for e, t in dr)
        + ".",
    ]
    return "\n".join(lines)


def deoxys_page() -> str:
    parts = []
    quality = _load("deoxys_quality")
    if quality:
        parts.append("## Quality\n\n`python bench/deoxys_quality.py`\n\n" + quality_table(quality))
    timing = []
    wall = _load("train_wallclock")
    if wall:
        timing.append(
            f"| `python train.py` (default: 20k events, W&B offline, export) | {wall['wall_s']:.0f} s | <= 180 s |"
        )
    fit = _load("deoxys_fit_time_deoxys_100k")
    if fit:
        m = fit["metrics"]
        timing += [
            f"| Deoxys fit on {fit['n_fit_events']:,} logged events (`experiment=deoxys_100k`) | "
            f"{fit['deoxys_fit_s']:.0f} s | <= 300 s |",
            f"| whole `experiment=deoxys_100k` run (fit all, evaluate, export) | {fit['whole_run_s']:.0f} s | |",
            f"| quality at that size: downtime / interruption gap closed, vs legacy | "
            f"{m['test/deoxys/downtime_gap_closed']:.2f} / {m['test/deoxys/interruption_gap_closed']:.2f}, "
            f"{m['test/deoxys/downtime_vs_legacy_pct']:.1f}% / {m['test/deoxys/interruption_vs_legacy_pct']:.1f}% "
            "| |",
            f"| export size at that size | {fit['export_bytes'] / 1e6:.0f} MB | |",
        ]
    if timing:
        machine = (wall or fit)["machine"]
        parts.append(
            f"## Time\n\n`python bench/train_wallclock.py`, `python bench/deoxys_fit_time.py`; "
            f"{machine['cpus']} cores, Python {machine['python']}.\n\n| what | measured | goal |\n|---|---|---|\n"
            + "\n".join(timing)
        )
    return "\n\n".join(parts)


# --- Serving ---------------------------------------------------------------------------------


def serving_page() -> str:
    rows = []
    fidelity = _load("serving_fidelity")
    if fidelity:
        for name, r in fidelity["profiles"].items():
            rows.append(
                f"| cost-model error on `{name}` ({r['rows']} rows, {r['gpu']}) | MAPE {100 * r['mape']:.1f}% "
                f"(uncalibrated {100 * r['mape_uncalibrated']:.1f}%) | <= 15% |"
            )
    for name in ("round_robin", "least_outstanding", "round_robin_rate600"):
        speed = _load(f"serving_speed_{name}")
        if speed:
            m = speed["metrics"]
            # The goal is set for round-robin at 200 req/s; the other settings are reported.
            goal = "<= 30 s, <= 2 GB" if name == "round_robin" else "reported"
            rows.append(
                f"| {speed['requests']:,} BurstGPT-like requests, {speed['replicas']} x Llama-3.1-8B/H100, FCFS, "
                f"{speed['router']}, {speed['rate']:g} req/s (p99 TTFT {m.get('ttft_s_p99', float('nan')):.1f} s, "
                f"{m['timed_out']:,.0f} timed out, {m['preemptions']:,.0f} preemptions) | {speed['wall_s']:.1f} s "
                f"({speed['requests_per_s']:,.0f} requests/s), peak RSS {speed['peak_rss_mb']:.0f} MB | {goal} |"
            )
    if not rows:
        return ""
    return (
        "`python bench/serving_fidelity.py`, `python bench/serving_speed.py`; one core.\n\n"
        "| what | measured | goal |\n|---|---|---|\n" + "\n".join(rows)
    )


# --- Continuum -------------------------------------------------------------------------------

CONTINUUM_POLICIES = (
    "ttl_only",
    "program_fcfs_only",
    "continuum",
    "fixed_2s",
    "predicted_mean",
    "learned",
    "oracle_duration",
)


def continuum_page() -> str:
    result = _load("continuum")
    if not result:
        return ""
    jct = result["jct"]
    out = [
        f"`python bench/continuum.py`; {result['machine']['cpus']} cores. Mean job completion time, "
        "Llama-3.1-70B TP4 on one H100 replica, held-out programs; speed-up over vLLM (evict at once, request "
        f"FCFS) as mean [95% bootstrap CI] over {jct['seeds']} held-out workloads per load. Ablation: TTL alone "
        "(request FCFS), program FCFS alone (evict at once), both (`continuum`). TTL policies use the "
        f"`{jct['best_predictor']}` predictor; eta = {jct['eta']:.2f}. Paper: 1.12-3.66x lower delay.",
    ]
    names = {"swe_like": "SWE-bench-like", "real": "Real SWE-agent trajectories (resampled)"}
    for workload, loads in jct["workloads"].items():
        out += [
            "",
            f"## {names.get(workload, workload)}",
            "",
            "| programs/s | vLLM mean JCT (s) | " + " | ".join(CONTINUUM_POLICIES) + " |",
            "|---" * (2 + len(CONTINUUM_POLICIES)) + "|",
        ]
        for rate, r in loads.items():
            cells = []
            for policy in CONTINUUM_POLICIES:
                s = r["speedup_vs_vllm"].get(policy)
                cells.append(_ci(s, ".2f").replace(" [", "x [") if s else "")
            out.append(f"| {rate} | {statistics.fmean(r['mean_jct_s']['vllm']):.0f} | " + " | ".join(cells) + " |")
    preds = result["predictors"]
    out += [
        "",
        "## Tool-duration predictors",
        "",
        "Trained on 3,000 generated SWE-like + BFCL-like programs, tested on 100,000 calls of separately "
        "generated SWE-like programs.",
        "",
        "| predictor | pinball loss (mean over 8 quantiles) | MAE of the median (s) | calibration error "
        "| 100k predictions (s) |",
        "|---|---|---|---|---|",
    ]
    for name, r in preds.items():
        out.append(
            f"| {name} | {r['pinball']:.4f} | {r['mae_s']:.3f} | {r['calibration_error']:.3f} "
            f"| {r['predict_100k_s']:.2f} |"
        )
    best = min(preds, key=lambda n: preds[n]["pinball"])
    gain = 1 - preds[best]["pinball"] / preds["running_mean"]["pinball"]
    out += [
        "",
        f"Lowest pinball loss: `{best}`, {100 * gain:.0f}% below the per-tool running mean; predicting 100k calls "
        f"takes {preds[best]['predict_100k_s']:.2f} s (goal <= 1 s). `python train.py experiment=continuum`: "
        f"{result['wall_s']:.0f} s (goal <= 300 s).",
    ]
    return "\n".join(out)


# --- VM2RL -----------------------------------------------------------------------------------


def vm2rl_page() -> str:
    rows = []
    env_speed = _load("vm2rl_env_speed")
    if env_speed:
        for name, r in env_speed["results"].items():
            rows.append(
                f"| env step + masks, {name} ({r['pms']} PMs, {r['vms']} VMs, MNL 50, random feasible policy) | "
                f"{r['env_steps_per_s']:,.0f} steps/s wall, {r.get('env_steps_per_cpu_s', float('nan')):,.0f} per "
                f"CPU-second ({r['with_policy_steps_per_s']:,.0f} with the policy's choice) "
                "| >= 20,000 steps/s |"
            )
    quality = _load("vm2rl_quality")
    if quality:
        q = quality["summary"]
        fr, lat = q["fragment_rate"], q["latency_s"]
        for method in sorted(fr, key=lambda k: fr[k]):
            latency = f" (decision time {lat[method]:.2f} s)" if method in lat else ""
            rows.append(f"| FR at MNL {q['mnl']}, {method} (mean over test snapshots) | {fr[method]:.3f}{latency} | |")
        if "vm2rl_vs_mip_relative_gap" in q:
            rows.append(
                f"| best-of-{q['k']} VM2RL vs MIP | {100 * q['vm2rl_vs_mip_relative_gap']:+.1f}% FR, "
                f"{lat['vm2rl_best_of_k']:.2f} s per 50-step trajectory | within 5%, <= 3 s |"
            )
    wallclock = _load("vm2rl_train_wallclock")
    if wallclock:
        rows.append(
            f"| `python train.py experiment=vm2rl` (train {wallclock['metrics']['time/fit_s']:.0f} s, evaluate, "
            f"export) | {wallclock['wall_s']:.0f} s | <= 600 s |"
        )
    maskable = _load("vm2rl_maskable_ppo")
    if maskable:
        fr = maskable["mean_fragment_rate"]
        rows.append(
            f"| MaskablePPO (flat action, {maskable['steps']:,} steps, {maskable['train_s']:.0f} s) on "
            f"{maskable['n_test']} held-out small snapshots, MNL {maskable['mnl']}: mean FR | "
            + ", ".join(f"{k} {v:.3f}" for k, v in fr.items())
            + " | reported |"
        )
    if not rows:
        return ""
    parts = [
        "`python bench/vm2rl_env_speed.py`, `python bench/vm2rl_quality.py`, `python bench/vm2rl_train_wallclock.py`"
        ", `python bench/vm2rl_maskable_ppo.py`.\n\n| what | measured | goal |\n|---|---|---|\n" + "\n".join(rows)
    ]
    if quality and quality.get("table"):
        parts.append(
            "## Fragment rate per test snapshot and budget\n\n"
            + quality["table"]
            + "".join(f"\n\n{note}" for note in quality.get("notes", []))
        )
    return "\n\n".join(parts)


# --- CloudFormer -----------------------------------------------------------------------------


def cloudformer_quality_table(quality: dict) -> str:
    seeds = quality["per_seed"]

    def cell(key: str) -> str:
        return _ci([r[key] for r in seeds.values()], ".2f")

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
        f"Unseen applications rotated over {len(folds)} folds fixed in advance (`python bench/cloudformer_quality.py "
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
        lines.append(f"| {label} | " + " | ".join(f"{v:.2f}" for v in per_fold) + f" | {_range(values, '.2f')} |")
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
        "`python bench/cloudformer_throughput.py`); fetching a batch vs the training step "
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
            cells.append(_range(values, ".2f") if values else "")
            own.append(f"{statistics.fmean(r['val_tasks'] for r in by_fold.values()):.2f}" if by_fold else "")
        lines.append(f"| {label[variant]} | {cells[0]} | {cells[1]} | {' / '.join(own)} |")
    return "\n".join(lines)


def cloudformer_page() -> str:
    parts = []
    quality = _load("cloudformer_quality")
    if quality:
        parts.append("## Unseen applications, default split\n\n" + cloudformer_quality_table(quality))
    cv = _load("cloudformer_quality_cv")
    if cv:
        parts.append("## Unseen applications, rotated over folds\n\n" + cloudformer_cv_table(cv))
    throughputs = [t for t in (_load(n) for n in ("cloudformer_throughput", "cloudformer_throughput_1thread")) if t]
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


# --- Index and pages -------------------------------------------------------------------------


def _result_date(path: Path, payload: dict | None) -> str:
    """When a result was produced: its own ``date`` field, else the date of the commit that last
    changed the file, else the file's modification time."""
    if payload and payload.get("date"):
        return str(payload["date"])[:10]
    try:
        out = subprocess.run(
            ["git", "log", "-1", "--format=%cs", "--", str(path)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        out = ""
    return out or datetime.date.fromtimestamp(path.stat().st_mtime).isoformat()


def _files_table() -> str:
    lines = ["| result file | machine | date |", "|---|---|---|"]
    files = sorted(RESULTS.glob("*.json")) + sorted(p for p in STUDIES.glob("*") if p.is_file())
    for path in files:
        payload = json.loads(path.read_text()) if path.suffix == ".json" else None
        machine = (payload or {}).get("machine")
        where = f"{machine['cpus']} cores, Python {machine['python']}" if machine else ""
        lines.append(f"| `{path.relative_to(ROOT)}` | {where} | {_result_date(path, payload)} |")
    return "\n".join(lines)


def _goals_table() -> str:
    from suite import check_stored, format_rows

    return format_rows(check_stored(), markdown=True)


def index_page() -> str:
    pages = "\n".join(f"- [{title}]({Path(page).name})" for page, title in COMPONENT_PAGES.items())
    return "\n\n".join(
        [
            "# Results",
            "Every table here is generated from the stored results of the benchmark suite (`bench/results/`) "
            "and of the research studies (`studies/results/`) when the docs are built; `make bench` re-runs "
            "the suite and `python bench/suite.py --check-only` re-checks the stored results against the goals.",
            pages,
            "## Goals\n\nStatus of every benchmark's goal on the stored results (seconds: -, nothing was re-run).\n\n"
            + _goals_table(),
            "## Result files\n\n" + _files_table(),
        ]
    )


def render_pages() -> dict[str, str]:
    """One markdown page per component plus ``results/index.md``, each starting with an H1."""
    builders = {
        "results/deoxys.md": deoxys_page,
        "results/cloudformer.md": cloudformer_page,
        "results/vm2rl.md": vm2rl_page,
        "results/serving.md": serving_page,
        "results/continuum.md": continuum_page,
    }
    pages = {"results/index.md": index_page() + "\n"}
    for page, build in builders.items():
        title = COMPONENT_PAGES[page]
        body = build() or "No stored results yet: run `make bench`."
        pages[page] = f"# {title}\n\n{body}\n"
    return pages


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, help="write one file per page under this folder instead of printing")
    args = parser.parse_args(argv)
    pages = render_pages()
    if args.out is None:
        print("\n\n".join(pages[p].rstrip() for p in [*COMPONENT_PAGES, "results/index.md"]))
        return
    for page, text in pages.items():
        path = args.out / Path(page).name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    print(f"wrote {len(pages)} results pages under {args.out}/")


if __name__ == "__main__":
    main()
