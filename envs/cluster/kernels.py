"""Compiled (numba) kernels of the simulator's per-step work: the VM mask, one VM's destination
mask, the per-type feasibility of the two PMs a migration touches, and the observation rows it
changes.

Each replaces a handful of small numpy calls whose per-call overhead (about a microsecond each)
was most of a step's cost on the medium cluster (profiled with cProfile: ``vm_mask``,
``_type_feasible_pms``, ``placement_mask`` and ``_update_obs`` were 70% of the env's time). The
numbers are the same as the numpy code's (``tests/test_cluster_env.py`` checks the masks against
``full_mask`` and the observation against one built from scratch after every migration).
"""

from __future__ import annotations

import numpy as np
from numba import njit

FRAGMENT_UNIT = 16


@njit(cache=True)
def vm_mask(
    n_feas: np.ndarray,
    feas_flat: np.ndarray,
    vm_type: np.ndarray,
    vm_flat: np.ndarray,
    vm_movable: np.ndarray,
    hpair_v: np.ndarray,
    hp_host: np.ndarray,
    hp_flat: np.ndarray,
    hp_apart: np.ndarray,
    hpair_v_ptr: np.ndarray,
) -> np.ndarray:
    """(V,) bool: movable VMs with at least one feasible destination (capacity, not their own
    host, host anti-affinity). ``hpair_v`` is sorted: a VM's pairs are contiguous."""
    n_vms = vm_type.size
    mask = np.zeros(n_vms, dtype=np.bool_)
    for v in range(n_vms):
        if not vm_movable[v]:
            continue
        n_dest = n_feas[vm_type[v]] - (1 if feas_flat[vm_flat[v]] else 0)
        lo, hi = hpair_v_ptr[v], hpair_v_ptr[v + 1]
        if n_dest > 0 and hi > lo and n_dest <= hi - lo:
            # subtract each distinct forbidden host that is feasible and not the VM's own
            for k in range(lo, hi):
                if feas_flat[hp_flat[k]] and hp_apart[k]:
                    seen = False
                    for j in range(lo, k):
                        if hp_host[j] == hp_host[k] and feas_flat[hp_flat[j]] and hp_apart[j]:
                            seen = True
                            break
                    if not seen:
                        n_dest -= 1
        mask[v] = n_dest > 0
    return mask


@njit(cache=True)
def type_feasible_pms(
    free_cpu: np.ndarray,
    free_mem: np.ndarray,
    pms: np.ndarray,
    type_cpu: np.ndarray,
    type_mem: np.ndarray,
    type_double: np.ndarray,
    pm_active: np.ndarray,
    feas_pm: np.ndarray,
    n_feas: np.ndarray,
) -> None:
    """Recompute ``feas_pm[:, p]`` (a VM of type t fits PM p on some placement) for the PMs
    ``pms`` and keep ``n_feas`` (feasible PMs per type) in step, in place."""
    for p in pms:
        fit0_cpu, fit1_cpu = free_cpu[p, 0], free_cpu[p, 1]
        mem0, mem1 = free_mem[p, 0], free_mem[p, 1]
        for t in range(type_cpu.size):
            c, m = type_cpu[t], type_mem[t]
            f0 = fit0_cpu >= c and mem0 >= m
            f1 = fit1_cpu >= c and mem1 >= m
            fits = (f0 and f1) if type_double[t] else (f0 or f1)
            fits = fits and pm_active[p]
            if fits != feas_pm[t, p]:
                n_feas[t] += 1 if fits else -1
                feas_pm[t, p] = fits


@njit(cache=True)
def placement_mask(
    free_cpu: np.ndarray,
    free_mem: np.ndarray,
    cpu: int,
    mem: float,
    double: bool,
    own_pm: int,
    forbidden_hosts: np.ndarray,
) -> np.ndarray:
    """(3P,) bool: the destinations of one movable VM (capacity per NUMA node, not its own host,
    not the hosts of ``forbidden_hosts``; inactive hosts have zero free capacity here)."""
    n_pms = free_cpu.shape[0]
    mask = np.zeros(n_pms * 3, dtype=np.bool_)
    for p in range(n_pms):
        f0 = free_cpu[p, 0] >= cpu and free_mem[p, 0] >= mem
        f1 = free_cpu[p, 1] >= cpu and free_mem[p, 1] >= mem
        if double:
            mask[3 * p + 2] = f0 and f1
        else:
            mask[3 * p] = f0
            mask[3 * p + 1] = f1
    for k in range(3):
        mask[3 * own_pm + k] = False
    for p in forbidden_hosts:
        for k in range(3):
            mask[3 * p + k] = False
    return mask


@njit(cache=True)
def update_obs(
    pm_obs: np.ndarray,
    vm_obs: np.ndarray,
    free_cpu: np.ndarray,
    free_mem: np.ndarray,
    mem_total_clip: np.ndarray,
    cpu_lut: np.ndarray,
    pms: np.ndarray,
    vm: int,
    placement: int,
) -> None:
    """The observation rows a migration changes: the two PMs' rows, the VM's placement one-hot
    and moved flag (the same values as ``ClusterState._pm_rows``)."""
    for p in pms:
        for n in range(2):
            f = free_cpu[p, n]
            pm_obs[p, n] = cpu_lut[f, 0]
            pm_obs[p, 4 + n] = cpu_lut[f, 1]
            pm_obs[p, 6 + n] = cpu_lut[f, 2]
            pm_obs[p, 2 + n] = np.float32(free_mem[p, n] / mem_total_clip[p, n])
    vm_obs[vm, 4] = 0.0
    vm_obs[vm, 5] = 0.0
    vm_obs[vm, 6] = 0.0
    vm_obs[vm, 4 + placement] = 1.0
    vm_obs[vm, 7] = 1.0


