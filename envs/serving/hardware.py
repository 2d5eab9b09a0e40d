"""GPUs and transformer models, from their published specifications.

Everything the cost model needs follows from these numbers: weight bytes, KV-cache bytes per
token and FLOPs per token come from the architecture; peak FLOP/s and bandwidths from the
datasheets (sources in ../shared/PAPERS.md, "Roofline and hardware facts").
"""

from __future__ import annotations

from dataclasses import dataclass

BYTES_BF16 = 2


@dataclass(frozen=True)
class GPUSpec:
    name: str
    peak_flops: float  # dense bf16 FLOP/s
    hbm_bandwidth: float  # bytes/s
    memory_bytes: float
    pcie_bandwidth: float  # bytes/s, host <-> device, one direction


# A100-80GB SXM: 312 TFLOP/s bf16, 2.039 TB/s; H100 SXM: 989 TFLOP/s, 3.35 TB/s; H200: same
# compute as H100, 4.8 TB/s and 141 GB (NVIDIA datasheets, quoted in PAPERS.md). PCIe: Gen4
# x16 ~25 GB/s achieved for A100, Gen5 x16 ~50 GB/s for H100/H200 (assumption: ~80% of the
# 32/64 GB/s link rate).
GPUS: dict[str, GPUSpec] = {
    "a100_80gb": GPUSpec("a100_80gb", 312e12, 2.039e12, 80e9, 25e9),
    "h100": GPUSpec("h100", 989e12, 3.35e12, 80e9, 50e9),
    "h200": GPUSpec("h200", 989e12, 4.8e12, 141e9, 50e9),
}


@dataclass(frozen=True)
class ModelSpec:
    """A decoder-only transformer with grouped-query attention and a gated MLP."""

    name: str
    layers: int
    hidden: int
    q_heads: int
    kv_heads: int
    head_dim: int
    ffn: int
    vocab: int
    gated_mlp: bool = True

    def __post_init__(self) -> None:
        for field_name in ("layers", "hidden", "q_heads", "kv_heads", "head_dim", "ffn", "vocab"):
            if getattr(self, field_name) <= 0:
                raise ValueError(f"{self.name}: {field_name} must be positive")
        if self.q_heads % self.kv_heads:
            raise ValueError(f"{self.name}: q_heads must be a multiple of kv_heads")

    # --- parameters (per layer unless said otherwise) ---------------------------------------
    @property
    def qkv_params(self) -> int:
        return self.hidden * (self.q_heads + 2 * self.kv_heads) * self.head_dim

    @property
    def out_proj_params(self) -> int:
        return self.q_heads * self.head_dim * self.hidden

    @property
    def mlp_params(self) -> int:
        return (3 if self.gated_mlp else 2) * self.hidden * self.ffn

    @property
    def layer_params(self) -> int:
        return self.qkv_params + self.out_proj_params + self.mlp_params + 2 * self.hidden

    @property
    def params(self) -> int:
        """All parameters: layers, input embedding and (untied) output head."""
        return self.layers * self.layer_params + 2 * self.vocab * self.hidden + self.hidden

    @property
    def weight_bytes(self) -> int:
        return self.params * BYTES_BF16

    @property
    def kv_bytes_per_token(self) -> int:
        """2 (K and V) x layers x kv_heads x head_dim x bytes: 128 KiB for Llama-3.1-8B."""
        return 2 * self.layers * self.kv_heads * self.head_dim * BYTES_BF16

    def linear_flops_per_token(self) -> float:
        """2 x parameters of the matrix multiplications a token goes through (all layers + head)."""
        per_layer = self.qkv_params + self.out_proj_params + self.mlp_params
        return 2.0 * (self.layers * per_layer + self.vocab * self.hidden)

    def attention_flops(self, query_tokens: float, context_tokens: float) -> float:
        """4 x layers x q_heads x head_dim x q_len x kv_len (QK^T and AV)."""
        return 4.0 * self.layers * self.q_heads * self.head_dim * query_tokens * context_tokens


# Llama-3.1 architectures (Meta model cards; PAPERS.md): 8B = 32 layers, 32 q / 8 kv heads,
# head_dim 128, FFN 14,336, vocab 128,256; 70B = 80 layers, 64 q / 8 kv heads, FFN 28,672.
# Llama-2-7B (for the H100 profile): 32 layers, 32 q / 32 kv heads, FFN 11,008, vocab 32,000.
MODELS: dict[str, ModelSpec] = {
    "llama3.1_8b": ModelSpec("llama3.1_8b", 32, 4096, 32, 8, 128, 14336, 128256),
    "llama3.1_70b": ModelSpec("llama3.1_70b", 80, 8192, 64, 8, 128, 28672, 128256),
    "llama2_7b": ModelSpec("llama2_7b", 32, 4096, 32, 32, 128, 11008, 32000),
}
