"""The fluid server model against the request-level serving simulator (issue 16).

The power and elastic envs serve requests with ``envs.power.fluid`` (a FIFO prefill queue and
a lock-step decode batch per server, vectorised over servers) instead of the request-level
kernel (``envs.serving.simulator.ServingCluster``). Both run the same Azure conversation
window on one Llama-2-70B TP8 H100 replica with the same cost model; the kernel's
``time_scale`` (set through its public ``ServingCluster.at``) plays a uniform frequency cap,
which the fluid model gets as ``clock = 1 / time_scale`` with every phase stretched.

    python bench/power/fluid_fidelity.py
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench._common import Benchmark, Check, data_dir, finish, write_result

BENCHMARKS = (Benchmark("power_fluid_fidelity", minutes=1.0),)
RESULT = "power_fluid_fidelity"
GOAL_REL = 0.25  # mean e2e latency and TPOT within 25% of the request-level simulator's
CASES = ((1.0, 1.0), (2.0, 1.0), (3.0, 1.0), (2.0, 1.3))  # (load factor, time_scale)


def check(result: dict) -> list[Check]:
    out = []
    for case in result["cases"]:
        for key in ("e2e_s_mean", "tpot_s_mean"):
            rel = case["fluid"][key] / case["kernel"][key] - 1.0
            out.append(
                Check(
                    f"load {case['load']}x, time_scale {case['time_scale']}: fluid {key}",
                    f"{rel:+.1%}",
                    f"within +-{GOAL_REL:.0%}",
                    abs(rel) <= GOAL_REL,
                )
            )
        rel = case["fluid"]["ttft_s_p99"] / case["kernel"]["ttft_s_p99"] - 1.0
        out.append(
            Check(f"load {case['load']}x, time_scale {case['time_scale']}: fluid ttft p99", f"{rel:+.1%}", "", None)
        )
    return out


def main() -> int:
    import numpy as np

    from infragym.datasets.llm_traces import load_azure_trace
    from infragym.envs.power.fluid import FluidServers, ServerTiming
    from infragym.envs.serving.cost_model import CostModel
    from infragym.envs.serving.simulator import SLO, ReplicaConfig, ServingCluster

    base = load_azure_trace(data_dir() / "llm_traces" / "azure_conv_splitwise.csv").window(0.0, 600.0)
    cost = CostModel("h100", "llama2-70b", 8)
    cases = []
    for load, scale in CASES:
        trace = base.scaled(load)
        timing = ServerTiming.from_cost_model(
            cost,
            max_running=256,
            mean_prompt=float(trace.prompt_tokens.mean()),
            mean_context=float(trace.prompt_tokens.mean() + trace.output_tokens.mean() / 2),
        )
        timing = ServerTiming(
            timing.prefill_fixed_s,
            timing.prefill_per_token_s,
            timing.decode_s,
            timing.decode_utilisation,
            prefill_stretch=1.0,
            decode_stretch=1.0,
        )
        started = time.perf_counter()
        fluid = FluidServers(trace, np.zeros(len(trace), dtype=np.int64), 1, timing, ttft_slo_s=2.0, tpot_slo_s=0.1)
        while fluid.now < trace.arrival_s[-1] + 600:
            fluid.tick(0.25, 1.0 / scale)
        fluid_s = time.perf_counter() - started
        lat = fluid.latencies()
        started = time.perf_counter()
        cluster = ServingCluster(replica=ReplicaConfig(gpu="h100", model="llama2-70b", tp=8), slo=SLO(2.0, 0.1, 1e9))
        if scale != 1.0:
            cluster.at(0.0, lambda c, t, s=scale: [setattr(r, "time_scale", s) for r in c.replicas])
        kernel = cluster.run(trace).metrics
        kernel_s = time.perf_counter() - started
        cases.append(
            {
                "load": load,
                "time_scale": scale,
                "requests": len(trace),
                "fluid": {
                    "e2e_s_mean": float(lat["e2e_s"].mean()),
                    "tpot_s_mean": float(lat["tpot_s"].mean()),
                    "ttft_s_mean": float(lat["ttft_s"].mean()),
                    "ttft_s_p99": float(np.percentile(lat["ttft_s"], 99)),
                    "seconds": fluid_s,
                },
                "kernel": {
                    "e2e_s_mean": kernel["e2e_s_mean"],
                    "tpot_s_mean": kernel["tbt_s_mean"],
                    "ttft_s_mean": kernel["ttft_s_mean"],
                    "ttft_s_p99": kernel["ttft_s_p99"],
                    "seconds": kernel_s,
                },
            }
        )
        print(cases[-1])
    # Speed at the env's scale: 26 servers x 600 s of 2.5 req/s each (the fluid row vs the kernel's
    # 26 replicas behind round-robin on the same requests).
    row = load_azure_trace(data_dir() / "llm_traces" / "azure_conv_splitwise.csv").scaled(26 * 2.5 / 5.53)
    row = row.window(0.0, 600.0)
    started = time.perf_counter()
    fluid = FluidServers(row, np.arange(len(row)) % 26, 26, timing)
    while fluid.now < 600.0:
        fluid.tick(0.5)
    fluid_row_s = time.perf_counter() - started
    started = time.perf_counter()
    ServingCluster(replica=ReplicaConfig(gpu="h100", model="llama2-70b", tp=8), n_replicas=26, drain_s=0.0).run(row)
    kernel_row_s = time.perf_counter() - started
    speed = {"requests": len(row), "servers": 26, "fluid_s": fluid_row_s, "kernel_s": kernel_row_s}
    print(speed)
    result = {
        "cases": cases,
        "row_speed": speed,
        "trace": "azure_conv_splitwise.csv, first 600 s",
        "loadavg": os.getloadavg(),
    }
    write_result(RESULT, result)
    return finish(RESULT, check(result))


if __name__ == "__main__":
    sys.exit(main())
