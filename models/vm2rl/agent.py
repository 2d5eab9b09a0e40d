"""The two-stage VM2RL policy: attention over VMs and PMs, a VM head, a destination head
conditioned on the chosen VM, and a value head.

Structure (VM2RL, EuroSys'25, Sec. 4): VM and PM tokens; a VM attends to its host PM and the
VMs co-located with it (here through attention pooling per host: each PM pools its VMs with
softmax weights summed per host, and every VM reads its host's token and pool), PMs
attend to each other, and VMs attend across PMs (cross-attention). The heads also get exact
fragment arithmetic computed from the observation (free cores mod 16 before and after the move:
what a migration frees at its source and fills at a destination), the quantities VM2RL's
fragment features describe. Everything is ONNX-exportable (gather, matmul, Mod).

Shapes: ``vm`` (B, V, 8), ``pm`` (B, P, 8), ``vm_host`` (B, V) int64, ``budget`` (B, 2).
Destinations are ``pm * 3 + placement`` (NUMA 0, NUMA 1, both).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from infragym.envs.cluster.state import CPU_SCALE, FRAGMENT_UNIT, PM_FEATURES, VM_FEATURES

MASKED_LOGIT = -1e9


@dataclass
class AgentConfig:
    """Sizes of the policy network (VM2RL uses d = 32-64 with 2 heads)."""

    d_model: int = 32
    n_heads: int = 2
    n_layers: int = 1


def _mlp(n_in: int, n_hidden: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, n_hidden), nn.ReLU(), nn.Linear(n_hidden, n_out))


def _gather_rows(table: Tensor, index: Tensor) -> Tensor:
    """table (B, P, F), index (B, V) -> (B, V, F)."""
    return torch.gather(table, 1, index.unsqueeze(-1).expand(-1, -1, table.shape[-1]))


def fragment_features(vm: Tensor, pm: Tensor, vm_host: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Exact fragment arithmetic from the observation.

    Returns ``cores`` (B, V) per-node CPU of each VM, ``free`` (B, P, 2) free cores per node, and
    ``source_gain`` (B, V): fragments (cores) removed at the source if the VM leaves.
    """
    cores = torch.round(vm[..., 0] * CPU_SCALE)
    free = torch.round(pm[..., 0:2] * CPU_SCALE)
    host_free = _gather_rows(free, vm_host)  # (B, V, 2)
    on_node = torch.stack([vm[..., 4] + vm[..., 6], vm[..., 5] + vm[..., 6]], dim=-1)  # placement one-hot
    before = torch.remainder(host_free, FRAGMENT_UNIT)
    after = torch.remainder(host_free + cores.unsqueeze(-1), FRAGMENT_UNIT)
    source_gain = ((before - after) * on_node).sum(-1)
    return cores, free, source_gain


def destination_gain(cores: Tensor, free: Tensor) -> Tensor:
    """cores (B,), free (B, P, 2) -> (B, P, 3): fragments removed at each destination placement."""
    c = cores.view(-1, 1, 1)
    gain = torch.remainder(free, FRAGMENT_UNIT) - torch.remainder(free - c, FRAGMENT_UNIT)
    return torch.cat([gain, gain.sum(-1, keepdim=True)], dim=-1)


