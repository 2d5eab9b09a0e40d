"""VM2RL on real clusters (issue 19) and the VMR2L loader's and env's hardening (issue 21):
free fields informational, host statuses, the loader's refusals by name, a fuzz harness, resets
of a real cluster, the env's budget and action checks, AsyncVectorEnv training with resume."""

from __future__ import annotations

import copy
import json
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infragym.config import default_data_dir
from infragym.envs.cluster import ClusterState, SnapshotError, VMRescheduleEnv, generate_snapshot
from infragym.envs.cluster.reset import reset_seeds, reset_snapshot
from infragym.envs.cluster.snapshot import (
    GRANULARITY_HOST,
    PLACE_BOTH,
    ClusterSnapshot,
    SnapshotWarning,
    load_vmr2l_snapshot,
    parse_vmr2l_snapshot,
    snapshot_to_vmr2l,
)

REAL = Path(default_data_dir()) / "vm_snapshots" / "vmr2l_c1_2022-03-28.json"
LARGE = Path(default_data_dir()) / "vm_snapshots" / "vmr2l_instance_3000vm.json"
needs_data = pytest.mark.skipif(not REAL.is_file(), reason="shared VMR2L snapshots not present (INFRAGYM_DATA)")


def _host(node_id: str, free: tuple[int, int] = (44, 44), status: str = "ACTIVE") -> dict:
    return {
        "node_id": node_id,
        "status": status,
        "rack_id": "r1",
        "numa": [
            {"node": n, "total_cpu": 44, "free_cpu": free[n], "memory_huge_total_mb": 184388.0,
             "memory_huge_free_mb": 184388.0 - 2048.0 * (44 - free[n])}
            for n in (0, 1)
        ],
    }  # fmt: skip


def _vm(vid: str, host: str, cpu: int, node: int = 0) -> dict:
    return {
        "instance_id": vid,
        "host_id": host,
        "numa": [{"node": node, "cpu": cpu, "mem_mb": 2048.0 * cpu}],
        "allow_migration": True,
    }


def _tiny() -> dict:
    hosts = [_host("pm_a", (36, 40)), _host("pm_b"), _host("pm_c")]
    vms = [_vm("v1", "pm_a", 8), _vm("v2", "pm_a", 4, 1)]
    sets = [{"granularity": "host", "data": ["v1", "v2x"]}]
    return {"cluster_list": [{"host_info": hosts, "vm_instance": vms, "other_requirement": {"deployment_set": sets}}]}


def _load(tmp_path: Path, data: Any) -> ClusterSnapshot:
    path = tmp_path / "snap.json"
    path.write_text(json.dumps(data))
    return load_vmr2l_snapshot(path)


def _same_state(a: ClusterSnapshot, b: ClusterSnapshot) -> None:
    for name, value in a.__dict__.items():
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(getattr(b, name), value, err_msg=name)
    assert [m.tolist() for m in a.group_members] == [m.tolist() for m in b.group_members]
    assert ClusterState(a).fragment_rate() == ClusterState(b).fragment_rate()


