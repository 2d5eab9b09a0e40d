"""Roofline cost model of one continuous-batching iteration, calibrated on measured profiles.

Each operator of a layer costs ``overhead + max(FLOPs / (peak x flop_eff), bytes / (HBM x
mem_eff))`` on one tensor-parallel shard. Matrix multiplications read their weight shard
and the activations; element-wise operators (norms, RoPE, activation, residual add) only move
activations. Attention is added per request: prefill attention is compute-bound
(4 x layers x heads x head_dim x q_len x kv_len / 2 for the causal half), decode attention
reads the request's whole KV cache.

``calibrate(profile_csv)`` fits ``flop_eff``, ``mem_eff`` and the per-operator overhead to the
measured per-operator times of ``../shared/data/gpu_profiles`` (vidur's format) by least
squares on the log ratio, and reports the mean absolute percentage error per profile.
PAPERS.md (derived): A100/Llama-3-8B efficiencies ~0.70-0.75 of bandwidth, ~0.65-0.70 of FLOP/s.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import least_squares

from infragym.envs.serving.hardware import BYTES_BF16, GPUS, MODELS, GPUSpec, ModelSpec

# Operators of one layer in the profile format, excluding attention itself.
PROFILE_LAYER_OPS = (
    "input_layernorm",
    "attn_pre_proj",
    "attn_rope",
    "attn_post_proj",
    "post_attention_layernorm",
    "mlp_up_proj",
    "mlp_act",
    "mlp_down_proj",
    "add",
)
PROFILE_ARCH_COLUMNS = ("n_head", "n_kv_head", "n_embd", "n_expanded_embd", "vocab_size", "num_tokens")


@dataclass(frozen=True)
class Efficiency:
    """Calibrated fractions of peak, and a fixed cost per operator launch (seconds)."""

    flop_eff: float = 0.68
    mem_eff: float = 0.72
    op_overhead_s: float = 8e-6
    # scheduler + sampling + framework per iteration: an assumption for GPUs not in CALIBRATED
    iteration_overhead_s: float = 2e-3


# Efficiencies fitted by ``calibrate`` on the shared profiles (bench/serving/fidelity.py
# re-fits and reports them): A100 on Llama-3-8B (1,824 rows, MAPE 4.2%) and H100 on Llama-2-7B
# (1,044 rows, MAPE 7.4%). The H200 has the H100's compute; we assume its efficiencies.
# The iteration overhead (scheduling, sampling, launches outside the layers) is fitted to vLLM's
# own end-to-end latency test (vLLM CI, buildkite vllm/performance-benchmark, "latency_llama8B_tp1":
# Llama-3.1-8B, TP 1, batch 8, 32 prompt + 128 output tokens; mean 1,579.27 ms on
# A100-SXM4-80GB (build 9523), 997.54 ms on H100 (build 9555), 834.06 ms on H200 (build 9513)):
# the simulated run matches each exactly with 0.80 / 1.03 / 1.34 ms per iteration
# (bench/serving/decode_latency.py re-fits and reports them). The CI hosts differ, so the
# overhead does not fall with the GPU generation.
CALIBRATED: dict[str, Efficiency] = {
    "a100_80gb": Efficiency(flop_eff=0.677, mem_eff=0.765, op_overhead_s=6.0e-6, iteration_overhead_s=0.80e-3),
    "h100": Efficiency(flop_eff=0.637, mem_eff=0.859, op_overhead_s=5.1e-6, iteration_overhead_s=1.03e-3),
    "h200": Efficiency(flop_eff=0.637, mem_eff=0.859, op_overhead_s=5.1e-6, iteration_overhead_s=1.34e-3),
}


class CostModel:
    """Iteration times of one replica (a model on ``tp`` GPUs of one type).

    ``efficiency`` defaults to the calibrated values of the GPU (``CALIBRATED``).
    """

    def __init__(self, gpu: GPUSpec | str, model: ModelSpec | str, tp: int = 1, efficiency: Efficiency | None = None):
        self.gpu = GPUS[gpu] if isinstance(gpu, str) else gpu
        self.model = MODELS[model] if isinstance(model, str) else model
        if tp < 1 or self.model.q_heads % tp or (self.model.kv_heads % tp and tp % self.model.kv_heads):
            raise ValueError(f"tensor-parallel degree {tp} does not divide the heads of {self.model.name}")
        self.tp = tp
        self.eff = efficiency or CALIBRATED.get(self.gpu.name, Efficiency())

    # ------------------------------------------------------------------ per-layer operators
    def _op(self, flops: np.ndarray, nbytes: np.ndarray) -> np.ndarray:
        compute = flops / (self.gpu.peak_flops * self.eff.flop_eff)
        memory = nbytes / (self.gpu.hbm_bandwidth * self.eff.mem_eff)
        return self.eff.op_overhead_s + np.maximum(compute, memory)

    def layer_op_times(self, tokens: np.ndarray) -> dict[str, np.ndarray]:
        """Seconds per operator of one layer for ``tokens`` tokens in the batch (vectorised)."""
        n = np.asarray(tokens, dtype=np.float64)
        m, tp, b = self.model, self.tp, BYTES_BF16
        h, ffn_shard = m.hidden, m.ffn / tp
        qkv_out = (m.q_heads + 2 * m.kv_heads) * m.head_dim / tp
        q_width = m.q_heads * m.head_dim / tp

        def matmul(d_in: float, d_out: float) -> np.ndarray:
            return self._op(2.0 * n * d_in * d_out, b * (d_in * d_out + n * (d_in + d_out)))

        up_out = (2 if m.gated_mlp else 1) * ffn_shard
        return {
            "input_layernorm": self._op(5.0 * n * h, b * 2.0 * n * h),
            "attn_pre_proj": matmul(h, qkv_out),
            "attn_rope": self._op(6.0 * n * q_width, b * 2.0 * n * qkv_out),
            "attn_post_proj": matmul(q_width, h),
            "post_attention_layernorm": self._op(5.0 * n * h, b * 2.0 * n * h),
            "mlp_up_proj": matmul(h, up_out),
            "mlp_act": self._op(5.0 * n * ffn_shard, b * n * (up_out + ffn_shard)),
            "mlp_down_proj": matmul(ffn_shard, h),
            "add": self._op(n * h, b * 3.0 * n * h),
        }

    def layer_time(self, tokens: np.ndarray) -> np.ndarray:
        """Non-attention seconds of one layer (what the profiles measure)."""
        return sum(self.layer_op_times(tokens).values())

    # ------------------------------------------------------------------ whole iterations
    def iteration_time(
        self,
        prefill_tokens: np.ndarray | float,
        prefill_attention_pairs: np.ndarray | float,
        decode_requests: np.ndarray | float,
        decode_context_tokens: np.ndarray | float,
    ) -> np.ndarray:
        """Seconds for one iteration (vectorised over its arguments).

        Args:
            prefill_tokens: prompt tokens processed in this iteration.
            prefill_attention_pairs: sum over prefills of q_len x kv_len / 2 (causal).
            decode_requests: requests generating one token each.
            decode_context_tokens: their total context length (KV tokens read).
        """
        m, tp = self.model, self.tp
        tokens = np.asarray(prefill_tokens, dtype=np.float64) + np.asarray(decode_requests, dtype=np.float64)
        layers = m.layers * self.layer_time(np.maximum(tokens, 1.0))
        heads = m.q_heads / tp
        prefill_attn = 4.0 * m.layers * heads * m.head_dim * np.asarray(prefill_attention_pairs, dtype=np.float64)
        prefill_attn_s = prefill_attn / (self.gpu.peak_flops * self.eff.flop_eff)
        # KV heads are split over min(tp, kv_heads) GPUs (replicated beyond that).
        kv_read = np.asarray(decode_context_tokens, dtype=np.float64) * m.kv_bytes_per_token / min(tp, m.kv_heads)
        decode_attn_s = kv_read / (self.gpu.hbm_bandwidth * self.eff.mem_eff)
        head_tokens = np.asarray(decode_requests, dtype=np.float64) + (np.asarray(prefill_tokens) > 0)
        lm_head = self.lm_head_time(head_tokens)
        return self.eff.iteration_overhead_s + layers + prefill_attn_s + decode_attn_s + lm_head

    def lm_head_time(self, sampled_tokens: np.ndarray | float) -> np.ndarray:
        """The LM head runs on the sampled positions only (one per request in the batch)."""
        m = self.model
        k = np.asarray(sampled_tokens, dtype=np.float64)
        return self._op(2.0 * k * m.hidden * m.vocab / self.tp, BYTES_BF16 * m.hidden * m.vocab / self.tp)

    def with_efficiency(self, efficiency: Efficiency) -> CostModel:
        return CostModel(self.gpu, self.model, self.tp, efficiency)


# ---------------------------------------------------------------------- calibration
class ProfileError(ValueError):
    """A profile CSV that does not have the expected columns or values."""


@dataclass(frozen=True)
class Calibration:
    gpu: str
    model: str
    efficiency: Efficiency
    mape: float  # mean absolute percentage error of the per-layer time, after fitting
    mape_uncalibrated: float  # with the default efficiencies
    rows: int
    per_tp_mape: dict[int, float]


# A per-operator time of one layer above a minute (in ms) cannot be a measurement: the slowest
# operator of the shared profiles takes ~35 ms at 32k tokens.
MAX_OPERATOR_MS = 60_000.0


def read_profile(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a vidur-format MLP profile; refuse a missing or empty file, missing columns,
    non-finite, non-positive or implausible times, and rows of another model than row 0."""
    path = Path(path)
    if not path.is_file():
        raise ProfileError(f"{path}: no such file")
    try:
        frame = pd.read_csv(path)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError, OSError, ValueError) as err:
        raise ProfileError(f"{path}: not a readable CSV profile ({err})") from err
    needed = [f"time_stats.{op}.mean" for op in PROFILE_LAYER_OPS]
    needed += [*PROFILE_ARCH_COLUMNS, "num_tensor_parallel_workers"]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise ProfileError(f"{path}: missing column(s) {missing}")
    if frame.empty:
        raise ProfileError(f"{path}: a header and no measurements")
    values = frame[needed].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    times = np.arange(len(needed)) < len(PROFILE_LAYER_OPS)
    bad = ~np.isfinite(values) | (values <= 0) | (times & (values > MAX_OPERATOR_MS))
    whole = ~times & np.isfinite(values) & (values != np.round(values))
    if (bad | whole).any():
        row, column = np.argwhere(bad | whole)[0]
        expected = f"a positive time up to {MAX_OPERATOR_MS:g} ms" if times[column] else "a positive whole number"
        given = frame[needed[column]].iloc[row]
        raise ProfileError(f"{path}: line {row + 2}, column {needed[column]!r}: {given!r}; expected {expected}")
    arch = values[:, len(PROFILE_LAYER_OPS) : len(PROFILE_LAYER_OPS) + len(PROFILE_ARCH_COLUMNS) - 1]
    other = np.flatnonzero((arch != arch[0]).any(axis=1))
    if other.size:
        row = int(other[0])
        column = PROFILE_ARCH_COLUMNS[int(np.flatnonzero(arch[row] != arch[0])[0])]
        raise ProfileError(
            f"{path}: line {row + 2}, column {column!r}: {arch[row][PROFILE_ARCH_COLUMNS.index(column)]:g} differs "
            f"from line 2's {arch[0][PROFILE_ARCH_COLUMNS.index(column)]:g} (one profile holds one model)"
        )
    return frame


