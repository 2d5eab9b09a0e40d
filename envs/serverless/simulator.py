"""The serverless keep-alive simulator: pods, cold starts, keep-alive and pre-warm windows.

Model (as in Shahrad et al. ATC'20 Sec. 4 and Joosen et al. EuroSys'25 Sec. 2):
- each function has pods of ``concurrency`` slots (1 by default: one request per pod, as
  Huawei's and Azure's function pods); a request runs on a warm pod with a free slot, else it
  cold-starts a pod and waits for the cold start (its time drawn per request, so every policy
  sees the same cold-start times: common random numbers);
- when a pod goes idle after a request, the windows attached to that request apply: the pod is
  unloaded and pre-warmed ``prewarm_s`` later (0: it stays loaded), then kept warm for
  ``keep_alive_s``; a request in the warm window reuses it, otherwise the pod is gone;
- a pod's useful lifetime runs from the end of its cold start to the end of its last request
  (its life without the final keep-alive); over its cold-start time it is the pod utility ratio;
- memory held by loaded idle pods is wasted: GB x seconds, accounted exactly per idle interval.
  Memory held while a pod runs a request or cold-starts is useful, not wasted.
- the choice of pod: a busy pod with a free slot first, then the most recently idle warm pod
  (what keeps the others' idle periods growing, so they expire first), else a cold start that
  reuses an expired pod's slot before a pending pre-warm's.

Functions are independent (no shared capacity), so the kernel runs function by function over the
requests of each, in arrival order: one compiled loop (numba) whose inner work is per request,
never per time step. ``oracle=True`` replaces the windows with future knowledge: a pod is
unloaded when it goes idle and pre-warmed exactly when a request next reuses it (no idle memory at
all; cold starts only when every pod the function ever had is busy): the bound of what keep-alive
and pre-warm windows can achieve.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from infragym.datasets.serverless import InvocationTrace

MB_PER_GB = 1024.0


@numba.njit(cache=True)
def _settle(
    p: int,
    upto: float,
    pod_end: np.ndarray,
    pod_wf: np.ndarray,
    pod_wu: np.ndarray,
    pod_settled: np.ndarray,
    pod_inst_open: np.ndarray,
    pod_inst_cold: np.ndarray,
    pod_inst_ready: np.ndarray,
    mem_gb: float,
    waste: np.ndarray,
    f: int,
    records: np.ndarray,
    counts: np.ndarray,
    utility_cold: np.ndarray,
    utility_busy: np.ndarray,
    recording: bool,
    close: bool,
    measure_from: float,
) -> None:
    """Account pod ``p``'s idle period in full, up to ``upto`` (the next use or the horizon);
    ``close``: the pod's cold-started life ends with it (evicted, or unloaded for a pre-warm)."""
    if pod_settled[p]:
        return
    pod_settled[p] = True
    wf = max(pod_wf[p], measure_from)
    stop = min(pod_wu[p], upto)
    if stop > wf:
        waste[f] += (stop - wf) * mem_gb
        if recording:
            k = counts[1]
            records[k, 0] = p
            records[k, 1] = wf
            records[k, 2] = stop
            counts[1] = k + 1
    if close and pod_inst_open[p]:
        k = counts[0]
        utility_cold[k] = pod_inst_cold[p]
        utility_busy[k] = pod_end[p] - pod_inst_ready[p]
        counts[0] = k + 1
        pod_inst_open[p] = False


