"""A VM cluster snapshot as struct-of-arrays, and the loader of the VMR2L snapshot JSON format.

A snapshot is the input of rescheduling: physical machines (PMs) with two NUMA nodes each, the
VMs placed on them (on one NUMA node, or split half/half across both), which VMs may migrate,
and anti-affinity groups ("deployment sets": members must sit on distinct hosts, or distinct
racks). The VMR2L format (VM2RL, EuroSys'25, public data of RLVMR/VMR2L-NSDI24) is::

    {"cluster_list": [{"host_info": [{"node_id", "status", "numa": [{"node", "total_cpu",
        "free_cpu", "memory_huge_total_mb", "memory_huge_free_mb"}, ...], "rack_id"}, ...],
      "vm_instance": [{"instance_id", "host_id", "numa": [{"node", "cpu", "mem_mb"}, ...],
        "allow_migration"}, ...],
      "other_requirement": {"deployment_set": [{"granularity": "host"|"rack", "data": [ids]}]}}]}

All clusters of a file are merged into one pool, as the paper's "medium" cluster (279 active
PMs / 2,089 VMs) is the union of the two clusters of its snapshot file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from infragym.envs.cluster import kernels

N_NUMA = 2
# Placement codes of a VM on its host: NUMA node 0, NUMA node 1, or split across both.
PLACE_NUMA0, PLACE_NUMA1, PLACE_BOTH = 0, 1, 2
N_PLACEMENTS = 3
GRANULARITY_HOST, GRANULARITY_RACK = 0, 1
# Plausibility bounds of one NUMA node: far above any server (the real PMs: 44 cores, 184,388 MB
# per node; the largest x86 sockets have under 200 cores and a few TB), far below what would make
# the simulator allocate absurd tables (its lookup tables are sized by the largest node).
MAX_NUMA_CPU = 4096
MAX_NUMA_MEM_MB = float(1 << 30)  # 1 PiB
# vm_pm, vm_placement, vm_cpu, vm_mem as every reader builds them
_USAGE_DTYPES = (np.dtype(np.int64), np.dtype(np.int64), np.dtype(np.int64), np.dtype(np.float64))


class SnapshotError(ValueError):
    """A snapshot that is malformed or physically impossible (names the PM/VM at fault)."""


@dataclass
class ClusterSnapshot:
    """Struct-of-arrays cluster state. CPU in cores, memory in MB, per NUMA node.

    VM demands are per NUMA node it occupies: a split (double-NUMA) VM of 32 cores has
    ``vm_cpu = 16`` and uses 16 on each node.
    """

    pm_ids: np.ndarray  # (P,) str
    pm_cpu_total: np.ndarray  # (P, 2) int64
    pm_mem_total: np.ndarray  # (P, 2) float64
    pm_active: np.ndarray  # (P,) bool: non-ACTIVE hosts are neither counted nor destinations
    pm_rack: np.ndarray  # (P,) int64
    vm_ids: np.ndarray  # (V,) str
    vm_cpu: np.ndarray  # (V,) int64, per occupied NUMA node
    vm_mem: np.ndarray  # (V,) float64, per occupied NUMA node
    vm_double: np.ndarray  # (V,) bool
    vm_pm: np.ndarray  # (V,) int64 host index
    vm_placement: np.ndarray  # (V,) int64 PLACE_*
    vm_migratable: np.ndarray  # (V,) bool
    group_granularity: np.ndarray  # (G,) int64 GRANULARITY_*
    group_members: list[np.ndarray]  # G arrays of VM indices
    name: str = "snapshot"
    # What the loader noticed without refusing (e.g. free fields that disagree with the VMs).
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def n_pms(self) -> int:
        return len(self.pm_ids)

    @property
    def n_vms(self) -> int:
        return len(self.vm_ids)

    def usage(self) -> tuple[np.ndarray, np.ndarray]:
        """Used CPU and memory per PM and NUMA node, (P, 2) each, from the VM placements."""
        # Read once per request by validation, the free-field report and ClusterState: 48 us in
        # numpy (np.add.at) on the medium snapshot, 6 us compiled; the same sums, VM after VM.
        columns = (self.vm_pm, self.vm_placement, self.vm_cpu, self.vm_mem)
        if all(a.dtype == d and a.shape == (self.n_vms,) for a, d in zip(columns, _USAGE_DTYPES, strict=True)):
            cpu, mem, ok = kernels.node_usage(*columns, self.n_pms)
            if ok:
                return cpu, mem
        # other column types, or a host index out of range: numpy's own semantics
        cpu = np.zeros((self.n_pms, N_NUMA), dtype=np.int64)
        mem = np.zeros((self.n_pms, N_NUMA), dtype=np.float64)
        on0 = self.vm_placement != PLACE_NUMA1
        on1 = self.vm_placement != PLACE_NUMA0
        np.add.at(cpu[:, 0], self.vm_pm[on0], self.vm_cpu[on0])
        np.add.at(cpu[:, 1], self.vm_pm[on1], self.vm_cpu[on1])
        np.add.at(mem[:, 0], self.vm_pm[on0], self.vm_mem[on0])
        np.add.at(mem[:, 1], self.vm_pm[on1], self.vm_mem[on1])
        return cpu, mem

    def validate(self) -> None:
        """Refuse impossible states: negative sizes, bad placements, over-committed NUMA nodes,
        anti-affinity already violated. Raises SnapshotError naming the VM or PM."""
        P, V = self.n_pms, self.n_vms
        for name, arr, shape in (
            ("pm_cpu_total", self.pm_cpu_total, (P, 2)),
            ("pm_mem_total", self.pm_mem_total, (P, 2)),
            ("vm_cpu", self.vm_cpu, (V,)),
            ("vm_pm", self.vm_pm, (V,)),
        ):
            if arr.shape != shape:
                raise SnapshotError(f"{self.name}: {name} has shape {arr.shape}, expected {shape}")
        if P == 0 or not self.pm_active.any():
            raise SnapshotError(f"{self.name}: the cluster has no ACTIVE host (nothing to reschedule)")
        if V == 0:
            raise SnapshotError(f"{self.name}: the cluster has no VM (nothing to reschedule)")
        if not (np.isfinite(self.pm_mem_total).all() and np.isfinite(self.vm_mem).all()):
            raise SnapshotError(f"{self.name}: a memory size is NaN or infinite")
        bad = np.flatnonzero((self.pm_cpu_total < 0).any(1) | (self.pm_mem_total < 0).any(1))
        if bad.size:
            raise SnapshotError(f"{self.name}: PM {self.pm_ids[bad[0]]} has a negative capacity")
        bad = np.flatnonzero((self.pm_cpu_total > MAX_NUMA_CPU).any(1) | (self.pm_mem_total > MAX_NUMA_MEM_MB).any(1))
        if bad.size:
            raise SnapshotError(
                f"{self.name}: PM {self.pm_ids[bad[0]]} has an implausible NUMA node "
                f"({self.pm_cpu_total[bad[0]].tolist()} cores, {self.pm_mem_total[bad[0]].tolist()} MB; "
                f"at most {MAX_NUMA_CPU} cores and {MAX_NUMA_MEM_MB:.0f} MB per node)"
            )
        bad = np.flatnonzero((self.vm_cpu <= 0) | (self.vm_mem < 0))
        if bad.size:
            v = bad[0]
            raise SnapshotError(
                f"{self.name}: VM {self.vm_ids[v]} has a non-positive CPU or negative memory demand "
                f"(cpu={self.vm_cpu[v]}, mem_mb={self.vm_mem[v]})"
            )
        bad = np.flatnonzero((self.vm_pm < 0) | (self.vm_pm >= P))
        if bad.size:
            raise SnapshotError(
                f"{self.name}: VM {self.vm_ids[bad[0]]} is on an unknown host index {self.vm_pm[bad[0]]}"
            )
        bad = np.flatnonzero((self.vm_double != (self.vm_placement == PLACE_BOTH)) | (self.vm_placement < 0))
        if bad.size:
            raise SnapshotError(f"{self.name}: VM {self.vm_ids[bad[0]]} has an invalid NUMA placement")
        cpu, mem = self.usage()
        over = (cpu > self.pm_cpu_total) | (mem > self.pm_mem_total + 1e-6)
        if over.any():
            p, n = np.argwhere(over)[0]
            raise SnapshotError(
                f"{self.name}: PM {self.pm_ids[p]} NUMA node {n} is over-committed: VMs use "
                f"{cpu[p, n]} cores / {mem[p, n]:.0f} MB of {self.pm_cpu_total[p, n]} / {self.pm_mem_total[p, n]:.0f}"
            )
        for g in range(self._first_violated_group(), len(self.group_members)):
            members = self.group_members[g]
            domain = (
                self.vm_pm[members]
                if self.group_granularity[g] == GRANULARITY_HOST
                else self.pm_rack[self.vm_pm[members]]
            )
            uniq, counts = np.unique(domain, return_counts=True)
            if (counts > 1).any():
                clash = members[domain == uniq[counts > 1][0]]
                kind = "host" if self.group_granularity[g] == GRANULARITY_HOST else "rack"
                raise SnapshotError(
                    f"{self.name}: anti-affinity group {g} ({kind}) already violated by VMs {list(self.vm_ids[clash])}"
                )

    def _first_violated_group(self) -> int:
        """Index of the first anti-affinity group with two members in one host (rack), or the
        number of groups if none: one sort over all groups instead of a np.unique per group
        (hundreds in a real snapshot). Input this cannot read starts the per-group loop at 0."""
        groups = self.group_members
        if not groups:
            return 0
        try:
            sizes = np.fromiter(map(len, groups), dtype=np.int64, count=len(groups))
            members = np.concatenate(groups)
            group = np.repeat(np.arange(len(groups)), sizes)
            host = self.vm_pm[members]
            by_host = np.repeat(np.asarray(self.group_granularity) == GRANULARITY_HOST, sizes)
            domain = np.where(by_host, host, self.pm_rack[host])
        except (IndexError, TypeError, ValueError):
            return 0
        if not domain.size:
            return len(groups)
        # group is sorted: one sort of group * n_domains + domain puts the members of each
        # group in one domain side by side (a lexsort of the two keys costs twice as much)
        n_domains = int(domain.max()) + 1
        if domain.dtype == np.int64 and domain.min() >= 0 and len(groups) * n_domains < 1 << 62:
            key = np.sort(group * n_domains + domain)
            clash = key[1:] == key[:-1]
            return int(key[1:][clash][0] // n_domains) if clash.any() else len(groups)
        order = np.lexsort((domain, group))
        g, d = group[order], domain[order]
        clash = (g[1:] == g[:-1]) & (d[1:] == d[:-1])
        return int(g[1:][clash].min()) if clash.any() else len(groups)


# The VMR2L file format lives in its own module; these names stay importable from here.
from infragym.envs.cluster.vmr2l_format import (  # noqa: E402
    SnapshotWarning,
    load_vmr2l_snapshot,
    parse_vmr2l_snapshot,
    snapshot_to_vmr2l,
)

__all__ = [
    "ClusterSnapshot",
    "SnapshotError",
    "SnapshotWarning",
    "load_vmr2l_snapshot",
    "parse_vmr2l_snapshot",
    "snapshot_to_vmr2l",
]
