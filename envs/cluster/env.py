"""``infragym/VMReschedule-v0``: migrate up to MNL VMs to lower the cluster's fragment rate.

Two action modes over the same simulator (``ClusterState``):

- ``action_mode="two_stage"`` (default): ``action = [vm, destination]`` from
  ``MultiDiscrete([V, 3P])``. The agent picks the VM under ``info["action_mask"]`` (the VM
  mask), then asks ``placement_mask(vm)`` for that VM's feasible destinations.
- ``action_mode="flat"``: ``Discrete(V * 3P)`` with the full mask from ``action_masks()``, so
  sb3-contrib's ``MaskablePPO`` trains on it unchanged (practical on small snapshots: the flat
  space of the medium one has 1.75M actions).

Reward: the exact decrease of the fragment rate. The episode terminates after MNL migrations or
when no VM can move (the budget is part of the task, and the remaining budget is observed). A
step after the end is refused: reset() first.
"""

from __future__ import annotations

import os
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from infragym.envs.cluster.generator import generate_snapshot
from infragym.envs.cluster.reset import reset_snapshot
from infragym.envs.cluster.snapshot import N_PLACEMENTS, ClusterSnapshot, load_vmr2l_snapshot
from infragym.envs.cluster.state import PM_FEATURES, VM_FEATURES, ClusterState

ACTION_MODES = ("two_stage", "flat")


def _is_integer(x: Any) -> bool:
    """A Python or numpy integer (not a bool, float or string)."""
    return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