# --------------------------------------------------------------------------- issue 19, part 1
def test_free_fields_are_informational_and_mismatches_reported(tmp_path: Path) -> None:
    reference = _load(tmp_path, _tiny())
    assert reference.info["free_field_mismatches"] == 0
    data = _tiny()
    data["cluster_list"][0]["host_info"][0]["numa"][0]["free_cpu"] = 30  # the VMs leave 36
    data["cluster_list"][0]["host_info"][1]["numa"][1]["memory_huge_free_mb"] = 1.0
    with pytest.warns(SnapshotWarning, match=r"2 NUMA node\(s\) disagree.*worst: PM pm_a, 6 cores"):
        snap = _load(tmp_path, data)
    assert snap.info["free_field_mismatches"] == 2 and snap.info["free_field_worst_host"] == "pm_a"
    _same_state(reference, snap)
    for host in data["cluster_list"][0]["host_info"]:  # absent free fields: nothing to compare
        for node in host["numa"]:
            del node["free_cpu"], node["memory_huge_free_mb"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        snap = _load(tmp_path, data)
    assert snap.info["free_fields_missing"] == 12
    _same_state(reference, snap)


def test_every_vmr2l_host_status_is_accepted_and_only_active_hosts_count(tmp_path: Path) -> None:
    data = _tiny()
    hosts = data["cluster_list"][0]["host_info"]
    hosts[1]["status"] = "OUTAGE"
    hosts[2]["status"] = "disabled"
    data["cluster_list"][0]["vm_instance"].append(_vm("v3", "pm_b", 4))  # a VM on a host in outage stays put
    with pytest.warns(SnapshotWarning, match="PM pm_b"):  # its free fields still say 44 free
        snap = _load(tmp_path, data)
    assert snap.pm_active.tolist() == [True, False, False]
    state = ClusterState(snap)
    assert state.fragment_rate() == pytest.approx((36 % 16 + 40 % 16) / 76)  # pm_a only
    assert not state.vm_movable[2] and not state.vm_mask().any()  # no ACTIVE destination for v1, v2
    hosts[0]["status"] = "RETIRED"
    with pytest.raises(SnapshotError, match=r"host_info\[0\] \(PM pm_a\): field 'status' = 'RETIRED'"):
        _load(tmp_path, data)


def _perturb_free_fields(data: dict, rng: np.random.Generator) -> dict:
    data = copy.deepcopy(data)
    for host in data["cluster_list"][0]["host_info"]:
        for node in host["numa"]:
            kind = rng.integers(4)
            if kind == 0:
                node["free_cpu"] = int(rng.integers(-50, 100))
            elif kind == 1:
                node["memory_huge_free_mb"] = float(rng.uniform(-1e5, 1e6))
            elif kind == 2:
                node.pop("free_cpu", None)
    return data


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1), preset=st.sampled_from(["tiny", "small"]))
def test_inconsistent_free_fields_load_to_the_same_state(seed: int, preset: str) -> None:
    """Snapshots written with inconsistent free fields (VMR2L's writer's, or random ones) load
    to the same state, with the same fragment rate, as the consistent ones."""
    rng = np.random.default_rng(seed)
    snap = generate_snapshot(preset, rng)
    consistent = parse_vmr2l_snapshot(snapshot_to_vmr2l(snap))
    assert consistent.info["free_field_mismatches"] == 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SnapshotWarning)
        for data in (snapshot_to_vmr2l(snap, free_fields="vmr2l"), _perturb_free_fields(snapshot_to_vmr2l(snap), rng)):
            _same_state(consistent, parse_vmr2l_snapshot(data))


@needs_data
def test_real_snapshots_load_and_vmr2l_written_copies_load_the_same() -> None:
    for path in (REAL, LARGE):
        snap = load_vmr2l_snapshot(path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SnapshotWarning)
            again = parse_vmr2l_snapshot(snapshot_to_vmr2l(snap, free_fields="vmr2l"))
        assert again.info["free_field_mismatches"] > 0  # node 1's memory copied from node 0
        _same_state(snap, again)
    assert ClusterState(load_vmr2l_snapshot(REAL)).fragment_rate() == pytest.approx(0.977044, abs=1e-6)


# --------------------------------------------------------------------------- issue 21: the cases
def _vm0(data: dict) -> dict:
    return data["cluster_list"][0]["vm_instance"][0]


