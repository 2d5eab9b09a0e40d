"""Workloads of the scheduler experiments: a request trace plus each request's SLO.

A ``Workload`` is a ``RequestTrace`` with per-request service-level objectives (struct of
arrays):

- ``latency`` (streaming chat): time to first token <= ``ttft_s`` and mean time between tokens
  <= ``tbt_s``;
- ``deadline``: the whole response by ``deadline_at`` (absolute seconds), e.g. before a tool runs;
- ``compound``: one call of a chain (a deep-research or agent pipeline); call ``j`` arrives
  ``think_s`` after call ``j - 1`` finishes and only the program's end-to-end deadline counts.

Length distributions (PAPERS.md, Past-Future artifact): prompt / output uniform
32-4,096 / 2,048-4,096 ("long output"), 3,000-5,000 / 3,000-5,000 ("long both") and
2,048-4,096 / 32-4,096 ("long prompt"), with Poisson arrivals. Real traces: the Azure 2023
conversation and code traces and the vAttention artifact's arXiv sample, read with
``llm_traces.load_trace``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from infragym.datasets.llm_traces import RequestTrace, TraceError

LATENCY, DEADLINE, COMPOUND = 0, 1, 2
SLO_TYPES = ("latency", "deadline", "compound")

# Past-Future artifact's three uniform distributions (prompt range, output range), PAPERS.md.
PAST_FUTURE_DISTRIBUTIONS: dict[str, tuple[tuple[int, int], tuple[int, int]]] = {
    "pf_long_output": ((32, 4096), (2048, 4096)),
    "pf_long_both": ((3000, 5000), (3000, 5000)),
    "pf_long_prompt": ((2048, 4096), (32, 4096)),
}


@dataclass(frozen=True)
class Workload:
    """A request trace and the SLO of each request (all arrays have one entry per request)."""

    name: str
    trace: RequestTrace
    slo_type: np.ndarray  # int8: LATENCY, DEADLINE or COMPOUND
    ttft_s: np.ndarray  # latency type: first-token bound (s)
    tbt_s: np.ndarray  # latency type: mean time-between-tokens bound (s)
    max_stall_s: np.ndarray  # latency type: longest gap between two tokens (s; inf: no bound)
    deadline_at: np.ndarray  # deadline / compound: absolute completion deadline (s); inf otherwise
    max_new_tokens: np.ndarray  # int64: the request's generation cap (what a conservative scheduler reserves)
    parent: np.ndarray  # int64: compound call it waits for (-1: arrives at its trace time)
    think_s: np.ndarray  # compound: tool time between the parent's completion and this arrival
    program: np.ndarray  # int64: compound program id (-1: none)

    def __post_init__(self) -> None:
        n = len(self.trace)
        for name in (
            "slo_type",
            "ttft_s",
            "tbt_s",
            "max_stall_s",
            "deadline_at",
            "max_new_tokens",
            "parent",
            "think_s",
            "program",
        ):
            if len(getattr(self, name)) != n:
                raise TraceError(f"workload {self.name}: {name} has {len(getattr(self, name))} entries, expected {n}")
        if np.any(self.max_new_tokens < self.trace.output_tokens):
            raise TraceError(f"workload {self.name}: a request generates more than its max_new_tokens")
        if np.any(self.parent >= np.arange(n)):
            raise TraceError(f"workload {self.name}: a compound call must come after its parent")

    def __len__(self) -> int:
        return len(self.trace)


def latency_workload(
    name: str,
    trace: RequestTrace,
    *,
    ttft_s: float,
    tbt_s: float,
    max_stall_s: float = np.inf,
    max_new_tokens: int | None = None,
) -> Workload:
    """Every request a streaming (latency-type) request with the same TTFT and TBT bounds."""
    n = len(trace)
    cap = int(trace.output_tokens.max()) if max_new_tokens is None else max_new_tokens
    return Workload(
        name=name,
        trace=trace,
        slo_type=np.full(n, LATENCY, np.int8),
        ttft_s=np.full(n, float(ttft_s)),
        tbt_s=np.full(n, float(tbt_s)),
        max_stall_s=np.full(n, float(max_stall_s)),
        deadline_at=np.full(n, np.inf),
        max_new_tokens=np.full(n, max(cap, 1), np.int64),
        parent=np.full(n, -1, np.int64),
        think_s=np.zeros(n),
        program=np.full(n, -1, np.int64),
    )


def uniform_length_trace(
    n: int,
    rng: np.random.Generator,
    *,
    rate: float,
    prompt_range: tuple[int, int],
    output_range: tuple[int, int],
) -> RequestTrace:
    """Poisson arrivals at ``rate`` with prompt and output lengths uniform in the given ranges
    (inclusive), as the Past-Future artifact's benchmark client draws them."""
    if n <= 0 or rate <= 0:
        raise TraceError("n and rate must be positive")
    gaps = rng.exponential(1.0 / rate, n)
    arrival = np.cumsum(gaps) - gaps[0]
    prompt = rng.integers(prompt_range[0], prompt_range[1] + 1, n)
    output = rng.integers(output_range[0], output_range[1] + 1, n)
    return RequestTrace(
        arrival, prompt.astype(np.int64), output.astype(np.int64), np.zeros(n, np.int64), np.zeros(n, bool)
    )


