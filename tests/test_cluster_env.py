"""VM rescheduling env: loader, generator, masks, invariants (hypothesis), gymnasium/sb3 checks."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infragym.envs.cluster import (
    PRESETS,
    ClusterState,
    SnapshotError,
    VMRescheduleEnv,
    generate_snapshot,
    load_vmr2l_snapshot,
)
from infragym.envs.cluster.generator import VM_SIZES
from infragym.envs.cluster.snapshot import GRANULARITY_HOST, PLACE_BOTH, parse_vmr2l_snapshot

from .conftest import SHARED_DATA

REAL = SHARED_DATA / "vm_snapshots" / "vmr2l_c1_2022-03-28.json"
LARGE = SHARED_DATA / "vm_snapshots" / "vmr2l_instance_3000vm.json"
needs_data = pytest.mark.skipif(not REAL.is_file(), reason="shared VMR2L snapshots not present")


def _host(node_id: str, free: tuple[int, int] = (44, 44), status: str = "ACTIVE") -> dict:
    return {
        "node_id": node_id,
        "status": status,
        "node_cpu": 88,
        "node_mem_mb": 368776.0,
        "rack_id": 1,
        "numa": [
            {"node": n, "total_cpu": 44, "free_cpu": free[n], "memory_huge_total_mb": 184388.0,
             "memory_huge_free_mb": 184388.0 - 2048.0 * (44 - free[n])}
            for n in (0, 1)
        ],
    }  # fmt: skip


def _vm(vid: str, host: str, cpu: int, node: int = 0) -> dict:
    return {
        "instance_id": vid,
        "instance_type": "t",
        "host_id": host,
        "numa": [{"node": node, "cpu": cpu, "mem_mb": 2048.0 * cpu}],
        "allow_migration": 1,
    }


def _write(tmp_path: Path, hosts: list[dict], vms: list[dict], sets: list[dict] | None = None) -> Path:
    data = {
        "cluster_list": [
            {"cluster_name": "c", "host_info": hosts, "vm_instance": vms,
             "other_requirement": {"deployment_set": sets or []}}
        ]
    }  # fmt: skip
    path = tmp_path / "snap.json"
    path.write_text(json.dumps(data))
    return path


def test_tiny_fixture_loads_and_fragment_rate_is_exact(tmp_path: Path) -> None:
    path = _write(
        tmp_path, [_host("pm_a", (36, 40)), _host("pm_b", (44, 44))], [_vm("v1", "pm_a", 8), _vm("v2", "pm_a", 4, 1)]
    )
    snap = load_vmr2l_snapshot(path)
    state = ClusterState(snap)
    # free: 36, 40, 44, 44 -> mod 16: 4, 8, 12, 12 -> 36 / 164
    assert state.fragment_rate() == pytest.approx(36 / 164)
    assert snap.n_pms == 2 and snap.n_vms == 2


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda h, v: v.append(_vm("ghost", "pm_zz", 4)), "VM ghost.*pm_zz"),
        (lambda h, v: v.append(_vm("big", "pm_a", 40)), "PM pm_a NUMA node 0 is over-committed"),
        (lambda h, v: v[0]["numa"][0].update(cpu=-4), r"VM v1\) numa\[0\]: field 'cpu' = -4 is out of range"),
        (lambda h, v: v[0].pop("allow_migration"), "VM v1.*missing field 'allow_migration'"),
        (lambda h, v: h[0]["numa"][0].pop("total_cpu"), "PM pm_a.*missing field 'total_cpu'"),
        (lambda h, v: h[0].update(status="RETIRED"), "PM pm_a.*'status' = 'RETIRED', expected one of ACTIVE"),
    ],
)
def test_bad_snapshots_are_refused_naming_the_culprit(tmp_path: Path, mutate, message: str) -> None:
    hosts = [_host("pm_a", (36, 44)), _host("pm_b")]
    vms = [_vm("v1", "pm_a", 8)]
    mutate(hosts, vms)
    with pytest.raises(SnapshotError, match=message):
        load_vmr2l_snapshot(_write(tmp_path, hosts, vms))


def test_violated_anti_affinity_is_refused(tmp_path: Path) -> None:
    hosts = [_host("pm_a", (36, 40)), _host("pm_b")]
    vms = [_vm("v1", "pm_a", 8), _vm("v2", "pm_a", 4, 1)]
    with pytest.raises(SnapshotError, match=r"anti-affinity.*v1.*v2"):
        load_vmr2l_snapshot(_write(tmp_path, hosts, vms, [{"granularity": "host", "data": ["v1", "v2"]}]))


@needs_data
def test_real_snapshot_matches_the_paper_cluster() -> None:
    snap = load_vmr2l_snapshot(REAL)
    assert (snap.n_pms, snap.n_vms, int(snap.pm_active.sum())) == (280, 2089, 279)
    assert (snap.pm_cpu_total == 44).all()
    assert 0 < (~snap.vm_migratable).sum() < 0.1 * snap.n_vms
    state = ClusterState(snap)
    assert state.fragment_rate() == pytest.approx(state.fragment_rate_from_scratch())
    large = load_vmr2l_snapshot(LARGE)
    assert (large.n_pms, large.n_vms) == (1264, 3000)
    assert (large.group_granularity != GRANULARITY_HOST).any()  # rack anti-affinity present


def _reference_arrays(data: dict) -> dict[str, np.ndarray]:
    """The real snapshot read naively, record by record (what the parser must give)."""
    hosts = [h for c in data["cluster_list"] for h in c["host_info"]]
    vms = [v for c in data["cluster_list"] for v in c["vm_instance"]]
    index = {h["node_id"]: i for i, h in enumerate(hosts)}
    racks: dict[str, int] = {}
    numa = [sorted(h["numa"], key=lambda n: n["node"]) for h in hosts]
    return {
        "pm_ids": np.array([h["node_id"] for h in hosts]),
        "pm_cpu_total": np.array([[n["total_cpu"] for n in ns] for ns in numa], dtype=np.int64),
        "pm_mem_total": np.array([[n["memory_huge_total_mb"] for n in ns] for ns in numa], dtype=np.float64),
        "pm_active": np.array([h["status"] == "ACTIVE" for h in hosts]),
        "pm_rack": np.array([racks.setdefault(str(h["rack_id"]), len(racks)) for h in hosts], dtype=np.int64),
        "vm_ids": np.array([v["instance_id"] for v in vms]),
        "vm_cpu": np.array([v["numa"][0]["cpu"] for v in vms], dtype=np.int64),
        "vm_mem": np.array([v["numa"][0]["mem_mb"] for v in vms], dtype=np.float64),
        "vm_double": np.array([len(v["numa"]) == 2 for v in vms]),
        "vm_pm": np.array([index[v["host_id"]] for v in vms], dtype=np.int64),
        "vm_placement": np.array([PLACE_BOTH if len(v["numa"]) == 2 else v["numa"][0]["node"] for v in vms]),
        "vm_migratable": np.array([bool(v["allow_migration"]) for v in vms]),
    }


@needs_data
def test_real_snapshot_arrays_and_state_match_a_naive_reading() -> None:
    """The parser's per-item fast path and the vectorised state construction give exactly what
    a record-by-record reading and the per-group meshgrid give."""
    for path in (REAL, LARGE):
        data = json.loads(path.read_text())
        snap = parse_vmr2l_snapshot(data)
        for field, expected in _reference_arrays(data).items():
            got = getattr(snap, field)
            assert got.dtype == expected.dtype or field == "vm_placement", field
            np.testing.assert_array_equal(got, expected, err_msg=field)
        ids = {str(v): i for i, v in enumerate(snap.vm_ids)}
        groups = {
            (GRANULARITY_HOST if s["granularity"] == "host" else 1, tuple(sorted(set(map(str, s["data"])))))
            for c in data["cluster_list"]
            for s in c["other_requirement"]["deployment_set"]
        }
        expected_groups = {(k, tuple(sorted(ids[m] for m in ms if m in ids))) for k, ms in groups}
        pairs = zip(snap.group_granularity, snap.group_members, strict=True)
        got_groups = {(int(k), tuple(m.tolist())) for k, m in pairs}
        assert got_groups == {g for g in expected_groups if len(g[1]) >= 2}
        state = ClusterState(snap)
        pv, pu, pk = [], [], []
        for g, members in enumerate(snap.group_members):
            a, b = np.meshgrid(members, members, indexing="ij")
            pv.append(a[a != b])
            pu.append(b[a != b])
            pk.append(np.full((a != b).sum(), snap.group_granularity[g]))
        pv, pu, pk = np.concatenate(pv), np.concatenate(pu), np.concatenate(pk)
        order = np.lexsort((pu, pv))
        for got, expected in ((state.pair_v, pv), (state.pair_u, pu), (state.pair_kind, pk)):
            assert got.dtype == expected.dtype
            np.testing.assert_array_equal(got, expected[order])
        keys = np.stack([snap.vm_cpu.astype(np.float64), snap.vm_mem, snap.vm_double.astype(np.float64)], 1)
        types, inverse = np.unique(keys, axis=0, return_inverse=True)
        np.testing.assert_array_equal(state.vm_type, inverse.ravel())
        np.testing.assert_array_equal(np.stack([state.type_cpu, state.type_mem, state.type_double], 1), types)


class _Record(dict):
    """A dict subclass: off the parser's fast path, still accepted."""


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        # each error names the record (index and id) and the field
        (lambda h, v, s: h.append(_host("pm_a")), r"host_info\[2\] \(PM pm_a\): duplicate PM id"),
        (lambda h, v, s: h[1]["numa"].reverse() or h[1].pop("status"), r"\(PM pm_b\): missing field 'status'"),
        (lambda h, v, s: v.append(_vm("v1", "pm_b", 4)), r"vm_instance\[1\] \(VM v1\): duplicate VM id"),
        (lambda h, v, s: v.append(_vm("v9", "pm_zz", 4)), r"\(VM v9\): host_id 'pm_zz' is not a PM"),
        (lambda h, v, s: v[0]["numa"][0].update(node=2), r"\(VM v1\) numa\[0\]: field 'node' = 2 is out of range"),
        (lambda h, v, s: v[0]["numa"][0].update(cpu="4x"), r"\(VM v1\) numa\[0\]: field 'cpu' must be a whole number"),
        (
            lambda h, v, s: v.append(
                {
                    **_vm("v3", "pm_b", 4),
                    "numa": [{"node": 0, "cpu": 4, "mem_mb": 1.0}, {"node": 1, "cpu": 2, "mem_mb": 1.0}],
                }
            ),
            r"\(VM v3\): a double-NUMA VM must use equal halves",
        ),
        (
            lambda h, v, s: (
                v.extend([_vm("v4", "pm_b", 4), _vm("v5", "pm_b", 4, 1)])
                or s.extend(
                    [{"granularity": "host", "data": ["v1", "v4"]}, {"granularity": "host", "data": ["v4", "v5"]}]
                )
            ),
            r"anti-affinity group 1 \(host\) already violated by VMs .*v4.*v5",
        ),
    ],
)
def test_parser_fast_path_keeps_the_first_error(tmp_path: Path, mutate, message: str) -> None:
    hosts = [_host("pm_a", (36, 44)), _host("pm_b")]
    vms = [_vm("v1", "pm_a", 8)]
    sets: list[dict] = []
    mutate(hosts, vms, sets)
    data = json.loads(_write(tmp_path, hosts, vms, sets).read_text())
    with pytest.raises((SnapshotError, ValueError), match=message):
        parse_vmr2l_snapshot(data)


