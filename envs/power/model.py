"""GPU latency-under-frequency and power model, calibrated on splitwise-sim's measurements.

Latency of one prefill (a batch of ``B`` prompts of ``P`` tokens) or one decode iteration on
``tp`` GPUs, at SM-clock fraction ``f``:

    t = k_h x roofline x (phi / f + 1 - phi) + c_h + L_h x allreduces + V / (bw_h x f) + a_h x attention / f

``roofline`` is the serving simulator's cost model (``CostModel.iteration_time``, its own
calibrated efficiencies, untouched); ``phi`` its compute-bound share (FLOP time over roofline
time: ~1 for prefill, small for decode), the only part a lower clock slows; ``allreduces``
= 2 x layers (tp > 1) and ``V`` the bytes they move ((tp-1)/tp x tokens x hidden x 2 B each)
give the tensor-parallel communication the roofline omits (its kernels move the bytes with
the SMs, so the clock slows the bandwidth term, not the per-call latency); ``a_h x attention`` adds to
the prefill's attention FLOP time (the measured prefill grows faster than the roofline's
attention from 2k to 8k tokens). ``k_h, c_h, L_h, 1/bw_h`` are fitted
per hardware by non-negative least squares on the relative error (Huber-reweighted: a few
measured configurations, e.g. batch 64 on A100 TP2, are far off every trend).

Power of one GPU in a phase, at utilisation ``u`` (roofline share of the phase's time) and
clock ``f``: ``idle + (phase_w - idle) x s_phase x u x f**alpha``. ``phase_w`` is
splitwise-sim's constant (prefill 400/700 W, decode 250/380 W); the scales ``s_prefill,
s_decode`` are fitted on the A100 rows' ``average_power`` (the only rows with power), and
transfer to H100. Under a power cap the GPU runs at the highest clock whose power fits:
``f = min(1, ((cap - idle) / ((phase_w - idle) s u)) ** (1/alpha))``; ``alpha`` (DVFS:
power ~ f V^2, between f and f^3) is fitted on the 70%-capped H100 rows. Decode draws less
than the cap, so it keeps its clock and speed, while compute-bound prefill slows (the data:
~30%). These power parameters live here, apart from the cost model's efficiencies, so each
can be checked alone.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.optimize import minimize_scalar, nnls

from infragym.envs.power.perf_data import ACCELERATORS, Accelerator, PerfDataError, read_perf_tables
from infragym.envs.serving.cost_model import CostModel
from infragym.envs.serving.hardware import BYTES_BF16, MODELS

LATENCY_PARAMS = ("roofline_scale", "fixed_ms", "allreduce_ms", "ms_per_gb", "extra_attention_scale")


@dataclass(frozen=True)
class Features:
    """What the latency and power model see of a row (vectorised)."""

    roofline_ms: np.ndarray
    compute_share: np.ndarray
    allreduces: np.ndarray
    allreduce_gb: np.ndarray
    attention_ms: np.ndarray  # the prefill's attention FLOPs at the cost model's efficiency


def _cost_model(gpu: str, model: str, tp: int) -> CostModel:
    return CostModel(gpu, model, tp)


def prefill_features(gpu: str, model: str, tp: int, tokens: np.ndarray, attention_pairs: np.ndarray) -> Features:
    """A prefill of ``tokens`` prompt tokens in total (``attention_pairs``: sum of P^2/2)."""
    cm = _cost_model(gpu, model, tp)
    m = cm.model
    tokens = np.asarray(tokens, dtype=np.float64)
    pairs = np.asarray(attention_pairs, dtype=np.float64)
    roof = cm.iteration_time(tokens, pairs, 0.0, 0.0)
    attention = 4.0 * m.layers * m.q_heads / tp * m.head_dim * pairs / (cm.gpu.peak_flops * cm.eff.flop_eff)
    compute = tokens * m.linear_flops_per_token() / tp / (cm.gpu.peak_flops * cm.eff.flop_eff) + attention
    return _with_comm(m, tp, tokens, roof, compute, attention)


def decode_features(gpu: str, model: str, tp: int, batch: np.ndarray, context_tokens: np.ndarray) -> Features:
    """One decode iteration of ``batch`` requests holding ``context_tokens`` KV tokens in total."""
    cm = _cost_model(gpu, model, tp)
    m = cm.model
    batch = np.asarray(batch, dtype=np.float64)
    roof = cm.iteration_time(0.0, 0.0, batch, np.asarray(context_tokens, dtype=np.float64))
    compute = batch * m.linear_flops_per_token() / tp / (cm.gpu.peak_flops * cm.eff.flop_eff)
    return _with_comm(m, tp, batch, roof, compute, np.zeros_like(roof))


def _with_comm(
    m, tp: int, tokens: np.ndarray, roof: np.ndarray, compute: np.ndarray, attention: np.ndarray
) -> Features:
    allreduces = np.full_like(roof, 2.0 * m.layers if tp > 1 else 0.0)
    gb = allreduces * (tp - 1) / tp * tokens * m.hidden * BYTES_BF16 / 1e9
    share = np.clip(compute / np.maximum(roof, 1e-12), 0.0, 1.0)
    return Features(roof * 1e3, share, allreduces, gb, attention * 1e3)


@dataclass
class HardwareFit:
    """Fitted latency parameters of one hardware (``LATENCY_PARAMS``) and their fit errors."""

    prefill: np.ndarray
    decode: np.ndarray
    rows: int = 0
    prefill_mape: float = float("nan")
    decode_mape: float = float("nan")
    power_mape: float = float("nan")


def _latency(params: np.ndarray, feat: Features, clock: np.ndarray | float = 1.0) -> np.ndarray:
    f = np.asarray(clock, dtype=np.float64)
    stretch = feat.compute_share / f + 1.0 - feat.compute_share
    # NCCL's all-reduce kernels move their bytes with the SMs, so a lower SM clock slows the
    # bandwidth term; the per-call latency (launch, NVLink round trips) does not depend on it
    return (
        params[0] * feat.roofline_ms * stretch
        + params[1]
        + params[2] * feat.allreduces
        + params[3] * feat.allreduce_gb / f
        + params[4] * feat.attention_ms / f
    )


def _design(feat: Features) -> np.ndarray:
    return np.column_stack(
        [feat.roofline_ms, np.ones_like(feat.roofline_ms), feat.allreduces, feat.allreduce_gb, feat.attention_ms]
    )


def _robust_nnls(
    x: np.ndarray, y: np.ndarray, iterations: int = 5, huber: float = 0.15, relative: bool = True
) -> np.ndarray:
    """Non-negative least squares on relative (or absolute) error, Huber-reweighted."""
    weights = np.ones(len(y))
    params = np.zeros(x.shape[1])
    unit = y if relative else np.ones_like(y)
    for _ in range(iterations):
        scale = (weights / unit)[:, None]
        params, _ = nnls(x * scale, y * scale[:, 0])
        rel = np.abs((x @ params - y) / unit)
        weights = np.where(rel <= huber, 1.0, huber / np.maximum(rel, 1e-12))
    return params


@dataclass
class GPUPowerModel:
    """The fitted model: ``predict`` a splitwise-format frame; the env's per-phase functions."""

    hardware: dict[str, HardwareFit]
    prefill_scale: float = 1.0  # s_prefill
    decode_scale: float = 1.0  # s_decode
    alpha: float = 2.0
    fitted_on: tuple[str, ...] = ()
    metrics: dict[str, float] = field(default_factory=dict)

    # ------------------------------------------------------------------ single phases
    def accelerator(self, hardware: str) -> Accelerator:
        if hardware not in ACCELERATORS:
            raise PerfDataError(f"unknown hardware {hardware!r}; known: {sorted(ACCELERATORS)}")
        return ACCELERATORS[hardware]

    def latency_params(self, hardware: str) -> HardwareFit:
        acc = self.accelerator(hardware)
        fit = self.hardware.get(hardware)
        if fit is None and acc.cap_w is not None:  # a capped SKU runs its uncapped GPU's fit
            fit = next(
                (
                    self.hardware[h]
                    for h, a in ACCELERATORS.items()
                    if a.gpu == acc.gpu and a.cap_w is None and h in self.hardware
                ),
                None,
            )
        if fit is None:
            raise PerfDataError(f"hardware {hardware!r} was not in the calibration data ({sorted(self.hardware)})")
        return fit

    def phase_power_w(
        self, hardware: str, phase: str, utilisation: np.ndarray | float, clock: np.ndarray | float = 1.0
    ) -> np.ndarray:
        """One GPU's power (W) while busy in ``phase`` ('prefill' or 'decode')."""
        acc = self.accelerator(hardware)
        peak, scale = (acc.prefill_w, self.prefill_scale) if phase == "prefill" else (acc.decode_w, self.decode_scale)
        u = np.clip(np.asarray(utilisation, dtype=np.float64), 0.0, 1.0)
        return acc.idle_w + (peak - acc.idle_w) * scale * u * np.asarray(clock, dtype=np.float64) ** self.alpha

    def capped_clock(
        self, hardware: str, phase: str, utilisation: np.ndarray | float, cap_w: np.ndarray | float | None
    ) -> np.ndarray:
        """The highest clock fraction (<= 1) whose power fits under ``cap_w`` per GPU."""
        acc = self.accelerator(hardware)
        u = np.asarray(utilisation, dtype=np.float64)
        if cap_w is None:
            return np.ones_like(u)
        full = self.phase_power_w(hardware, phase, u) - acc.idle_w
        room = np.maximum(np.asarray(cap_w, dtype=np.float64) - acc.idle_w, 1e-6)
        return np.clip((room / np.maximum(full, 1e-9)) ** (1.0 / self.alpha), 0.05, 1.0)

    def phase_time_ms(self, hardware: str, phase: str, feat: Features, clock: np.ndarray | float = 1.0) -> np.ndarray:
        fit = self.latency_params(hardware)
        return _latency(fit.prefill if phase == "prefill" else fit.decode, feat, clock)

    def utilisation(self, hardware: str, phase: str, feat: Features) -> np.ndarray:
        """Roofline time over the phase's fitted time: the share of it the GPU computes or streams
        HBM at the cost model's efficiencies (not waiting on communication or launch overhead)."""
        if phase == "prefill":  # compute-bound: at the power limit whatever the TP (see ``fit``)
            return np.ones_like(feat.roofline_ms)
        fit = self.latency_params(hardware)
        return np.clip(feat.roofline_ms / _latency(fit.decode, feat), 0.0, 1.0)

    # ------------------------------------------------------------------ splitwise rows
    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        """``prompt_time`` and ``token_time`` (ms) and ``average_power`` (fraction of the GPU's
        TDP over the request) of each row (``model, hardware, prompt_size, batch_size,
        token_size, tensor_parallel``), at the hardware's own power cap if it has one."""
        missing = [
            c
            for c in ("model", "hardware", "prompt_size", "batch_size", "token_size", "tensor_parallel")
            if c not in frame.columns
        ]
        if missing:
            raise PerfDataError(f"predict: missing column(s) {missing}")
        out = pd.DataFrame(index=frame.index, columns=["prompt_time", "token_time", "average_power"], dtype=float)
        for (model, hardware, tp), rows in frame.groupby(["model", "hardware", "tensor_parallel"]):
            if model not in MODELS:
                raise PerfDataError(f"predict: unknown model {model!r}; known: {sorted(MODELS)}")
            acc = self.accelerator(str(hardware))
            p = rows["prompt_size"].to_numpy(np.float64)
            b = rows["batch_size"].to_numpy(np.float64)
            n = rows["token_size"].to_numpy(np.float64)
            pre = prefill_features(acc.gpu, str(model), int(tp), p * b, b * p * p / 2.0)
            dec = decode_features(acc.gpu, str(model), int(tp), b, b * (p + n / 2.0))
            u_pre, u_dec = self.utilisation(acc.name, "prefill", pre), self.utilisation(acc.name, "decode", dec)
            f_pre = self.capped_clock(acc.name, "prefill", u_pre, acc.cap_w)
            f_dec = self.capped_clock(acc.name, "decode", u_dec, acc.cap_w)
            t_pre = self.phase_time_ms(acc.name, "prefill", pre, f_pre)
            t_dec = self.phase_time_ms(acc.name, "decode", dec, f_dec)
            w_pre = self.phase_power_w(acc.name, "prefill", u_pre, f_pre)
            w_dec = self.phase_power_w(acc.name, "decode", u_dec, f_dec)
            decode_ms = t_dec * np.maximum(n - 1.0, 0.0)
            avg = (t_pre * w_pre + decode_ms * w_dec) / np.maximum(t_pre + decode_ms, 1e-9) / acc.tdp_w
            out.loc[rows.index, "prompt_time"] = t_pre
            out.loc[rows.index, "token_time"] = t_dec
            out.loc[rows.index, "average_power"] = avg
        return out

    def errors(self, frame: pd.DataFrame) -> dict[str, float]:
        """Mean absolute percentage error per hardware and quantity on measured rows."""
        pred = self.predict(frame)
        out: dict[str, float] = {}
        for hardware, rows in frame.groupby("hardware"):
            for column in ("prompt_time", "token_time", "average_power"):
                measured = rows[column].to_numpy(np.float64)
                ok = np.isfinite(measured) & (measured > 0)
                if ok.any():
                    rel = np.abs(pred.loc[rows.index, column].to_numpy(np.float64)[ok] / measured[ok] - 1.0)
                    out[f"{hardware}/{column}_mape"] = float(rel.mean())
                    out[f"{hardware}/{column}_median_ape"] = float(np.median(rel))
        return out


