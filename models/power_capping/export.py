"""ONNX export of a PPO policy over discrete actions, and its deployable predictor:
``infragym.load(path).act(obs)``.

The graph maps a batch of observations to the concatenated logits of the action's
sub-actions (``nvec``: one entry for ``Discrete``, several for ``MultiDiscrete``); ``act``
takes the most likely value of each. Needs numpy and onnxruntime only. Used by the
power-capping and the elastic-MoE components (``manifest.output_schema.nvec`` says which).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from infragym.export import ExportError, export_file
from infragym.policy_onnx import PolicyLogits, argmax_per_subaction, policy_logits_onnx

POLICY_FILE = "policy.onnx"


def export_onnx(policy: Any, obs_size: int) -> bytes:
    """An SB3 ``ActorCriticPolicy`` (MLP) as ONNX bytes with a dynamic batch axis."""
    return policy_logits_onnx(policy, obs_size)


class DiscretePolicy:
    """A loaded policy export: ``act(obs)`` -> action (an int, or an int array per sub-action)."""

    def __init__(self, onnx: bytes, nvec: Sequence[int], obs_size: int, manifest: dict[str, Any] | None = None) -> None:
        self.net = PolicyLogits(onnx, obs_size)
        self.onnx = onnx
        self.nvec = tuple(int(n) for n in nvec)
        self.obs_size = int(obs_size)
        self.manifest = manifest or {}

    @classmethod
    def from_export(cls, directory: Path, manifest: dict[str, Any]) -> DiscretePolicy:
        schema = manifest.get("output_schema", {})
        try:
            nvec = [int(n) for n in schema["nvec"]]
            obs_size = int(manifest["input_schema"]["obs_size"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ExportError(f"{directory}: the manifest's schema lacks nvec/obs_size ({exc})") from exc
        if not nvec or any(n < 1 for n in nvec) or obs_size < 1:
            raise ExportError(f"{directory}: nvec {nvec} / obs_size {obs_size} are not valid")
        return cls(export_file(directory, manifest, POLICY_FILE).read_bytes(), nvec, obs_size, manifest)

    def logits(self, obs: np.ndarray) -> np.ndarray:
        return self.net(obs)

    def act(self, obs: np.ndarray) -> np.ndarray | int:
        """The most likely action: an int for one ``Discrete`` action, else one index per sub-action."""
        single = np.asarray(obs).ndim == 1
        action = argmax_per_subaction(self.logits(obs), self.nvec)
        if len(self.nvec) == 1:
            action = action[:, 0]
            return int(action[0]) if single else action
        return action[0] if single else action

    def reset(self) -> None:
        """Stateless (the same interface as the rule baselines)."""


def schemas(obs_names: Sequence[str], nvec: Sequence[int], labels: dict[str, Any]) -> tuple[dict, dict]:
    """Input and output schema of a policy export."""
    return (
        {
            "obs": f"float32 ({len(obs_names)},) or (B, {len(obs_names)})",
            "obs_size": len(obs_names),
            "obs_names": list(obs_names),
        },
        {"action": "int64 per sub-action", "nvec": [int(n) for n in nvec], **labels},
    )


__all__ = ["POLICY_FILE", "DiscretePolicy", "export_onnx", "schemas"]
