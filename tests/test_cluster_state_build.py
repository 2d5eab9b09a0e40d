"""The compiled parts of reading a snapshot and building its ``ClusterState`` (per-node usage,
the anti-affinity pairs and their indices, the groups' members) give exactly what a
straightforward numpy construction gives: on generated clusters with host and rack groups,
groups that overlap, members in any order, and index types the kernels leave to numpy."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from infragym.envs.cluster import ClusterState, generate_snapshot
from infragym.envs.cluster.snapshot import GRANULARITY_HOST, GRANULARITY_RACK, N_NUMA, PLACE_NUMA0, PLACE_NUMA1
from infragym.envs.cluster.vmr2l_format import _str_array, assemble_snapshot


def _reference_usage(s) -> tuple[np.ndarray, np.ndarray]:
    cpu = np.zeros((s.n_pms, N_NUMA), dtype=np.int64)
    mem = np.zeros((s.n_pms, N_NUMA), dtype=np.float64)
    on0, on1 = s.vm_placement != PLACE_NUMA1, s.vm_placement != PLACE_NUMA0
    np.add.at(cpu[:, 0], s.vm_pm[on0], s.vm_cpu[on0])
    np.add.at(cpu[:, 1], s.vm_pm[on1], s.vm_cpu[on1])
    np.add.at(mem[:, 0], s.vm_pm[on0], s.vm_mem[on0])
    np.add.at(mem[:, 1], s.vm_pm[on1], s.vm_mem[on1])
    return cpu, mem


def _reference_pairs(s) -> dict[str, np.ndarray]:
    """Per group a meshgrid of its members, all pairs sorted by (v, u) with a lexsort, pointers
    by searchsorted, the host pairs' index by a stable argsort."""
    V = s.n_vms
    pv, pu, pk = [np.zeros(0, dtype=np.int64)], [np.zeros(0, dtype=np.int64)], [np.zeros(0, dtype=np.int64)]
    for g, members in enumerate(s.group_members):
        a, b = np.meshgrid(members, members, indexing="ij")
        off = a != b
        pv.append(a[off])
        pu.append(b[off])
        pk.append(np.full(off.sum(), s.group_granularity[g], dtype=np.int64))
    pv, pu, pk = np.concatenate(pv), np.concatenate(pu), np.concatenate(pk)
    order = np.lexsort((pu, pv))
    pv, pu, pk = pv[order], pu[order], pk[order]
    movable = s.vm_migratable & s.pm_active[s.vm_pm]
    host = (pk == GRANULARITY_HOST) & movable[pv]
    hv, hu = pv[host], pu[host]
    by_u = np.argsort(hu, kind="stable")
    return {
        "pair_v": pv,
        "pair_u": pu,
        "pair_kind": pk,
        "pair_ptr": np.searchsorted(pv, np.arange(V + 1)),
        "hpair_v": hv,
        "hpair_u": hu,
        "hpair_by_u": by_u,
        "hpair_u_ptr": np.searchsorted(hu[by_u], np.arange(V + 1)),
        "hpair_v_ptr": np.searchsorted(hv, np.arange(V + 1)),
        "hpair_k": np.bincount(hv, minlength=V)[hv],
        "rack_vms": np.unique(pv[pk != GRANULARITY_HOST]),
    }


