"""Resuming a network from its ``last.ckpt`` only when the checkpoint belongs to this run.

Every checkpoint carries a fingerprint of what its weights were trained with (the network and
optimiser hyper-parameters, the network's seed, the data, the Trainer arguments that shape
training) and the random-number generators' states. ``check_resumable`` compares a checkpoint's
fingerprint with the current run's before training: a different config or seed is refused with
the differing keys named, instead of silently continuing another run's weights (an export would
then report one learning rate while its weights were trained with another).

The generators' states make a resume exact: Lightning restores weights, optimiser, scheduler,
loops and callbacks, but not the global RNGs, without which the epochs after a resume would
shuffle and drop out differently from an uninterrupted run. ``RunState`` saves them with every checkpoint and
restores them on load (Lightning runs its sanity check inside ``isolate_rng``, so the restored
state is the one the next training epoch starts from, as in the uninterrupted run).
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch

CHECKPOINT_KEY = "infragym"
# Trainer arguments that may change on resume without changing what was trained so far: a
# longer budget (more epochs continue the run), logging and display.
RESUMABLE_TRAINER_KEYS = frozenset(
    {
        "max_epochs",
        "min_epochs",
        "max_steps",
        "min_steps",
        "max_time",
        "default_root_dir",
        "enable_progress_bar",
        "enable_model_summary",
        "log_every_n_steps",
        "logger",
        "_target_",
    }
)


class ResumeError(ValueError):
    """A ``last.ckpt`` that belongs to another run (another config or seed)."""


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (lists and scalars are leaves)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def data_digest(*arrays: np.ndarray) -> str:
    """sha256 of arrays' shapes, dtypes and bytes: two runs that train on different data differ."""
    digest = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.shape}{array.dtype}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def fingerprint(tree: Mapping[str, Any]) -> dict[str, Any]:
    """The flat, JSON-plain fingerprint stored with a checkpoint."""
    return json.loads(json.dumps(flatten(tree), sort_keys=True, default=str))


def differences(stored: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """``key: stored -> current`` for every key whose value differs (or is on one side only)."""
    missing = object()
    out = []
    for key in sorted(set(stored) | set(current)):
        old, new = stored.get(key, missing), current.get(key, missing)
        if old != new:
            show = lambda v: "(absent)" if v is missing else repr(v)  # noqa: E731
            out.append(f"{key}: {show(old)} -> {show(new)}")
    return out


def check_resumable(checkpoint: Path, current: Mapping[str, Any]) -> None:
    """Refuse to resume from ``checkpoint`` unless it was written by a run with ``current``'s
    fingerprint; the message names the differing keys and how to start fresh."""
    hint = (
        "run in a new folder (hydra.run.dir=...), or set task.resume=false to start fresh (the old "
        "checkpoints are then moved aside)"
    )
    try:
        # weights_only, as Lightning loads it: reading a checkpoint runs no pickled code
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated or foreign file: torch raises many types
        raise ResumeError(f"{checkpoint}: not a readable Lightning checkpoint ({err}); {hint}") from err
    stored = state.get(CHECKPOINT_KEY, {}).get("fingerprint") if isinstance(state, dict) else None
    if not isinstance(stored, dict):
        raise ResumeError(f"{checkpoint}: written without a run fingerprint, so it may belong to another run; {hint}")
    changed = differences(stored, current)
    if changed:
        shown = "; ".join(changed[:12]) + (f"; ... {len(changed) - 12} more" if len(changed) > 12 else "")
        raise ResumeError(f"{checkpoint} belongs to another run: {shown}. To resume, restore those values; or {hint}")


def set_aside(folder: Path) -> Path | None:
    """Move a network's old checkpoints to ``<folder>.previous-<time>`` (a fresh start must not
    pick another run's file as its best checkpoint); None when there is nothing to move."""
    if not folder.is_dir() or not any(folder.iterdir()):
        return None
    target = folder.with_name(f"{folder.name}.previous-{time.strftime('%Y%m%d-%H%M%S')}")
    n = 0
    while target.exists():
        n += 1
        target = target.with_name(f"{folder.name}.previous-{time.strftime('%Y%m%d-%H%M%S')}-{n}")
    folder.rename(target)
    return target


def _rng_states() -> dict[str, Any]:
    """The global generators' states as tensors and plain values (Lightning loads checkpoints
    with ``weights_only``, which refuses numpy objects)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002 - the global state Lightning seeds
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _set_rng_states(states: Mapping[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    kind, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))  # noqa: NPY002
    random.setstate(states["python"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


class RunState(pl.Callback):
    """Stores the run's fingerprint and the RNG states in every checkpoint; restores the RNGs
    when training resumes from one."""

    def __init__(self, fingerprint: Mapping[str, Any]) -> None:
        self.fingerprint = dict(fingerprint)

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        checkpoint[CHECKPOINT_KEY] = {"fingerprint": self.fingerprint, "rng": _rng_states()}

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        rng = checkpoint.get(CHECKPOINT_KEY, {}).get("rng")
        if rng is not None:
            _set_rng_states(rng)