CASES = [
    ("allow_migration 'false'", lambda d: _vm0(d).update(allow_migration="false"), r"VM v1\): field 'allow_migration'"),
    (
        "allow_migration '0'",
        lambda d: _vm0(d).update(allow_migration="0"),
        r"field 'allow_migration' must be true/false",
    ),
    ("allow_migration 'no'", lambda d: _vm0(d).update(allow_migration="no"), r"field 'allow_migration'"),
    ("allow_migration 2", lambda d: _vm0(d).update(allow_migration=2), r"field 'allow_migration'"),
    ("NaN memory", lambda d: _vm0(d)["numa"][0].update(mem_mb=float("nan")), r"VM v1\) numa\[0\]: field 'mem_mb'"),
    ("inf memory", lambda d: _vm0(d)["numa"][0].update(mem_mb=float("inf")), r"field 'mem_mb' = inf"),
    (
        "inf host memory",
        lambda d: d["cluster_list"][0]["host_info"][1]["numa"][0].update(memory_huge_total_mb=float("inf")),
        r"PM pm_b\) numa node 0: field 'memory_huge_total_mb'",
    ),
    ("fractional CPU", lambda d: _vm0(d)["numa"][0].update(cpu=4.5), r"field 'cpu' must be a whole number, got 4.5"),
    ("bool CPU", lambda d: _vm0(d)["numa"][0].update(cpu=True), r"field 'cpu' must be a whole number, got True"),
    ("empty cluster", lambda d: d["cluster_list"][0].update(host_info=[], vm_instance=[]), r"no ACTIVE host"),
    ("no VM", lambda d: d["cluster_list"][0].update(vm_instance=[]), r"no VM"),
    (
        "2^40 cores",
        lambda d: d["cluster_list"][0]["host_info"][2]["numa"][0].update(total_cpu=2**40),
        r"PM pm_c\) numa node 0: field 'total_cpu' = 1099511627776 is out of range",
    ),
    (
        "deployment_set data as a string",
        lambda d: d["cluster_list"][0]["other_requirement"]["deployment_set"][0].update(data="v1,v2"),
        r"deployment_set\[0\]: field 'data' must be a list",
    ),
    ("TypeError: cpu a list", lambda d: _vm0(d)["numa"][0].update(cpu=[4]), r"numa\[0\]: field 'cpu' must be a whole"),
    ("TypeError: numa a number", lambda d: _vm0(d).update(numa=5), r"\(VM v1\): field 'numa' must be a list"),
    (
        "AttributeError: cluster a list",
        lambda d: d.update(cluster_list=[[1]]),
        r"cluster_list\[0\]: expected an object",
    ),
    ("AttributeError: sets an int", lambda d: d["cluster_list"][0].update(other_requirement=3), r"other_requirement"),
    ("OverflowError: CPU 1e308", lambda d: _vm0(d)["numa"][0].update(cpu=1e308), r"field 'cpu' = 1000000000"),
    ("id a mapping", lambda d: _vm0(d).update(instance_id={"a": 1}), r"field 'instance_id' must be a string id"),
    ("host status null", lambda d: d["cluster_list"][0]["host_info"][0].update(status=None), r"'status' = None"),
]


@pytest.mark.parametrize(("case", "mutate", "message"), CASES, ids=[c[0] for c in CASES])
def test_bad_snapshot_is_refused_by_name(tmp_path: Path, case: str, mutate, message: str) -> None:
    data = _tiny()
    mutate(data)
    path = tmp_path / "snap.json"
    path.write_text(json.dumps(data))
    with pytest.raises(SnapshotError, match=message) as err:
        load_vmr2l_snapshot(path)
    assert str(path) in str(err.value)


def test_allow_migration_accepts_booleans_and_0_1(tmp_path: Path) -> None:
    for value, expected in ((True, True), (False, False), (1, True), (0, False)):
        data = _tiny()
        _vm0(data)["allow_migration"] = value
        assert bool(_load(tmp_path, data).vm_migratable[0]) is expected


def test_bad_bytes_and_deep_nesting_are_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "snap.json"
    path.write_bytes(json.dumps(_tiny()).encode()[:40] + b"\xff\xfe" + b"}")
    with pytest.raises(SnapshotError, match=r"snap.json: not UTF-8 text \(byte 40"):
        load_vmr2l_snapshot(path)
    path.write_text('{"cluster_list": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(SnapshotError, match=r"snap.json: JSON nested too deep"):
        load_vmr2l_snapshot(path)
    nested: Any = 4
    for _ in range(50_000):
        nested = [nested]
    data = _tiny()
    _vm0(data)["numa"][0]["cpu"] = nested
    with pytest.raises(SnapshotError, match=r"field 'cpu' must be a whole number"):
        parse_vmr2l_snapshot(data, source="request")
    path.write_text(json.dumps(_tiny())[:-30])
    with pytest.raises(SnapshotError, match=r"snap.json: not JSON \(line 1"):
        load_vmr2l_snapshot(path)


# --------------------------------------------------------------------------- fuzz harness
MUTANTS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["", "x", "false", "0", "no", "4", "ACTIVE", "OUTAGE", "v1", "pm_a", "\udcff", "host"]),
    st.just([]),
    st.just({}),
    st.lists(st.integers(0, 3), max_size=3),
    st.recursive(st.integers(0, 2), lambda inner: st.lists(inner, max_size=2), max_leaves=6),
)


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out.extend(_paths(v, (*prefix, k)))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out.extend(_paths(v, (*prefix, i)))
    return out