def model_from_profile(frame: pd.DataFrame, name: str) -> ModelSpec:
    row = frame.iloc[0]
    heads = int(row["n_head"])
    return ModelSpec(
        name=name,
        layers=1,
        hidden=int(row["n_embd"]),
        q_heads=heads,
        kv_heads=int(row["n_kv_head"]),
        head_dim=int(row["n_embd"]) // heads,
        ffn=int(row["n_expanded_embd"]),
        vocab=int(row["vocab_size"]),
    )


def calibrate(path: str | os.PathLike[str], gpu: str) -> Calibration:
    """Fit the efficiencies of ``gpu`` to a measured per-operator profile."""
    if gpu not in GPUS:
        raise ProfileError(f"unknown GPU {gpu!r}; known: {sorted(GPUS)}")
    frame = read_profile(path)
    model = model_from_profile(frame, Path(path).stem)
    try:
        for tp in np.unique(frame["num_tensor_parallel_workers"].to_numpy(np.int64)):
            CostModel(gpu, model, int(tp))
    except ValueError as err:
        raise ProfileError(f"{path}: column 'num_tensor_parallel_workers': {err}") from err
    measured = frame[[f"time_stats.{op}.mean" for op in PROFILE_LAYER_OPS]].sum(axis=1).to_numpy() * 1e-3  # ms -> s
    tokens = frame["num_tokens"].to_numpy(np.float64)
    tps = frame["num_tensor_parallel_workers"].to_numpy(np.int64)
    base = Efficiency()  # the uncalibrated starting point (PAPERS.md's derived efficiencies)

    def predict(eff: Efficiency) -> np.ndarray:
        out = np.empty(len(frame))
        for tp in np.unique(tps):
            rows = tps == tp
            out[rows] = CostModel(gpu, model, int(tp), eff).layer_time(tokens[rows])
        return out

    def residuals(theta: np.ndarray) -> np.ndarray:
        eff = replace(base, flop_eff=theta[0], mem_eff=theta[1], op_overhead_s=theta[2] * 1e-6)
        return np.log(predict(eff) / measured)

    fit = least_squares(residuals, x0=[base.flop_eff, base.mem_eff, 8.0], bounds=([0.05, 0.05, 0.0], [1.0, 1.0, 200.0]))
    eff = replace(base, flop_eff=float(fit.x[0]), mem_eff=float(fit.x[1]), op_overhead_s=float(fit.x[2]) * 1e-6)
    error = np.abs(predict(eff) / measured - 1.0)
    return Calibration(
        gpu=gpu,
        model=model.name,
        efficiency=eff,
        mape=float(error.mean()),
        mape_uncalibrated=float(np.abs(predict(base) / measured - 1.0).mean()),
        rows=len(frame),
        per_tp_mape={int(tp): float(error[tps == tp].mean()) for tp in np.unique(tps)},
    )
