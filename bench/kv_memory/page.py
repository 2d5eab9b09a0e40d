"""The KV memory results page: paged block sizes vs vAttention page sizes (memory only), the
context-switching study (vLLM's swap vs FastSwitch) and the kernel's speed with each manager."""

from __future__ import annotations

from bench._common import load_result

TITLE = "KV memory manager results"


def render() -> str:
    return "\n\n".join(part for part in (_memory(), _switch(), _speed()) if part)


def _switch() -> str:
    result = load_result("kv_memory_switch")
    if not result:
        return ""
    out = [
        "## Context switching (FastSwitch)",
        "",
        f"`python bench/kv_memory/switch.py`; {result['requests']:,} multi-turn conversation requests "
        f"(BurstGPT-calibrated) at {result['rate']:g} sessions/s, {result['setup']}; mean over "
        f"{result['seeds']} seeds [95% bootstrap interval]. TBT: per-request mean time between tokens; "
        "longest gap: each request's longest pause. Fairness: Jain's index of the clients' token rates "
        f"while in the system. Load average {result['loadavg_start'][0]:.1f} -> {result['loadavg_end'][0]:.1f} "
        "(simulated time does not depend on it). The paper reports 1.4-11.2x better tail TTFT/TBT than vLLM and "
        "preemption stalls up to 59.9% of P99 latency.",
        "",
        "| variant | p99 TTFT (s) | p99 TBT (s) | p99 longest gap (s) | throughput (tok/s) | Jain | GB swapped "
        "| copies | GPU stall (s) | stall / busy |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]

    def ci(row: dict, key: str, fmt: str) -> str:
        low, high = row.get(f"{key}/ci_low"), row.get(f"{key}/ci_high")
        text = format(row[key], fmt)
        return text if low is None else f"{text} [{format(low, fmt)}, {format(high, fmt)}]"

    for variant, row in result["variants"].items():
        out.append(
            f"| {variant} | {ci(row, 'p99_ttft_s', '.3g')} | {ci(row, 'p99_tbt_s', '.3g')} | "
            f"{row['p99_max_tbt_s']:.3g} | {ci(row, 'throughput_tok_s', ',.0f')} | {row['jain_service_rate']:.3f} | "
            f"{row['gb_swapped']:,.0f} | {row['copies']:,.0f} | {row['gpu_stall_s']:,.1f} | "
            f"{row['stall_share_of_busy']:.1%} |"
        )
    if result.get("azure"):
        out += [
            "",
            f"The Azure 2023 conversation trace at {result['azure_rate']:g} req/s (every request its own client, "
            "nothing to reuse across turns):",
            "",
            "| variant | p99 TTFT (s) | p99 TBT (s) | throughput (tok/s) | GB swapped | GPU stall (s) | preemptions |",
            "|---|---|---|---|---|---|---|",
        ]
        for variant, row in result["azure"].items():
            out.append(
                f"| {variant} | {row['p99_ttft_s']:.3g} | {row['p99_tbt_s']:.3g} | {row['throughput_tok_s']:,.0f} | "
                f"{row['gb_swapped']:,.0f} | {row['gpu_stall_s']:,.1f} | {row['preemptions']:.0f} |"
            )
    out += [
        "",
        "Against load (seed 0): p99 TTFT / p99 TBT (s), vLLM's swap vs FastSwitch.",
        "",
        "| sessions/s | vLLM swap | FastSwitch | TTFT ratio | TBT ratio |",
        "|---|---|---|---|---|",
    ]
    for rate, rows in result["by_rate"].items():
        v, f = rows["vllm_swap"], rows["fastswitch"]
        out.append(
            f"| {rate} | {v['p99_ttft_s']:.3g} / {v['p99_tbt_s']:.3g} | {f['p99_ttft_s']:.3g} / {f['p99_tbt_s']:.3g} | "
            f"{v['p99_ttft_s'] / f['p99_ttft_s']:.2f}x | {v['p99_tbt_s'] / f['p99_tbt_s']:.2f}x |"
        )
    out += [
        "",
        "Against the priority-update period (iterations between updates; seed 0): p99 TTFT / p99 TBT (s), preemptions.",
        "",
        "| update every | vLLM swap | FastSwitch |",
        "|---|---|---|",
    ]
    for k, rows in result["by_update_every"].items():
        v, f = rows["vllm_swap"], rows["fastswitch"]
        out.append(
            f"| {k} | {v['p99_ttft_s']:.3g} / {v['p99_tbt_s']:.3g}, {v['preemptions']:.0f} | "
            f"{f['p99_ttft_s']:.3g} / {f['p99_tbt_s']:.3g}, {f['preemptions']:.0f} |"
        )
    return "\n".join(out)


def _speed() -> str:
    result = load_result("kv_memory_speed")
    if not result:
        return ""
    out = [
        "## The kernel's speed with each manager",
        "",
        f"`python bench/kv_memory/speed.py`; {result['requests']:,} BurstGPT-like requests, 8 replicas of "
        "Llama-3.1-8B on H100, FCFS, round-robin, 200 req/s, one core (issue 14's goal: <= 20 s). The machine is "
        "shared: wall time depends on its load, CPU time much less.",
        "",
        "| manager | wall (s) | CPU (s) | load average | iterations | p99 TTFT (s) |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in result["managers"].items():
        out.append(
            f"| {name} | {row['wall_s']:.1f} | {row['cpu_s']:.1f} | {row['load_average'][0]:.1f} | "
            f"{row['iterations']:,} | {row['ttft_s_p99']:.3f} |"
        )
    return "\n".join(out)


def _memory() -> str:
    result = load_result("kv_memory")
    if not result:
        return ""
    out = [
        f"`python bench/kv_memory/memory.py`; {result['machine']['cpus']} cores; {result['requests']:,} requests "
        "per workload, one replica, vLLM defaults with chunked prefill, FCFS, recompute preemption. "
        "`vattention_<page>_memory` rows hold the memory effects only (allocation granularity, i.e. internal "
        "fragmentation, swap copies and page mapping at 37.4 us per page: measured for 2 MB on an A100, assumed "
        "for smaller pages; decode pages mapped in the background) at the paged kernel's speed; "
        "`vattention_<page>` rows add the contiguous decode kernel (1/1.23 of paged attention's time, vLLM paper; "
        "prefill factor 1). The paper's gains, up to 1.97x decode throughput vs vLLM and prefill up to 3.92x vs "
        "paged FlashAttention (vAttention, PAPERS.md), come mostly from its kernels and from prefill, which we do "
        "not model per kernel. "
        "Under overload, a few percent between variants of equal capacity (e.g. paged_16 and paged_32) is "
        "the chaos of which request gets preempted when, not a memory effect.",
    ]
    names = {"arxiv": "arXiv summarisation (long prompts, Poisson)", "azure_conv": "Azure 2023 conversation"}
    for key, setup in result["setups"].items():
        for workload, rows in setup["workloads"].items():
            base = rows["paged_16"]["throughput_tok_s"]
            out += [
                "",
                f"## {key}, {names.get(workload, workload)} at {setup['rates'][workload]:g} req/s",
                "",
                "| variant | tokens per block/page | KV capacity (tokens) | batch before preemption | preemptions "
                "| throughput (tok/s) | vs paged_16 | TTFT p50 / p99 (s) | TBT p50 / p99 (ms) |",
                "|---|---|---|---|---|---|---|---|---|",
            ]
            # paged by block size, then vAttention by page size
            order = sorted(rows, key=lambda v: (not v.startswith("paged_"), rows[v]["block_tokens"]))
            for variant in order:
                r = rows[variant]
                ttft = f"{r['ttft_p50_s']:.2f} / {r['ttft_p99_s']:.2f}" if r["ttft_p50_s"] is not None else "-"
                tbt = f"{1e3 * r['tbt_p50_s']:.1f} / {1e3 * r['tbt_p99_s']:.1f}" if r["tbt_p50_s"] is not None else "-"
                out.append(
                    f"| {variant} | {r['block_tokens']:,} | {r['capacity_tokens']:,} | "
                    f"{r['max_batch_before_preemption']}{'' if r['preempted'] else ' (never preempted)'} | "
                    f"{r['preemptions']:.0f} | {r['throughput_tok_s']:,.0f} | {r['throughput_tok_s'] / base:.3f}x | "
                    f"{ttft} | {tbt} |"
                )
    return "\n".join(out)
