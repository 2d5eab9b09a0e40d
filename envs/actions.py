"""Checking the actions an env receives: a ``Discrete(n)`` action is an integer, never a float,
bool or string truncated into one (``int(1.7)`` is 1: a policy emitting the wrong type would
otherwise act on a silently different action)."""

from __future__ import annotations

from typing import Any

import numpy as np


class ActionError(ValueError):
    """An action of the wrong type or outside the action space."""


def discrete_action(action: Any, n: int, env: str) -> int:
    """``action`` as an int in ``[0, n)``: Python and numpy integers, and integer arrays with one
    element (what vector envs and policies hand over), are accepted; anything else is refused."""
    value = action
    if isinstance(value, np.ndarray) and value.size == 1 and value.dtype.kind in "iu":
        value = value.reshape(()).item()
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | np.integer):
        raise ActionError(
            f"{env}: an action must be an integer in [0, {n}), got {action!r} of type {type(action).__name__}"
        )
    if not 0 <= int(value) < n:
        raise ActionError(f"{env}: action {int(value)} is outside [0, {n})")
    return int(value)