class HostPooling(nn.Module):
    """Each PM pools the VMs it hosts with attention weights (scatter softmax)."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.query = nn.Linear(d, d)
        self.key = nn.Linear(d, d)
        self.value = nn.Linear(d, d)
        self.scale = d**-0.5

    def forward(self, vm_emb: Tensor, pm_emb: Tensor, vm_host: Tensor) -> Tensor:
        host_q = _gather_rows(self.query(pm_emb), vm_host)  # (B, V, d)
        score = (host_q * self.key(vm_emb)).sum(-1) * self.scale  # (B, V)
        weight = torch.exp(score - score.amax(dim=1, keepdim=True))
        # Host assignment as a (B, V, P) 0/1 matrix: the per-host sums are batched matmuls
        # (ONNX Runtime's scatter-add left rows of VM-less hosts undefined).
        assign = (vm_host.unsqueeze(-1) == torch.arange(pm_emb.shape[1], device=vm_host.device).view(1, 1, -1)).to(
            vm_emb.dtype
        )
        assign_t = assign.transpose(1, 2)
        denom = torch.matmul(assign_t, weight.unsqueeze(-1))  # (B, P, 1)
        pooled = torch.matmul(assign_t, self.value(vm_emb) * weight.unsqueeze(-1))  # (B, P, d)
        return pooled / denom.clamp_min(1e-6)


class EncoderLayer(nn.Module):
    def __init__(self, d: int, n_heads: int) -> None:
        super().__init__()
        self.pool = HostPooling(d)
        self.vm_local = _mlp(3 * d, 2 * d, d)
        self.pm_local = _mlp(2 * d, 2 * d, d)
        self.pm_self = nn.MultiheadAttention(d, n_heads, batch_first=True)
        self.vm_cross = nn.MultiheadAttention(d, n_heads, batch_first=True)
        self.norms = nn.ModuleList(nn.LayerNorm(d) for _ in range(4))

    def forward(self, vm: Tensor, pm: Tensor, vm_host: Tensor) -> tuple[Tensor, Tensor]:
        pooled = self.pool(vm, pm, vm_host)  # (B, P, d): what each host sees of its VMs
        pm = self.norms[0](pm + self.pm_local(torch.cat([pm, pooled], -1)))
        host = _gather_rows(torch.cat([pm, pooled], -1), vm_host)
        vm = self.norms[1](vm + self.vm_local(torch.cat([vm, host], -1)))  # VM <- host PM + co-located VMs
        pm = self.norms[2](pm + self.pm_self(pm, pm, pm, need_weights=False)[0])  # PM <-> PM
        vm = self.norms[3](vm + self.vm_cross(vm, pm, pm, need_weights=False)[0])  # VM -> all PMs
        return vm, pm


class VM2RLAgent(nn.Module):
    """Two-stage actor-critic. ``encode`` gives VM logits, embeddings and the value;
    ``destination_logits`` scores the destinations of the chosen VMs."""

    def __init__(self, *, d_model: int = 32, n_heads: int = 2, n_layers: int = 1) -> None:
        super().__init__()
        self.config = AgentConfig(d_model=d_model, n_heads=n_heads, n_layers=n_layers)
        d = self.config.d_model
        self.vm_in = _mlp(VM_FEATURES + PM_FEATURES + 1, d, d)
        self.pm_in = _mlp(PM_FEATURES + 2, d, d)
        self.layers = nn.ModuleList(EncoderLayer(d, self.config.n_heads) for _ in range(self.config.n_layers))
        self.vm_head = _mlp(d + 1, d, 1)
        self.dest_head = _mlp(2 * d + 7, d, 3)
        self.value_head = _mlp(2 * d + 2, d, 1)

    def encode(self, vm: Tensor, pm: Tensor, vm_host: Tensor, budget: Tensor) -> tuple[Tensor, ...]:
        """-> vm_logits (B, V), vm_emb (B, V, d), pm_emb (B, P, d), value (B,), source_gain (B, V)."""
        _cores, _free, source_gain = fragment_features(vm, pm, vm_host)
        gain = (source_gain / FRAGMENT_UNIT).unsqueeze(-1)
        vm_x = self.vm_in(torch.cat([vm, _gather_rows(pm, vm_host), gain], -1))
        pm_x = self.pm_in(torch.cat([pm, budget.unsqueeze(1).expand(-1, pm.shape[1], -1)], -1))
        for layer in self.layers:
            vm_x, pm_x = layer(vm_x, pm_x, vm_host)
        vm_logits = self.vm_head(torch.cat([vm_x, gain], -1)).squeeze(-1)
        value = self.value_head(torch.cat([vm_x.mean(1), pm_x.mean(1), budget], -1)).squeeze(-1)
        return vm_logits, vm_x, pm_x, value, source_gain

    def destination_logits(
        self, vm_emb: Tensor, vm_feat: Tensor, source_gain: Tensor, pm_emb: Tensor, pm: Tensor
    ) -> Tensor:
        """Chosen VMs' embedding (B, d), raw features (B, 8) and source gain (B,) -> (B, 3P)."""
        cores = torch.round(vm_feat[:, 0] * CPU_SCALE)
        free = torch.round(pm[..., 0:2] * CPU_SCALE)
        dst = destination_gain(cores, free)  # (B, P, 3)
        total = dst + source_gain.view(-1, 1, 1)
        n_pms = pm.shape[1]
        x = torch.cat(
            [
                pm_emb,
                vm_emb.unsqueeze(1).expand(-1, n_pms, -1),
                dst / FRAGMENT_UNIT,
                total / FRAGMENT_UNIT,
                pm[..., :1],
            ],
            -1,
        )
        return self.dest_head(x).reshape(pm.shape[0], n_pms * 3)


def masked(logits: Tensor, mask: Tensor) -> Tensor:
    return logits.masked_fill(~mask, MASKED_LOGIT)


def select_rows(x: Tensor, index: Tensor) -> Tensor:
    """x (B, V, ...) , index (B,) -> (B, ...)."""
    return x[torch.arange(x.shape[0], device=x.device), index]
