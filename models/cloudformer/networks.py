"""Networks that map one execution, a variable-length ``(T_i, n_metrics)`` sequence, to P in (0, 1).

Inputs are batches padded to the longest execution, ``x (batch, T, n_metrics)``, with
``lengths (batch,)``: second ``t`` of execution ``b`` is real when ``t < lengths[b]``.

- ``cloudformer``: the paper's dual-branch Transformer (arXiv 2509.03394, Sec. 4): a *temporal*
  branch (per-second Dense + ReLU to d, a class token, sinusoidal positions, masked encoder
  blocks) and a *system* branch (each metric averaged over the execution's real seconds,
  projected per metric to a token, a class token, unmasked blocks, no positions); the two class
  tokens are concatenated into an MLP head (Swish, LayerNorm, dropout) with a sigmoid.
- ``temporal`` / ``system``: one branch and the head (the paper's Table V ablations).
- ``lstm``: an LSTM over the real seconds (packed), its last hidden state into the head.

Attention is written out (projections, masked softmax) rather than ``nn.TransformerEncoder`` so
that the ONNX export keeps dynamic batch and time axes with the padding mask.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

ARCHITECTURES = ("cloudformer", "temporal", "system", "lstm")


@dataclass
class NetworkSpec:
    """Hyper-parameters of one network and its optimiser.

    Args:
        arch: one of ``ARCHITECTURES``.
        d_model: token width (paper 64; LSTM: hidden size).
        n_heads: attention heads (paper 4).
        n_layers: encoder blocks per branch (paper 4; LSTM: stacked layers).
        ff: feed-forward width of a block (paper 256).
        dropout: in the blocks; head_dropout: in the MLP head (paper 0.4).
        lr: Adam's peak learning rate (paper 1e-5), reached after a linear warm-up over
            ``warmup_fraction`` of the steps, then cosine decay.
        weight_decay: Adam's L2 penalty (paper: not stated; 0).
    """

    arch: str = "cloudformer"
    d_model: int = 64
    n_heads: int = 4
    n_layers: int = 4
    ff: int = 256
    dropout: float = 0.1
    head_dropout: float = 0.4
    lr: float = 1e-5
    weight_decay: float = 0.0
    warmup_fraction: float = 0.05

    def __post_init__(self) -> None:
        for key in ("d_model", "n_heads", "n_layers", "ff"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"model.{key} must be a whole number >= 1, got {value!r}")
        for key in ("dropout", "head_dropout"):
            if not 0.0 <= getattr(self, key) < 1.0:
                raise ValueError(f"model.{key} must be in [0, 1), got {getattr(self, key)}")
        if not 0.0 < self.lr < float("inf"):
            raise ValueError(f"model.lr must be a positive number, got {self.lr}")
        if not 0.0 <= self.weight_decay < float("inf"):
            raise ValueError(f"model.weight_decay must be >= 0, got {self.weight_decay}")
        if not 0.0 <= self.warmup_fraction < 1.0:
            raise ValueError(f"model.warmup_fraction must be in [0, 1), got {self.warmup_fraction}")
        if self.arch not in ARCHITECTURES:
            raise ValueError(f"model.arch must be one of {ARCHITECTURES}, got {self.arch!r}")
        if self.arch != "lstm" and self.d_model % self.n_heads:
            raise ValueError(f"model.d_model ({self.d_model}) must be divisible by model.n_heads ({self.n_heads})")


def valid_mask(lengths: torch.Tensor, steps: int) -> torch.Tensor:
    """``(batch, steps)`` True where the second is real."""
    return torch.arange(steps, device=lengths.device)[None, :] < lengths[:, None]


def sinusoidal_positions(steps: int, d_model: int, device: torch.device) -> torch.Tensor:
    """The Transformer's fixed sine / cosine positions (Vaswani et al., 2017), ``(steps, d)``."""
    position = torch.arange(steps, device=device, dtype=torch.float32)[:, None]
    rate = torch.exp(torch.arange(0, d_model, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / d_model))
    angles = position * rate[None, :]
    return torch.stack([torch.sin(angles), torch.cos(angles)], dim=-1).reshape(steps, -1)[:, :d_model]


class EncoderBlock(nn.Module):
    """Pre-norm Transformer encoder block: multi-head self-attention with an optional key mask,
    then a ReLU feed-forward layer; residual connections around both."""

    def __init__(self, d_model: int, n_heads: int, ff: int, dropout: float) -> None:
        super().__init__()
        self.n_heads, self.d_head = n_heads, d_model // n_heads
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.ffn = nn.Sequential(nn.Linear(d_model, ff), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ff, d_model))
        self.dropout = nn.Dropout(dropout)

    def forward(self, h: torch.Tensor, key_valid: torch.Tensor | None = None) -> torch.Tensor:
        b, n, d = h.shape
        q, k, v = self.qkv(self.norm1(h)).reshape(b, n, 3, self.n_heads, self.d_head).permute(2, 0, 3, 1, 4)
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.d_head)
        if key_valid is not None:  # padded seconds are never attended to
            scores = scores.masked_fill(~key_valid[:, None, None, :], -1e9)
        attended = (scores.softmax(dim=-1) @ v).transpose(1, 2).reshape(b, n, d)
        h = h + self.dropout(self.out(attended))
        return h + self.dropout(self.ffn(self.norm2(h)))