@njit(cache=True)
def move(
    free_cpu: np.ndarray,
    free_mem: np.ndarray,
    cpu: int,
    mem: float,
    old_pm: int,
    old_place: int,
    new_pm: int,
    new_place: int,
    hpair_by_u: np.ndarray,
    u_lo: int,
    u_hi: int,
    v_lo: int,
    v_hi: int,
    hp_host: np.ndarray,
    hp_flat: np.ndarray,
    hp_apart: np.ndarray,
    hpair_vtype: np.ndarray,
    hpair_v: np.ndarray,
    vm_pm: np.ndarray,
) -> int:
    """A migration's capacity and anti-affinity bookkeeping, in place: free CPU and memory of the
    (up to four) NUMA nodes it touches, and the host pairs where the VM is the forbidden one
    (``hpair_by_u[u_lo:u_hi]``) or the constrained one (``v_lo:v_hi``). Returns the change of
    the fragment sum."""
    delta = 0
    for side in range(2):
        pm = old_pm if side == 0 else new_pm
        place = old_place if side == 0 else new_place
        sign = 1 if side == 0 else -1
        for node in range(2):
            if place == 2 or place == node:
                f = free_cpu[pm, node]
                delta += (f + sign * cpu) % FRAGMENT_UNIT - f % FRAGMENT_UNIT
                free_cpu[pm, node] = f + sign * cpu
                free_mem[pm, node] += sign * mem
    for i in range(u_lo, u_hi):
        k = hpair_by_u[i]
        hp_host[k] = new_pm
        hp_flat[k] = hpair_vtype[k] + new_pm
        hp_apart[k] = vm_pm[hpair_v[k]] != new_pm
    for k in range(v_lo, v_hi):
        hp_apart[k] = hp_host[k] != new_pm
    return delta


@njit(cache=True)
def node_usage(
    vm_pm: np.ndarray, vm_placement: np.ndarray, vm_cpu: np.ndarray, vm_mem: np.ndarray, n_pms: int
) -> tuple[np.ndarray, np.ndarray, bool]:
    """Used CPU and memory per PM and NUMA node, (P, 2) each, summed VM after VM as
    ``np.add.at`` sums them (so the memory sums are the same floats). A VM uses node 0 unless
    its placement is 1 and node 1 unless it is 0. False, with partial sums, if a host index is
    outside [0, n_pms)."""
    cpu = np.zeros((n_pms, 2), dtype=np.int64)
    mem = np.zeros((n_pms, 2), dtype=np.float64)
    for v in range(vm_pm.size):
        p = vm_pm[v]
        if p < 0 or p >= n_pms:
            return cpu, mem, False
        place = vm_placement[v]
        if place != 1:
            cpu[p, 0] += vm_cpu[v]
            mem[p, 0] += vm_mem[v]
        if place != 0:
            cpu[p, 1] += vm_cpu[v]
            mem[p, 1] += vm_mem[v]
    return cpu, mem, True


@njit(cache=True)
def stable_order(values: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, bool]:
    """A counting sort of ``values`` (integers in [0, n)): the stable argsort (what
    ``np.argsort(kind="stable")`` gives) and ``ptr`` (n + 1 entries: where each value's run
    starts in the sorted order, what ``np.searchsorted(sorted, np.arange(n + 1))`` gives).
    False if a value is outside [0, n)."""
    ptr = np.zeros(n + 1, dtype=np.int64)
    order = np.empty(values.size, dtype=np.int64)
    for x in values:
        if x < 0 or x >= n:
            return order, ptr, False
        ptr[x + 1] += 1
    for k in range(n):
        ptr[k + 1] += ptr[k]
    fill = ptr[:-1].copy()
    for i in range(values.size):
        x = values[i]
        order[fill[x]] = i
        fill[x] += 1
    return order, ptr, True


@njit(cache=True)
def group_pairs(flat: np.ndarray, sizes: np.ndarray, kinds: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every ordered pair (v, u), v != u, of members of each group (``flat`` holds the groups'
    members one group after another, ``sizes`` their lengths) with the group's kind: group after
    group, v-major, u in member order."""
    # at most |group|^2 pairs per group: filled in one pass, then trimmed
    n = 0
    for g in range(sizes.size):
        n += sizes[g] * sizes[g]
    pair_v = np.empty(n, dtype=flat.dtype)
    pair_u = np.empty(n, dtype=flat.dtype)
    pair_kind = np.empty(n, dtype=kinds.dtype)
    k = 0
    start = 0
    for g in range(sizes.size):
        for a in range(start, start + sizes[g]):
            for b in range(start, start + sizes[g]):
                if flat[a] != flat[b]:
                    pair_v[k] = flat[a]
                    pair_u[k] = flat[b]
                    pair_kind[k] = kinds[g]
                    k += 1
        start += sizes[g]
    return pair_v[:k].copy(), pair_u[:k].copy(), pair_kind[:k].copy()