def _mutated(data: dict, draw: Any) -> dict:
    data = copy.deepcopy(data)
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(data)[1:]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = data
        for key in path[:-1]:
            parent = parent[key]
        action = draw(st.sampled_from(["replace", "delete", "duplicate"]))
        if action == "delete":
            del parent[path[-1]]
        elif action == "duplicate" and isinstance(parent, list):
            parent.append(copy.deepcopy(parent[path[-1]]))
        else:
            parent[path[-1]] = draw(MUTANTS)
    return data


def _assert_valid(snap: ClusterSnapshot) -> None:
    """The loader's invariants: a physically possible cluster the simulator can run."""
    snap.validate()
    assert snap.n_vms > 0 and snap.pm_active.any()
    assert np.isfinite(snap.vm_mem).all() and (snap.vm_cpu > 0).all()
    assert snap.vm_migratable.dtype == bool and len(set(snap.vm_ids.tolist())) == snap.n_vms
    state = ClusterState(snap)
    assert 0.0 <= state.fragment_rate() <= 1.0
    assert state.fragment_rate() == pytest.approx(state.fragment_rate_from_scratch())
    state.check_invariants()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), how=st.sampled_from(["json", "json", "json", "truncate", "bytes"]))
def test_fuzzed_snapshots_load_valid_or_fail_with_the_loader_error(tmp_path_factory, data, how: str) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "snap.json"
    base = _tiny()
    if how == "json":
        text = json.dumps(_mutated(base, data.draw), allow_nan=True)
        path.write_bytes(text.encode("utf-8", "surrogatepass"))
    elif how == "truncate":
        text = json.dumps(base)
        path.write_text(text[: data.draw(st.integers(0, len(text) - 1))])
    else:
        raw = bytearray(json.dumps(base).encode())
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0x80, 0xFF))
        path.write_bytes(bytes(raw))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SnapshotWarning)
            snap = load_vmr2l_snapshot(path)
    except SnapshotError as err:  # the loader's own ValueError subclass, naming the file
        assert isinstance(err, ValueError) and str(path) in str(err)
        return
    _assert_valid(snap)