def test_parser_accepts_what_the_fast_path_leaves_to_the_checks(tmp_path: Path) -> None:
    """Reversed NUMA lists, dict subclasses, integral float sizes and int ids read as the usual form."""
    hosts = [_host("pm_a", (36, 40)), _host("pm_b")]
    vms = [_vm("v1", "pm_a", 8), _vm("v2", "pm_a", 4, 1)]
    data = json.loads(_write(tmp_path, hosts, vms).read_text())
    reference = parse_vmr2l_snapshot(copy.deepcopy(data))
    cluster = data["cluster_list"][0]
    cluster["host_info"][0]["numa"].reverse()
    cluster["host_info"][1] = _Record(cluster["host_info"][1])
    cluster["vm_instance"][0]["numa"][0].update(cpu=8.0, node=0.0)
    cluster["vm_instance"][1] = _Record(cluster["vm_instance"][1])
    snap = parse_vmr2l_snapshot(data)
    for field, value in reference.__dict__.items():
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(getattr(snap, field), value, err_msg=field)


@pytest.mark.parametrize("preset", ["small", "medium", "large"])
def test_generator_is_calibrated(preset: str) -> None:
    snap = generate_snapshot(preset, np.random.default_rng(3))
    spec = PRESETS[preset]
    assert (snap.n_pms, snap.n_vms) == (spec.n_pms, spec.n_vms)
    sizes = np.where(snap.vm_double, 2 * snap.vm_cpu, snap.vm_cpu)
    assert set(np.unique(sizes)) <= set(VM_SIZES.tolist())
    allocated = 1 - ClusterState(snap).free_sum / snap.pm_cpu_total.sum()
    lo, hi = spec.cpu_allocated
    assert lo - 0.005 <= allocated <= hi + 0.005
    if preset != "small":
        assert 0.80 <= (sizes <= 16).mean() <= 0.95  # ~88% at <= 16 cores
    assert (snap.vm_double[sizes > 44]).all()


