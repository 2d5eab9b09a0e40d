"""ONNX export of the VM2RL policy and the deployable predictor:
``infragym.load(path).act(obs, mask)``, ``.plan(snapshot, max_migrations, k=...)``.

The predictor needs numpy and onnxruntime only.
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from infragym.envs.cluster.snapshot import ClusterSnapshot
from infragym.envs.cluster.state import PM_FEATURES, VM_FEATURES
from infragym.export import export_file
from infragym.models.vm2rl.policy import (
    DESTINATION_INPUTS,
    ENCODER_INPUTS,
    ENCODER_OUTPUTS,
    MaskSource,
    OnnxPolicyNet,
    RolloutResult,
    act,
    rollout,
)

ENCODER_FILE = "encoder.onnx"
DESTINATION_FILE = "destination.onnx"
OPSET = 18


def export_onnx(agent: Any) -> tuple[bytes, bytes]:
    """The agent's two graphs as ONNX bytes, with dynamic batch, VM and PM axes."""
    import torch
    from torch import nn

    class Encoder(nn.Module):
        def __init__(self, agent: Any) -> None:
            super().__init__()
            self.agent = agent

        def forward(self, vm, pm, vm_host, budget):  # type: ignore[no-untyped-def]
            return self.agent.encode(vm, pm, vm_host, budget)

    class Destination(nn.Module):
        def __init__(self, agent: Any) -> None:
            super().__init__()
            self.agent = agent

        def forward(self, vm_emb, vm_feat, source_gain, pm_emb, pm):  # type: ignore[no-untyped-def]
            return self.agent.destination_logits(vm_emb, vm_feat, source_gain, pm_emb, pm)

    agent = agent.cpu().eval()
    B, V, P, d = 2, 7, 5, agent.config.d_model
    g = torch.Generator().manual_seed(0)
    enc_args = (
        torch.rand(B, V, VM_FEATURES, generator=g),
        torch.rand(B, P, PM_FEATURES, generator=g),
        torch.randint(0, P, (B, V), generator=g),
        torch.rand(B, 2, generator=g),
    )
    dst_args = (
        torch.rand(B, d, generator=g),
        torch.rand(B, VM_FEATURES, generator=g),
        torch.rand(B, generator=g),
        torch.rand(B, P, d, generator=g),
        torch.rand(B, P, PM_FEATURES, generator=g),
    )
    batch, vms, pms = (torch.export.Dim(n, min=1, max=1 << 20) for n in ("batch", "vms", "pms"))
    enc_dims = ({0: batch, 1: vms}, {0: batch, 1: pms}, {0: batch, 1: vms}, {0: batch})
    dst_dims = ({0: batch}, {0: batch}, {0: batch}, {0: batch, 1: pms}, {0: batch, 1: pms})
    out = []
    with tempfile.TemporaryDirectory() as tmp, torch.no_grad():
        for name, module, args, dims, inputs, outputs in (
            (ENCODER_FILE, Encoder(agent).eval(), enc_args, enc_dims, ENCODER_INPUTS, ENCODER_OUTPUTS),
            (DESTINATION_FILE, Destination(agent).eval(), dst_args, dst_dims, DESTINATION_INPUTS, ("dest_logits",)),
        ):
            path = Path(tmp) / name
            torch.onnx.export(
                module,
                args,
                str(path),
                input_names=list(inputs),
                output_names=list(outputs),
                dynamic_shapes=dims,
                opset_version=OPSET,
                dynamo=True,
                external_data=False,
            )
            out.append(path.read_bytes())
    return out[0], out[1]


def input_schema() -> dict[str, Any]:
    return {
        "obs": {
            "vm": f"float32 (V, {VM_FEATURES}): cpu per node / 44, mem per node / 184388, split, movable, "
            "placement one-hot (NUMA0, NUMA1, both), moved flag",
            "pm": f"float32 (P, {PM_FEATURES}): free cpu per node / 44, free mem share, (free mod 16)/16, "
            "(free mod 16)/free",
            "vm_host": "int64 (V,)",
            "budget": "float32 (2,): share of the migration budget left, current fragment rate",
        },
        "mask": "an object with vm_mask() and placement_mask(vm) (the env, a ClusterState) or bool (V, 3P)",
    }


def output_schema() -> dict[str, Any]:
    return {"action": "int64 [vm, destination], destination = pm * 3 + placement (0: NUMA0, 1: NUMA1, 2: both)"}


class VM2RLPredictor:
    """A loaded VM2RL export."""

    def __init__(self, encoder: bytes, destination: bytes, manifest: dict[str, Any], *, threads: int = 1) -> None:
        self.net = OnnxPolicyNet(encoder, destination, threads=threads)
        self.onnx = (encoder, destination)
        self.manifest = manifest

    @classmethod
    def from_export(cls, directory: Path, manifest: dict[str, Any]) -> VM2RLPredictor:
        encoder = export_file(directory, manifest, ENCODER_FILE).read_bytes()
        return cls(encoder, export_file(directory, manifest, DESTINATION_FILE).read_bytes(), manifest)

    def act(
        self, obs: Mapping[str, np.ndarray], mask: MaskSource | np.ndarray, rng: np.random.Generator | None = None
    ) -> np.ndarray:
        """The next migration ``[vm, destination]`` (most likely one; sampled with ``rng``)."""
        return act(self.net, dict(obs), mask, rng)

    def plan(self, snapshot: ClusterSnapshot, max_migrations: int, *, k: int = 1, seed: int = 0) -> RolloutResult:
        """Best of ``k`` trajectories of ``max_migrations`` migrations on ``snapshot``."""
        return rollout(self.net, snapshot, max_migrations, k=k, seed=seed)


def save_bytes(data: bytes) -> Any:
    def write(path: os.PathLike[str]) -> None:
        with open(path, "wb") as handle:
            handle.write(data)

    return write


__all__ = ["VM2RLPredictor", "export_onnx", "input_schema", "io", "output_schema"]
