"""A row of inference servers under one provisioned power budget (POLCA's setting).

Each server is a DGX-H100 running Llama-2-70B on its 8 GPUs (TP8, one replica), the
configuration of the shared splitwise measurements. Its requests are served by the fluid
batched model (``fluid.FluidServers``) with costs from the calibrated latency/power model
(``model.GPUPowerModel``), and its power is

    server W = platform share + 8 x (prefill share x P_prefill(f) + decode share x P_decode(u, f)
                                     + idle share x P_idle)

with the platform share fixed at the DGX's TDP minus its GPUs' (10,200 - 8 x 700 = 4,600 W;
``sku_dgx-h100.yaml``, NVIDIA H100 SXM TDP). The row's power is the sum of its servers'.
The row is provisioned for ``n_base`` servers at their TDP (no oversubscription); above the
budget the hardware power brake throttles every server hard: the GPU power-brake slowdown
(NVIDIA's ``HW Power Brake Slowdown`` clock-event reason, asserted by the rack's power
controller) drops the SM clocks to near their minimum; we model it as a clock fraction of
``BRAKE_CLOCK`` held for ``BRAKE_HOLD_S`` (assumptions: POLCA Sec. 2 names the brake as the
costly last resort that oversubscription must avoid, without a figure for its depth).

Workloads (POLCA Sec. 5): high-priority servers replay the Azure conversation trace,
low-priority servers the Azure code trace, each server a different window of it, rate-scaled
to ``rate_per_server`` and modulated by a row-wide diurnal factor (one compressed "day" per
episode, so an episode holds a peak and a trough; the synchronised peaks are what threatens
the budget).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from infragym.datasets.llm_traces import RequestTrace, diurnal
from infragym.envs.power.fluid import FluidServers, ServerTiming
from infragym.envs.power.model import GPUPowerModel, decode_features, prefill_features
from infragym.envs.power.perf_data import ACCELERATORS

BRAKE_CLOCK = 0.25  # SM clock fraction under the power brake (assumption, see the module docstring)
BRAKE_HOLD_S = 5.0  # how long the brake holds once asserted (assumption)
CLOCK_LEVELS = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5)  # frequency caps an action picks (fractions of max SM clock)


def server_timing(
    power: GPUPowerModel,
    *,
    hardware: str = "h100-80gb",
    model: str = "llama2-70b",
    tp: int = 8,
    max_running: int = 64,
    mean_prompt: float = 1155.0,
    mean_output: float = 211.0,
) -> ServerTiming:
    """One server's fluid costs from the calibrated model (its fitted latency and clock
    sensitivity; the cost model's roofline underneath)."""
    gpu = ACCELERATORS[hardware].gpu
    prompts = np.array([256.0, 512.0, 1024.0, 2048.0, 4096.0])
    pre = prefill_features(gpu, model, tp, prompts, prompts * prompts / 2)
    t_pre = power.phase_time_ms(hardware, "prefill", pre) / 1e3
    slope, fixed = np.polyfit(prompts, t_pre, 1)
    pre_stretch = float(np.mean(power.phase_time_ms(hardware, "prefill", pre, 0.5) / 1e3 / t_pre - 1.0))
    b = np.arange(max_running + 1, dtype=np.float64)
    dec = decode_features(gpu, model, tp, np.maximum(b, 1.0), np.maximum(b, 1.0) * (mean_prompt + mean_output / 2))
    t_dec = power.phase_time_ms(hardware, "decode", dec) / 1e3
    dec_stretch = float(np.median(power.phase_time_ms(hardware, "decode", dec, 0.5) / 1e3 / t_dec - 1.0))
    return ServerTiming(
        prefill_fixed_s=float(max(fixed, 0.0)),
        prefill_per_token_s=float(slope),
        decode_s=t_dec,
        decode_utilisation=power.utilisation(hardware, "decode", dec),
        prefill_stretch=float(np.clip(pre_stretch, 0.0, 1.0)),
        decode_stretch=float(np.clip(dec_stretch, 0.0, 1.0)),
    )


def row_workload(
    traces: tuple[RequestTrace, RequestTrace],
    low_priority: np.ndarray,
    *,
    rates: tuple[float, float],
    horizon_s: float,
    split: tuple[float, float],
    rng: np.random.Generator,
    diurnal_amplitude: float = 0.3,
) -> tuple[RequestTrace, np.ndarray]:
    """Requests of every server for one episode and each request's server.

    ``traces``: (high-priority, low-priority) source traces; ``rates``: requests/s per server
    of each class (the trace is rate-scaled to it); ``split``: the share of each source's
    timeline the windows are drawn from (training and test use disjoint parts).
    """
    phase = rng.uniform(0, horizon_s)
    parts, servers = [], []
    for s, low in enumerate(low_priority):
        source = traces[int(low)]
        scaled = source.scaled(rates[int(low)] / source.rate)
        lo, hi = split[0] * scaled.duration_s, split[1] * scaled.duration_s - horizon_s
        if hi <= lo:
            raise ValueError(f"the trace split {split} is shorter than an episode of {horizon_s} s at this rate")
        start = rng.uniform(lo, hi)
        window = scaled.window(start, start + horizon_s)
        if diurnal_amplitude > 0 and len(window):
            window = diurnal(window, period_s=horizon_s, amplitude=diurnal_amplitude, phase_s=phase)
            keep = window.arrival_s < horizon_s
            window = RequestTrace(
                window.arrival_s[keep],
                window.prompt_tokens[keep],
                window.output_tokens[keep],
                window.model[keep],
                window.failed[keep],
                window.models,
            )
        parts.append(window)
        servers.append(np.full(len(window), s, dtype=np.int64))
    arrival = np.concatenate([p.arrival_s for p in parts])
    order = np.argsort(arrival, kind="stable")
    trace = RequestTrace(
        arrival[order],
        np.concatenate([p.prompt_tokens for p in parts])[order],
        np.concatenate([p.output_tokens for p in parts])[order],
        np.zeros(len(arrival), dtype=np.int64),
        np.zeros(len(arrival), dtype=bool),
    )
    return trace, np.concatenate(servers)[order]