# --------------------------------------------------------------------------- resets (issue 19, part 2)
def _same_cluster(a: ClusterSnapshot, b: ClusterSnapshot) -> None:
    for name in ("pm_ids", "pm_cpu_total", "pm_mem_total", "pm_active", "vm_ids", "vm_cpu", "vm_mem", "vm_double"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    np.testing.assert_array_equal(a.vm_migratable, b.vm_migratable)


def test_resets_keep_the_cluster_place_every_vm_anew_and_are_seeded() -> None:
    base = generate_snapshot("small", np.random.default_rng(4))
    one = reset_snapshot(base, np.random.default_rng(1))
    again = reset_snapshot(base, np.random.default_rng(1))
    other = reset_snapshot(base, np.random.default_rng(3))
    _same_cluster(base, one)
    one.validate()  # capacity and anti-affinity hold
    assert (one.vm_double == (one.vm_placement == PLACE_BOTH)).all()
    np.testing.assert_array_equal(one.vm_pm, again.vm_pm)
    assert (one.vm_pm != other.vm_pm).mean() > 0.5 and (one.vm_pm != base.vm_pm).mean() > 0.5
    for g, members in enumerate(one.group_members):
        if one.group_granularity[g] == GRANULARITY_HOST:
            assert len(set(one.vm_pm[members].tolist())) == len(members)
    train, test = reset_seeds(0, 500, split="train"), reset_seeds(0, 500, split="test")
    assert not set(train) & set(test) and len(set(train)) == 500


@needs_data
def test_resets_of_the_real_cluster_start_in_the_papers_fragment_range() -> None:
    base = load_vmr2l_snapshot(REAL)
    frs = []
    for seed in reset_seeds(0, 6, split="test"):
        reset = reset_snapshot(base, np.random.default_rng(seed))
        _same_cluster(base, reset)
        frs.append(ClusterState(reset).fragment_rate())
    assert 0.5 <= min(frs) and max(frs) <= 0.7, frs  # VM2RL's medium test reset: 0.555


def test_env_resets_a_given_snapshot_with_even_seeds() -> None:
    base = generate_snapshot("tiny", np.random.default_rng(2))
    env = VMRescheduleEnv(snapshot=base, resample_on_reset=True, max_migrations=5)
    env.reset(seed=0)
    first = env.state.snapshot
    env.reset()
    second = env.state.snapshot
    _same_cluster(base, first)
    assert first.vm_pm.tolist() != second.vm_pm.tolist()


# --------------------------------------------------------------------------- env and policy cases (issue 21)
def test_env_refuses_steps_past_its_budget_and_after_termination() -> None:
    env = VMRescheduleEnv(preset="small", max_migrations=2)
    obs, info = env.reset(seed=0)
    done = False
    while not done:
        vm = int(np.flatnonzero(info["action_mask"])[0])
        obs, _, done, _, info = env.step(np.array([vm, int(np.flatnonzero(env.placement_mask(vm))[0])]))
        assert env.observation_space.contains(obs)
    assert info["migrations"] == 2 and obs["budget"][0] == 0.0
    vm = int(np.flatnonzero(env.vm_mask())[0])
    with pytest.raises(ValueError, match=r"the episode is over.*reset\(\)"):
        env.step(np.array([vm, int(np.flatnonzero(env.placement_mask(vm))[0])]))
    assert env.state.n_migrations == 2


@pytest.mark.parametrize(
    "action", [np.array([1.7, 3.2]), np.array([True, False]), ["1", "3"], (1.0, 3), np.array(["1", "3"]), 2.5]
)
def test_env_refuses_non_integer_actions(action: Any) -> None:
    env = VMRescheduleEnv(preset="tiny", max_migrations=3)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"action .* must be integers"):
        env.step(action)
    flat = VMRescheduleEnv(preset="tiny", max_migrations=3, action_mode="flat")
    flat.reset(seed=0)
    with pytest.raises(ValueError, match=r"action .* must be an integer"):
        flat.step(np.float64(7.0) if not isinstance(action, float) else action)


SHIPPED = Path(__file__).resolve().parents[1] / "checkpoints" / "vm2rl"


@pytest.mark.skipif(not (SHIPPED / "encoder.onnx").is_file(), reason="no shipped VM2RL checkpoint")
def test_policy_act_refuses_a_non_finite_observation() -> None:
    from infragym.models.vm2rl.policy import OnnxPolicyNet, act

    net = OnnxPolicyNet((SHIPPED / "encoder.onnx").read_bytes(), (SHIPPED / "destination.onnx").read_bytes())
    env = VMRescheduleEnv(preset="tiny", max_migrations=3)
    obs, _ = env.reset(seed=0)
    act(net, obs, env)  # a finite observation is answered
    for key in ("vm", "pm", "budget"):
        bad = {**obs, key: np.full_like(obs[key], np.nan)}
        with pytest.raises(ValueError, match=rf"observation '{key}' holds NaN or infinite values"):
            act(net, bad, env)
    with pytest.raises(ValueError, match=r"observation 'vm_host'"):
        act(net, {**obs, "vm_host": np.full_like(obs["vm_host"], 99)}, env)