def _features_of(frame: pd.DataFrame) -> tuple[Features, Features]:
    parts_pre, parts_dec, order = [], [], []
    for (model, hardware, tp), rows in frame.groupby(["model", "hardware", "tensor_parallel"]):
        gpu = ACCELERATORS[str(hardware)].gpu
        p = rows["prompt_size"].to_numpy(np.float64)
        b = rows["batch_size"].to_numpy(np.float64)
        n = rows["token_size"].to_numpy(np.float64)
        parts_pre.append(prefill_features(gpu, str(model), int(tp), p * b, b * p * p / 2.0))
        parts_dec.append(decode_features(gpu, str(model), int(tp), b, b * (p + n / 2.0)))
        order.append(rows.index.to_numpy())
    idx = np.argsort(np.concatenate(order), kind="stable")

    def join(parts: list[Features]) -> Features:
        return Features(*(np.concatenate([getattr(x, k) for x in parts])[idx] for k in Features.__dataclass_fields__))

    return join(parts_pre), join(parts_dec)


def fit(frame: pd.DataFrame) -> GPUPowerModel:
    """Fit the model to a checked frame (``perf_data.read_perf_tables``)."""
    frame = frame.reset_index(drop=True)
    uncapped = [h for h in frame["hardware"].unique() if ACCELERATORS[h].cap_w is None]
    if not uncapped:
        raise PerfDataError("calibration needs rows of at least one uncapped hardware")
    pre, dec = _features_of(frame)
    hardware: dict[str, HardwareFit] = {}
    for h in uncapped:
        rows = (frame["hardware"] == h).to_numpy()
        sub_pre = Features(*(getattr(pre, k)[rows] for k in Features.__dataclass_fields__))
        sub_dec = Features(*(getattr(dec, k)[rows] for k in Features.__dataclass_fields__))
        hardware[h] = HardwareFit(
            prefill=_robust_nnls(_design(sub_pre), frame.loc[rows, "prompt_time"].to_numpy()),
            decode=_robust_nnls(_design(sub_dec), frame.loc[rows, "token_time"].to_numpy()),
            rows=int(rows.sum()),
        )
    model = GPUPowerModel(hardware=hardware, fitted_on=tuple(sorted(frame["hardware"].unique())))
    # Power scales. Prefill is compute-bound and holds the GPU at its power limit (POLCA Sec. 3:
    # prefill draws near TDP), so its power is the measured ``peak_power``; decode's scale is
    # then fitted on ``average_power``, the request's time-weighted mean of both phases.
    peak = frame["peak_power"].to_numpy(np.float64)
    measured = frame["average_power"].to_numpy(np.float64)
    power_rows = frame["hardware"].isin(uncapped).to_numpy() & np.isfinite(measured) & np.isfinite(peak)
    if power_rows.any():
        pos = np.flatnonzero(power_rows)
        sub = frame.iloc[pos]
        acc = [ACCELERATORS[h] for h in sub["hardware"]]
        idle = np.array([a.idle_w / a.tdp_w for a in acc])
        span_pre = np.array([(a.prefill_w - a.idle_w) / a.tdp_w for a in acc])
        span_dec = np.array([(a.decode_w - a.idle_w) / a.tdp_w for a in acc])
        model.prefill_scale = float(_robust_nnls(span_pre[:, None], peak[pos] - idle, huber=0.05, relative=False)[0])
        t_pre, t_dec, u_dec = (np.empty(len(pos)) for _ in range(3))
        for h in sub["hardware"].unique():
            rows = (sub["hardware"] == h).to_numpy()
            f_pre = Features(*(getattr(pre, k)[pos[rows]] for k in Features.__dataclass_fields__))
            f_dec = Features(*(getattr(dec, k)[pos[rows]] for k in Features.__dataclass_fields__))
            t_pre[rows] = model.phase_time_ms(h, "prefill", f_pre)
            t_dec[rows] = model.phase_time_ms(h, "decode", f_dec) * np.maximum(
                sub["token_size"].to_numpy()[rows] - 1, 0
            )
            u_dec[rows] = model.utilisation(h, "decode", f_dec)
        total = t_pre + t_dec
        prefill_part = model.prefill_scale * span_pre * t_pre / total
        x = (span_dec * u_dec * t_dec / total)[:, None]
        model.decode_scale = float(_robust_nnls(x, measured[pos] - idle - prefill_part, huber=0.05, relative=False)[0])
    capped = frame["hardware"].map(lambda h: ACCELERATORS[h].cap_w is not None).to_numpy()
    if capped.any():
        sub = frame[capped]

        def loss(alpha: float) -> float:
            model.alpha = alpha
            pred = model.predict(sub)
            return float(np.mean(np.log(pred["prompt_time"].to_numpy(float) / sub["prompt_time"].to_numpy()) ** 2))

        model.alpha = float(minimize_scalar(loss, bounds=(0.3, 4.0), method="bounded").x)
    for h, err in model.errors(frame).items():
        model.metrics[h] = err
    for h, hf in hardware.items():
        hf.prefill_mape = model.metrics.get(f"{h}/prompt_time_mape", float("nan"))
        hf.decode_mape = model.metrics.get(f"{h}/token_time_mape", float("nan"))
        hf.power_mape = model.metrics.get(f"{h}/average_power_mape", float("nan"))
    return model


