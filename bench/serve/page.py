"""The decision service's results page: the load test of ``infragym serve`` (four models served at
once), every level's throughput and latency, and the goals."""

from __future__ import annotations

from bench._common import load_result

TITLE = "Decision service results"


def render() -> str:
    result = load_result("serve_load")
    if not result:
        return ""
    from bench.serve.load import check

    goals = "\n".join(f"| {c.what} | {c.measured} | {c.goal} | {c.status} |" for c in check(result))
    rows = "\n".join(
        f"| {r['model']} | {r['operation']} | {r['items']} | {r['concurrency']} | {r['requests_per_s']:,.1f} | "
        f"{r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {_ms(r.get('server_mean_ms'))} | {_ms(r.get('client_cpu_ms'), 2)} | "
        f"{r['requests']:,} | {r['errors']} | "
        f"{_spread(r)} | {_when(r, result)} |"
        for r in result["levels"]
    )
    server = result["server"]
    machine = result["machine"]
    before = ", ".join(f"{x:.2f}" for x in result["load_average_before"])
    after = ", ".join(f"{x:.2f}" for x in result["load_average_after"])
    windows = result["exports"].get("cloudformer", {}).get("input_schema", {})
    window = f"{windows['window']} s x {windows['n_metrics']} metrics" if "window" in windows else "the export's"
    return "\n\n".join(
        [
            "`python bench/serve/load.py`: one `infragym serve` service "
            f"({server['workers']} worker process(es), {server['threads']} inference threads each) serving "
            f"{', '.join(result['exports'])} on loopback, loaded by closed-loop keep-alive clients "
            "(asyncio on uvloop, answers parsed by httptools) "
            f"for {result['seconds_per_level']:g} s per level. Latency is measured by the client (send to last "
            "byte); *server ms* is the service's own mean time per request, from its arrival to its answer "
            "(waiting for an inference thread included), from its latency histogram; the rest is the load "
            "generator's and the network stack's. *Connections* is how the clients' connections were spread "
            "over the worker processes half-way through the level; *client CPU* is the load generator's own CPU "
            "per request, taken from the same cores. "
            f"A CloudFormer item is one window of {window}; a VM2RL item is the real VMR2L medium "
            f"snapshot (`{result['vm2rl_snapshot']}`) with a budget of one migration.",
            f"Machine: {machine['cpus']} cores, shared with other jobs: load average (1, 5, 15 min) {before} "
            f"before and {after} after the last run. The load generator runs on the same cores as the server. "
            "A rerun of some models (`--models`) keeps the other models' levels, each row with its own time.",
            "## Goals (issue 13)\n\n| what | measured | goal | status |\n|---|---|---|---|\n" + goals,
            "## Every level\n\n| model | operation | items | concurrency | req/s | p50 ms | p99 ms | server ms "
            "| client CPU ms | requests | errors | connections | measured (UTC), load average |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|\n" + rows,
        ]
    )


def _when(row: dict, result: dict) -> str:
    """A level's time and the machine's 1-minute load average before it (rows of a partial rerun
    keep their own; rows without them are the whole run's)."""
    date = row.get("measured_at") or result["date"]
    load = row.get("load_average_before") or result["load_average_before"]
    return f"{date[:16].replace('T', ' ')}, {load[0]:.2f}"


def _spread(row: dict) -> str:
    spread = row.get("connections_per_worker")
    return "/".join(map(str, spread)) if spread else "-"


def _ms(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"