@dataclass
class RowState:
    """Per-tick power record of the row."""

    power_w: list[float] = field(default_factory=list)
    brake_events: int = 0
    brake_ticks: int = 0


class PowerRow:
    """``n_servers`` servers (some low priority) under a budget of ``n_base`` servers' TDP."""

    def __init__(
        self,
        power: GPUPowerModel,
        timing: ServerTiming,
        trace: RequestTrace,
        server: np.ndarray,
        low_priority: np.ndarray,
        *,
        n_base: int,
        hardware: str = "h100-80gb",
        tick_s: float = 0.5,
        ttft_slo_s: float = 2.0,
        tpot_slo_s: float = 0.2,
        budget_w: float | None = None,
    ) -> None:
        self.power, self.hardware = power, hardware
        self.acc = ACCELERATORS[hardware]
        self.low = np.asarray(low_priority, dtype=bool)
        self.n = len(self.low)
        self.servers = FluidServers(trace, server, self.n, timing, ttft_slo_s=ttft_slo_s, tpot_slo_s=tpot_slo_s)
        self.budget_w = float(budget_w if budget_w is not None else n_base * self.acc.server_tdp_w)
        self.tick_s = tick_s
        self.brake_until = -1.0
        self.state = RowState()
        self.server_power_w = np.zeros(self.n)

    @property
    def now(self) -> float:
        return self.servers.now

    @property
    def braking(self) -> bool:
        return self.now < self.brake_until

    def tick(self, clock: np.ndarray) -> tuple[float, int, int]:
        """Advance one tick with per-server clock caps; returns (row W, completed, good)."""
        applied = np.minimum(clock, BRAKE_CLOCK) if self.braking else clock
        result = self.servers.tick(self.tick_s, applied)
        acc = self.acc
        u_dec = self.servers.decode_utilisation(result.batch)
        p_pre = self.power.phase_power_w(self.hardware, "prefill", 1.0, applied)
        p_dec = self.power.phase_power_w(self.hardware, "decode", u_dec, applied)
        idle = np.clip(1.0 - result.prefill_busy - result.decode_busy, 0.0, 1.0)
        gpu_w = result.prefill_busy * p_pre + result.decode_busy * p_dec + idle * acc.idle_w
        self.server_power_w = acc.platform_w + acc.gpus_per_server * gpu_w
        row_w = float(self.server_power_w.sum())
        self.state.power_w.append(row_w)
        if self.braking:
            self.state.brake_ticks += 1
        if row_w > self.budget_w and not self.braking:
            self.state.brake_events += 1
            self.brake_until = self.now + BRAKE_HOLD_S
        return row_w, int(result.completed.sum()), int(result.good.sum())

    def metrics(self, since_s: float = 0.0) -> dict[str, float]:
        """Latency percentiles per class and for all, SLO attainment, brakes and power."""
        out: dict[str, float] = {}
        s = self.servers
        done = np.isfinite(s.completion) & (s.arrival >= since_s)
        arrived = (s.arrival >= since_s) & (s.arrival <= s.now)
        for name, rows in (("all", np.ones_like(done)), ("high", ~self.low[s.server]), ("low", self.low[s.server])):
            d = done & rows
            if not d.any():
                continue
            idx = np.flatnonzero(d)
            ttft = s.first_token[idx] - s.arrival[idx]
            e2e = s.completion[idx] - s.arrival[idx]
            tpot = (s.completion[idx] - s.first_token[idx]) / np.maximum(s.output[idx] - 1.0, 1.0)
            out[f"{name}/p99_ttft_s"] = float(np.percentile(ttft, 99))
            out[f"{name}/p99_tpot_s"] = float(np.percentile(tpot, 99))
            out[f"{name}/p99_e2e_s"] = float(np.percentile(e2e, 99))
            out[f"{name}/p50_e2e_s"] = float(np.percentile(e2e, 50))
            out[f"{name}/slo_attainment"] = float(s.request_good(idx).sum() / max(int((arrived & rows).sum()), 1))
        power = np.asarray(self.state.power_w)
        out["brake_events"] = float(self.state.brake_events)
        out["brake_time_frac"] = self.state.brake_ticks / max(len(power), 1)
        out["row_power_mean_frac"] = float(power.mean() / self.budget_w) if power.size else 0.0
        out["row_power_max_frac"] = float(power.max() / self.budget_w) if power.size else 0.0
        out["completed"] = float(done.sum())
        return out


__all__ = ["BRAKE_CLOCK", "BRAKE_HOLD_S", "CLOCK_LEVELS", "PowerRow", "row_workload", "server_timing"]