class VMRescheduleEnv(gym.Env):
    """VM rescheduling env (VM2RL, EuroSys'25).

    Args:
        snapshot_path: a VMR2L snapshot JSON file; else ``preset`` is generated.
        preset: generator preset (``tiny``, ``small``, ``medium``, ``large``) when no file is given.
        snapshot: an already built ``ClusterSnapshot`` (takes precedence).
        resample_on_reset: a fresh cluster on each reset: with a snapshot (file or object), a
            *reset* of it (the same hosts and VMs placed anew, ``envs.cluster.reset``; VMR2L's
            training protocol); without, a fresh generated snapshot of ``preset``. Reset seeds
            drawn here are even (``reset_seeds(..., split="test")`` gives the odd, held-out ones).
        max_migrations: MNL, the migration budget of an episode.
        action_mode: ``two_stage`` or ``flat``.
        strict: raise on an infeasible action; otherwise it leaves the cluster unchanged, earns 0,
            is not counted as a migration and is flagged in ``info["invalid_action"]`` (masked
            agents never take one; generic checkers and unmasked agents may).
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        *,
        snapshot_path: str | os.PathLike[str] | None = None,
        preset: str = "medium",
        snapshot: ClusterSnapshot | None = None,
        resample_on_reset: bool = False,
        max_migrations: int = 50,
        action_mode: str = "two_stage",
        strict: bool = False,
    ) -> None:
        if action_mode not in ACTION_MODES:
            raise ValueError(f"action_mode {action_mode!r}: choose from {ACTION_MODES}")
        if max_migrations <= 0:
            raise ValueError(f"max_migrations must be positive, got {max_migrations}")
        self.snapshot_path = snapshot_path
        self.preset = preset
        self.resample_on_reset = bool(resample_on_reset)
        self.max_migrations = int(max_migrations)
        self.action_mode = action_mode
        self.strict = strict
        if snapshot is None:
            if snapshot_path is not None:
                snapshot = load_vmr2l_snapshot(snapshot_path)
            else:
                snapshot = generate_snapshot(preset, np.random.default_rng(0))
        self.base_snapshot = snapshot
        self.from_snapshot = snapshot_path is not None or snapshot is not None
        self.state = ClusterState(snapshot)
        self.pending_vm = -1  # set per sub-env (``AsyncVectorEnv.set_attr``), read by pending_placement_mask
        V, P = self.state.n_vms, self.state.n_pms
        self.n_destinations = P * N_PLACEMENTS
        self.observation_space = spaces.Dict(
            {
                "vm": spaces.Box(0.0, 4.0, shape=(V, VM_FEATURES), dtype=np.float32),
                "pm": spaces.Box(0.0, 4.0, shape=(P, PM_FEATURES), dtype=np.float32),
                "vm_host": spaces.Box(0, P - 1, shape=(V,), dtype=np.int64),
                "budget": spaces.Box(0.0, 1.0, shape=(2,), dtype=np.float32),
            }
        )
        if action_mode == "two_stage":
            self.action_space = spaces.MultiDiscrete([V, self.n_destinations])
        else:
            self.action_space = spaces.Discrete(V * self.n_destinations)
        self._vm_mask: np.ndarray | None = None
        self._last_placement: tuple[int, np.ndarray] | None = None
        self._episode_over = False

    # ------------------------------------------------------------------ helpers
    @property
    def snapshot(self) -> ClusterSnapshot:
        return self.state.snapshot

    def fragment_rate(self) -> float:
        return self.state.fragment_rate()

    def vm_mask(self) -> np.ndarray:
        if self._vm_mask is None:
            self._vm_mask = self.state.vm_mask()
        return self._vm_mask

    def placement_mask(self, vm: int) -> np.ndarray:
        mask = self.state.placement_mask(int(vm))
        self._last_placement = (int(vm), mask)  # step() validates against it without recomputing
        return mask

    def pending_placement_mask(self) -> np.ndarray:
        """``placement_mask(self.pending_vm)``: the destination mask of a vector env's sub-env,
        asked for with ``set_attr("pending_vm", vms)`` then ``call("pending_placement_mask")``
        (an ``AsyncVectorEnv`` passes the same arguments to every sub-env)."""
        return self.placement_mask(self.pending_vm)

    def action_masks(self) -> np.ndarray:
        """The mask of the action space: the VM mask (two-stage) or the full flat mask."""
        if self.action_mode == "flat":
            return self.state.full_mask().ravel()
        return self.vm_mask()

    def _obs(self) -> dict[str, np.ndarray]:
        obs: dict[str, Any] = self.state.observation()
        left = 1.0 - self.state.n_migrations / self.max_migrations
        obs["budget"] = np.array([left, self.state.fragment_rate()], dtype=np.float32)
        return obs

    def _info(self) -> dict[str, Any]:
        return {
            "fragment_rate": self.state.fragment_rate(),
            "migrations": self.state.n_migrations,
            "action_mask": self.action_masks().copy(),  # never shared between calls
        }

    # ------------------------------------------------------------------ gymnasium API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[dict, dict]:
        super().reset(seed=seed)
        if self.resample_on_reset:
            if self.from_snapshot:
                # even seeds only: the odd ones are the held-out test resets
                reset_seed = 2 * int(self.np_random.integers(1 << 61))
                fresh = reset_snapshot(self.base_snapshot, np.random.default_rng(reset_seed))
            else:
                fresh = generate_snapshot(self.preset, self.np_random)
            self.state = ClusterState(fresh)
        else:
            self.state.reset()
        self._vm_mask = None
        self._last_placement = None
        self._episode_over = False
        return self._obs(), self._info()

    def decode(self, action: Any) -> tuple[int, int]:
        """``(vm, destination)`` of an action. Integers only: a float, bool or string action is
        refused (truncating 1.7 to 1 would move another VM than the one meant)."""
        if self.action_mode == "flat":
            if not _is_integer(action):
                raise ValueError(f"action {action!r} must be an integer of Discrete({self.action_space.n})")
            return divmod(int(action), self.n_destinations)
        items = list(action) if isinstance(action, (tuple, list)) else None
        if items is None:
            array = np.asarray(action)
            items = list(array.reshape(-1)) if array.size == 2 else None
        if items is None or len(items) != 2 or not all(_is_integer(x) for x in items):
            raise ValueError(f"action {action!r} must be integers [vm, destination] of {self.action_space}")
        return int(items[0]), int(items[1])

    def step(self, action: Any) -> tuple[dict, float, bool, bool, dict]:
        if self._episode_over:
            raise ValueError(
                f"the episode is over ({self.state.n_migrations} of {self.max_migrations} migrations made, "
                "or no VM can move): call reset() before step()"
            )
        vm, dest = self.decode(action)
        if not (0 <= vm < self.state.n_vms and 0 <= dest < self.n_destinations):
            raise ValueError(
                f"action {action!r} out of range (V={self.state.n_vms}, destinations={self.n_destinations})"
            )
        cached = self._last_placement
        feasible = bool(cached[1][dest]) if cached is not None and cached[0] == vm else self.state.is_feasible(vm, dest)
        if not feasible:
            if not self.strict:
                info = {**self._info(), "invalid_action": True}
                self._episode_over = not info["action_mask"].any()
                return self._obs(), 0.0, self._episode_over, False, info
            raise ValueError(
                f"infeasible migration: VM {self.snapshot.vm_ids[vm]} to PM "
                f"{self.snapshot.pm_ids[dest // N_PLACEMENTS]}"
                f" placement {dest % N_PLACEMENTS} (use info['action_mask'] / placement_mask(vm))"
            )
        reward = self.state.migrate(vm, dest)
        self._vm_mask = None
        self._last_placement = None
        info = self._info()
        done = self.state.n_migrations >= self.max_migrations or not info["action_mask"].any()
        self._episode_over = bool(done)
        return self._obs(), float(reward), bool(done), False, info
