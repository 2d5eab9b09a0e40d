"""Print the README's results tables (markdown) from bench/results/*.json.

python bench/report.py
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from _common import RESULTS
from cloudformer_quality import BLACK_BOX_BASELINES, BLENDS
from cloudformer_quality import MODELS as CLOUDFORMER_MODELS

POLICIES = ("legacy", "deoxys", "deoxys_no_fallback", "s_learner", "t_learner", "dr_policy_forest", "oracle")


def _load(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def quality_table(result: dict) -> str:
    seeds = result["per_seed"]
    lines = [
        f"Test events with ground truth, mean [min, max] over seeds {', '.join(seeds)}; 20k logged events "
        "(14k fit, 6k held out), 20k fresh test events per seed.",
        "",
        "| policy | downtime (min) | interruption rate | node-hours | downtime vs legacy (%)"
        " | interruption vs legacy (%) | downtime gap closed | interruption gap closed |",
        "|---|---|---|---|---|---|---|---|",
    ]

    def cell(policy: str, key: str, fmt: str) -> str:
        values = [r[f"{policy}/{key}"] for r in seeds.values()]
        mean = statistics.fmean(values)
        return f"{mean:{fmt}} [{min(values):{fmt}}, {max(values):{fmt}}]"

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
    checks = result["checks"]
    lines += [
        "",
        f"Goal: >= 75% of both gaps on every seed, never worse than legacy with the fallback: "
        f"min downtime gap closed {checks['downtime_gap_closed_min']:.3f}, min interruption gap closed "
        f"{checks['interruption_gap_closed_min']:.3f}, never worse than legacy: "
        f"{checks['fallback_never_worse_than_legacy']} -> **{'met' if checks['goal_met'] else 'NOT met'}**. "
        f"Fallback fires on {100 * min(fallback):.0f}-{100 * max(fallback):.0f}% of events. Doubly robust "
        "estimate of Deoxys' objective from the held-out log vs truth on the same events: "
        + ", ".join(f"{e:.1f} vs {t:.1f}" for e, t in dr)
        + ".",
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
        lines.append(
            f"| {label} | "
            + " | ".join(f"{v:.2f}" for v in per_fold)
            + f" | {statistics.fmean(values):.2f} [{min(values):.2f}, {max(values):.2f}] |"
        )
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
    earlier = _load("cloudformer_quality_cv_whole_window_stats")
    if earlier:
        s = earlier["mean_over_runs"]
        lines.append(
            "Before ridge and gradient boosting chose their statistics span (same folds, seeds and networks): "
            + ", ".join(f"{m} {s[m]['test_unseen/mae']:.2f}" for m in CLOUDFORMER_MODELS[:6])
            + f"; margin vs {earlier['best_black_box_baseline']} {earlier['margin_vs_best_baseline_pct']:+.1f}%, "
            f"CloudFormer lowest in {earlier['cloudformer_lowest_in_runs']} of {len(earlier['per_run'])} runs."
        )
    return "\n".join(lines)


def _study_runs(path: Path, key: Any) -> dict[Any, dict[tuple[int, int], dict]]:
    """A study's jsonl rows grouped by ``key(row)``, then by (seed, fold): the row's ``final``."""
    runs: dict[Any, dict[tuple[int, int], dict]] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            runs.setdefault(key(row), {})[(row["seed"], row["fold"])] = row["final"]
    return runs


# What a design-study variant key means (bench/cloudformer_appval.py), for the table's labels.
_VARIANT_NOTES = {
    "skip": "+ linear skip path over the last {value} s: `model.skip_tail={value}`",
    "vrex": "risk extrapolation over the training applications",
    "dann": "application-adversarial training",
    "mse": "squared-error loss, as ridge",
}


def cloudformer_appval_table(path: Path) -> str:
    """The leave-applications-out design study (``bench/cloudformer_appval.py``): validation MAE
    on held-out training applications per recipe variant, next to the shipped recipe and ridge
    on the same folds."""
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
    """The training-application diversity study (``bench/cloudformer_diversity.py``): MAE on the
    held-out named applications after training on 7 named or 42 random families."""
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
            cells.append(f"{statistics.fmean(values):.2f} [{min(values):.2f}, {max(values):.2f}]" if values else "")
            own.append(f"{statistics.fmean(r['val_tasks'] for r in by_fold.values()):.2f}" if by_fold else "")
        lines.append(f"| {label[variant]} | {cells[0]} | {cells[1]} | {' / '.join(own)} |")
    return "\n".join(lines)


def cloudformer_tables(quality: dict | None, throughputs: list[dict]) -> str:
    """CloudFormer's unseen/seen errors per model, margin, wall-clock and throughput."""
    lines = []
    if quality:
        seeds = quality["per_seed"]

        def cell(key: str) -> str:
            values = [r[key] for r in seeds.values()]
            return f"{statistics.fmean(values):.2f} [{min(values):.2f}, {max(values):.2f}]"

        lines += [
            f"Absolute error of P in percentage points, mean [min, max] over seeds {', '.join(seeds)} "
            "(`python train.py experiment=cloudformer`, 206 metrics, unseen applications: "
            "graph_analytics, object_storage, stream_processing; val = held-out tasks of the seen applications, "
            "what the epoch and the tabular baselines' settings were chosen on).",
            "",
            "| model | unseen MAE | unseen p95 | unseen static MAE | unseen dynamic MAE | seen MAE | seen p95 "
            "| val MAE |",
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
        for name, label in (
            ("cloudformer_quality_stride5_epochs10", "First measured default (windows every 5 s, 10 epochs)"),
            ("cloudformer_quality_batch256", "Previous default (batches of 256)"),
            (
                "cloudformer_quality_whole_window_stats",
                "Before ridge and gradient boosting chose their statistics span (whole window; same networks)",
            ),
        ):
            earlier = _load(name)
            if earlier:
                s = earlier["mean_over_seeds"]
                lines.append(
                    f"{label}, same seeds: unseen MAE "
                    + ", ".join(f"{m} {s[m]['test_unseen/mae']:.2f}" for m in CLOUDFORMER_MODELS[:6])
                    + f"; margin vs {earlier['best_black_box_baseline']} "
                    f"{earlier['margin_vs_best_baseline_pct']:.1f}%."
                )
    appval = RESULTS / "cloudformer_appval.jsonl"
    if appval.exists():
        lines += [
            "",
            "Design study, leave-applications-out validation (`OMP_NUM_THREADS=1 python "
            "bench/cloudformer_appval.py`): per fold, 3 of the 10 training applications are held out, the "
            "networks train on the other 7 with the shipped recipe in a plain loop; MAE in pp, mean over the folds "
            "each variant ran on (seeds 0 and 1 x folds 0 and 1); the test applications are never loaded:",
            "",
            cloudformer_appval_table(appval),
        ]
    diversity = RESULTS / "cloudformer_diversity.jsonl"
    if diversity.exists():
        lines += [
            "",
            "Training-application diversity (`OMP_NUM_THREADS=1 python bench/cloudformer_diversity.py`): the same "
            "held-out named applications and folds as the design study (seeds 0 and 1 x folds 0 and 1), 42 "
            "training tasks either way (5,712 windows); MAE in pp; the unseen test applications are never simulated:",
            "",
            cloudformer_diversity_table(diversity),
        ]
    cv = _load("cloudformer_quality_cv")
    if cv:
        lines += ["", cloudformer_cv_table(cv)]
    for throughput in throughputs:
        lines += [
            "",
            f"Training throughput on CPU ({throughput['torch_threads']} torch threads, batch "
            f"{throughput['batch_size']}, {throughput['window']} s x {throughput['n_metrics']} metrics, "
            "`python bench/cloudformer_throughput.py`); fetching a batch vs the training step "
            "(Lightning SimpleProfiler):",
            "",
            "| network | parameters | windows/s | batch fetching share of the loop |",
            "|---|---|---|---|",
        ]
        for name, r in throughput["models"].items():
            lines.append(
                f"| {name} | {r['parameters']:,} | {r['windows_per_s']:,.0f} | {100 * r['fetch_share']:.1f}% |"
            )
        lines.append(f"| data pipeline alone | | {throughput['loader_windows_per_s']:,.0f} | |")
    return "\n".join(lines)


def main() -> None:
    parts = []
    quality = _load("deoxys_quality")
    if quality:
        parts.append("**Deoxys quality** (`python bench/deoxys_quality.py`)\n\n" + quality_table(quality))
    timing = []
    wall = _load("train_wallclock")
    if wall:
        timing.append(
            f"| `python train.py` (default: 20k events, W&B offline, export) | {wall['wall_s']:.0f} s | <= 180 s |"
        )
    fit = _load("deoxys_fit_time_deoxys_100k")
    if fit:
        m = fit["metrics"]
        timing.append(
            f"| Deoxys fit on {fit['n_fit_events']:,} logged events (`experiment=deoxys_100k`) | "
            f"{fit['deoxys_fit_s']:.0f} s | <= 300 s |"
        )
        timing.append(
            f"| whole `experiment=deoxys_100k` run (fit all, evaluate, export) | {fit['whole_run_s']:.0f} s | |"
        )
        timing.append(
            f"| quality at that size: downtime / interruption gap closed, vs legacy | "
            f"{m['test/deoxys/downtime_gap_closed']:.2f} / {m['test/deoxys/interruption_gap_closed']:.2f}, "
            f"{m['test/deoxys/downtime_vs_legacy_pct']:.1f}% / {m['test/deoxys/interruption_vs_legacy_pct']:.1f}% | |"
        )
        timing.append(f"| export size at that size | {fit['export_bytes'] / 1e6:.0f} MB | |")
    if timing:
        machine = (wall or fit)["machine"]
        parts.append(
            f"**Time** (`python bench/train_wallclock.py`, `python bench/deoxys_fit_time.py`; "
            f"{machine['cpus']} cores, Python {machine['python']})\n\n| what | measured | goal |\n|---|---|---|\n"
            + "\n".join(timing)
        )
    serving = []
    fidelity = _load("serving_fidelity")
    if fidelity:
        for name, r in fidelity["profiles"].items():
            serving.append(
                f"| cost-model error on `{name}` ({r['rows']} rows, {r['gpu']}) | MAPE {100 * r['mape']:.1f}% "
                f"(uncalibrated {100 * r['mape_uncalibrated']:.1f}%) | <= 15% |"
            )
    for name in ("round_robin", "least_outstanding", "round_robin_rate600"):
        speed = _load(f"serving_speed_{name}")
        router = speed["router"] if speed else name
        if speed:
            m = speed["metrics"]
            serving.append(
                f"| {speed['requests']:,} BurstGPT-like requests, {speed['replicas']} x Llama-3.1-8B/H100, FCFS, "
                f"{router}, {speed['rate']:g} req/s (p99 TTFT {m.get('ttft_s_p99', float('nan')):.1f} s, "
                f"{m['timed_out']:,.0f} timed out, {m['preemptions']:,.0f} preemptions) | {speed['wall_s']:.1f} s "
                f"({speed['requests_per_s']:,.0f} requests/s), peak RSS {speed['peak_rss_mb']:.0f} MB "
                "| <= 30 s, <= 2 GB (1M requests) |"
            )
    if serving:
        parts.append(
            "**Serving simulator** (`python bench/serving_fidelity.py`, `python bench/serving_speed.py`; "
            "one core)\n\n| what | measured | goal |\n|---|---|---|\n" + "\n".join(serving)
        )
    continuum = _load("continuum")
    if continuum:
        parts.append(continuum_tables(continuum))
    vm2rl = []
    env_speed = _load("vm2rl_env_speed")
    if env_speed:
        for name, r in env_speed["results"].items():
            vm2rl.append(
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
            vm2rl.append(
                f"| FR at MNL {q['mnl']}, {method} (mean over test snapshots) | {fr[method]:.3f} "
                f"(decision time {lat.get(method, float('nan')):.2f} s) | |"
            )
        if "vm2rl_vs_mip_relative_gap" in q:
            vm2rl.append(
                f"| best-of-{q['k']} VM2RL vs MIP | {100 * q['vm2rl_vs_mip_relative_gap']:+.1f}% FR, "
                f"{lat['vm2rl_best_of_k']:.2f} s per 50-step trajectory | within 5%, <= 3 s |"
            )
    wallclock = _load("vm2rl_train_wallclock")
    if wallclock:
        vm2rl.append(
            f"| `python train.py experiment=vm2rl` (train {wallclock['metrics']['time/fit_s']:.0f} s, evaluate, "
            f"export) | {wallclock['wall_s']:.0f} s | <= 600 s |"
        )
    maskable = _load("vm2rl_maskable_ppo")
    if maskable:
        fr = maskable["mean_fragment_rate"]
        vm2rl.append(
            f"| MaskablePPO (flat action, {maskable['steps']:,} steps, {maskable['train_s']:.0f} s) on "
            f"{maskable['n_test']} held-out small snapshots, MNL {maskable['mnl']}: mean FR | "
            + ", ".join(f"{k} {v:.3f}" for k, v in fr.items())
            + " | |"
        )
    if vm2rl:
        parts.append(
            "**VM2RL** (`python bench/vm2rl_env_speed.py`, `python bench/vm2rl_quality.py`)\n\n"
            "| what | measured | goal |\n|---|---|---|\n" + "\n".join(vm2rl)
        )
    throughputs = [_load(n) for n in ("cloudformer_throughput", "cloudformer_throughput_1thread")]
    cloudformer = cloudformer_tables(_load("cloudformer_quality"), [t for t in throughputs if t])
    if cloudformer:
        parts.append("**CloudFormer** (`python bench/cloudformer_quality.py`)\n\n" + cloudformer)
    print("\n\n".join(parts))


CONTINUUM_POLICIES = (
    "ttl_only",
    "program_fcfs_only",
    "continuum",
    "fixed_2s",
    "predicted_mean",
    "learned",
    "oracle_duration",
)


def continuum_tables(result: dict) -> str:
    jct = result["jct"]
    out = [
        f"**Continuum** (`python bench/continuum.py`; {result['machine']['cpus']} cores): mean job completion "
        f"time, Llama-3.1-70B TP4 on one H100 replica, held-out programs; speed-up over vLLM (evict at once, "
        f"request FCFS) as mean [min, max] over {jct['seeds']} held-out workloads per load. Ablation: TTL alone "
        "(request FCFS), program FCFS alone (evict at once), both (`continuum`). TTL policies use the "
        f"`{jct['best_predictor']}` predictor; eta = {jct['eta']:.2f}. Paper: 1.12-3.66x lower delay.",
    ]
    names = {"swe_like": "SWE-bench-like", "real": "real SWE-agent trajectories (resampled)"}
    for workload, loads in jct["workloads"].items():
        out += [
            "",
            f"{names.get(workload, workload)}:",
            "",
            "| programs/s | vLLM mean JCT (s) | " + " | ".join(CONTINUUM_POLICIES) + " |",
            "|---" * (2 + len(CONTINUUM_POLICIES)) + "|",
        ]
        for rate, r in loads.items():
            cells = []
            for policy in CONTINUUM_POLICIES:
                s = r["speedup_vs_vllm"].get(policy)
                cells.append(f"{statistics.fmean(s):.2f}x [{min(s):.2f}, {max(s):.2f}]" if s else "")
            out.append(f"| {rate} | {statistics.fmean(r['mean_jct_s']['vllm']):.0f} | " + " | ".join(cells) + " |")
    preds = result["predictors"]
    out += [
        "",
        "Tool-duration predictors (trained on 3,000 generated SWE-like + BFCL-like programs, tested on "
        "100,000 calls of separately generated SWE-like programs):",
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


if __name__ == "__main__":
    main()
