"""One seed for everything: Python, numpy, torch, and the Generators passed down."""

from __future__ import annotations

import os
import random

import numpy as np


def seed_everything(seed: int) -> np.random.Generator:
    """Seed the global RNGs (Python, numpy, torch, via Lightning) and return a Generator.

    Components never use global RNGs themselves: they take a ``numpy.random.Generator`` or
    an integer ``random_state``; the globals are seeded for third-party code that does.
    """
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002  (for third-party code that uses the global RNG)
    os.environ["PYTHONHASHSEED"] = str(seed)
    try:
        from lightning_fabric.utilities.seed import seed_everything as _lightning_seed

        _lightning_seed(seed, workers=True, verbose=False)
    except ImportError:  # pragma: no cover - Lightning is a runtime dependency
        pass
    return np.random.default_rng(seed)


def child_seeds(seed: int, n: int) -> list[int]:
    """``n`` independent integer seeds derived from ``seed`` (numpy SeedSequence)."""
    return [int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(n)]
