"""Checkpoint tiers: how long a checkpoint stalls training, where its copies land and when they
become usable, and which failures each copy survives.

Three storage levels hold copies: ``host`` (each node's own CPU memory: lost with the node),
``peer`` (CPU memory of other nodes, erasure coded in groups of k + m nodes: survives up to m
lost nodes of a group) and ``remote`` (the storage service: survives everything once written).

- ``sync``: write to remote storage while training waits (stall = state bytes / storage bandwidth).
- ``two_stage`` [MegaScale]: copy GPU -> host memory while training waits (seconds), upload to
  remote storage in the background.
- ``lazy`` [DataStates]: the GPU -> host copy overlaps forward and backward; training blocks
  only if the copy outlasts them (before the optimizer step updates the weights); async flush.
- ``inmemory_ec`` [InMemFT]: GPU -> host copy, then erasure-coded shards sent to peer nodes by
  separate processes; every ``INMEM_REMOTE_EVERY``-th snapshot also persisted remotely.

A new checkpoint waits for the previous one's background writes (no unbounded queue), so an
interval shorter than the upload time turns the upload into stall (backpressure).
"""

from __future__ import annotations

from dataclasses import dataclass

from infragym.envs.training import calibration as cal
from infragym.envs.training.calibration import JobSpec

HOST, PEER, REMOTE = 0, 1, 2
LEVELS = ("host", "peer", "remote")
TIER_NAMES = ("sync", "two_stage", "lazy", "inmemory_ec")
SYNC, TWO_STAGE, LAZY, INMEMORY_EC = range(4)
# *assumption*: a checkpoint always costs a short barrier and metadata write, whatever the tier.
CHECKPOINT_BARRIER_S = 0.05


@dataclass(frozen=True)
class CheckpointTier:
    """One tier's costs, in seconds, for a given job.

    Attributes:
        name: the tier.
        stall_s: training time blocked per checkpoint.
        writes: (level, seconds after the stall ends until the copy is usable) per level written.
        remote_every: the remote write happens on every n-th checkpoint of this tier.
        restore_s: per level, seconds to load the copy back into the GPUs.
    """

    name: str
    stall_s: float
    writes: tuple[tuple[int, float], ...]
    remote_every: int
    restore_s: tuple[float, float, float]


def build_tiers(job: JobSpec) -> tuple[CheckpointTier, ...]:
    """The four tiers for ``job`` from bandwidths [Llama3, DataStates, InMemFT]."""
    per_gpu = job.state_bytes / job.n_gpus
    per_node = per_gpu * job.gpus_per_node
    d2h = per_gpu / cal.PCIE_D2H_BPS  # every GPU copies its own shard in parallel
    remote_write = job.state_bytes / cal.STORAGE_WRITE_BPS
    # Erasure coding sends (k + m) / k of a node's state over its 8 NICs to the group's peers.
    ec_send = per_node * (cal.EC_DATA_SHARDS + cal.EC_PARITY_SHARDS) / cal.EC_DATA_SHARDS / (cal.NIC_BPS * 8)
    restore = (
        per_gpu / cal.PCIE_D2H_BPS,  # host -> GPU
        per_node / (cal.NIC_BPS * 8),  # gather + decode from peers
        job.state_bytes / cal.STORAGE_READ_BPS,
    )
    overlap = cal.FWD_BWD_SHARE * job.step_s
    b = CHECKPOINT_BARRIER_S
    return (
        CheckpointTier("sync", b + remote_write, ((REMOTE, 0.0),), 1, restore),
        CheckpointTier("two_stage", b + d2h, ((HOST, 0.0), (REMOTE, remote_write)), 1, restore),
        CheckpointTier("lazy", b + max(0.0, d2h - overlap), ((HOST, 0.0), (REMOTE, remote_write)), 1, restore),
        CheckpointTier(
            "inmemory_ec",
            b + d2h,
            ((HOST, 0.0), (PEER, ec_send), (REMOTE, remote_write)),
            cal.INMEM_REMOTE_EVERY,
            restore,
        ),
    )


def survives(level: int, *, loses_nodes: int, max_group_losses: int) -> bool:
    """Whether a copy on ``level`` survives a failure that takes ``loses_nodes`` nodes out, the
    most of them in one erasure-coding group being ``max_group_losses``."""
    if level == REMOTE:
        return True
    if level == HOST:
        return loses_nodes == 0
    return max_group_losses <= cal.EC_PARITY_SHARDS
