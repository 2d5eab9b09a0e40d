"""Networks that map a telemetry window ``(batch, window, n_metrics)`` to P in (0, 1).

- ``cloudformer``: CloudFormer's dual-branch Transformer (arXiv 2509.03394, Sec. 4): a
  temporal branch whose tokens are time steps (bursts, I/O spikes) and a system branch whose
  tokens are metrics (attention across metrics: e.g. LLC occupancy vs cache misses), fused by a
  gated MLP into a regression head.
- ``temporal``: the temporal branch alone (a temporal-only Transformer baseline).
- ``system``: the system branch alone (a metric-only Transformer baseline).
- ``lstm``: an LSTM over time steps (the recurrent baseline).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

ARCHITECTURES = ("cloudformer", "temporal", "system", "lstm")


@dataclass
class NetworkSpec:
    """Hyper-parameters of one network and its optimiser (data-dependent sizes come later).

    Args:
        arch: one of ``ARCHITECTURES``.
        d_model: token width (LSTM: hidden size).
        n_heads: attention heads; n_layers: encoder layers (LSTM: stacked layers).
        dropout: in the encoders and the head.
        lr / weight_decay: AdamW, warm-up then cosine decay.
        skip_tail: 0 for none, else a linear skip path (see ``LinearSkip``) over each metric's
            mean across the window's last ``skip_tail`` seconds and its last value, added to
            the head's logit.
    """

    arch: str = "cloudformer"
    d_model: int = 64
    n_heads: int = 4
    n_layers: int = 2
    dropout: float = 0.1
    lr: float = 2e-3
    weight_decay: float = 1e-2
    skip_tail: int = 0

    def __post_init__(self) -> None:
        for key in ("d_model", "n_heads", "n_layers"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"model.{key} must be a whole number >= 1, got {value!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"model.dropout must be in [0, 1), got {self.dropout}")
        if not 0.0 < self.lr < float("inf"):
            raise ValueError(f"model.lr must be a positive number, got {self.lr}")
        if not 0.0 <= self.weight_decay < float("inf"):
            raise ValueError(f"model.weight_decay must be >= 0, got {self.weight_decay}")
        if self.arch not in ARCHITECTURES:
            raise ValueError(f"model.arch must be one of {ARCHITECTURES}, got {self.arch!r}")
        if self.skip_tail < 0:
            raise ValueError(f"model.skip_tail must be >= 0 (0: no linear skip path), got {self.skip_tail}")
        if self.arch != "lstm" and self.d_model % self.n_heads:
            raise ValueError(f"model.d_model ({self.d_model}) must be divisible by model.n_heads ({self.n_heads})")


def _encoder(d_model: int, n_heads: int, n_layers: int) -> nn.TransformerEncoder:
    # No dropout inside attention: on CPU it forces PyTorch's unfused attention, ~10x slower
    # over 206 metric tokens. Dropout is applied to the tokens and in the head instead.
    layer = nn.TransformerEncoderLayer(
        d_model, n_heads, 2 * d_model, 0.0, batch_first=True, norm_first=True, activation="gelu"
    )
    return nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)


class TemporalBranch(nn.Module):
    """Tokens are time steps: each second's metric vector, projected, plus a position embedding.

    The summary is the last token (the second whose P is predicted) next to the mean token."""

    def __init__(self, n_metrics: int, window: int, d_model: int, n_heads: int, n_layers: int, dropout: float) -> None:
        super().__init__()
        self.embed = nn.Linear(n_metrics, d_model)
        self.position = nn.Parameter(torch.randn(1, window, d_model) * 0.02)
        self.dropout = nn.Dropout(dropout)
        self.encoder = _encoder(d_model, n_heads, n_layers)
        self.pool = nn.Linear(2 * d_model, d_model)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.encoder(self.dropout(self.embed(x) + self.position))
        return self.norm(self.pool(torch.cat([h[:, -1], h.mean(dim=1)], dim=-1)))


class SystemBranch(nn.Module):
    """Tokens are metrics: each metric's series over the window, projected, plus embeddings of
    the metric's identity and of its group (own vs neighbours, collector)."""

    def __init__(
        self, group_sizes: Sequence[int], window: int, d_model: int, n_heads: int, n_layers: int, dropout: float
    ) -> None:
        super().__init__()
        n_metrics = int(sum(group_sizes))
        self.embed = nn.Linear(window, d_model)
        self.metric = nn.Parameter(torch.randn(1, n_metrics, d_model) * 0.02)
        groups = torch.repeat_interleave(torch.arange(len(group_sizes)), torch.as_tensor(list(group_sizes)))
        self.register_buffer("group_ids", groups, persistent=False)
        self.group = nn.Embedding(len(group_sizes), d_model)
        self.dropout = nn.Dropout(dropout)
        self.encoder = _encoder(d_model, n_heads, n_layers)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.embed(x.transpose(1, 2)) + self.metric + self.group(self.group_ids)
        return self.norm(self.encoder(self.dropout(tokens)).mean(dim=1))