def _random_walk(state: ClusterState, rng: np.random.Generator, steps: int) -> None:
    used_before = state.snapshot.vm_cpu.sum()
    state.observation()  # from here on the observation is updated incrementally
    for step in range(steps):
        vm_mask = state.vm_mask()
        # the VM mask is exact: a VM is selectable iff it has a destination
        assert np.array_equal(vm_mask, state.full_mask().any(1))
        if not vm_mask.any():
            break
        vms = np.flatnonzero(vm_mask)
        vm = int(vms[rng.integers(vms.size)])
        dests = np.flatnonzero(state.placement_mask(vm))
        assert np.array_equal(state.placement_mask(vm), state.full_mask()[vm])
        dest = int(dests[rng.integers(dests.size)])
        assert state.is_feasible(vm, dest)
        before = state.fragment_rate()
        reward = state.migrate(vm, dest)
        assert reward == pytest.approx(before - state.fragment_rate())
        # incremental FR == FR recomputed from the placements alone
        assert state.fragment_rate() == pytest.approx(state.fragment_rate_from_scratch(), abs=1e-12)
        state.check_invariants()  # no NUMA node over-committed, free counters exact
        if step % 5 == 0:  # incrementally updated observation == observation built from scratch
            fresh = ClusterState(state.snapshot)
            fresh.free_cpu, fresh.free_mem = state.free_cpu.copy(), state.free_mem.copy()
            np.testing.assert_allclose(state.observation()["pm"], fresh.observation()["pm"], rtol=1e-6)
        # no VM lost or duplicated: every VM on exactly one active host, demand conserved
        assert state.vm_pm.shape == (state.n_vms,) and state.pm_active[state.vm_pm].all()
        assert state.snapshot.vm_cpu.sum() == used_before
        for g, members in enumerate(state.snapshot.group_members):
            hosts = state.vm_pm[members]
            dom = hosts if state.snapshot.group_granularity[g] == GRANULARITY_HOST else state.pm_rack[hosts]
            assert len(set(dom.tolist())) == len(dom), "anti-affinity violated"


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1), preset=st.sampled_from(["tiny", "small"]), steps=st.integers(1, 40))
def test_invariants_hold_under_random_migrations(seed: int, preset: str, steps: int) -> None:
    rng = np.random.default_rng(seed)
    state = ClusterState(generate_snapshot(preset, rng))
    _random_walk(state, rng, steps)
    state.reset()
    assert state.fragment_rate() == pytest.approx(state.fragment_rate_from_scratch())