@numba.njit(cache=True)
def _simulate(
    arrival: np.ndarray,
    duration: np.ndarray,
    cold_start: np.ndarray,
    function_order: np.ndarray,
    function_bounds: np.ndarray,
    memory_gb: np.ndarray,
    prewarm: np.ndarray,
    keep_alive: np.ndarray,
    concurrency: int,
    oracle: bool,
    horizon: float,
    recording: bool,
    measure_from: float,
):
    n = arrival.size
    n_functions = function_bounds.size - 1
    cold = np.zeros(n, dtype=np.bool_)
    start = np.empty(n, dtype=np.float64)
    pod_of = np.empty(n, dtype=np.int64)
    waste = np.zeros(n_functions, dtype=np.float64)
    pods_per_function = np.zeros(n_functions, dtype=np.int64)
    # pods, allocated function by function in one global table (at most one pod per request)
    slot_end = np.zeros((max(n, 1), concurrency), dtype=np.float64)
    pod_end = np.zeros(max(n, 1))
    pod_wf = np.zeros(max(n, 1))
    pod_wu = np.zeros(max(n, 1))
    pod_settled = np.ones(max(n, 1), dtype=np.bool_)
    pod_inst_open = np.zeros(max(n, 1), dtype=np.bool_)
    pod_inst_cold = np.zeros(max(n, 1))
    pod_inst_ready = np.zeros(max(n, 1))
    utility_cold = np.zeros(max(n, 1))
    utility_busy = np.zeros(max(n, 1))
    recording = recording and not oracle
    records = np.zeros((max(2 * n, 1) if recording else 1, 3))  # idle intervals: pod, from, to
    counts = np.zeros(2, dtype=np.int64)  # utility records, idle records
    next_pod = 0
    for f in range(n_functions):
        lo, hi = function_bounds[f], function_bounds[f + 1]
        first_pod = next_pod
        mem = 0.0 if oracle else memory_gb[f]
        for r in range(lo, hi):
            i = function_order[r]
            t = arrival[i]
            chosen = -1
            chosen_end = -1.0
            kind = 0  # 1: busy pod with a free slot, 2: warm idle pod, 3: expired pod, 4: pending pre-warm
            for p in range(first_pod, next_pod):
                if pod_end[p] > t:
                    if concurrency > 1 and kind != 1:
                        for k in range(concurrency):
                            if slot_end[p, k] <= t:
                                chosen, kind = p, 1
                                break
                    continue
                if kind == 1:
                    continue
                if pod_wf[p] <= t <= pod_wu[p]:
                    if kind != 2 or pod_end[p] > chosen_end:
                        chosen, kind, chosen_end = p, 2, pod_end[p]
                elif t > pod_wu[p]:
                    if not pod_settled[p]:  # (checked here: a call with this many arrays is not free)
                        _settle(
                            p, t, pod_end, pod_wf, pod_wu, pod_settled, pod_inst_open, pod_inst_cold,
                            pod_inst_ready, mem, waste, f, records, counts,
                            utility_cold, utility_busy, recording, True, measure_from,
                        )  # fmt: skip
                    if kind == 0 or kind == 4:
                        chosen, kind = p, 3
                elif kind == 0:
                    chosen, kind = p, 4  # idle, waiting for its pre-warm
            is_cold = kind != 1 and kind != 2
            if kind == 0:
                chosen = next_pod
                next_pod += 1
                pods_per_function[f] += 1
                for k in range(concurrency):
                    slot_end[chosen, k] = 0.0
            elif kind == 2:
                # warm reuse: the idle period ends now (the cold-started life goes on without a pre-warm)
                prewarmed = pod_wf[chosen] > pod_end[chosen]
                if prewarmed:
                    _settle(
                        chosen, pod_wf[chosen], pod_end, pod_wf, pod_wu, pod_settled, pod_inst_open,
                        pod_inst_cold, pod_inst_ready, mem, waste, f, records, counts, utility_cold,
                        utility_busy, recording, True, measure_from,
                    )  # fmt: skip
                    pod_settled[chosen] = False
                pod_wu[chosen] = min(pod_wu[chosen], t)
                _settle(
                    chosen, t, pod_end, pod_wf, pod_wu, pod_settled, pod_inst_open, pod_inst_cold,
                    pod_inst_ready, mem, waste, f, records, counts,
                    utility_cold, utility_busy, recording, False, measure_from,
                )  # fmt: skip
            elif kind == 4:
                # the pending pre-warm is cancelled: no idle memory since the unload
                pod_wu[chosen] = pod_wf[chosen]
                _settle(
                    chosen, t, pod_end, pod_wf, pod_wu, pod_settled, pod_inst_open, pod_inst_cold,
                    pod_inst_ready, mem, waste, f, records, counts,
                    utility_cold, utility_busy, recording, True, measure_from,
                )  # fmt: skip
            if is_cold:
                cold[i] = True
                pod_inst_open[chosen] = True
                pod_inst_cold[chosen] = cold_start[i]
                pod_inst_ready[chosen] = t + cold_start[i]  # when the pod is ready
            begin = t + cold_start[i] if is_cold else t
            finish = begin + duration[i]
            start[i] = begin
            pod_of[i] = chosen
            slot = 0
            for k in range(1, concurrency):
                if slot_end[chosen, k] < slot_end[chosen, slot]:
                    slot = k
            slot_end[chosen, slot] = finish
            if finish >= pod_end[chosen] or kind != 1:
                pod_end[chosen] = max(finish, pod_end[chosen]) if kind == 1 else finish
                pod_settled[chosen] = False
                if oracle:
                    # pre-warmed exactly when a request next reuses it: never expires, never idle-loaded
                    pod_wf[chosen] = pod_end[chosen]
                    pod_wu[chosen] = np.inf
                else:
                    pod_wf[chosen] = pod_end[chosen] + prewarm[i]
                    pod_wu[chosen] = pod_wf[chosen] + keep_alive[i]
        for p in range(first_pod, next_pod):
            if pod_end[p] < horizon:
                _settle(
                    p, horizon, pod_end, pod_wf, pod_wu, pod_settled, pod_inst_open, pod_inst_cold,
                    pod_inst_ready, mem, waste, f, records, counts,
                    utility_cold, utility_busy, recording, True, measure_from,
                )  # fmt: skip
            elif pod_inst_open[p]:
                k = counts[0]
                utility_cold[k] = pod_inst_cold[p]
                utility_busy[k] = pod_end[p] - pod_inst_ready[p]
                counts[0] = k + 1
                pod_inst_open[p] = False
    return (
        cold,
        start,
        pod_of,
        waste,
        pods_per_function,
        utility_cold[: counts[0]],
        utility_busy[: counts[0]],
        records[: counts[1]],
    )


