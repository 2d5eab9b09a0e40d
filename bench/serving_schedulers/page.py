"""Serving-scheduler results page: goodput vs load of every scheduler on every workload, Past-Future
and JITServe beside the papers' claims, JITServe's ablations, the learned scheduler."""

from __future__ import annotations

from bench._common import load_result

TITLE = "Serving schedulers results"
SCHEDULERS = ("fcfs", "conservative", "past_future", "edf", "sjf", "jitserve", "learned")
ABLATIONS = ("jitserve_static_length", "jitserve_no_grouping", "jitserve_no_batch_composition")
NAMES = {
    "azure_conv": "Azure conversation trace, held-out half hour (mixed SLOs)",
    "azure_code": "Azure code trace, held-out half hour (mixed SLOs)",
    "pf_long_output": "Past-Future artifact: prompt 32-4,096 / output 2,048-4,096",
    "pf_long_both": "Past-Future artifact: prompt 3,000-5,000 / output 3,000-5,000",
    "pf_long_prompt": "Past-Future artifact: prompt 2,048-4,096 / output 32-4,096",
    "arxiv": "arXiv summarisation (vAttention sample), Poisson arrivals",
}


def _cell(metrics: dict, key: str) -> str:
    if key not in metrics:
        return ""
    low, high = metrics.get(f"{key}/ci_low"), metrics.get(f"{key}/ci_high")
    if low is None:
        return f"{metrics[key]:.3f}"
    return f"{metrics[key]:.3f} [{low:.3f}, {high:.3f}]"


def render() -> str:
    result = load_result("serving_schedulers")
    if not result:
        return ""
    metrics, summary = result["metrics"], result["summary"]
    out = [
        f"`python bench/serving_schedulers/quality.py`: `python train.py experiment=serving_schedulers` took "
        f"{result['wall_s']:.0f} s on {result['machine']['cpus']} cores (goal <= {result['goal_s']} s; load average "
        f"{result['loadavg'][0]:.1f} when run, so shared-machine timings are upper bounds). Goodput = requests "
        "meeting their SLO per second, mean [95% bootstrap CI] over 3 held-out workloads per load.",
    ]
    workloads = [w for w in NAMES if any(k.startswith(f"test/{w}@") for k in metrics)]
    for workload in workloads:
        prefix = f"test/{workload}@"
        loads = sorted({float(k[len(prefix) :].split("/")[0]) for k in metrics if k.startswith(prefix)})
        methods = [*SCHEDULERS, *(a for a in ABLATIONS if f"{prefix}{loads[-1]:g}/{a}/goodput_rps" in metrics)]
        out += ["", f"## {NAMES[workload]}", "", "| req/s | " + " | ".join(methods) + " |"]
        out.append("|---" * (len(methods) + 1) + "|")
        for load in loads:
            cells = [_cell(metrics, f"{prefix}{load:g}/{m}/goodput_rps") for m in methods]
            out.append(f"| {load:g} | " + " | ".join(cells) + " |")
    out += [
        "",
        "## Past-Future vs aggressive and conservative admission (heaviest load)",
        "",
        "Paper: 2-3x the goodput of the aggressive or the conservative scheduler under heavy load.",
        "",
        "| workload | req/s | vs FCFS (aggressive) | vs conservative |",
        "|---|---|---|---|",
    ]
    for workload, r in summary["past_future"].items():
        out.append(f"| {workload} | {r['load']:g} | {r['vs_fcfs']:.2f}x | {r['vs_conservative']:.2f}x |")
    out += [
        "",
        "## JITServe vs the best other design, and its ablations (heaviest load)",
        "",
        "Paper: 1.4-6.3x service goodput. Ablations (headline workload): static length estimates, no slack "
        "grouping (one group by marginal goodput), no batch composition (no prefill budget).",
        "",
        "| workload | req/s | best other | JITServe vs it | jitserve | static length | no grouping | no batch comp. |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for workload, r in summary["jitserve"].items():
        abl = [f"{r[a]:.3f}" if a in r else "" for a in ABLATIONS]
        out.append(
            f"| {workload} | {r['load']:g} | {r['best_baseline']} | {r['ratio']:.2f}x | {r['jitserve']:.3f} | "
            + " | ".join(abl)
            + " |"
        )
    out += [
        "",
        "## The learned scheduler vs the best heuristic (Azure conversation, three heaviest loads)",
        "",
        "| req/s | learned | best heuristic | its goodput |",
        "|---|---|---|---|",
    ]
    for load, r in summary["learned"].items():
        out.append(f"| {load} | {r['learned']:.3f} | {r['best_heuristic']} | {r['best']:.3f} |")
    return "\n".join(out)