# --------------------------------------------------------------------------- training on resets
def test_async_training_on_resets_checkpoints_and_resumes(tmp_path: Path) -> None:
    from functools import partial

    from infragym.models.vm2rl.agent import VM2RLAgent
    from infragym.models.vm2rl.ppo import PPOArgs, train_ppo

    base = generate_snapshot("tiny", np.random.default_rng(5))
    fns = [partial(VMRescheduleEnv, snapshot=base, resample_on_reset=True, max_migrations=4) for _ in range(2)]
    args = PPOArgs(total_steps=2 * 16 * 2, n_envs=2, n_steps=16, n_epochs=1, seed=0)
    scores: list[float] = []

    def score(agent: VM2RLAgent) -> float:
        scores.append(float(sum(p.detach().abs().sum() for p in agent.parameters())))
        return -len(scores)  # later is better: best.pt follows the last evaluation

    torch.manual_seed(0)
    agent = VM2RLAgent(d_model=8)
    first = train_ppo(agent, fns, args, asynchronous=True, checkpoint_dir=tmp_path, evaluate=score, eval_every=1)
    assert len(first) == 2 and (tmp_path / "last.pt").is_file() and (tmp_path / "best.pt").is_file()
    for record in first:
        assert record["train/sps"] > 0 and math.isfinite(record["train/explained_variance"])
    assert first[-1]["train/episode_length"] == 4.0  # RecordEpisodeStatistics: episodes of MNL steps
    trained = {k: v.clone() for k, v in agent.state_dict().items()}
    resumed_agent = VM2RLAgent(d_model=8)
    longer = PPOArgs(**{**args.__dict__, "total_steps": 2 * 16 * 3})
    history = train_ppo(resumed_agent, fns, longer, asynchronous=False, checkpoint_dir=tmp_path)
    assert len(history) == 3 and history[:2] == first  # resumed at update 2, the first two kept
    assert any(not torch.equal(trained[k], v) for k, v in resumed_agent.state_dict().items())


def test_vm2rl_real_experiment_end_to_end_and_evaluate_reproduces(tmp_path: Path) -> None:
    """experiment=vm2rl_real at its smoke scale on a generated cluster written as a VMR2L file:
    trains on its resets, checkpoints, tests on a held-out reset (resume: the async test above)."""
    from infragym.runner import run_evaluate, run_train

    from .conftest import compose_config, smoke

    snapshot = tmp_path / "cluster.json"
    snapshot.write_text(json.dumps(snapshot_to_vmr2l(generate_snapshot("small", np.random.default_rng(0)))))
    overrides = smoke(
        "vm2rl_real", "logger=none", f"task.train_snapshot_path={snapshot}", f"dataset.test_paths=[{snapshot}]"
    )
    cfg = compose_config("train", overrides, tmp_path / "run")
    run_train(cfg)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    name = "cluster_reset0"
    assert set(metrics) >= {f"test/{m}/{name}/fragment_rate@10" for m in ("greedy", "vm2rl", "vm2rl_best_of_k")}
    assert metrics[f"test/greedy/{name}/fragment_rate@10"] <= metrics["test/initial/fragment_rate"]
    checkpoint = torch.load(tmp_path / "run" / "ppo_checkpoints" / "last.pt", weights_only=False)
    assert checkpoint["update"] == 1 and "eval/fragment_rate" in checkpoint["history"][-1]
    ecfg = compose_config("evaluate", [f"checkpoint={tmp_path / 'run' / 'export'}", "logger=none"], tmp_path / "eval")
    again = run_evaluate(ecfg)
    assert again["test/vm2rl_best_of_k/fragment_rate"] == metrics["test/vm2rl_best_of_k/fragment_rate"]


@pytest.mark.skipif(not (SHIPPED / "encoder.onnx").is_file(), reason="no shipped VM2RL checkpoint")
def test_warm_start_reads_an_exports_weights_back_exactly() -> None:
    from infragym.models.vm2rl.policy import OnnxPolicyNet, rollout
    from infragym.models.vm2rl.task import TorchPolicyNet
    from infragym.models.vm2rl.warm_start import agent_from_onnx

    graphs = ((SHIPPED / "encoder.onnx").read_bytes(), (SHIPPED / "destination.onnx").read_bytes())
    config = json.loads((SHIPPED / "manifest.json").read_text())["config"]["model"]
    agent = agent_from_onnx(*graphs, **{k: v for k, v in config.items() if k != "_target_"})
    snap = generate_snapshot("small", np.random.default_rng(11))
    onnx_run, torch_run = rollout(OnnxPolicyNet(*graphs), snap, 10), rollout(TorchPolicyNet(agent), snap, 10)
    assert onnx_run.moves == torch_run.moves  # the same decisions, step by step
    with pytest.raises(ValueError, match="do not hold a VM2RLAgent"):
        agent_from_onnx(*graphs, d_model=16)