@needs_data
def test_invariants_on_real_snapshots_with_rack_groups() -> None:
    rng = np.random.default_rng(0)
    for path in (REAL, LARGE):
        _random_walk(ClusterState(load_vmr2l_snapshot(path)), rng, 15)


def test_env_rewards_terminate_and_refuse_infeasible() -> None:
    env = VMRescheduleEnv(preset="small", max_migrations=5, resample_on_reset=False, strict=True)
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    total, steps, done = 0.0, 0, False
    start = info["fragment_rate"]
    while not done:
        vm = int(np.flatnonzero(info["action_mask"])[0])
        dest = int(np.flatnonzero(env.placement_mask(vm))[0])
        obs, reward, done, truncated, info = env.step(np.array([vm, dest]))
        assert not truncated and env.observation_space.contains(obs)
        total += reward
        steps += 1
    assert steps == 5 and info["migrations"] == 5
    assert total == pytest.approx(start - info["fragment_rate"])
    env.reset()
    vm = int(np.flatnonzero(env.vm_mask())[0])
    own = int(env.state.vm_pm[vm]) * 3 + int(env.state.vm_placement[vm])
    with pytest.raises(ValueError, match="infeasible migration"):
        env.step(np.array([vm, own]))  # a no-op is not a migration
    lenient = VMRescheduleEnv(preset="small", max_migrations=5)
    lenient.reset(seed=0)
    fr = lenient.fragment_rate()
    _, reward, _, _, info = lenient.step(np.array([vm, own]))
    assert info["invalid_action"] and reward == 0.0 and info["migrations"] == 0 and lenient.fragment_rate() == fr


