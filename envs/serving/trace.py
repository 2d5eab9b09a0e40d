"""Per-request event traces of a serving run in Chrome's trace format (as Vidur writes them).

Off by default and free when off: a replica calls its ``tracer`` only at admissions and
preemptions, and only when one is set; everything else (queueing, prefill, decode, completion,
KV use over time) is read from the request table and the replicas' logs when the trace is
written. Open the JSON in ``chrome://tracing`` or https://ui.perfetto.dev: one process per
replica, one row per request (``tid`` = request id): spans ``queued`` (arrival to first
admission) and ``running`` (each admission to the next preemption or the completion), instants
``first token`` and ``preempt``, and a ``kv_used`` counter per replica.

Format: https://docs.google.com/document/d/1CvAClvFfyA5R-PhYUmn5OOQtYMH4h6I0nSsKchNAySU
(``ph`` X = complete event with ``ts``/``dur`` in microseconds, i = instant, C = counter).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from infragym.io import atomic_write_text

if TYPE_CHECKING:
    from infragym.envs.serving.simulator import Replica, RequestTable

US = 1e6  # trace timestamps are microseconds


class ChromeTrace:
    """Collects admissions and preemptions during a run; ``events``/``write`` build the trace."""

    def __init__(self) -> None:
        self.admissions: list[tuple[int, int, float]] = []  # (replica, rid, time)
        self.preemptions: list[tuple[int, int, float, str]] = []  # (replica, rid, time, mode)

    def admit(self, replica: Replica, rid: int) -> None:
        self.admissions.append((replica.index, rid, replica.clock))

    def preempt(self, replica: Replica, rid: int, mode: str) -> None:
        self.preemptions.append((replica.index, rid, replica.clock, mode))

    def events(self, table: RequestTable, replicas: list[Replica]) -> list[dict[str, Any]]:
        """The trace events of a finished run."""
        out: list[dict[str, Any]] = []
        for r in replicas:
            out.append({"name": "process_name", "ph": "M", "pid": r.index, "args": {"name": f"replica {r.index}"}})
        # Each admission runs until the request's next preemption, else its completion (or the
        # end of the run for a request still running).
        ends: dict[int, list[float]] = {}
        for _, rid, time, _ in sorted(self.preemptions, key=lambda p: p[2]):
            ends.setdefault(rid, []).append(time)
        end_of_run = max((r.clock for r in replicas), default=0.0)
        first_admission: set[int] = set()
        for replica, rid, time in self.admissions:
            if rid not in first_admission:
                first_admission.add(rid)
                out.append(_span("queued", replica, rid, float(table.arrival[rid]), time))
            later = [t for t in ends.get(rid, ()) if t >= time]
            done = float(table.completion[rid])
            end = later[0] if later else (done if np.isfinite(done) else end_of_run)
            if later:
                ends[rid].remove(later[0])
            out.append(_span("running", replica, rid, time, end))
        for replica, rid, time, mode in self.preemptions:
            out.append(_instant(f"preempt ({mode})", replica, rid, time))
        for rid in np.flatnonzero(np.isfinite(table.first_token)).tolist():
            out.append(_instant("first token", int(table.replica[rid]), rid, float(table.first_token[rid])))
        for r in replicas:
            times = np.frombuffer(r.kv_log_t)
            used = np.frombuffer(r.kv_log_used)
            step = max(1, len(times) // 20_000)  # a readable counter track
            for t, u in zip(times[::step].tolist(), used[::step].tolist(), strict=True):
                out.append({"name": "kv_used", "ph": "C", "pid": r.index, "ts": t * US, "args": {"fraction": u}})
        return out

    def write(self, path: str | os.PathLike[str], table: RequestTable, replicas: list[Replica]) -> Path:
        """Write the trace JSON (atomically)."""
        path = Path(path)
        atomic_write_text(path, json.dumps({"traceEvents": self.events(table, replicas), "displayTimeUnit": "ms"}))
        return path


def _span(name: str, pid: int, tid: int, start: float, end: float, **args: Any) -> dict[str, Any]:
    event: dict[str, Any] = {"name": name, "ph": "X", "pid": pid, "tid": tid, "ts": start * US}
    event["dur"] = max(end - start, 0.0) * US
    if args:
        event["args"] = args
    return event


def _instant(name: str, pid: int, tid: int, time: float) -> dict[str, Any]:
    return {"name": name, "ph": "i", "s": "t", "pid": pid, "tid": tid, "ts": time * US}


__all__ = ["ChromeTrace"]
