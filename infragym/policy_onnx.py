"""An SB3 actor-critic policy's action logits as an ONNX graph: what the learned policies of the
components export, so that serving needs onnxruntime only (no torch, no SB3).

The graph maps a batch of flat observations (``obs``, float32 ``(B, obs_size)``, dynamic batch
axis) to the action net's ``logits`` (one block per sub-action for ``MultiDiscrete``); masking and
the argmax stay with the component's predictor.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

OPSET = 18


def policy_logits_onnx(policy: Any, obs_size: int, *, opset: int = OPSET) -> bytes:
    """ONNX bytes of ``policy`` (an SB3 ``ActorCriticPolicy`` with an MLP extractor) from
    observations to action logits, exported by torch's dynamo exporter in one file."""
    import torch
    from torch import nn

    class Logits(nn.Module):
        def __init__(self, policy: Any) -> None:
            super().__init__()
            self.policy = policy

        def forward(self, obs):  # type: ignore[no-untyped-def]
            features = self.policy.extract_features(obs, self.policy.pi_features_extractor)
            latent = self.policy.mlp_extractor.forward_actor(features)
            return self.policy.action_net(latent)

    module = Logits(policy).cpu().eval()
    example = (torch.rand(2, obs_size, generator=torch.Generator().manual_seed(0)),)
    batch = torch.export.Dim("batch", min=1, max=1 << 20)
    with tempfile.TemporaryDirectory() as tmp, torch.no_grad():
        path = Path(tmp) / "policy.onnx"
        torch.onnx.export(
            module,
            example,
            str(path),
            input_names=["obs"],
            output_names=["logits"],
            dynamic_shapes=({0: batch},),
            opset_version=opset,
            dynamo=True,
            external_data=False,
        )
        return path.read_bytes()


__all__ = ["OPSET", "policy_logits_onnx"]
