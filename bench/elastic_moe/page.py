"""Elastic MoE results page: scale-up latency per method next to ElasticMoE's ratio, throughput
while scaling, and the SLO-attainment vs device-hours frontier on held-out traces."""

from __future__ import annotations

from bench._common import load_result

TITLE = "Elastic MoE results"
POLICIES = ("static_peak", "reactive", "predictive", "learned", "reactive_restart", "reactive_replica")


def _scaling(result: dict) -> list[str]:
    out = [
        "## Scale-up latency per method",
        "",
        "`python bench/elastic_moe/scaling.py`: one step up from 4 devices (+2 in place or by restart, +1 replica "
        "of 4), derived from weight bytes, bandwidths and setup costs (`envs/elastic/scaling.py`).",
        "",
        "| model | GPU | elastic (s) | restart (s) | replica (s) | restart / elastic | replica / elastic |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in result["latency"]:
        out.append(
            f"| {r['model']} | {r['gpu']} | {r['elastic_s']:.1f} | {r['restart_s']:.1f} | {r['replica_s']:.1f} | "
            f"{r['restart_over_elastic']:.1f}x | {r['replica_over_elastic']:.1f}x |"
        )
    t = result["throughput_window"]
    lo, hi = result["window_s"]
    out += [
        "",
        "ElasticMoE (paper): up to ~9x lower scale-up latency.",
        "",
        f"Throughput while scaling (Mixtral-8x7B, A100, BurstGPT-like load, a scale-up at {lo:.0f} s; completed "
        f"requests/s from {lo:.0f} to {hi:.0f} s): elastic {t['elastic']:.1f}, restart {t['restart']:.1f}, replica "
        f"{t['replica']:.1f}; elastic / restart {t['elastic'] / max(t['restart'], 1e-9):.2f}x, elastic / replica "
        f"{t['elastic'] / max(t['replica'], 1e-9):.2f}x (paper: up to ~2x).",
    ]
    return out


def _experiment(result: dict) -> list[str]:
    m = result["metrics"]
    out = [
        "",
        "## Autoscalers on held-out traces",
        "",
        f"`python bench/elastic_moe/experiment.py` (runs `python train.py experiment=elastic_moe`: "
        f"{result['wall_s']:.0f} s, goal <= 600 s on 2 cores; load average {result['loadavg'][0]:.1f}). "
        "Mean over held-out episodes [95% bootstrap CI].",
        "",
        "| policy | SLO attainment (Azure code) | device-hours | scale-up latency (s) "
        "| SLO attainment (BurstGPT-like) | device-hours |",
        "|---|---|---|---|---|---|",
    ]
    for p in POLICIES:
        if f"test/{p}/slo_attainment" not in m:
            continue
        slo = m[f"test/{p}/slo_attainment"]
        lo, hi = m.get(f"test/{p}/slo_attainment/ci_low", slo), m.get(f"test/{p}/slo_attainment/ci_high", slo)
        out.append(
            f"| {p} | {slo:.3f} [{lo:.3f}, {hi:.3f}] | {m[f'test/{p}/device_hours']:.3f} | "
            f"{m[f'test/{p}/scale_up_latency_s']:.1f} | "
            f"{m.get(f'test_burstgpt/{p}/slo_attainment', float('nan')):.3f} | "
            f"{m.get(f'test_burstgpt/{p}/device_hours', float('nan')):.3f} |"
        )
    out += [
        "",
        "### Frontier (held-out Azure code windows)",
        "",
        "| family | parameters | SLO attainment | device-hours |",
        "|---|---|---|---|",
    ]
    for family, points in result["frontier"].items():
        for pt in points:
            params = ", ".join(f"{k}={v:g}" for k, v in pt.items() if k not in ("slo_attainment", "device_hours"))
            out.append(f"| {family} | {params} | {pt['slo_attainment']:.3f} | {pt['device_hours']:.3f} |")
    return out


def render() -> str:
    out: list[str] = []
    for name, part in (("elastic_moe_scaling", _scaling), ("elastic_moe_experiment", _experiment)):
        result = load_result(name)
        if result:
            out += part(result)
    return "\n".join(out)