def _with_groups(s, rng: np.random.Generator, dtype=np.int64):
    """``s`` with its host groups plus rack groups and groups overlapping them (a pair of VMs in
    two groups), members in random order."""
    groups = [rng.permutation(m).astype(dtype) for m in s.group_members]
    kinds = [GRANULARITY_HOST] * len(groups)
    for _ in range(max(2, len(groups) // 4)):
        groups.append(rng.choice(s.n_vms, size=int(rng.integers(2, 5)), replace=False).astype(dtype))
        kinds.append(GRANULARITY_RACK if rng.random() < 0.5 else GRANULARITY_HOST)
    if s.group_members:
        groups.append(s.group_members[0][::-1].astype(dtype))  # the same pairs twice
        kinds.append(GRANULARITY_RACK)
    return dataclasses.replace(s, group_members=groups, group_granularity=np.array(kinds, dtype=np.int64))


@pytest.mark.parametrize("dtype", [np.int64, np.int32])
@pytest.mark.parametrize(("preset", "seed"), [("tiny", 0), ("small", 1), ("small", 2), ("medium", 3)])
def test_state_pairs_equal_a_meshgrid_reference(preset: str, seed: int, dtype: type) -> None:
    rng = np.random.default_rng(seed)
    snap = _with_groups(generate_snapshot(preset, rng), rng, dtype)
    state = ClusterState(snap)
    for name, expected in _reference_pairs(snap).items():
        got = getattr(state, name)
        if dtype is np.int64 or name.endswith(("ptr", "by_u", "_k", "kind")):
            assert got.dtype == expected.dtype, name
        np.testing.assert_array_equal(got, expected, err_msg=name)
    np.testing.assert_array_equal(state.vm_grouped, np.diff(state.pair_ptr) > 0)
    keys = np.stack([snap.vm_cpu.astype(np.float64), snap.vm_mem, snap.vm_double.astype(np.float64)], 1)
    types, inverse = np.unique(keys, axis=0, return_inverse=True)
    np.testing.assert_array_equal(state.vm_type, inverse.ravel())
    np.testing.assert_array_equal(np.stack([state.type_cpu, state.type_mem, state.type_double], 1), types)
    for got, expected in zip(snap.usage(), _reference_usage(snap), strict=True):
        assert got.dtype == expected.dtype
        np.testing.assert_array_equal(got, expected)


def test_state_without_groups() -> None:
    snap = generate_snapshot("tiny", np.random.default_rng(0))
    snap = dataclasses.replace(snap, group_members=[], group_granularity=np.zeros(0, dtype=np.int64))
    state = ClusterState(snap)
    assert state.pair_v.size == state.hpair_v.size == 0
    np.testing.assert_array_equal(state.pair_ptr, np.zeros(snap.n_vms + 1, dtype=np.int64))
    assert not state.vm_grouped.any()


def test_usage_keeps_numpy_semantics_off_the_kernel() -> None:
    snap = generate_snapshot("small", np.random.default_rng(4))
    rng = np.random.default_rng(5)
    # fractional memory sums: the kernel adds VM after VM as np.add.at does, bit for bit
    snap.vm_mem = snap.vm_mem * rng.uniform(0.3, 1.0, snap.n_vms)
    for got, expected in zip(snap.usage(), _reference_usage(snap), strict=True):
        np.testing.assert_array_equal(got, expected)
    # a host index from the end (numpy wraps it) and one past the end (numpy refuses it)
    wrapped = dataclasses.replace(snap, vm_pm=np.where(snap.vm_pm == snap.n_pms - 1, -1, snap.vm_pm))
    for got, expected in zip(wrapped.usage(), _reference_usage(wrapped), strict=True):
        np.testing.assert_array_equal(got, expected)
    beyond = dataclasses.replace(snap, vm_pm=snap.vm_pm.copy())
    beyond.vm_pm[3] = snap.n_pms
    with pytest.raises(IndexError):
        beyond.usage()


def test_assembled_groups_are_sorted_present_members_in_file_order() -> None:
    """Groups as assemble_snapshot reads them: members present in the snapshot, sorted by VM
    index, groups of fewer than two present members dropped, in the order given."""
    ids = [f"v{i}" for i in range(6)]
    groups = {
        (GRANULARITY_HOST, frozenset({"v4", "v1", "gone"})): None,
        (GRANULARITY_RACK, ("v5",)): None,
        (GRANULARITY_HOST, ("gone", "also gone")): None,
        (GRANULARITY_RACK, ("v3", "v0", "v2")): None,
        (GRANULARITY_HOST, ()): None,
    }
    snap = assemble_snapshot(
        pm_ids=["a", "b", "c", "d"],
        cpu_total=[44] * 8,
        mem_total=[1e5] * 8,
        free_cpu=[None] * 8,
        free_mem=[None] * 8,
        active=[True] * 4,
        racks=[0, 1, 2, 3],
        groups=groups,
        vm_index={v: i for i, v in enumerate(ids)},
        vm_cpu=[1] * 6,
        vm_mem=[1.0] * 6,
        vm_double=[False] * 6,
        vm_pm=[0, 1, 2, 3, 0, 1],
        vm_place=[0] * 6,
        vm_mig=[True] * 6,
        source="s",
        name="s",
    )
    assert [m.tolist() for m in snap.group_members] == [[1, 4], [0, 2, 3]]
    assert snap.group_granularity.tolist() == [GRANULARITY_HOST, GRANULARITY_RACK]
    assert all(m.dtype == np.int64 for m in snap.group_members)


@pytest.mark.parametrize(
    "ids",
    [
        ["i-3tma9pj12i4e8i4qpq7f", "i-3tma9pj12i4e8i4qpq7g"],
        ["vm_1", "vm_10", "vm_2"],
        ["", ""],
        [],
        ["a\x00", "bc"],
        ["\u00e9t\u00e9", "h\u00f4t", "\U0001f600ab"],
        ["\ud800a", "bc"],  # a lone surrogate (JSON allows the escape)
    ],
)
def test_id_arrays_are_numpys_own(ids: list[str]) -> None:
    got, expected = _str_array(ids), np.array(ids, dtype=str)
    assert got.dtype == expected.dtype and got.shape == expected.shape
    assert got.tobytes() == expected.tobytes()
    assert got.flags.writeable and got.flags.c_contiguous
