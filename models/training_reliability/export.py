"""ONNX export of the learned reliability policy and its deployable predictor:
``infragym.load(path).act(obs)`` -> ``[interval index, tier, recovery]``.

The graph maps a batch of observations (``OBS_NAMES``) to the concatenated logits of the three
sub-actions; the predictor takes the most likely allowed value of each. Needs numpy and
onnxruntime only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from infragym.envs.training.env import INTERVAL_CHOICES_S, OBS_NAMES, OBS_SIZE
from infragym.envs.training.simulator import RECOVERIES
from infragym.envs.training.tiers import TIER_NAMES
from infragym.export import export_file
from infragym.policy_onnx import PolicyLogits, argmax_per_subaction, policy_logits_onnx

POLICY_FILE = "policy.onnx"
NVEC = (len(INTERVAL_CHOICES_S), len(TIER_NAMES), len(RECOVERIES))


def export_onnx(policy: Any) -> bytes:
    """An SB3 ``ActorCriticPolicy`` (MLP, MultiDiscrete actions) as ONNX bytes with a dynamic batch axis."""
    return policy_logits_onnx(policy, OBS_SIZE)


def input_schema() -> dict[str, Any]:
    return {
        "obs": f"float32 ({OBS_SIZE},) or (B, {OBS_SIZE}): " + ", ".join(OBS_NAMES),
        "mask": "optional bool (B, 16)",
    }


def output_schema() -> dict[str, Any]:
    return {
        "action": "int64 [interval, tier, recovery]",
        "interval_s": list(INTERVAL_CHOICES_S),
        "tier": list(TIER_NAMES),
        "recovery": list(RECOVERIES),
    }


class ReliabilityPolicy:
    """A loaded training-reliability export."""

    def __init__(self, onnx: bytes, manifest: dict[str, Any] | None = None, *, threads: int = 1) -> None:
        self.net = PolicyLogits(onnx, OBS_SIZE, threads=threads)
        self.onnx = onnx
        self.manifest = manifest or {}

    @classmethod
    def from_export(cls, directory: Path, manifest: dict[str, Any]) -> ReliabilityPolicy:
        return cls(export_file(directory, manifest, POLICY_FILE).read_bytes(), manifest)

    def logits(self, obs: np.ndarray) -> np.ndarray:
        return self.net(obs)

    def act(self, obs: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """The most likely allowed action: ``[interval, tier, recovery]`` (a batch: shape (B, 3))."""
        single = np.asarray(obs).ndim == 1
        logits = self.logits(obs)
        if mask is not None:
            m = np.asarray(mask, dtype=bool).reshape(logits.shape)
            logits = np.where(m, logits, -np.inf)
        action = argmax_per_subaction(logits, NVEC)
        return action[0] if single else action
