"""A batched (fluid) model of continuous-batching LLM servers, vectorised over servers.

Why not the request-level simulator: the power and autoscaling envs step every 0.25-1 s of
simulated time across tens of servers and need thousands of training episodes; the
request-level serving simulator (``infragym.envs.serving.simulator``) advances one request
event at a time. Here each server is one FIFO prefill queue and one decode batch moving in
lock-step (vLLM's continuous batching: every running request gains one token per
iteration), advanced tick by tick with numpy over all servers at once, no loop over requests:

- prefill first (vLLM prioritises prompts): in a tick of ``dt`` the server prefills the queued
  prompt tokens that fit (``prefill_fixed_s + prefill_per_token_s x tokens``, stretched by the
  clock), up to ``max_running`` requests; a prompt larger than what is left carries over;
- the rest of the tick decodes: the running batch advances ``(dt - prefill time) / decode_s[B]``
  iterations; each request's first token is at its prefill's end and it completes when the
  server's cumulative iteration count passes its own target (interpolated inside the tick).

Costs come from the serving cost model's per-iteration times (``ServerTiming``; tabulated per
batch size). ``bench/power/fluid_fidelity.py`` checks the fluid model against the request-level
simulator on a short Azure trace.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from infragym.datasets.llm_traces import RequestTrace
from infragym.envs.serving.cost_model import CostModel


@dataclass(frozen=True)
class ServerTiming:
    """One server's iteration costs at full clock (seconds) and their clock sensitivity.

    ``decode_s[b]``: one decode iteration of ``b`` running requests (their typical context);
    ``decode_utilisation[b]``: the roofline share of it (drives decode power);
    ``prefill_stretch``/``decode_stretch``: the share of the time that scales with 1/clock.
    """

    prefill_fixed_s: float
    prefill_per_token_s: float
    decode_s: np.ndarray  # (max_running + 1,)
    decode_utilisation: np.ndarray
    prefill_stretch: float = 1.0
    decode_stretch: float = 0.3

    @property
    def max_running(self) -> int:
        return len(self.decode_s) - 1

    @classmethod
    def from_cost_model(
        cls, cost: CostModel, *, max_running: int = 64, mean_context: float = 1300.0, mean_prompt: float = 1155.0
    ) -> ServerTiming:
        """Tabulate a serving ``CostModel`` (the request-level simulator's own costs)."""
        b = np.arange(max_running + 1, dtype=np.float64)
        decode = cost.iteration_time(0.0, 0.0, b, b * mean_context)
        tokens = np.array([mean_prompt / 2, mean_prompt, 4 * mean_prompt])
        pre = cost.iteration_time(tokens, tokens * mean_prompt / 2, 0.0, 0.0)
        slope = float(np.polyfit(tokens, pre, 1)[0])
        fixed = float(max(pre[1] - slope * tokens[1], 0.0))
        return cls(fixed, slope, decode, np.ones_like(decode))


@dataclass
class TickResult:
    """What happened on each server during one tick."""

    prefill_busy: np.ndarray  # fraction of the tick prefilling
    decode_busy: np.ndarray  # fraction of the tick decoding
    batch: np.ndarray  # running requests after admission
    completed: np.ndarray  # requests completed per server
    good: np.ndarray  # of them, within the SLO
    arrived: np.ndarray  # requests arrived per server


class FluidServers:
    """``n`` servers fed by per-server request streams (``trace`` rows with a ``server`` index).

    Args:
        trace: the requests (sorted by arrival overall).
        server: each request's server.
        timing: one ``ServerTiming`` per server (or one shared).
        ttft_slo_s, tpot_slo_s: a request is good if within both.
    """

    def __init__(
        self,
        trace: RequestTrace,
        server: np.ndarray,
        n_servers: int,
        timing: ServerTiming | list[ServerTiming],
        *,
        ttft_slo_s: float = 2.0,
        tpot_slo_s: float = 0.2,
    ) -> None:
        server = np.asarray(server, dtype=np.int64)
        if len(server) != len(trace):
            raise ValueError("one server index per request")
        if len(trace) and (server.min() < 0 or server.max() >= n_servers):
            raise ValueError(f"server indices must be in [0, {n_servers})")
        order = np.lexsort((trace.arrival_s, server))  # server-major, then arrival
        self.n = n_servers
        self.arrival = trace.arrival_s[order].astype(np.float64)
        self.prompt = trace.prompt_tokens[order].astype(np.float64)
        self.output = np.maximum(trace.output_tokens[order], 1).astype(np.float64)
        self.server = server[order]
        self.order = order
        self.offset = np.searchsorted(self.server, np.arange(n_servers + 1))
        span = float(self.arrival.max() + 1.0) if len(self.arrival) else 1.0
        self._key = self.server * span + self.arrival  # monotone: arrivals per server, servers in order
        self._span = span
        self.cum_prompt = np.concatenate([[0.0], np.cumsum(self.prompt)])
        self.set_timing(timing)
        self.ttft_slo_s, self.tpot_slo_s = ttft_slo_s, tpot_slo_s
        m = len(self.arrival)
        self.first_token = np.full(m, np.nan)
        self.completion = np.full(m, np.nan)
        self.finish_g = np.full(m, np.inf)
        self.head = self.offset[:-1].copy()  # next request to admit
        self.carry = np.zeros(n_servers)  # prefill tokens already done of the head request
        self.debt = np.zeros(n_servers)  # prefill tokens to recompute (after a restart)
        self.running = np.zeros(n_servers, dtype=np.int64)
        self.iterations = np.zeros(n_servers)  # cumulative decode iterations (G)
        self.running_idx = np.zeros(0, dtype=np.int64)
        self.now = 0.0

    def set_timing(self, timing: ServerTiming | list[ServerTiming]) -> None:
        timings = [timing] * self.n if isinstance(timing, ServerTiming) else list(timing)
        if len(timings) != self.n:
            raise ValueError("one ServerTiming per server")
        width = max(t.max_running for t in timings) + 1
        self.max_running = np.array([t.max_running for t in timings], dtype=np.int64)
        self.pre_fixed = np.array([t.prefill_fixed_s for t in timings])
        self.pre_token = np.array([t.prefill_per_token_s for t in timings])
        self.pre_stretch = np.array([t.prefill_stretch for t in timings])
        self.dec_stretch = np.array([t.decode_stretch for t in timings])
        self.decode_table = np.full((self.n, width), np.inf)
        self.util_table = np.zeros((self.n, width))
        for i, t in enumerate(timings):
            self.decode_table[i, : t.max_running + 1] = t.decode_s
            self.util_table[i, : t.max_running + 1] = t.decode_utilisation

    # ------------------------------------------------------------------ queries
    def arrived_by(self, t: float) -> np.ndarray:
        """Index one past the last request of each server that arrived by ``t``."""
        # every arrival is below span - 1: a later t must not reach the next server's keys
        t = min(t, self._span - 0.5)
        return np.searchsorted(self._key, np.arange(self.n) * self._span + t, side="right")

    def waiting(self) -> np.ndarray:
        return self.arrived_by(self.now) - self.head

    def waiting_tokens(self) -> np.ndarray:
        arrived = self.arrived_by(self.now)
        return self.cum_prompt[arrived] - self.cum_prompt[self.head] - self.carry + self.debt

    def conserved(self) -> bool:
        """Every arrived request is waiting, running or completed, exactly once."""
        arrived = self.arrived_by(self.now) - self.offset[:-1]
        done = np.bincount(self.server[np.isfinite(self.completion)], minlength=self.n)
        return bool(np.all(arrived == self.waiting() + self.running + done))

    # ------------------------------------------------------------------ one tick
    def tick(self, dt: float, clock: np.ndarray | float = 1.0, available: np.ndarray | bool = True) -> TickResult:
        """Advance every server by ``dt`` seconds at SM-clock fraction ``clock``; a server not
        ``available`` (restarting) does nothing but receive arrivals."""
        t0, t1 = self.now, self.now + dt
        clock = np.broadcast_to(np.asarray(clock, dtype=np.float64), (self.n,))
        avail = np.broadcast_to(np.asarray(available, dtype=bool), (self.n,))
        arrived_before = self.arrived_by(t0)
        arrived = self.arrived_by(t1)
        pre_stretch = 1.0 + self.pre_stretch * (1.0 / clock - 1.0)
        per_token = self.pre_token * pre_stretch
        # 1. recompute debt (a restart's lost KV) before new prompts
        time_left = np.where(avail, dt, 0.0)
        debt_done = np.minimum(self.debt, np.maximum(time_left - self.pre_fixed * (self.debt > 0), 0.0) / per_token)
        debt_time = np.where(self.debt > 0, self.pre_fixed * pre_stretch + debt_done * per_token, 0.0)
        debt_time = np.minimum(debt_time, time_left)
        self.debt -= debt_done
        time_left -= debt_time
        # 2. admit prompts FIFO: those whose tokens fit in the time left, up to max_running
        queue = arrived > self.head
        budget_tokens = np.maximum(time_left - self.pre_fixed * pre_stretch * queue, 0.0) / per_token
        budget_tokens = np.where(self.debt > 0, 0.0, budget_tokens)
        start_cum = self.cum_prompt[self.head] + self.carry
        fit_idx = np.searchsorted(self.cum_prompt, start_cum + budget_tokens, side="right") - 1
        room = np.maximum(self.max_running - self.running, 0)
        new_head = np.minimum(np.minimum(fit_idx, arrived), self.head + room)
        new_head = np.maximum(new_head, self.head)
        admitted_tokens = self.cum_prompt[new_head] - start_cum
        partial = queue & (new_head == self.head) & (room > 0)  # the head prompt does not fit: progress on it
        self.carry = np.where(partial, self.carry + budget_tokens, np.where(new_head > self.head, 0.0, self.carry))
        prefill_time = np.where(
            new_head > self.head,
            self.pre_fixed * pre_stretch + np.maximum(admitted_tokens, 0.0) * per_token,
            np.where(partial, time_left, 0.0),
        )
        prefill_time = np.minimum(prefill_time, time_left)
        count = new_head - self.head
        total_new = int(count.sum())
        singles = np.zeros(0, dtype=np.int64)
        if total_new:
            srv = np.repeat(np.arange(self.n), count)
            idx = np.arange(total_new) - np.repeat(np.cumsum(count) - count, count) + np.repeat(self.head, count)
            done_tokens = self.cum_prompt[idx + 1] - start_cum[srv]
            first = t0 + debt_time[srv] + self.pre_fixed[srv] * pre_stretch[srv] + done_tokens * per_token[srv]
            # a prompt arriving inside the tick cannot be done before its own prefill after it
            own = self.arrival[idx] + self.pre_fixed[srv] * pre_stretch[srv] + self.prompt[idx] * per_token[srv]
            first = np.clip(np.maximum(first, own), t0, t1)
            self.first_token[idx] = first
            self.finish_g[idx] = self.iterations[srv] + self.output[idx] - 1.0
            single = self.output[idx] <= 1.0
            self.completion[idx[single]] = first[single]
            self.finish_g[idx[single]] = -np.inf
            singles = idx[single]
            self.running_idx = np.concatenate([self.running_idx, idx[~single]])
            self.running += np.bincount(srv[~single], minlength=self.n)
        self.head = new_head
        # 3. decode for the rest of the tick
        busy = debt_time + prefill_time
        decode_time = np.where(avail & (self.running > 0), np.maximum(dt - busy, 0.0), 0.0)
        batch = np.minimum(self.running, self.decode_table.shape[1] - 1)
        iteration_s = self.decode_table[np.arange(self.n), batch] * (1.0 + self.dec_stretch * (1.0 / clock - 1.0))
        steps = np.where(decode_time > 0, decode_time / iteration_s, 0.0)
        g0 = self.iterations.copy()
        self.iterations = g0 + steps
        completed = np.zeros(self.n, dtype=np.int64)
        good = np.zeros(self.n, dtype=np.int64)
        finished_idx = np.zeros(0, dtype=np.int64)
        if self.running_idx.size:
            ridx = self.running_idx
            rs = self.server[ridx]
            finished = self.finish_g[ridx] <= self.iterations[rs]
            if finished.any():
                fidx, fs = ridx[finished], rs[finished]
                when = t0 + busy[fs] + (self.finish_g[fidx] - g0[fs]) * iteration_s[fs]
                self.completion[fidx] = np.clip(np.maximum(when, self.first_token[fidx]), t0, t1)
                self.running -= np.bincount(fs, minlength=self.n)
                self.running_idx = ridx[~finished]
                finished_idx = fidx
        just = np.concatenate([singles, finished_idx])  # requests completing in this tick
        if just.size:
            ok = self.request_good(just)
            completed = np.bincount(self.server[just], minlength=self.n)
            good = np.bincount(self.server[just][ok], minlength=self.n)
        self.now = t1
        return TickResult(
            prefill_busy=busy / dt,
            decode_busy=decode_time / dt,
            batch=self.running.copy(),
            completed=completed,
            good=good,
            arrived=arrived - arrived_before,
        )

    def request_good(self, idx: np.ndarray) -> np.ndarray:
        ttft = self.first_token[idx] - self.arrival[idx]
        tpot = (self.completion[idx] - self.first_token[idx]) / np.maximum(self.output[idx] - 1.0, 1.0)
        return (ttft <= self.ttft_slo_s) & (tpot <= self.tpot_slo_s)

    def decode_utilisation(self, batch: np.ndarray) -> np.ndarray:
        b = np.minimum(batch, self.util_table.shape[1] - 1)
        return self.util_table[np.arange(self.n), b]

    # ------------------------------------------------------------------ results
    def latencies(self, since_s: float = 0.0) -> dict[str, np.ndarray]:
        """TTFT, TPOT and end-to-end latency of completed requests that arrived after ``since_s``."""
        done = np.isfinite(self.completion) & (self.arrival >= since_s)
        ttft = self.first_token[done] - self.arrival[done]
        tpot = (self.completion[done] - self.first_token[done]) / np.maximum(self.output[done] - 1.0, 1.0)
        return {"ttft_s": ttft, "tpot_s": tpot, "e2e_s": self.completion[done] - self.arrival[done]}


__all__ = ["FluidServers", "ServerTiming", "TickResult"]
