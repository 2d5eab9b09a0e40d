"""Continuum's results page: job completion time of the KV-cache TTL policies (with the ablation)
and the tool-duration predictors."""

from __future__ import annotations

import statistics

from bench._common import ci, load_result

TITLE = "Continuum results"

CONTINUUM_POLICIES = (
    "ttl_only",
    "program_fcfs_only",
    "continuum",
    "fixed_2s",
    "predicted_mean",
    "learned",
    "oracle_duration",
)


def render() -> str:
    result = load_result("continuum")
    if not result:
        return ""
    jct = result["jct"]
    out = [
        f"`python bench/continuum/quality.py`; {result['machine']['cpus']} cores. Mean job completion time, "
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
                cells.append(ci(s, ".2f").replace(" [", "x [") if s else "")
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