class LinearSkip(nn.Module):
    """A wide path: a linear function of each metric's mean over the window's last ``tail``
    seconds and of its last value, added to the head's logit. Starts at zero, so the network
    begins as without it."""

    def __init__(self, n_metrics: int, tail: int) -> None:
        super().__init__()
        self.tail = tail
        self.linear = nn.Linear(2 * n_metrics, 1)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(torch.cat([x[:, -self.tail :].mean(dim=1), x[:, -1]], dim=-1)).squeeze(-1)


class RegressionHead(nn.Module):
    """MLP to one logit (plus the linear skip path's, if any); the sigmoid keeps P in (0, 1)."""

    def __init__(self, d_in: int, d_hidden: int, dropout: float, skip: LinearSkip | None = None) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(d_in, d_hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(d_hidden, 1))
        self.skip = skip

    def forward(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        logit = self.mlp(h).squeeze(-1)
        if self.skip is not None:
            logit = logit + self.skip(x)
        return torch.sigmoid(logit)


def _skip(spec: NetworkSpec, n_metrics: int, window: int) -> LinearSkip | None:
    return LinearSkip(n_metrics, min(spec.skip_tail, window)) if spec.skip_tail else None


class CloudFormerNet(nn.Module):
    """Dual-branch Transformer: temporal and system branches fused by a learned gate."""

    def __init__(self, group_sizes: Sequence[int], window: int, spec: NetworkSpec) -> None:
        super().__init__()
        d, n_metrics = spec.d_model, int(sum(group_sizes))
        self.temporal = TemporalBranch(n_metrics, window, d, spec.n_heads, spec.n_layers, spec.dropout)
        self.system = SystemBranch(group_sizes, window, d, spec.n_heads, spec.n_layers, spec.dropout)
        # Fusion: each branch's summary, gated by both (the model weighs time vs metric evidence).
        self.gate = nn.Sequential(nn.Linear(2 * d, 2 * d), nn.Sigmoid())
        self.head = RegressionHead(2 * d, d, spec.dropout, _skip(spec, n_metrics, window))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.cat([self.temporal(x), self.system(x)], dim=-1)
        return self.head(h * self.gate(h), x)


class SingleBranchNet(nn.Module):
    """One branch and the head: the temporal-only or the metric-only Transformer baseline."""

    def __init__(self, branch: nn.Module, d_model: int, dropout: float, skip: LinearSkip | None = None) -> None:
        super().__init__()
        self.branch = branch
        self.head = RegressionHead(d_model, d_model, dropout, skip)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.branch(x), x)


class LSTMNet(nn.Module):
    """Stacked LSTM over time steps; the last hidden state feeds the head."""

    def __init__(self, n_metrics: int, window: int, spec: NetworkSpec) -> None:
        super().__init__()
        self.lstm = nn.LSTM(
            n_metrics, spec.d_model, spec.n_layers, batch_first=True, dropout=spec.dropout if spec.n_layers > 1 else 0.0
        )
        self.head = RegressionHead(spec.d_model, spec.d_model, spec.dropout, _skip(spec, n_metrics, window))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x)
        return self.head(out[:, -1], x)


def build_network(spec: NetworkSpec, group_sizes: Sequence[int], window: int) -> nn.Module:
    """The network for ``spec.arch`` sized for the data (metrics per group, window length)."""
    n_metrics = int(sum(group_sizes))
    if spec.arch == "cloudformer":
        return CloudFormerNet(group_sizes, window, spec)
    if spec.arch == "temporal":
        branch = TemporalBranch(n_metrics, window, spec.d_model, spec.n_heads, spec.n_layers, spec.dropout)
        return SingleBranchNet(branch, spec.d_model, spec.dropout, _skip(spec, n_metrics, window))
    if spec.arch == "system":
        branch = SystemBranch(group_sizes, window, spec.d_model, spec.n_heads, spec.n_layers, spec.dropout)
        return SingleBranchNet(branch, spec.d_model, spec.dropout, _skip(spec, n_metrics, window))
    return LSTMNet(n_metrics, window, spec)
