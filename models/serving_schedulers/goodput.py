"""Goodput: requests (and tokens) that meet their SLO per second, with evictions, queueing time
and KV utilisation.

A latency request meets its SLO when it finished with time to first token <= ttft, mean time
between tokens <= tbt and no gap between two tokens longer than ``max_stall_s`` (an eviction's
recompute stalls the stream: Past-Future's "harmful evictions"); a deadline request when it finished by
its deadline; a compound call when every call of its program finished and the last one by the
program's deadline (JITServe's service goodput counts a program's tokens only then). Token
goodput counts the generated tokens of the requests that met their SLO (JITServe's "service
goodput").
"""

from __future__ import annotations

import numpy as np

from infragym.envs.serving.simulator import FINISHED, TIMED_OUT, RequestTable
from infragym.models.serving_schedulers.workloads import COMPOUND, DEADLINE, LATENCY, Workload


def slo_met(workload: Workload, table: RequestTable) -> np.ndarray:
    """Per request: whether it met its SLO (bool)."""
    finished = table.state == FINISHED
    ttft = table.first_token - table.arrival
    many = table.generated > 1
    tpot = np.where(many, (table.completion - table.first_token) / np.maximum(table.generated - 1, 1), 0.0)
    with np.errstate(invalid="ignore"):
        latency_ok = (
            finished & (ttft <= workload.ttft_s) & (tpot <= workload.tbt_s) & (table.max_tbt <= workload.max_stall_s)
        )
        deadline_ok = finished & (table.completion <= workload.deadline_at)
    met = np.where(workload.slo_type == LATENCY, latency_ok, deadline_ok)
    compound = workload.slo_type == COMPOUND
    if compound.any():
        programs = workload.program[compound]
        ok = deadline_ok[compound]
        n_programs = int(programs.max()) + 1
        failed_calls = np.bincount(programs, weights=~ok, minlength=n_programs)
        met[compound] = failed_calls[programs] == 0
    return met


def goodput_metrics(
    workload: Workload, table: RequestTable, *, makespan_s: float, kv_log: tuple[np.ndarray, np.ndarray]
) -> dict[str, float]:
    """The scheduler metrics of one replay (rates per second of ``makespan_s``)."""
    makespan = max(makespan_s, 1e-9)
    met = slo_met(workload, table)
    finished = table.state == FINISHED
    good_tokens = float(table.generated[met].sum())
    metrics: dict[str, float] = {
        "requests": float(table.n),
        "goodput_rps": float(met.sum() / makespan),
        "goodput_tokens_s": good_tokens / makespan,
        "throughput_rps": float(finished.sum() / makespan),
        "throughput_tokens_s": float(table.generated[finished].sum() / makespan),
        "slo_attainment": float(met.mean()) if table.n else 0.0,
        "finished": float(finished.sum()),
        "timed_out": float(np.sum(table.state == TIMED_OUT)),
        "evictions": float(table.preemptions.sum()),
        "makespan_s": makespan,
    }
    for name, code in (("latency", LATENCY), ("deadline", DEADLINE), ("compound", COMPOUND)):
        of_type = workload.slo_type == code
        if of_type.any():
            metrics[f"slo_attainment_{name}"] = float(met[of_type].mean())
    ttft = (table.first_token - table.arrival)[finished]
    if ttft.size:
        metrics["ttft_s_p50"] = float(np.percentile(ttft, 50))
        metrics["ttft_s_p99"] = float(np.percentile(ttft, 99))
    ends, used = kv_log
    if ends.size > 1:
        metrics["kv_utilisation_mean"] = float(np.dot(used[:-1], np.diff(ends)) / max(ends[-1] - ends[0], 1e-9))
        metrics["kv_utilisation_max"] = float(used.max())
    return metrics


def queueing_metrics(queue_s: np.ndarray) -> dict[str, float]:
    """Time from arrival to first admission of the requests that were admitted."""
    q = queue_s[np.isfinite(queue_s)]
    if not q.size:
        return {"queue_s_mean": float("nan"), "queue_s_p99": float("nan")}
    return {"queue_s_mean": float(q.mean()), "queue_s_p99": float(np.percentile(q, 99))}
