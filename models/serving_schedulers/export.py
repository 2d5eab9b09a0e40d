"""ONNX export of the learned admission policy and its deployable predictor:
``infragym.load(path).act(obs, mask)`` -> the action (admit waiting request k < 8, or 8: run).

The graph maps a batch of observations (``admission_features``) to the policy's action logits;
``act`` takes the most likely allowed action. Needs numpy and onnxruntime only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from infragym.export import export_file
from infragym.models.serving_schedulers.admission_features import (
    GLOBAL_NAMES,
    N_ACTIONS,
    OBS_SIZE,
    SLOT_NAMES,
    WINDOW,
)
from infragym.policy_onnx import PolicyLogits, policy_logits_onnx

POLICY_FILE = "policy.onnx"


def export_onnx(policy: Any) -> bytes:
    """An SB3 ``ActorCriticPolicy`` (MLP, Discrete actions) as ONNX bytes with a dynamic batch axis."""
    return policy_logits_onnx(policy, OBS_SIZE)


def input_schema() -> dict[str, Any]:
    slots = ", ".join(f"slot k: {name}" for name in SLOT_NAMES)
    return {
        "obs": f"float32 ({OBS_SIZE},) or (B, {OBS_SIZE}): " + ", ".join(GLOBAL_NAMES) + f"; then {WINDOW} x ({slots})",
        "mask": f"optional bool ({N_ACTIONS},) or (B, {N_ACTIONS}): allowed actions",
    }


def output_schema() -> dict[str, Any]:
    return {"action": f"int64: k < {WINDOW} admits the k-th waiting request, {WINDOW} runs the iteration"}


class AdmissionPolicy:
    """A loaded learned-admission export."""

    def __init__(self, onnx: bytes, manifest: dict[str, Any] | None = None, *, threads: int = 1) -> None:
        self.net = PolicyLogits(onnx, OBS_SIZE, threads=threads)
        self.onnx = onnx
        self.manifest = manifest or {}

    @classmethod
    def from_export(cls, directory: Path, manifest: dict[str, Any]) -> AdmissionPolicy:
        return cls(export_file(directory, manifest, POLICY_FILE).read_bytes(), manifest)

    def logits(self, obs: np.ndarray) -> np.ndarray:
        return self.net(obs)

    def act(self, obs: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray | int:
        """The most likely allowed action (an int for one observation, an array for a batch).
        With no action allowed in a row, it runs (action ``WINDOW``)."""
        single = np.asarray(obs).ndim == 1
        logits = self.logits(obs)
        if mask is not None:
            m = np.asarray(mask, dtype=bool)
            if m.shape[-1] != N_ACTIONS or m.size != logits.size:
                raise ValueError(f"mask must have shape ({N_ACTIONS},) or (B, {N_ACTIONS}), got {m.shape}")
            m = m.reshape(logits.shape).copy()
            m[~m.any(axis=1), WINDOW] = True
            logits = np.where(m, logits, -np.inf)
        action = np.argmax(logits, axis=1).astype(np.int64)
        return int(action[0]) if single else action
