"""Power capping (POLCA) results page: the GPU power model's fit, the fluid model's fidelity,
and the extra servers each policy fits in a row's budget next to the paper's 30%."""

from __future__ import annotations

from bench._common import load_result

TITLE = "Power capping results"


def _fit(result: dict) -> list[str]:
    out = [
        "## GPU latency/power model fit",
        "",
        "`python bench/power/fit.py`: splitwise-sim's measured Llama-2-70B tables "
        f"({', '.join(f'{hw}: {n} rows' for hw, n in result['rows'].items())}). MAPE / median APE; the mean "
        "is pulled up by a few configurations far off every trend (e.g. batch 64 on A100 TP2).",
        "",
        "| hardware | prompt time | token time | average power |",
        "|---|---|---|---|",
    ]

    def cell(errors: dict, name: str) -> str:
        if f"{name}_mape" not in errors:
            return "not measured"
        return f"{errors[f'{name}_mape']:.1%} / {errors[f'{name}_median_ape']:.1%}"

    blocks = (
        ("", result["fit"]),
        (" (held-out TP4)", result["held_out_tp4"]),
        (" (held out: predicted from the A100 fit)", result["held_out_h100_from_a100"]),
    )
    for label, block in blocks:
        for hw, errors in block.items():
            row = (cell(errors, "prompt_time"), cell(errors, "token_time"), cell(errors, "average_power"))
            out.append(f"| {hw}{label} | " + " | ".join(row) + " |")
    cap = result["cap_effect"]
    p = result["parameters"]
    out += [
        "",
        f"At 70% of TDP (TP8, 2,048-token prompt): prefill x{cap['prefill_slowdown']:.2f}, decode "
        f"x{cap['decode_slowdown']:.3f} (the data: x1.30 and unchanged). Per TP: "
        + ", ".join(
            f"TP{tp} x{v['prefill_slowdown']:.2f}/x{v['decode_slowdown']:.2f}"
            for tp, v in result["cap_effect_by_tp"].items()
        )
        + f". Power parameters: s_prefill {p['prefill_scale']:.2f}, s_decode {p['decode_scale']:.2f}, "
        f"alpha {p['alpha']:.2f}.",
    ]
    return out


def _fluid(result: dict) -> list[str]:
    out = [
        "",
        "## Fluid server model vs the request-level kernel",
        "",
        f"`python bench/power/fluid_fidelity.py`: {result['trace']}, one Llama-2-70B TP8 H100 replica.",
        "",
        "| load | time scale | e2e mean fluid / kernel (s) | TPOT mean fluid / kernel (ms) "
        "| TTFT p99 fluid / kernel (s) |",
        "|---|---|---|---|---|",
    ]
    for c in result["cases"]:
        f, k = c["fluid"], c["kernel"]
        out.append(
            f"| {c['load']}x | {c['time_scale']} | {f['e2e_s_mean']:.2f} / {k['e2e_s_mean']:.2f} | "
            f"{1e3 * f['tpot_s_mean']:.1f} / {1e3 * k['tpot_s_mean']:.1f} | "
            f"{f['ttft_s_p99']:.2f} / {k['ttft_s_p99']:.2f} |"
        )
    speed = result.get("row_speed")
    if speed:
        out += [
            "",
            f"Speed at the env's scale ({speed['servers']} servers, 600 s, {speed['requests']:,} requests): fluid "
            f"{speed['fluid_s']:.2f} s at 0.5 s ticks, request-level kernel {speed['kernel_s']:.2f} s (load average "
            f"{result['loadavg'][0]:.1f}). A PPO run steps the row ~40,000 times.",
        ]
    return out


def _experiment(result: dict) -> list[str]:
    m = result["metrics"]
    out = [
        "",
        "## Extra servers in the same row budget",
        "",
        f"`python train.py experiment=power_capping`: {result['wall_s']:.0f} s (goal <= 600 s on 2 cores; load "
        f"average {result['loadavg'][0]:.1f}: the machine was {'busy' if result['loadavg'][0] > 2.5 else 'quiet'}). "
        "Held-out trace windows at the training load and 1.15x; a policy fits an oversubscription when no run "
        "has a power-brake event and the p99 end-to-end latency grows <= 5% (high priority) and <= 25% (low). "
        "Latency columns at 30% more servers (POLCA's point), mean over the test runs.",
        "",
        "| policy | extra servers | p99 increase high | p99 increase low | brake events | SLO attainment "
        "| row power max / budget |",
        "|---|---|---|---|---|---|---|",
    ]
    for policy in ("no_oversubscription", "uncapped", "static", "polca", "learned"):
        key = f"test/{policy}/extra_servers_frac"
        if key not in m:
            continue
        g = {k.removeprefix(f"test/{policy}/"): v for k, v in m.items() if k.startswith(f"test/{policy}/")}
        out.append(
            f"| {policy} | {g['extra_servers_frac']:.0%} | {g.get('p99_increase_high', float('nan')):+.1%} | "
            f"{g.get('p99_increase_low', float('nan')):+.1%} | {g.get('brake_events', float('nan')):.1f} | "
            f"{g.get('slo_attainment', float('nan')):.3f} | {g.get('row_power_max_frac', float('nan')):.2f} |"
        )
    out += ["", "POLCA (paper): 30% more servers with minimal performance loss."]
    return out


def render() -> str:
    out: list[str] = []
    for name, part in (
        ("power_fit", _fit),
        ("power_fluid_fidelity", _fluid),
        ("power_capping_experiment", _experiment),
    ):
        result = load_result(name)
        if result:
            out += part(result)
    return "\n".join(out)
