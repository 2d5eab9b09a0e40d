"""The workload-twin results page: twins fitted on a trace's first half against its second half."""

from __future__ import annotations

import statistics

from bench._common import ci, load_result

TITLE = "Workload twin results"

METHODS = ("twin", "twin_mle", "twin_empirical", "burstgpt_published", "poisson", "replay")
COLUMNS = (
    ("iat_cv_window_mae", "CV by window, MAE"),
    ("iat_ks", "KS gaps"),
    ("prompt_ks", "KS request"),
    ("prompt_ks_window_mean", "KS request by window"),
    ("output_ks", "KS response"),
    ("latency/ttft_s_p50/rel_err", "TTFT p50 err"),
    ("latency/ttft_s_p99/rel_err", "TTFT p99 err"),
    ("latency/tbt_s_p99/rel_err", "TBT p99 err"),
    ("latency/e2e_s_p99/rel_err", "E2E p99 err"),
)
NAMES = {
    "azure_conv": "Azure 2023 conversation trace",
    "azure_code": "Azure 2023 code trace",
    "burstgpt_like": "BurstGPT-like, 4 days (published Gamma shapes, Zipf 1.1, failures; assumed conversations)",
}


def _cell(values: list | None) -> str:
    values = [v for v in values or [] if v is not None]
    if not values:
        return "-"
    return ci(values, ".3f") if len(values) > 1 else f"{values[0]:.3f}"


def render() -> str:
    result = load_result("workload_twin")
    if not result:
        return ""
    out = [
        f"`python bench/workload_twin/fidelity.py`; {result['machine']['cpus']} cores, load average "
        f"{result['loadavg_start'][0]:.1f} at the start. Every twin is fitted on the first half of a trace "
        f"(by time) and compared with the second half; mean [95% bootstrap CI] over {result['seeds']} twins "
        "(the replay is the first half itself, one value). Errors of the serving simulator's latency "
        "percentiles are relative to the held-out half's (one H100, Llama-3.1-8B, vLLM defaults with "
        "chunked prefill). Lower is better everywhere.",
    ]
    for name, trace in result["traces"].items():
        fitted = trace["fitted"]
        prompts = fitted["prompt"]
        families = ", ".join(p["family"] for p in prompts)
        zipf_ks = ", ".join(f"{p['ks_zipf']:.3f}" for p in prompts)
        zipf_a = ", ".join(f"{p['zipf_a']:.2f}" for p in prompts)
        out += [
            "",
            f"## {NAMES.get(name, name)}",
            "",
            f"{trace['requests'][0]:,} requests fitted ({trace['duration_h'][0]:.1f} h), {trace['requests'][1]:,} "
            f"held out; fit in {trace['fit_s']:.2f} s; {len(fitted['gamma_shape'])} windows of "
            f"{fitted['window_s']:.0f} s"
            + (" (hour of day)" if fitted["period_s"] else "")
            + f"; Gamma shape by window {min(fitted['gamma_shape']):.3f}-{max(fitted['gamma_shape']):.3f}; "
            f"request lengths by model: {families} (Zipf fit's KS {zipf_ks}, a = {zipf_a})."
            + (f" Latency replayed {trace['latency_scale']:g}x faster." if trace["latency_scale"] != 1 else ""),
            "",
            "| method | " + " | ".join(label for _, label in COLUMNS) + " |",
            "|---" * (1 + len(COLUMNS)) + "|",
        ]
        for method in METHODS:
            stats = trace["methods"][method]
            out.append(f"| {method} | " + " | ".join(_cell(stats.get(key)) for key, _ in COLUMNS) + " |")
        conversation = trace.get("conversation", {})
        if "twin" in conversation:
            keys = sorted({k.rsplit("/", 1)[0] for k in conversation["twin"]})
            out += ["", "| conversation statistic | held-out half | twin |", "|---|---|---|"]
            for key in keys:
                a, b = conversation["twin"].get(f"{key}/trace"), conversation["twin"].get(f"{key}/twin")
                if a is not None and b is not None:
                    out.append(f"| {key.split('/', 1)[1]} | {a:.3f} | {b:.3f} |")
            if "conversation/interval_ks" in conversation["twin"]:
                out.append(f"| KS of turn intervals | | {conversation['twin']['conversation/interval_ks']:.3f} |")
        by_window = trace["iat_cv_by_window"]
        cvs = [v for v in by_window["trace"] if v is not None]
        if cvs:
            twin_cvs = [v for v in by_window["twin"] if v is not None]
            out += [
                "",
                f"Inter-arrival CV by window, held-out half: {statistics.fmean(cvs):.2f} mean "
                f"({min(cvs):.2f}-{max(cvs):.2f}); twin (seed 0): {statistics.fmean(twin_cvs):.2f} "
                f"({min(twin_cvs):.2f}-{max(twin_cvs):.2f}).",
            ]
    if "speed" in result:
        seconds = result["speed"]["generate_1m_s"]
        out += ["", f"Generating 1,000,000 requests of the Azure conversation twin: {seconds:.2f} s."]
    return "\n".join(out)
