"""The rescheduling simulator core: plain numpy, incremental, no gymnasium.

Fragment rate (VM2RL, EuroSys'25, Sec. 2): FR = sum over active PMs and NUMA nodes of
(free CPU mod 16) / sum of free CPU. A migration moves one VM to another PM (one NUMA node, or
both for a split VM); it changes the free CPU of at most four NUMA nodes, so the fragment sum is
updated in O(1) and the observation rows of the two PMs and their VMs in O(V) vector ops.

Destinations are indexed ``d = pm * 3 + placement`` (placement 0: NUMA 0, 1: NUMA 1, 2: both).
A single-NUMA VM may use placements 0/1, a split VM only 2; the VM's own host is never a
destination (a no-op is not a migration).
"""

from __future__ import annotations

import numpy as np

from infragym.envs.cluster import kernels
from infragym.envs.cluster.snapshot import (
    GRANULARITY_HOST,
    N_PLACEMENTS,
    PLACE_BOTH,
    PLACE_NUMA0,
    PLACE_NUMA1,
    ClusterSnapshot,
)

FRAGMENT_UNIT = 16  # cores: a free remainder below 16 cannot host the common 16-core VM type
VM_FEATURES = 8
CPU_SCALE = 44.0  # cores of one NUMA node of the real PMs: the observation's CPU unit
MEM_SCALE = 184_388.0  # MB of one NUMA node of the real PMs
PM_FEATURES = 8


def fragments(free_cpu: np.ndarray) -> np.ndarray:
    return np.mod(free_cpu, FRAGMENT_UNIT)


