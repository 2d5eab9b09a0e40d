"""An SB3 actor-critic policy's action logits as an ONNX graph: what the learned policies of the
components export, so that serving needs onnxruntime only (no torch, no SB3).

The graph maps a batch of flat observations (``obs``, float32 ``(B, obs_size)``, dynamic batch
axis) to the action net's ``logits`` (one block per sub-action for ``MultiDiscrete``).
:class:`PolicyLogits` runs it in onnxruntime with the observations checked; masking and the
choice of action stay with the component's predictor (:func:`argmax_per_subaction` for the
usual greedy choice).
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

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


class PolicyLogits:
    """A graph of :func:`policy_logits_onnx` in onnxruntime (one intra-op thread by default: a
    policy shares its machine with the simulator or the service). Calling it with one observation
    ``(obs_size,)`` or a batch ``(B, obs_size)`` gives the logits ``(B, n_logits)``; observations
    of another shape or with NaN or infinite values are refused with a ValueError."""

    def __init__(self, onnx: bytes, obs_size: int, *, threads: int = 1) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(onnx, options, providers=["CPUExecutionProvider"])
        self.onnx = onnx
        self.obs_size = int(obs_size)

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        batch = np.asarray(obs, dtype=np.float32)
        if batch.ndim == 1:
            batch = batch[None]
        if batch.ndim != 2 or batch.shape[1] != self.obs_size:
            raise ValueError(f"obs must have shape ({self.obs_size},) or (B, {self.obs_size}), got {np.shape(obs)}")
        if not np.all(np.isfinite(batch)):
            raise ValueError("obs must be finite")
        return self.session.run(None, {"obs": batch})[0]


def argmax_per_subaction(logits: np.ndarray, nvec: Sequence[int]) -> np.ndarray:
    """The most likely value of each sub-action: logits ``(B, sum(nvec))`` -> int64 ``(B, len(nvec))``."""
    ends = np.cumsum(nvec)
    return np.stack(
        [np.argmax(logits[:, end - n : end], axis=1) for n, end in zip(nvec, ends, strict=True)], axis=1
    ).astype(np.int64)


__all__ = ["OPSET", "PolicyLogits", "argmax_per_subaction", "policy_logits_onnx"]
