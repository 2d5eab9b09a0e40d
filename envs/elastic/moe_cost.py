"""Iteration costs of an MoE deployment over ``d`` accelerators, for the fluid server model.

A replica spreads its weights over its devices (tensor parallel attention, expert parallel
experts: each device holds ``experts / d`` routed experts of every MoE layer). One iteration
of ``B`` requests costs, on each device,

    overhead + max(FLOPs / (peak x flop_eff), bytes / (HBM x mem_eff)) + all-to-all

FLOPs are the active path's (``ModelSpec.linear_flops_per_token``: routed top-k plus shared
experts); bytes are the attention/dense weights, the *distinct* experts the batch touches
(``E x (1 - (1 - k/E)^B)`` per layer, in expectation under uniform routing) and the KV cache
read; the dispatch/combine all-to-all moves ``2 x tokens x hidden x top-k`` activations per MoE
layer over the device-to-device links, plus a fixed latency per call. Efficiencies and the
per-iteration overhead are the serving cost model's calibrated ones for the GPU
(``CostModel(...).eff``). Several replicas (horizontal scaling) split the batch and the prompt
tokens evenly.
"""

from __future__ import annotations

import numpy as np

from infragym.envs.power.fluid import ServerTiming
from infragym.envs.serving.cost_model import CostModel
from infragym.envs.serving.hardware import BYTES_BF16, GPUS, MODELS, MoEModelSpec

# NVLink 4 on H100 SXM: 900 GB/s bidirectional (450 GB/s per direction); A100 SXM NVLink 3:
# 600 GB/s (300 per direction); NVIDIA datasheets. We assume ~80% is achieved.
D2D_BANDWIDTH = {"a100_80gb": 0.8 * 300e9, "h100": 0.8 * 450e9, "h200": 0.8 * 450e9}
ALL_TO_ALL_LATENCY_S = 15e-6  # per dispatch or combine call (assumption: NCCL all-to-all on NVLink, small messages)
GPU_MEMORY_UTILISATION = 0.9  # vLLM's default share of device memory for weights + KV
ACTIVATION_RESERVE_BYTES = 2e9  # per device (as the serving simulator's ReplicaConfig)


def moe_spec(model: str) -> MoEModelSpec:
    spec = MODELS[model]
    if not isinstance(spec, MoEModelSpec):
        raise ValueError(
            f"{model!r} is not an MoE model; MoE models: "
            f"{sorted(k for k, v in MODELS.items() if isinstance(v, MoEModelSpec))}"
        )
    return spec


def min_devices(model: str, gpu: str) -> int:
    """The fewest devices holding the weights with room for a KV cache (a tenth of the memory)."""
    spec, dev = moe_spec(model), GPUS[gpu]
    usable = dev.memory_bytes * GPU_MEMORY_UTILISATION - ACTIVATION_RESERVE_BYTES
    return max(1, int(np.ceil(spec.weight_bytes / (0.9 * usable))))


def kv_capacity_tokens(model: str, gpu: str, devices: int) -> float:
    spec, dev = moe_spec(model), GPUS[gpu]
    free = devices * (dev.memory_bytes * GPU_MEMORY_UTILISATION - ACTIVATION_RESERVE_BYTES) - spec.weight_bytes
    return max(free, 0.0) / spec.kv_bytes_per_token


def iteration_seconds(
    model: str, gpu: str, devices: int, tokens: np.ndarray, batch: np.ndarray, context_tokens: np.ndarray
) -> np.ndarray:
    """One iteration of one replica over ``devices``: ``tokens`` through the layers (prompt
    tokens + one per decoding request), ``batch`` sequences, ``context_tokens`` KV read."""
    spec, dev = moe_spec(model), GPUS[gpu]
    eff = CostModel(gpu, model, 1).eff
    tokens = np.asarray(tokens, dtype=np.float64)
    batch = np.asarray(batch, dtype=np.float64)
    ctx = np.asarray(context_tokens, dtype=np.float64)
    flops = tokens * spec.linear_flops_per_token()
    touched = spec.experts * (1.0 - (1.0 - spec.active_experts / spec.experts) ** np.maximum(tokens, 1.0))
    expert_layer_bytes = spec.expert_params * BYTES_BF16
    other_bytes = spec.weight_bytes - spec.routed_expert_bytes
    weight_bytes = other_bytes + spec.moe_layers * touched * expert_layer_bytes
    nbytes = weight_bytes + ctx * spec.kv_bytes_per_token
    compute = flops / devices / (dev.peak_flops * eff.flop_eff)
    memory = nbytes / devices / (dev.hbm_bandwidth * eff.mem_eff)
    if devices > 1:
        moved = 2.0 * tokens * spec.hidden * BYTES_BF16 * spec.active_experts * (devices - 1) / devices / devices
        comm = spec.moe_layers * (moved / D2D_BANDWIDTH[gpu] + 2 * ALL_TO_ALL_LATENCY_S)
    else:
        comm = 0.0
    return eff.iteration_overhead_s + np.maximum(compute, memory) + comm


def moe_timing(
    model: str,
    gpu: str,
    devices: int,
    *,
    replicas: int = 1,
    mean_prompt: float = 2048.0,
    mean_output: float = 28.0,
    max_running_per_replica: int = 256,
) -> ServerTiming:
    """Fluid-server costs of ``replicas`` replicas sharing ``devices`` devices evenly."""
    if replicas < 1 or devices % replicas:
        raise ValueError(f"{devices} devices do not split into {replicas} equal replicas")
    per = devices // replicas
    if per < min_devices(model, gpu):
        raise ValueError(f"{model} needs at least {min_devices(model, gpu)} {gpu} devices per replica, got {per}")
    ctx = mean_prompt + mean_output / 2
    kv_requests = int(kv_capacity_tokens(model, gpu, per) // ctx)
    per_max = max(1, min(max_running_per_replica, kv_requests))
    b = np.arange(per_max * replicas + 1, dtype=np.float64)
    per_batch = np.ceil(b / replicas)
    decode = iteration_seconds(model, gpu, per, per_batch, per_batch, per_batch * ctx)
    prompts = np.array([mean_prompt / 2, mean_prompt, 2 * mean_prompt, 4 * mean_prompt])
    pre = iteration_seconds(model, gpu, per, prompts, np.ones_like(prompts), np.zeros_like(prompts))
    slope, fixed = np.polyfit(prompts, pre, 1)
    return ServerTiming(
        prefill_fixed_s=float(max(fixed, 0.0)),
        prefill_per_token_s=float(slope) / replicas,
        decode_s=decode,
        decode_utilisation=np.ones_like(decode),
    )


__all__ = ["iteration_seconds", "kv_capacity_tokens", "min_devices", "moe_spec", "moe_timing"]