def calibrate(csv_paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]) -> GPUPowerModel:
    """Read splitwise-format tables and fit the latency/power model to them."""
    if isinstance(csv_paths, str | os.PathLike):
        csv_paths = [csv_paths]
    return fit(read_perf_tables(list(csv_paths)))


def holdout_errors(frame: pd.DataFrame, held_out: pd.Series | np.ndarray) -> dict[str, float]:
    """Fit on the rows not ``held_out`` and report the errors on the held-out rows."""
    mask = np.asarray(held_out, dtype=bool)
    model = fit(frame[~mask])
    return model.errors(frame[mask].reset_index(drop=True))


def cap_effect(model: GPUPowerModel, sizes: Sequence[int] = (2048,), tp: int = 8) -> dict[str, float]:
    """Prefill and decode times of Llama-2-70B on H100, uncapped and at the 70% cap."""
    rows = pd.DataFrame(
        [
            {
                "model": "llama2-70b",
                "hardware": h,
                "prompt_size": p,
                "batch_size": 1,
                "token_size": 128,
                "tensor_parallel": tp,
            }
            for h in ("h100-80gb", "h100-80gb-pcap")
            for p in sizes
        ]
    )
    pred = model.predict(rows)
    n = len(sizes)
    return {
        "prefill_slowdown": float(
            (pred["prompt_time"].iloc[n:].to_numpy() / pred["prompt_time"].iloc[:n].to_numpy()).mean()
        ),
        "decode_slowdown": float(
            (pred["token_time"].iloc[n:].to_numpy() / pred["token_time"].iloc[:n].to_numpy()).mean()
        ),
    }


__all__ = [
    "GPUPowerModel",
    "HardwareFit",
    "calibrate",
    "cap_effect",
    "decode_features",
    "fit",
    "holdout_errors",
    "prefill_features",
]
