"""The KV memory managers' results page: paged block sizes vs vAttention page sizes (memory only)."""

from __future__ import annotations

from bench._common import load_result

TITLE = "KV memory manager results"


def render() -> str:
    result = load_result("kv_memory")
    if not result:
        return ""
    out = [
        f"`python bench/kv_memory/memory.py`; {result['machine']['cpus']} cores; {result['requests']:,} requests "
        "per workload, one replica, vLLM defaults with chunked prefill, FCFS, recompute preemption. Only memory "
        "effects are simulated (allocation granularity, i.e. internal fragmentation, and swap copies): page-mapping "
        "time and the attention kernels' speed are not in the cost model, so the paper's gains, up to 1.97x decode "
        "throughput vs vLLM and prefill up to 3.92x vs paged FlashAttention (vAttention, PAPERS.md), which come "
        "mostly from its kernels, are not reproduced here; the table shows what the memory layout alone changes. "
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
