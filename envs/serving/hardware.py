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


# --- Models of the power (POLCA) and elastic-MoE (ElasticMoE) components ----------------------
# Appended as one block (issue 16). Architectures from the published configs:
# Llama-2-70B (meta-llama/Llama-2-70b-hf config.json): 80 layers, hidden 8,192, 64 q / 8 kv
# heads, FFN 28,672, vocab 32,000. BLOOM-176B (bigscience/bloom config.json): 70 layers, hidden
# 14,336, 112 heads (no GQA), head_dim 128, GELU MLP of 4 x hidden, vocab 250,880 (its tied
# embeddings are counted twice here: +3% weight bytes).
@dataclass(frozen=True)
class MoEModelSpec(ModelSpec):
    """A Mixture-of-Experts transformer. ``ffn`` is the FFN width one token goes through (its
    active routed experts plus the shared ones), so the cost model prices the active path;
    ``params`` and ``weight_bytes`` count every expert."""

    experts: int = 8
    active_experts: int = 2
    expert_ffn: int = 14336
    shared_experts: int = 0
    dense_layers: int = 0  # leading layers with a dense FFN of width ``dense_ffn``
    dense_ffn: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 < self.active_experts <= self.experts or self.expert_ffn <= 0:
            raise ValueError(f"{self.name}: need 0 < active_experts <= experts and expert_ffn > 0")
        if not 0 <= self.dense_layers < self.layers:
            raise ValueError(f"{self.name}: dense_layers must be in [0, layers)")

    @property
    def expert_params(self) -> int:
        """One gated expert: up, gate and down projections."""
        return 3 * self.hidden * self.expert_ffn

    @property
    def moe_layers(self) -> int:
        return self.layers - self.dense_layers

    @property
    def attention_params(self) -> int:
        return self.qkv_params + self.out_proj_params + 2 * self.hidden

    @property
    def params(self) -> int:
        moe = self.attention_params + (self.experts + self.shared_experts) * self.expert_params
        moe += self.hidden * self.experts  # router
        dense = self.attention_params + 3 * self.hidden * self.dense_ffn
        return self.moe_layers * moe + self.dense_layers * dense + 2 * self.vocab * self.hidden + self.hidden

    @property
    def routed_expert_bytes(self) -> int:
        """Bytes of all routed experts (what expert parallelism spreads over devices)."""
        return self.moe_layers * self.experts * self.expert_params * BYTES_BF16

    @property
    def expert_bytes(self) -> int:
        """Bytes of one routed expert across all MoE layers."""
        return self.moe_layers * self.expert_params * BYTES_BF16


# Mixtral-8x7B (mistralai/Mixtral-8x7B-v0.1 config.json): 32 layers, hidden 4,096, 32 q / 8 kv
# heads, 8 experts of FFN 14,336, top-2, vocab 32,000; 46.7B parameters, 12.9B active.
# DeepSeekMoE-16B (deepseek-ai/deepseek-moe-16b-base config.json): 28 layers, hidden 2,048, 16
# heads (MHA), 64 routed experts of FFN 1,408 + 2 shared, top-6, first layer dense (FFN 10,944),
# vocab 102,400; 16.4B parameters, 2.8B active.
MODELS["llama2-70b"] = ModelSpec("llama2-70b", 80, 8192, 64, 8, 128, 28672, 32000)
MODELS["bloom-176b"] = ModelSpec("bloom-176b", 70, 14336, 112, 112, 128, 57344, 250880, gated_mlp=False)
MODELS["mixtral-8x7b"] = MoEModelSpec(
    "mixtral-8x7b", 32, 4096, 32, 8, 128, 2 * 14336, 32000, experts=8, active_experts=2, expert_ffn=14336
)
MODELS["deepseek-moe-16b"] = MoEModelSpec(
    "deepseek-moe-16b",
    28,
    2048,
    16,
    16,
    128,
    (6 + 2) * 1408,
    102400,
    experts=64,
    active_experts=6,
    expert_ffn=1408,
    shared_experts=2,
    dense_layers=1,
    dense_ffn=10944,
)