class TemporalBranch(nn.Module):
    """Tokens are seconds: Dense + ReLU per second, a class token, sinusoidal positions, masked blocks."""

    def __init__(self, n_metrics: int, spec: NetworkSpec) -> None:
        super().__init__()
        d = spec.d_model
        self.embed = nn.Sequential(nn.Linear(n_metrics, d), nn.ReLU())
        self.cls = nn.Parameter(torch.zeros(1, 1, d))
        self.blocks = nn.ModuleList(EncoderBlock(d, spec.n_heads, spec.ff, spec.dropout) for _ in range(spec.n_layers))
        self.norm = nn.LayerNorm(d)
        nn.init.normal_(self.cls, std=0.02)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        b, steps, _ = x.shape
        tokens = torch.cat([self.cls.expand(b, -1, -1), self.embed(x)], dim=1)
        tokens = tokens + sinusoidal_positions(steps + 1, tokens.shape[-1], x.device)[None]
        valid = torch.cat([torch.ones(b, 1, dtype=torch.bool, device=x.device), valid_mask(lengths, steps)], dim=1)
        for block in self.blocks:
            tokens = block(tokens, valid)
        return self.norm(tokens[:, 0])


def masked_mean(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Each metric's mean over the execution's real seconds, ``(batch, n_metrics)``."""
    valid = valid_mask(lengths, x.shape[1]).to(x.dtype)[..., None]
    return (x * valid).sum(dim=1) / lengths.clamp(min=1).to(x.dtype)[:, None]


class SystemBranch(nn.Module):
    """Tokens are metrics: each metric's time average projected by its own affine map to d (per
    metric weights), a class token, unmasked blocks, no positions."""

    def __init__(self, n_metrics: int, spec: NetworkSpec) -> None:
        super().__init__()
        d = spec.d_model
        self.weight = nn.Parameter(torch.randn(1, n_metrics, d) * 0.02)
        self.bias = nn.Parameter(torch.zeros(1, n_metrics, d))
        self.cls = nn.Parameter(torch.zeros(1, 1, d))
        self.blocks = nn.ModuleList(EncoderBlock(d, spec.n_heads, spec.ff, spec.dropout) for _ in range(spec.n_layers))
        self.norm = nn.LayerNorm(d)
        nn.init.normal_(self.cls, std=0.02)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        average = masked_mean(x, lengths)
        tokens = average[..., None] * self.weight + self.bias
        tokens = torch.cat([self.cls.expand(x.shape[0], -1, -1), tokens], dim=1)
        for block in self.blocks:
            tokens = block(tokens)
        return self.norm(tokens[:, 0])


class RegressionHead(nn.Module):
    """MLP (Swish, LayerNorm, dropout) to one logit; the sigmoid keeps P in (0, 1)."""

    def __init__(self, d_in: int, d_hidden: int, dropout: float) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(d_in, d_hidden), nn.SiLU(), nn.LayerNorm(d_hidden), nn.Dropout(dropout), nn.Linear(d_hidden, 1)
        )

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.mlp(h).squeeze(-1))


class CloudFormerNet(nn.Module):
    """Both branches; their class tokens concatenated into the head."""

    def __init__(self, n_metrics: int, spec: NetworkSpec) -> None:
        super().__init__()
        self.temporal = TemporalBranch(n_metrics, spec)
        self.system = SystemBranch(n_metrics, spec)
        self.head = RegressionHead(2 * spec.d_model, spec.d_model, spec.head_dropout)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.head(torch.cat([self.temporal(x, lengths), self.system(x, lengths)], dim=-1))


class SingleBranchNet(nn.Module):
    """One branch and the head: the temporal-only or system-only ablation (paper, Table V)."""

    def __init__(self, branch: nn.Module, spec: NetworkSpec) -> None:
        super().__init__()
        self.branch = branch
        self.head = RegressionHead(spec.d_model, spec.d_model, spec.head_dropout)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.head(self.branch(x, lengths))


class LSTMNet(nn.Module):
    """Stacked LSTM over the real seconds (packed sequences); the last layer's final state feeds the head."""

    def __init__(self, n_metrics: int, spec: NetworkSpec) -> None:
        super().__init__()
        self.lstm = nn.LSTM(
            n_metrics, spec.d_model, spec.n_layers, batch_first=True, dropout=spec.dropout if spec.n_layers > 1 else 0.0
        )
        self.head = RegressionHead(spec.d_model, spec.d_model, spec.head_dropout)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = nn.utils.rnn.pack_padded_sequence(
            x, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False
        )
        _, (hidden, _) = self.lstm(packed)
        return self.head(hidden[-1])


def build_network(spec: NetworkSpec, n_metrics: int) -> nn.Module:
    """The network for ``spec.arch`` over ``n_metrics`` metrics per second."""
    if spec.arch == "cloudformer":
        return CloudFormerNet(n_metrics, spec)
    if spec.arch == "temporal":
        return SingleBranchNet(TemporalBranch(n_metrics, spec), spec)
    if spec.arch == "system":
        return SingleBranchNet(SystemBranch(n_metrics, spec), spec)
    return LSTMNet(n_metrics, spec)


def count_parameters(net: nn.Module) -> int:
    return int(sum(p.numel() for p in net.parameters() if p.requires_grad))