@dataclass(frozen=True)
class SimulationResult:
    """What one policy did on one trace."""

    cold: np.ndarray  # bool per invocation
    start_s: np.ndarray  # when each invocation began executing (after its cold start)
    pod: np.ndarray  # global pod index serving each invocation
    wasted_gb_s_per_function: np.ndarray
    pods_per_function: np.ndarray
    pod_cold_start_s: np.ndarray  # per cold-started pod life
    pod_useful_s: np.ndarray  # its useful lifetime: from ready to its last request's end
    idle_intervals: np.ndarray  # (k, 3): pod, from, to (only with record=True)
    cold_start_s: np.ndarray  # the per-invocation cold-start times used
    measured: np.ndarray  # bool per invocation: counted in the metrics (arrived at or after measure_from_s)

    @property
    def cold_start_rate(self) -> float:
        cold = self.cold[self.measured]
        return float(cold.mean()) if cold.size else 0.0

    @property
    def wasted_gb_s(self) -> float:
        return float(self.wasted_gb_s_per_function.sum())

    @property
    def cold_start_seconds(self) -> float:
        return float(self.cold_start_s[self.cold & self.measured].sum())

    def pod_utility_ratio(self) -> np.ndarray:
        """Useful lifetime (ready to the end of its last request: its life without the final
        keep-alive) / cold-start time, per cold-started pod (EuroSys'25's pod utility ratio)."""
        return self.pod_useful_s / np.maximum(self.pod_cold_start_s, 1e-9)

    def metrics(self) -> dict[str, float]:
        ratio = self.pod_utility_ratio()
        cold_times = self.cold_start_s[self.cold & self.measured]
        return {
            "cold_start_rate": self.cold_start_rate,
            "wasted_gb_s": self.wasted_gb_s,
            "cold_starts": float(cold_times.size),
            "cold_start_seconds": self.cold_start_seconds,
            "mean_cold_start_s": float(cold_times.mean()) if cold_times.size else 0.0,
            "pods": float(self.pods_per_function.sum()),
            "pod_utility_median": float(np.median(ratio)) if ratio.size else float("nan"),
            "pod_utility_below_1": float(np.mean(ratio < 1)) if ratio.size else float("nan"),
        }


def function_segments(trace: InvocationTrace) -> tuple[np.ndarray, np.ndarray]:
    """Invocation indices grouped by function (arrival order within each) and the group bounds."""
    order = np.argsort(trace.function, kind="stable")
    bounds = np.r_[0, np.cumsum(np.bincount(trace.function, minlength=trace.n_functions))].astype(np.int64)
    return order.astype(np.int64), bounds


def simulate(
    trace: InvocationTrace,
    cold_start_s: np.ndarray,
    *,
    prewarm_s: np.ndarray | float = 0.0,
    keep_alive_s: np.ndarray | float = 60.0,
    concurrency: int = 1,
    oracle: bool = False,
    horizon_s: float | None = None,
    measure_from_s: float = -np.inf,
    record: bool = False,
) -> SimulationResult:
    """Replay ``trace`` with the windows each invocation leaves its pod (per invocation or one
    value for all); ``cold_start_s`` is the cold-start time each invocation would see.

    ``measure_from_s``: idle memory is counted from this time on (and ``SimulationResult.measured``
    marks the invocations arriving from then): earlier invocations only warm the policy up."""
    n = len(trace)
    if concurrency < 1:
        raise ValueError("concurrency must be >= 1")
    prewarm = np.broadcast_to(np.asarray(prewarm_s, dtype=np.float64), (n,))
    keep = np.broadcast_to(np.asarray(keep_alive_s, dtype=np.float64), (n,))
    cold_start = np.asarray(cold_start_s, dtype=np.float64)
    if cold_start.shape != (n,):
        raise ValueError(f"cold_start_s needs one value per invocation ({n}), got shape {cold_start.shape}")
    for name, values in (("prewarm_s", prewarm), ("keep_alive_s", keep), ("cold_start_s", cold_start)):
        if n and (np.any(~np.isfinite(values)) or np.any(values < 0)):
            raise ValueError(f"{name} must be finite and >= 0")
    order, bounds = function_segments(trace)
    horizon = trace.horizon_s if horizon_s is None else float(horizon_s)
    out = _simulate(
        np.ascontiguousarray(trace.arrival_s, dtype=np.float64),
        np.ascontiguousarray(trace.duration_s, dtype=np.float64),
        np.ascontiguousarray(cold_start),
        order,
        bounds,
        np.ascontiguousarray(trace.memory_mb / MB_PER_GB, dtype=np.float64),
        np.ascontiguousarray(prewarm),
        np.ascontiguousarray(keep),
        int(concurrency),
        bool(oracle),
        horizon,
        bool(record),
        float(measure_from_s),
    )
    cold, start, pod, waste, pods, u_cold, u_busy, idle = out
    measured = trace.arrival_s >= measure_from_s
    return SimulationResult(cold, start, pod, waste, pods, u_cold, u_busy, idle, cold_start, measured)


__all__ = ["SimulationResult", "function_segments", "simulate"]
