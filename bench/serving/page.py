"""The LLM serving simulator's results page: cost-model fidelity and simulation speed."""

from __future__ import annotations

from bench._common import load_result

TITLE = "Serving simulator results"


def render() -> str:
    rows = []
    fidelity = load_result("serving_fidelity")
    if fidelity:
        for name, r in fidelity["profiles"].items():
            rows.append(
                f"| cost-model error on `{name}` ({r['rows']} rows, {r['gpu']}) | MAPE {100 * r['mape']:.1f}% "
                f"(uncalibrated {100 * r['mape_uncalibrated']:.1f}%) | <= 15% |"
            )
    for name in ("round_robin", "least_outstanding", "round_robin_rate600"):
        speed = load_result(f"serving_speed_{name}")
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
        "`python bench/serving/fidelity.py`, `python bench/serving/speed.py`; one core.\n\n"
        "| what | measured | goal |\n|---|---|---|\n" + "\n".join(rows)
    )
