"""VM cluster rescheduling: snapshots (VMR2L loader, calibrated generator), the numpy simulator
core and the ``infragym/VMReschedule-v0`` gymnasium env."""

from infragym.envs.cluster.env import VMRescheduleEnv
from infragym.envs.cluster.generator import PRESETS, generate_snapshot
from infragym.envs.cluster.snapshot import ClusterSnapshot, SnapshotError, load_vmr2l_snapshot
from infragym.envs.cluster.state import ClusterState

__all__ = [
    "PRESETS",
    "ClusterSnapshot",
    "ClusterState",
    "SnapshotError",
    "VMRescheduleEnv",
    "generate_snapshot",
    "load_vmr2l_snapshot",
]