def test_split_vms_only_take_both_nodes() -> None:
    state = ClusterState(generate_snapshot("small", np.random.default_rng(1)))
    split = np.flatnonzero(state.vm_double & state.vm_movable)
    single = np.flatnonzero(~state.vm_double & state.vm_movable)
    full = state.full_mask().reshape(state.n_vms, -1, 3)
    assert not full[split][:, :, :2].any() and not full[single][:, :, PLACE_BOTH].any()


def test_passes_gymnasium_and_sb3_checkers() -> None:
    from gymnasium.utils.env_checker import check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    for mode in ("two_stage", "flat"):
        env = VMRescheduleEnv(preset="tiny", max_migrations=5, action_mode=mode)
        check_env(env, skip_render_check=True)
        sb3_check_env(VMRescheduleEnv(preset="tiny", max_migrations=5, action_mode=mode), warn=False)


@needs_data
def test_registered_env_takes_a_snapshot_path() -> None:
    env = gym.make("infragym/VMReschedule-v0", snapshot_path=str(REAL), max_migrations=3)
    obs, info = env.reset(seed=0)
    assert obs["vm"].shape == (2089, 8) and obs["pm"].shape == (280, 8)
    assert info["fragment_rate"] == pytest.approx(ClusterState(load_vmr2l_snapshot(REAL)).fragment_rate())
    env.close()


def test_maskable_ppo_trains_on_the_flat_action_unchanged() -> None:
    from sb3_contrib import MaskablePPO
    from sb3_contrib.common.maskable.evaluation import evaluate_policy

    env = VMRescheduleEnv(preset="tiny", max_migrations=4, action_mode="flat")
    model = MaskablePPO("MultiInputPolicy", env, n_steps=32, batch_size=32, n_epochs=1, seed=0, verbose=0)
    model.learn(64)
    mean_reward, _ = evaluate_policy(model, copy.deepcopy(env), n_eval_episodes=2, warn=False)
    assert np.isfinite(mean_reward)
