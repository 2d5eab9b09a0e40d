"""Deoxys' results page: quality over seeds, the default run's wall-clock, the fit time at 100k
logged events."""

from __future__ import annotations

from bench._common import ci, load_result

TITLE = "Deoxys results"

POLICIES = ("legacy", "deoxys", "deoxys_no_fallback", "s_learner", "t_learner", "dr_policy_forest", "oracle")


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
        return ci([r[f"{policy}/{key}"] for r in seeds.values()], fmt)

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


def render() -> str:
    parts = []
    quality = load_result("deoxys_quality")
    if quality:
        parts.append("## Quality\n\n`python bench/deoxys/quality.py`\n\n" + quality_table(quality))
    timing = []
    wall = load_result("train_wallclock")
    if wall:
        timing.append(
            f"| `python train.py` (default: 20k events, W&B offline, export) | {wall['wall_s']:.0f} s | <= 180 s |"
        )
    fit = load_result("deoxys_fit_time_deoxys_100k")
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
            f"## Time\n\n`python bench/deoxys/train_wallclock.py`, `python bench/deoxys/fit_time.py`; "
            f"{machine['cpus']} cores, Python {machine['python']}.\n\n| what | measured | goal |\n|---|---|---|\n"
            + "\n".join(timing)
        )
    return "\n\n".join(parts)
