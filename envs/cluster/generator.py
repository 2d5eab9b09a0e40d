"""Synthetic cluster snapshots calibrated to the VMR2L data.

Calibration (measured on ``shared/data/vm_snapshots/vmr2l_c1_2022-03-28.json``, the paper's
"medium" cluster, and VM2RL EuroSys'25 Sec. 2): PMs of 88 cores in 2 NUMA nodes of 44 cores and
184,388 MB each; VM sizes 2/4/8/16/32/64/88 cores in proportions 16/44/18/11/5/6/0.2 % (88% at
<= 16 cores); VMs of >= 32 cores split half/half across both NUMA nodes, ~4% of the smaller ones
too; 2 or 4 GB per core (ecs.c1 / ecs.g1 families); ~5% not migratable; ~45% of VMs in
host anti-affinity groups of 2-5 members; 90-95% of the CPU allocated.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from infragym.envs.cluster.snapshot import (
    GRANULARITY_HOST,
    PLACE_BOTH,
    ClusterSnapshot,
)

PM_NUMA_CPU = 44
PM_NUMA_MEM_MB = 184_388.0
VM_SIZES = np.array([2, 4, 8, 16, 32, 64, 88])
VM_SIZE_PROBS = np.array([0.162, 0.44, 0.178, 0.11, 0.054, 0.054, 0.002])
VM_SIZE_PROBS = VM_SIZE_PROBS / VM_SIZE_PROBS.sum()
SMALL_SPLIT_PROB = 0.04
NOT_MIGRATABLE_PROB = 0.05
GROUPED_FRACTION = 0.45


@dataclass(frozen=True)
class SnapshotPreset:
    n_pms: int
    n_vms: int
    cpu_allocated: tuple[float, float] = (0.90, 0.95)


PRESETS: dict[str, SnapshotPreset] = {
    "tiny": SnapshotPreset(n_pms=8, n_vms=48),
    "small": SnapshotPreset(n_pms=40, n_vms=300),
    "medium": SnapshotPreset(n_pms=280, n_vms=2089),
    # 4,500 VMs of the calibrated mix (mean ~10 cores) cannot fill 1,200 PMs to 90%: the large
    # preset follows the real 1,264-PM / 3,000-VM snapshot instead (57% allocated).
    "large": SnapshotPreset(n_pms=1200, n_vms=4500, cpu_allocated=(0.55, 0.60)),
}


def _sample_sizes(n_vms: int, capacity: int, bounds: tuple[float, float], rng: np.random.Generator) -> np.ndarray:
    """VM sizes from the calibrated mix, nudged until the allocation rate is within bounds."""
    sizes = rng.choice(VM_SIZES, size=n_vms, p=VM_SIZE_PROBS)
    target = rng.uniform(*bounds) * capacity
    for _ in range(50 * n_vms):
        total = sizes.sum()
        if abs(total - target) <= 2:
            break
        i = rng.integers(n_vms)
        new = rng.choice(VM_SIZES, p=VM_SIZE_PROBS)
        if (total < target and new > sizes[i]) or (total > target and new < sizes[i]):
            sizes[i] = new
    return sizes


def generate_snapshot(
    preset: str | SnapshotPreset, rng: np.random.Generator, *, name: str | None = None
) -> ClusterSnapshot:
    """A random snapshot with exactly the preset's PM and VM counts (vectorised where it counts;
    placement is one pass over the VMs, off any hot path)."""
    if isinstance(preset, str):
        if preset not in PRESETS:
            raise ValueError(f"unknown snapshot preset {preset!r}; choose from {sorted(PRESETS)}")
        spec = PRESETS[preset]
    else:
        spec = preset
    P, V = spec.n_pms, spec.n_vms
    if V > P * 2 * PM_NUMA_CPU // 2:
        raise ValueError(f"{V} VMs cannot fit on {P} PMs")
    for _attempt in range(20):
        sizes = _sample_sizes(V, P * 2 * PM_NUMA_CPU, spec.cpu_allocated, rng)
        double = (sizes > PM_NUMA_CPU // 2 * 1) | ((sizes >= 4) & (rng.random(V) < SMALL_SPLIT_PROB))
        double |= sizes > PM_NUMA_CPU  # 88-core VMs need both nodes
        per_node = np.where(double, sizes // 2, sizes)
        mem_per_core = rng.choice([2048.0, 4096.0], size=V, p=[0.7, 0.3])
        free = np.full((P, 2), PM_NUMA_CPU, dtype=np.int64)
        vm_pm = np.full(V, -1, dtype=np.int64)
        vm_place = np.full(V, -1, dtype=np.int64)
        order = np.argsort(-sizes, kind="stable")
        ok = True
        for v in order:  # largest first, uniformly random feasible PM/NUMA: realistic fragmentation
            c = per_node[v]
            if double[v]:
                cand = np.flatnonzero((free >= c).all(1))
                if cand.size == 0:
                    ok = False
                    break
                p = cand[rng.integers(cand.size)]
                free[p] -= c
                vm_pm[v], vm_place[v] = p, PLACE_BOTH
            else:
                cand = np.flatnonzero((free >= c).ravel())
                if cand.size == 0:
                    ok = False
                    break
                k = cand[rng.integers(cand.size)]
                free.flat[k] -= c
                vm_pm[v], vm_place[v] = k // 2, k % 2
        if ok:
            break
    else:
        raise RuntimeError(f"could not place {V} VMs on {P} PMs after 20 attempts")
    mem = per_node * mem_per_core
    # Anti-affinity groups: members on distinct hosts, as in the real snapshot's deployment sets.
    grouped = rng.permutation(V)[: int(GROUPED_FRACTION * V)]
    members: list[np.ndarray] = []
    i = 0
    while i < grouped.size:
        k = int(rng.integers(2, 6))
        chunk = grouped[i : i + k]
        i += k
        _, first = np.unique(vm_pm[chunk], return_index=True)
        chunk = np.sort(chunk[first])
        if chunk.size >= 2:
            members.append(chunk)
    snap = ClusterSnapshot(
        pm_ids=np.array([f"pm_{p}" for p in range(P)]),
        pm_cpu_total=np.full((P, 2), PM_NUMA_CPU, dtype=np.int64),
        pm_mem_total=np.full((P, 2), PM_NUMA_MEM_MB),
        pm_active=np.ones(P, dtype=bool),
        pm_rack=np.arange(P, dtype=np.int64) // 28,
        vm_ids=np.array([f"vm_{v}" for v in range(V)]),
        vm_cpu=per_node.astype(np.int64),
        vm_mem=mem,
        vm_double=double,
        vm_pm=vm_pm,
        vm_placement=vm_place,
        vm_migratable=rng.random(V) >= NOT_MIGRATABLE_PROB,
        group_granularity=np.full(len(members), GRANULARITY_HOST, dtype=np.int64),
        group_members=members,
        name=name or f"generated-{spec.n_pms}pm-{spec.n_vms}vm",
    )
    snap.validate()
    return snap