def _unique_rows(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(keys, axis=0, return_inverse=True)`` (rows in lexicographic order, the
    inverse flat) for a (V, k) float array, with one lexsort instead of a sort of the rows as
    raw records, which is ten times slower. NaN (never equal to itself) takes np.unique."""
    if len(keys) == 0 or np.isnan(keys).any():
        types, inverse = np.unique(keys, axis=0, return_inverse=True)
        return types, inverse.ravel()
    # One contiguous array per column, compared column by column: on the medium snapshot's
    # 2,089 VMs 59 us, where sorting strided columns and indexing 2-D rows took 76 us.
    columns = [np.ascontiguousarray(keys[:, j]) for j in range(keys.shape[1])]
    order = np.lexsort(columns[::-1])  # the first column is the primary key
    first = np.zeros(len(keys), dtype=bool)
    first[0] = True
    for column in columns:
        ordered = column[order]
        first[1:] |= ordered[1:] != ordered[:-1]
    inverse = np.empty(len(keys), dtype=np.intp)
    inverse[order] = np.cumsum(first) - 1
    return keys[order[first]], inverse


def _group_pairs(groups: list[np.ndarray], granularity: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every ordered pair (v, u), v != u, of members of each group with the group's
    granularity, group after group, v-major: what a meshgrid per group gives, built with a
    few repeats over all groups at once (a real snapshot has hundreds of small groups)."""
    members = [np.asarray(m) for m in groups]
    sizes = np.array([m.size for m in members], dtype=np.int64)
    flat = np.concatenate([m.ravel() for m in members])
    # one row per (member a, member b of a's group): a repeated |group| times, b runs over the group
    per_member = np.repeat(sizes, sizes)
    a = np.repeat(np.arange(flat.size), per_member)
    group_start = np.repeat(np.cumsum(sizes) - sizes, sizes)
    row_start = np.cumsum(per_member) - per_member
    b = np.repeat(group_start, per_member) + np.arange(a.size) - np.repeat(row_start, per_member)
    pair_v, pair_u = flat[a], flat[b]
    kind = np.repeat(np.repeat(np.asarray([granularity[g] for g in range(len(members))]), sizes), per_member)
    off = pair_v != pair_u
    return pair_v[off], pair_u[off], kind[off]


def _order_and_ptr(values: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``np.argsort(values, kind="stable")`` and the start of each value's run in the sorted
    order (``np.searchsorted(sorted, np.arange(n + 1))``): a counting sort for integers in
    [0, n) (VM indices), numpy for anything else."""
    if values.dtype == np.int64:
        order, ptr, ok = kernels.stable_order(values, n)
        if ok:
            return order, ptr
    order = np.argsort(values, kind="stable")
    return order, np.searchsorted(values[order], np.arange(n + 1))


def _sorted_group_pairs(
    groups: list[np.ndarray], granularity: np.ndarray, n_vms: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`_group_pairs` sorted by (v, u), ties in group order (a lexsort), and each VM's
    first pair (``pair_ptr``, n_vms + 1 entries). Compiled for VM indices (int64 in [0, n_vms)):
    two stable counting sorts, u then v, are the lexsort; 0.08 ms instead of 0.37 ms in numpy
    on the medium snapshot (3,028 pairs)."""
    if not groups:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty, np.zeros(n_vms + 1, dtype=np.int64)
    try:  # groups as the readers give them: 1-D int64 arrays
        flat = np.concatenate(groups)
    except (TypeError, ValueError):  # anything else: the numpy construction below
        flat = None
    kinds = np.asarray(granularity)[: len(groups)]
    if (
        flat is not None
        and flat.ndim == 1
        and flat.dtype == np.int64
        and kinds.dtype == np.int64
        and len(kinds) == len(groups)
    ):
        sizes = np.fromiter(map(len, groups), dtype=np.int64, count=len(groups))
        pair_v, pair_u, pair_kind = kernels.group_pairs(flat, sizes, kinds)
        by_u, _, ok_u = kernels.stable_order(pair_u, n_vms)
        by_v, ptr, ok_v = kernels.stable_order(pair_v[by_u], n_vms)
        if ok_u and ok_v:
            order = by_u[by_v]
            return pair_v[order], pair_u[order], pair_kind[order], ptr
    pair_v, pair_u, pair_kind = _group_pairs(groups, granularity)
    order = np.lexsort((pair_u, pair_v))
    pair_v, pair_u, pair_kind = pair_v[order], pair_u[order], pair_kind[order]
    return pair_v, pair_u, pair_kind, np.searchsorted(pair_v, np.arange(n_vms + 1))


class ClusterState:
    """Mutable placement state of one snapshot, with incremental fragment accounting."""

    def __init__(self, snapshot: ClusterSnapshot) -> None:
        self.snapshot = snapshot
        s = snapshot
        self.n_pms, self.n_vms = s.n_pms, s.n_vms
        self.pm_active = s.pm_active.copy()
        self.vm_cpu = s.vm_cpu
        self.vm_mem = s.vm_mem
        self.vm_double = s.vm_double
        # VMs on inactive hosts stay put: their host is outside the optimisation.
        self.vm_movable = s.vm_migratable & s.pm_active[s.vm_pm]
        # VM "types" (per-node CPU, memory, split): feasibility is computed once per type.
        keys = np.stack([s.vm_cpu.astype(np.float64), s.vm_mem, s.vm_double.astype(np.float64)], 1)
        types, self.vm_type = _unique_rows(keys)
        self.type_cpu = types[:, 0].astype(np.int64)
        self.type_mem = types[:, 1]
        self.type_double = types[:, 2].astype(bool)
        # Anti-affinity as static pairs (v, u), sorted by (v, u): u's host (or rack) is
        # forbidden to v; pair_ptr[v]:pair_ptr[v + 1] are v's pairs.
        pair_v, pair_u, pair_kind, self.pair_ptr = _sorted_group_pairs(s.group_members, s.group_granularity, self.n_vms)
        self.pair_v, self.pair_u, self.pair_kind = pair_v, pair_u, pair_kind
        self.vm_grouped = np.diff(self.pair_ptr) > 0
        host_pairs = pair_kind == GRANULARITY_HOST
        host_pairs &= self.vm_movable[pair_v]  # pairs of immovable VMs never matter
        self.hpair_v, self.hpair_u = pair_v[host_pairs], pair_u[host_pairs]
        self.hpair_vtype = self.vm_type[self.hpair_v] * self.n_pms  # flat row offset into feas_pm
        # Pairs touched when a VM moves: as the forbidden one (u) and as the constrained one (v).
        self.hpair_by_u, self.hpair_u_ptr = _order_and_ptr(self.hpair_u, self.n_vms)
        _, self.hpair_v_ptr = _order_and_ptr(self.hpair_v, self.n_vms)  # hpair_v is sorted already
        # per pair: how many host pairs its constrained VM has (at most that many hosts forbidden)
        self.hpair_k = np.diff(self.hpair_v_ptr)[self.hpair_v]
        self.rack_vms = np.unique(pair_v[pair_kind != GRANULARITY_HOST])
        self.vm_has_rack = np.zeros(self.n_vms, dtype=bool)
        self.vm_has_rack[self.rack_vms] = True
        self._pair_ptr = self.pair_ptr.tolist()
        self._no_hosts = np.zeros(0, dtype=np.int64)
        # Python ints for the per-migration slicing (scalar numpy indexing is slower)
        self._u_ptr, self._v_ptr = self.hpair_u_ptr.tolist(), self.hpair_v_ptr.tolist()
        self.pm_rack = s.pm_rack
        self._type_cpu3 = self.type_cpu[:, None, None]
        self._type_mem3 = self.type_mem[:, None, None]
        self._type_double2 = self.type_double[:, None]
        self._all_active = bool(s.pm_active.all())
        free = np.arange(int(s.pm_cpu_total.max()) + 1, dtype=np.float32)
        frag = np.mod(free, FRAGMENT_UNIT)
        self._cpu_lut = np.stack([free / CPU_SCALE, frag / FRAGMENT_UNIT, frag / np.maximum(free, 1.0)], 1)
        self._mem_total_clip = np.maximum(s.pm_mem_total, 1.0)
        self.pm_cpu_total = s.pm_cpu_total
        self.pm_mem_total = s.pm_mem_total
        self.reset()

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        s = self.snapshot
        self.vm_pm = s.vm_pm.copy()
        self.vm_placement = s.vm_placement.copy()
        used_cpu, used_mem = s.usage()
        self.free_cpu = s.pm_cpu_total - used_cpu
        self.free_mem = s.pm_mem_total - used_mem
        self.free_cpu[~self.pm_active] = 0  # inactive hosts: never destinations, never counted
        self.free_mem[~self.pm_active] = 0.0
        active = self.pm_active[:, None]
        self.fragment_sum = int((fragments(self.free_cpu) * active).sum())
        self.free_sum = int((self.free_cpu * active).sum())
        self.n_migrations = 0
        self._obs_ready = False
        self.feas_pm = np.ascontiguousarray(self._type_feasible_pms(slice(None)))  # (T, P), kept up to date by migrate
        self.feas_flat = self.feas_pm.ravel()  # a view: the kernels update feas_pm in place
        self.n_feas = self.feas_pm.sum(1)
        # Flat indices into feas_pm, maintained on each migration (saves gathers in vm_mask).
        self.vm_flat = self.vm_type * self.n_pms + self.vm_pm
        self.hp_host = self.vm_pm[self.hpair_u]
        self.hp_flat = self.hpair_vtype + self.hp_host
        self.hp_apart = self.hp_host != self.vm_pm[self.hpair_v]

    def fragment_rate(self) -> float:
        return self.fragment_sum / self.free_sum if self.free_sum > 0 else 0.0

    def fragment_rate_from_scratch(self) -> float:
        """FR recomputed from the VM placements alone (for tests of the incremental one)."""
        s = self.snapshot
        probe = ClusterSnapshot(**{**s.__dict__, "vm_pm": self.vm_pm, "vm_placement": self.vm_placement})
        used, _ = probe.usage()
        free = (s.pm_cpu_total - used)[self.pm_active]
        total = free.sum()
        return float(fragments(free).sum() / total) if total > 0 else 0.0

    # ------------------------------------------------------------------ masks
    def type_feasible(self) -> np.ndarray:
        """(T, P, 3) bool: capacity-feasible placements per VM type (ignores host and groups)."""
        c = self.type_cpu[:, None, None]
        m = self.type_mem[:, None, None]
        fit = (self.free_cpu[None] >= c) & (self.free_mem[None] >= m)  # (T, P, 2)
        out = np.zeros((len(self.type_cpu), self.n_pms, N_PLACEMENTS), dtype=bool)
        single = ~self.type_double[:, None]
        out[:, :, PLACE_NUMA0] = fit[:, :, 0] & single
        out[:, :, PLACE_NUMA1] = fit[:, :, 1] & single
        out[:, :, PLACE_BOTH] = fit.all(2) & ~single
        out &= self.pm_active[None, :, None]
        return out

    def _type_feasible_pms(self, pms: np.ndarray | slice) -> np.ndarray:
        """(T, len(pms)) bool: a VM of type t fits PM p on some placement."""
        fit = (self.free_cpu[pms] >= self._type_cpu3) & (self.free_mem[pms] >= self._type_mem3)  # (T, n, 2)
        out = np.where(self._type_double2, fit[..., 0] & fit[..., 1], fit[..., 0] | fit[..., 1])
        return out if self._all_active else out & self.pm_active[pms]

    def _forbidden_pms(self, vm: int) -> np.ndarray | None:
        lo, hi = self.pair_ptr[vm], self.pair_ptr[vm + 1]
        if lo == hi:
            return None
        forbidden = np.zeros(self.n_pms, dtype=bool)
        hosts = self.vm_pm[self.pair_u[lo:hi]]
        kind = self.pair_kind[lo:hi]
        forbidden[hosts[kind == GRANULARITY_HOST]] = True
        rack_hosts = hosts[kind != GRANULARITY_HOST]
        if rack_hosts.size:
            forbidden |= np.isin(self.pm_rack, self.pm_rack[rack_hosts])
        return forbidden

    def placement_mask(self, vm: int) -> np.ndarray:
        """(3P,) bool: feasible destinations of ``vm`` (capacity per NUMA, not its own host,
        anti-affinity). All False for a VM that may not move."""
        if not self.vm_movable[vm]:
            return np.zeros(self.n_pms * N_PLACEMENTS, dtype=bool)
        lo, hi = self._pair_ptr[vm], self._pair_ptr[vm + 1]
        if lo == hi:
            hosts = self._no_hosts
        elif self.vm_has_rack[vm]:
            hosts = np.flatnonzero(self._forbidden_pms(vm))
        else:  # host anti-affinity only: the group mates' hosts
            hosts = self.vm_pm[self.pair_u[lo:hi]]
        return kernels.placement_mask(
            self.free_cpu,
            self.free_mem,
            int(self.vm_cpu[vm]),
            float(self.vm_mem[vm]),
            bool(self.vm_double[vm]),
            int(self.vm_pm[vm]),
            hosts,
        )

    def is_feasible(self, vm: int, destination: int) -> bool:
        """One migration's feasibility, without building a mask (scalar checks)."""
        pm, place = divmod(int(destination), N_PLACEMENTS)
        if not (self.vm_movable[vm] and self.pm_active[pm]) or pm == self.vm_pm[vm]:
            return False
        if (place == PLACE_BOTH) != bool(self.vm_double[vm]):
            return False
        nodes = (0, 1) if place == PLACE_BOTH else (place,)
        c, m = self.vm_cpu[vm], self.vm_mem[vm]
        if any(self.free_cpu[pm, n] < c or self.free_mem[pm, n] < m for n in nodes):
            return False
        lo, hi = self.pair_ptr[vm], self.pair_ptr[vm + 1]
        if lo == hi:
            return True
        hosts = self.vm_pm[self.pair_u[lo:hi]]
        kind = self.pair_kind[lo:hi]
        if (hosts[kind == GRANULARITY_HOST] == pm).any():
            return False
        return not (self.pm_rack[hosts[kind != GRANULARITY_HOST]] == self.pm_rack[pm]).any()

    def vm_mask(self) -> np.ndarray:
        """(V,) bool: VMs that may move and have at least one feasible destination.

        Exact and vectorised: destinations per VM type are counted incrementally; hosts
        forbidden by anti-affinity are subtracted once each (distinct (VM, host) pairs)."""
        # Only VMs with no more destinations than group mates can lose them all: their distinct
        # forbidden-and-feasible hosts are counted exactly; everyone else is decided by counts.
        mask = kernels.vm_mask(
            self.n_feas,
            self.feas_flat,
            self.vm_type,
            self.vm_flat,
            self.vm_movable,
            self.hpair_v,
            self.hp_host,
            self.hp_flat,
            self.hp_apart,
            self.hpair_v_ptr,
        )
        for vm in self.rack_vms[mask[self.rack_vms]]:  # rack anti-affinity: a few VMs, exact check
            mask[vm] = self.placement_mask(vm).any()
        return mask

    def full_mask(self) -> np.ndarray:
        """(V, 3P) bool: every feasible migration (the flat action mask)."""
        feas = self.type_feasible()[self.vm_type]  # (V, P, 3)
        feas[np.arange(self.n_vms), self.vm_pm] = False
        feas &= self.vm_movable[:, None, None]
        for vm in np.flatnonzero(self.vm_grouped & self.vm_movable):
            forbidden = self._forbidden_pms(vm)
            feas[vm, forbidden] = False
        return feas.reshape(self.n_vms, -1)

    # ------------------------------------------------------------------ dynamics
    def fragment_delta_all(self) -> np.ndarray:
        """(V, 3P) int: change of the fragment sum for every (VM, destination); infeasible = +inf.

        Vectorised by VM type: the destination part depends only on the type, the source part
        only on the VM."""
        c_t = self.type_cpu
        frag_now = fragments(self.free_cpu)  # (P, 2)
        dst = fragments(self.free_cpu[None] - c_t[:, None, None]) - frag_now[None]  # (T, P, 2)
        dst_t = np.empty((len(c_t), self.n_pms, N_PLACEMENTS), dtype=np.float64)
        dst_t[:, :, 0] = dst[:, :, 0]
        dst_t[:, :, 1] = dst[:, :, 1]
        dst_t[:, :, 2] = dst[:, :, 0] + dst[:, :, 1]
        p, pl = self.vm_pm, self.vm_placement
        freed = self.free_cpu[p] + self.vm_cpu[:, None] * np.stack([pl != PLACE_NUMA1, pl != PLACE_NUMA0], 1)
        src = (fragments(freed) - frag_now[p]).sum(1)  # (V,)
        delta = dst_t[self.vm_type] + src[:, None, None]
        # Moving within ... the source host is masked anyway; a move onto the host it leaves
        # would need the freed capacity, so the host is never a destination.
        delta = delta.reshape(self.n_vms, -1)
        delta[~self.full_mask()] = np.inf
        return delta

    def migrate(self, vm: int, destination: int) -> float:
        """Move ``vm`` to ``destination`` (= pm * 3 + placement); return the FR decrease.

        The caller guarantees feasibility (the env checks the mask)."""
        new_pm, new_place = divmod(int(destination), N_PLACEMENTS)
        old_pm, old_place = int(self.vm_pm[vm]), int(self.vm_placement[vm])
        before = self.fragment_rate()
        free_cpu, free_mem = self.free_cpu, self.free_mem
        self.fragment_sum += kernels.move(
            free_cpu,
            free_mem,
            int(self.vm_cpu[vm]),
            float(self.vm_mem[vm]),
            old_pm,
            old_place,
            new_pm,
            new_place,
            self.hpair_by_u,  # pairs where this VM's host is forbidden to a group mate
            self._u_ptr[vm],
            self._u_ptr[vm + 1],
            self._v_ptr[vm],  # pairs constraining this VM
            self._v_ptr[vm + 1],
            self.hp_host,
            self.hp_flat,
            self.hp_apart,
            self.hpair_vtype,
            self.hpair_v,
            self.vm_pm,
        )
        self.vm_pm[vm] = new_pm
        self.vm_placement[vm] = new_place
        self.n_migrations += 1
        self.vm_flat[vm] = self.vm_type[vm] * self.n_pms + new_pm
        pms = np.array([old_pm, new_pm])
        kernels.type_feasible_pms(
            free_cpu,
            free_mem,
            pms,
            self.type_cpu,
            self.type_mem,
            self.type_double,
            self.pm_active,
            self.feas_pm,
            self.n_feas,
        )
        if self._obs_ready:
            kernels.update_obs(
                self.pm_obs,
                self.vm_obs,
                free_cpu,
                free_mem,
                self._mem_total_clip,
                self._cpu_lut,
                pms,
                vm,
                new_place,
            )
        return before - self.fragment_rate()

    # ------------------------------------------------------------------ observation
    def _pm_rows(self, pms: np.ndarray | slice) -> np.ndarray:
        # Free CPU on a fixed scale (cores / 44, a NUMA node of the real PMs) so that a policy can
        # recover exact core counts and their remainders mod 16.
        free = self.free_cpu[pms].astype(np.float32)
        mem = (self.free_mem[pms] / np.maximum(self.pm_mem_total[pms], 1.0)).astype(np.float32)
        frag = np.mod(free, FRAGMENT_UNIT)
        return np.concatenate([free / CPU_SCALE, mem, frag / FRAGMENT_UNIT, frag / np.maximum(free, 1.0)], axis=-1)

    def observation(self) -> dict[str, np.ndarray]:
        """VM rows: own demand (per node CPU/44, memory share, split, movable), placement one-hot
        and a moved-this-episode flag; the host's features are joined through ``vm_host`` by the
        policy, so no VM row goes stale when its host changes. PM rows: free CPU and memory share
        per node, fragment features
        ((free mod 16)/16 and (free mod 16)/free, as in VM2RL) per node. Arrays are updated in
        place on each migration and returned as copies."""
        if not self._obs_ready:
            self.pm_obs = self._pm_rows(slice(None))
            self.pm_obs[~self.pm_active] = 0.0
            V = self.n_vms
            self.vm_static = np.zeros((V, 4), dtype=np.float32)
            self.vm_static[:, 0] = self.vm_cpu / CPU_SCALE
            self.vm_static[:, 1] = self.vm_mem / MEM_SCALE
            self.vm_static[:, 2] = self.vm_double
            self.vm_static[:, 3] = self.vm_movable
            self.vm_obs = np.zeros((V, VM_FEATURES), dtype=np.float32)
            self.vm_obs[:, :4] = self.vm_static
            self.vm_obs[np.arange(V), 4 + self.vm_placement] = 1.0
            self._obs_ready = True
        return {"vm": self.vm_obs.copy(), "pm": self.pm_obs.copy(), "vm_host": self.vm_pm.copy()}

    def check_invariants(self) -> None:
        """Assert conservation and capacity (used by the tests)."""
        s = self.snapshot
        assert self.vm_pm.shape == (self.n_vms,)
        probe = ClusterSnapshot(**{**s.__dict__, "vm_pm": self.vm_pm, "vm_placement": self.vm_placement})
        used_cpu, used_mem = probe.usage()
        free = s.pm_cpu_total - used_cpu
        assert (free >= 0).all(), "a NUMA node is over-committed"
        assert (s.pm_mem_total - used_mem >= -1e-6).all(), "a NUMA node's memory is over-committed"
        act = self.pm_active
        assert np.array_equal(free[act], self.free_cpu[act]), "incremental free CPU drifted"
        assert (self.vm_double == (self.vm_placement == PLACE_BOTH)).all()
        assert ((self.vm_placement == PLACE_NUMA0) | (self.vm_placement == PLACE_NUMA1) | self.vm_double).all()