def past_future_workload(
    distribution: str,
    n: int,
    rng: np.random.Generator,
    *,
    rate: float,
    ttft_s: float,
    tbt_s: float,
    max_stall_s: float = np.inf,
) -> Workload:
    """One of the artifact's three length distributions; ``max_new_tokens`` is the upper end of
    the output range, as the artifact's client sets it."""
    if distribution not in PAST_FUTURE_DISTRIBUTIONS:
        raise ValueError(f"unknown distribution {distribution!r}; known: {sorted(PAST_FUTURE_DISTRIBUTIONS)}")
    prompt_range, output_range = PAST_FUTURE_DISTRIBUTIONS[distribution]
    trace = uniform_length_trace(n, rng, rate=rate, prompt_range=prompt_range, output_range=output_range)
    return latency_workload(
        distribution, trace, ttft_s=ttft_s, tbt_s=tbt_s, max_stall_s=max_stall_s, max_new_tokens=output_range[1]
    )


def mixed_slo_workload(
    name: str,
    trace: RequestTrace,
    rng: np.random.Generator,
    *,
    mix: tuple[float, float, float] = (0.5, 0.3, 0.2),
    ttft_s: float = 2.0,
    tbt_s: float = 0.1,
    max_stall_s: float = np.inf,
    deadline_per_token_s: float = 0.1,
    deadline_base_s: float = 2.0,
    chain_calls: tuple[int, int] = (2, 4),
    think_s: tuple[float, float] = (0.5, 3.0),
    max_new_tokens: int | None = None,
) -> Workload:
    """JITServe's three SLO types over a trace's requests.

    Latency requests stream (TTFT and TBT bounds). A deadline request must finish within
    ``deadline_base_s + deadline_per_token_s x output`` of its arrival (JITServe's LMSYS-derived
    trace uses 100 ms x output length; PAPERS.md). Compound programs are chains of
    ``chain_calls`` consecutive requests of the trace: the first keeps its arrival, each next one
    arrives ``think_s`` after the previous finishes, and the program must end within the sum of
    its calls' deadlines plus its think times.
    """
    if len(mix) != 3 or not np.isclose(sum(mix), 1.0) or min(mix) < 0:
        raise ValueError(f"mix must be three non-negative shares summing to 1, got {mix}")
    n = len(trace)
    base = latency_workload(
        name, trace, ttft_s=ttft_s, tbt_s=tbt_s, max_stall_s=max_stall_s, max_new_tokens=max_new_tokens
    )
    slo_type = rng.choice(3, size=n, p=np.asarray(mix)).astype(np.int8)
    output = trace.output_tokens.astype(np.float64)
    own_deadline = deadline_base_s + deadline_per_token_s * np.maximum(output, 1)
    deadline_at = np.where(slo_type == DEADLINE, trace.arrival_s + own_deadline, np.inf)
    parent = np.full(n, -1, np.int64)
    think = np.zeros(n)
    program = np.full(n, -1, np.int64)
    # Chains: consecutive compound-typed requests, grouped in runs of 2-4 calls.
    compound = np.flatnonzero(slo_type == COMPOUND)
    pid = 0
    i = 0
    while i < compound.size:
        k = int(rng.integers(chain_calls[0], chain_calls[1] + 1))
        calls = compound[i : i + k]
        i += k
        if calls.size < 2:
            slo_type[calls] = DEADLINE  # a lone call is a deadline request
            deadline_at[calls] = trace.arrival_s[calls] + own_deadline[calls]
            continue
        gaps = rng.uniform(think_s[0], think_s[1], calls.size)
        gaps[0] = 0.0
        parent[calls[1:]] = calls[:-1]
        think[calls] = gaps
        program[calls] = pid
        deadline_at[calls] = trace.arrival_s[calls[0]] + own_deadline[calls].sum() + gaps.sum()
        pid += 1
    return Workload(
        name=name,
        trace=trace,
        slo_type=slo_type,
        ttft_s=base.ttft_s,
        tbt_s=base.tbt_s,
        max_stall_s=base.max_stall_s,
        deadline_at=deadline_at,
        max_new_tokens=base.max_new_tokens,
        parent=parent,
        think_s=think,
        program=program,
    )
