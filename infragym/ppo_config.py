"""The keyword arguments of SB3's ``PPO`` / sb3-contrib's ``MaskablePPO`` from a task's ``ppo``
config block, as every component with a learned policy reads it (CPU, quiet, seeded)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def ppo_keywords(args: Mapping[str, Any], seed: int) -> dict[str, Any]:
    """``n_steps``, ``batch_size``, ``n_epochs``, ``learning_rate``, ``gamma``, ``ent_coef`` and
    ``net_arch`` (an MLP's hidden sizes) from ``args``, typed; the policy on CPU, seeded."""
    return {
        "n_steps": int(args["n_steps"]),
        "batch_size": int(args["batch_size"]),
        "n_epochs": int(args["n_epochs"]),
        "learning_rate": float(args["learning_rate"]),
        "gamma": float(args["gamma"]),
        "ent_coef": float(args["ent_coef"]),
        "policy_kwargs": {"net_arch": list(args["net_arch"])},
        "seed": seed,
        "device": "cpu",
        "verbose": 0,
    }


__all__ = ["ppo_keywords"]
