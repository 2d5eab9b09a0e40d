"""The snapshots a VM2RL experiment is tested on: real VMR2L files and held-out generated ones.

Training never sees them: the agent trains on freshly generated snapshots of ``train_preset``
(drawn by the training envs' own seeds); the generated test snapshots use seeds derived from
the run seed through a separate stream.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from infragym.envs.cluster.generator import PRESETS, generate_snapshot
from infragym.envs.cluster.reset import reset_seeds, reset_snapshot
from infragym.envs.cluster.snapshot import ClusterSnapshot, load_vmr2l_snapshot
from infragym.seeding import child_seeds

log = logging.getLogger(__name__)


class VMSnapshots:
    """Test snapshots of a rescheduling experiment.

    Args:
        test_paths: VMR2L snapshot JSON files (a missing file is skipped with a warning, so the
            experiment runs without the shared data; a malformed one is an error).
        test_preset: generator preset of the held-out generated snapshots.
        n_test_generated: how many of them.
        n_test_resets: per file of ``test_paths``, how many held-out *resets* of it to test on
            too (VMR2L's protocol: the same hosts and VMs placed anew, ``envs.cluster.reset``,
            odd seeds from the run seed; training resets are even). 0: the files only.
        test_files: test on the files' own placements too (VMR2L's test set is resets only).
    """

    def __init__(
        self,
        *,
        test_paths: Sequence[str] = (),
        test_preset: str = "medium",
        n_test_generated: int = 1,
        n_test_resets: int = 0,
        test_files: bool = True,
    ) -> None:
        if test_preset not in PRESETS:
            raise ValueError(f"dataset.test_preset {test_preset!r}: choose from {sorted(PRESETS)}")
        if n_test_generated < 0:
            raise ValueError(f"dataset.n_test_generated must be >= 0, got {n_test_generated}")
        self.test_paths = [str(p) for p in test_paths]
        self.test_preset = test_preset
        self.n_test_generated = int(n_test_generated)
        if n_test_resets < 0:
            raise ValueError(f"dataset.n_test_resets must be >= 0, got {n_test_resets}")
        self.n_test_resets = int(n_test_resets)
        self.test_files = bool(test_files)

    def test_snapshots(self, seed: int) -> dict[str, ClusterSnapshot]:
        snapshots: dict[str, ClusterSnapshot] = {}
        for path in self.test_paths:
            # Collapse "..": a path given as <checkout>/../shared/... resolves even when the
            # folder it passes through does not exist on this machine.
            path = os.path.normpath(path)
            if not Path(path).is_file():
                log.warning("skipping test snapshot %s: no such file", path)
                continue
            snapshot = load_vmr2l_snapshot(path)
            if self.test_files:
                snapshots[Path(path).stem] = snapshot
            for i, s in enumerate(reset_seeds(seed, self.n_test_resets, split="test")):
                name = f"{Path(path).stem}_reset{i}"
                snapshots[name] = reset_snapshot(snapshot, np.random.default_rng(s), name=name)
        # Offset stream: never the training envs' seeds.
        for i, s in enumerate(child_seeds(seed + 7_919, self.n_test_generated)):
            name = f"generated_{self.test_preset}_{i}"
            snapshots[name] = generate_snapshot(self.test_preset, np.random.default_rng(s), name=name)
        if not snapshots:
            raise ValueError("no test snapshots: give dataset.test_paths that exist or n_test_generated > 0")
        return snapshots
