"""Serverless keep-alive results page: the cold-start vs wasted-memory frontier on held-out
functions and days, the learned policy vs the hybrid histogram at equal memory, the generator
next to the papers' values, and the simulator's speed."""

from __future__ import annotations

from bench._common import ci, load_result

TITLE = "Serverless keep-alive results"


def _frontier(result: dict) -> list[str]:
    out = [
        "## Cold starts vs wasted memory (held-out functions and days)",
        "",
        f"`python bench/serverless/frontier.py --seeds {result['seeds']}`; {result['machine']['cpus']} cores. "
        "Each region's held-out functions (30%) replayed over its held-out days (days 5-6 of 7); the first "
        "region is the training region, the others freshly generated. Idle memory in GB-s over the test days.",
        "",
    ]
    first = result["regions"][0]["points"]
    fixed = sorted((n for n in first if n.startswith("fixed_")), key=lambda n: int(n[6:].removesuffix("min")))
    names = [*fixed, *(n for n in ("hybrid_histogram", "learned", "ppo", "oracle") if n in first)]
    out += ["| policy | cold-start rate (region 0) | wasted GB-s (region 0) |", "|---|---|---|"]
    for name in names:
        p = first[name]
        out.append(f"| {name} | {p['cold_start_rate']:.4f} | {p['wasted_gb_s']:.3g} |")
    learned = [(k, v) for k, v in first.items() if k.startswith("learned[")]
    best = sorted(learned, key=lambda kv: kv[1]["wasted_gb_s"])
    out += [
        "",
        f"The learned predictor through each of its {len(learned)} candidate rules (quantile windows: low, "
        "high, margin; expected-cost rules: weight) traces its own frontier; the experiment's rule, chosen on "
        f"validation, is {result['rule']}. "
        f"Region 0's learned frontier spans {best[0][1]['wasted_gb_s']:.3g} to {best[-1][1]['wasted_gb_s']:.3g} GB-s.",
        "",
        "| at the hybrid histogram's wasted memory | cold-start rate / hybrid's (mean [95% CI] over regions) |",
        "|---|---|",
        f"| learned frontier (interpolated) | {ci(result['learned_vs_hybrid_at_equal_memory'], '.2f')} |",
        f"| the experiment's learned rule (its memory / hybrid's: "
        f"{ci(result['chosen_learned_vs_hybrid']['wasted_gb_s'], '.2f')}) | "
        f"{ci(result['chosen_learned_vs_hybrid']['cold_start_rate'], '.2f')} |",
    ]
    fixed = [
        r["fixed_frontier_at_hybrid_memory"] / r["points"]["hybrid_histogram"]["cold_start_rate"]
        for r in result["regions"]
    ]
    out.append(f"| fixed keep-alive frontier (1-240 min, interpolated) | {ci(fixed, '.2f')} |")
    return out


def render() -> str:
    out: list[str] = []
    frontier = load_result("serverless_frontier")
    if frontier:
        out += _frontier(frontier)
    experiment = load_result("serverless_experiment")
    if experiment:
        out += [
            "",
            "## The experiment",
            "",
            f"`python train.py experiment=serverless`: {experiment['wall_s']:.0f} s (goal <= 600 s on 2 cores; "
            f"load average during the run {experiment['loadavg'][0]:.1f}).",
            "",
            "| policy | cold-start rate [95% CI over 3 regions] | wasted GB-s |",
            "|---|---|---|",
        ]
        m = experiment["metrics"]
        for policy in ("fixed_1min", "fixed_10min", "fixed_20min", "hybrid_histogram", "oracle", "learned", "ppo"):
            key = f"test/{policy}/cold_start_rate"
            if key in m:
                low, high = m.get(f"{key}/ci_low", m[key]), m.get(f"{key}/ci_high", m[key])
                out.append(
                    f"| {policy} | {m[key]:.4f} [{low:.4f}, {high:.4f}] | {m[f'test/{policy}/wasted_gb_s']:.3g} |"
                )
        analysis = experiment.get("analysis", {})
        if analysis:
            median = analysis.get("test/analysis/pod_utility_median", float("nan"))
            below = analysis.get("test/analysis/pod_utility_below_1", float("nan"))
            out += [
                "",
                "Under Huawei's 1-minute keep-alive (the training region's held-out functions and days): cold-start "
                "share of invocations and mean cold-start time by trigger, runtime and pod memory "
                f"(EuroSys'25 Sec. 5); pod utility ratio median {median:.1f}, {100 * below:.0f}% below 1 "
                "(paper: ~4, ~20%).",
                "",
                "| group | cold-start share | mean cold-start time (s) |",
                "|---|---|---|",
            ]
            prefix = "test/analysis/cold_start_share/"
            for key in sorted(k for k in analysis if k.startswith(prefix)):
                group = key.removeprefix(prefix)
                seconds = analysis.get(f"test/analysis/mean_cold_start_s/{group}")
                out.append(f"| {group} | {analysis[key]:.3f} | {'' if seconds is None else f'{seconds:.2f}'} |")
    fidelity = load_result("serverless_fidelity")
    if fidelity:
        out += [
            "",
            "## Generator next to the papers",
            "",
            "`python bench/serverless/fidelity.py`. Cold-start inter-arrivals and the pod utility ratio are "
            "outputs of a scaled-down region (150 functions, rates capped at 0.1/s) under Huawei's 1-minute "
            "keep-alive, not calibration targets.",
            "",
            "| quantity | generated | paper | source |",
            "|---|---|---|---|",
        ]
        for key, value in fidelity["measured"].items():
            paper = fidelity["paper"][key]
            paper_text = f"dominant (> {paper:g})" if key.endswith("_share") else f"{paper:.3g}"
            out.append(f"| {key} | {value:.3g} | {paper_text} | {fidelity['sources'][key]} |")
    speed = load_result("serverless_speed")
    if speed:
        out += [
            "",
            "## Simulator speed",
            "",
            f"`taskset -c 1 python bench/serverless/speed.py`: a month ({speed['days']} days) of a "
            f"{speed['functions']}-function region, {speed['requests']:,} requests, one core "
            f"(load average {speed['loadavg'][0]:.1f}: the machine was "
            f"{'busy' if speed['loadavg'][0] > 2.5 else 'quiet'}). Goal: under 60 s.",
            "",
            "| policy | seconds (windows + simulation) | cold-start rate |",
            "|---|---|---|",
        ]
        for policy, seconds in speed["simulate_s"].items():
            out.append(f"| {policy} | {seconds:.1f} | {speed['metrics'][policy]['cold_start_rate']:.4f} |")
    return "\n".join(out)
