"""The typed VMR2L reader (bytes straight to columns) gives what the checked reader gives: the
same snapshot for the usual form and everything else the format allows, the same error for
everything refused; and the service's snapshot requests take it."""

from __future__ import annotations

import copy
import json
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from infragym.envs.cluster import generate_snapshot
from infragym.envs.cluster.snapshot import ClusterSnapshot, SnapshotError, parse_vmr2l_snapshot, snapshot_to_vmr2l
from infragym.envs.cluster.vmr2l_typed import _DECODER, decode_vmr2l_snapshot, snapshot_from_struct
from infragym.models.vm2rl.serving import SnapshotRequest, decode_snapshot_request

from .conftest import SHARED_DATA

SAMPLES = sorted((SHARED_DATA / "vm_snapshots").glob("*.json")) if SHARED_DATA.is_dir() else []


def _assert_same(typed: ClusterSnapshot, checked: ClusterSnapshot) -> None:
    for name, value in checked.__dict__.items():
        other = getattr(typed, name)
        if name == "group_members":
            assert len(other) == len(value)
            for a, b in zip(other, value, strict=True):
                np.testing.assert_array_equal(a, b)
        elif isinstance(value, np.ndarray):
            assert other.dtype == value.dtype and other.shape == value.shape, name
            np.testing.assert_array_equal(other, value, err_msg=name)
        else:
            assert other == value, name


def _checked(raw: bytes) -> ClusterSnapshot:
    return parse_vmr2l_snapshot(json.loads(raw), source="s", name="s")


def _both(raw: bytes) -> tuple[ClusterSnapshot | str, ClusterSnapshot | str]:
    """Each reader's snapshot, or its error message."""
    outcomes: list[ClusterSnapshot | str] = []
    for read in (lambda: decode_vmr2l_snapshot(raw, source="s", name="s"), lambda: _checked(raw)):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                outcomes.append(read())
        except (SnapshotError, ValueError) as err:  # json's own errors are ValueErrors
            outcomes.append(f"{type(err).__name__}: {err}")
    return outcomes[0], outcomes[1]


@pytest.mark.skipif(not SAMPLES, reason="shared VMR2L snapshots not present")
@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_real_snapshots_take_the_typed_path_and_read_the_same(path) -> None:
    raw = path.read_bytes()
    typed = snapshot_from_struct(_DECODER.decode(raw), source="s", name="s")
    assert typed is not None, "the real files are the usual form"
    _assert_same(typed, _checked(raw))
    assert typed.n_vms > 1000 and len(typed.group_members) > 100


@pytest.mark.parametrize("free_fields", ["consistent", "vmr2l", "omit"])
@pytest.mark.parametrize("seed", [0, 1])
def test_generated_clusters_read_the_same(free_fields: str, seed: int) -> None:
    snap = generate_snapshot("small", np.random.default_rng(seed))
    raw = json.dumps(snapshot_to_vmr2l(snap, free_fields=free_fields)).encode()
    typed = snapshot_from_struct(_DECODER.decode(raw), source="s", name="s")
    assert typed is not None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _assert_same(typed, _checked(raw))


def _host(node_id: str, rack: Any = 1) -> dict[str, Any]:
    return {
        "node_id": node_id,
        "status": "ACTIVE",
        "rack_id": rack,
        "numa": [
            {"node": n, "total_cpu": 44, "free_cpu": 44, "memory_huge_total_mb": 184388.0,
             "memory_huge_free_mb": 184388.0}
            for n in (0, 1)
        ],
    }  # fmt: skip


def _vm(vid: str, host: str, cpu: int, nodes: tuple[int, ...] = (0,)) -> dict[str, Any]:
    return {
        "instance_id": vid,
        "host_id": host,
        "numa": [{"node": n, "cpu": cpu, "mem_mb": 2048.0 * cpu} for n in nodes],
        "allow_migration": 1,
    }


def _cluster() -> dict[str, Any]:
    return {
        "cluster_list": [
            {
                "host_info": [_host("pm_a"), _host("pm_b", "r2"), _host("pm_c", None)],
                "vm_instance": [_vm("v1", "pm_a", 8), _vm("v2", "pm_a", 4, (1,)), _vm("v3", "pm_b", 8, (0, 1))],
                "other_requirement": {"deployment_set": [{"granularity": "host", "data": ["v1", "v3"]}]},
            }
        ],
        "vm_type_list": [],
    }


def _set(path: str, value: Any) -> Callable[[dict], None]:
    def edit(data: dict) -> None:
        *parents, last = path.split(".")
        node: Any = data
        for key in parents:
            node = node[int(key)] if key.isdigit() else node[key]
        node[int(last) if last.isdigit() else last] = value

    return edit


def _drop(path: str) -> Callable[[dict], None]:
    def edit(data: dict) -> None:
        *parents, last = path.split(".")
        node: Any = data
        for key in parents:
            node = node[int(key)] if key.isdigit() else node[key]
        del node[last]

    return edit


HOST0 = "cluster_list.0.host_info.0"
VM0 = "cluster_list.0.vm_instance.0"
VM2 = "cluster_list.0.vm_instance.2"
SETS = "cluster_list.0.other_requirement.deployment_set"
EDITS: dict[str, Callable[[dict], None]] = {
    # accepted by both, outside the usual form
    "integer ids": _set(f"{VM0}.instance_id", 17),
    "integral float cores": _set(f"{VM0}.numa.0.cpu", 8.0),
    "reversed host nodes": lambda d: d["cluster_list"][0]["host_info"][0]["numa"].reverse(),
    "string free field": _set(f"{HOST0}.numa.0.free_cpu", "n/a"),
    "boolean migration flag": _set(f"{VM0}.allow_migration", False),
    "lower-case status": _set(f"{HOST0}.status", "outage"),
    "no other_requirement": _drop("cluster_list.0.other_requirement"),
    "integer group member": _set(f"{SETS}.0.data", ["v1", 3]),
    "null deployment sets": _set(f"{SETS}", None),
    # refused by both, with the same message
    "unknown host": _set(f"{VM0}.host_id", "pm_zz"),
    "duplicate VM id": _set("cluster_list.0.vm_instance.1.instance_id", "v1"),
    "duplicate PM id": _set("cluster_list.0.host_info.1.node_id", "pm_a"),
    "NaN memory": _set(f"{VM0}.numa.0.mem_mb", float("nan")),
    "boolean cores": _set(f"{VM0}.numa.0.cpu", True),
    "zero cores": _set(f"{VM0}.numa.0.cpu", 0),
    "NUMA node 2": _set(f"{VM0}.numa.0.node", 2),
    "unequal halves": _set(f"{VM2}.numa.1.cpu", 4),
    "halves on one node": _set(f"{VM2}.numa.1.node", 0),
    "migration flag 2": _set(f"{VM0}.allow_migration", 2),
    "huge migration flag": _set(f"{VM0}.allow_migration", 10**30),
    "missing field": _drop(f"{VM0}.allow_migration"),
    "unknown status": _set(f"{HOST0}.status", "RETIRED"),
    "one host node": lambda d: d["cluster_list"][0]["host_info"][0]["numa"].pop(),
    "three host nodes": lambda d: d["cluster_list"][0]["host_info"][0]["numa"].append(
        {"node": 1, "total_cpu": 4, "memory_huge_total_mb": 8.0}
    ),
    "no VM nodes": _set(f"{VM0}.numa", []),
    "three VM nodes": lambda d: d["cluster_list"][0]["vm_instance"][2]["numa"].append(
        {"node": 0, "cpu": 8, "mem_mb": 16384.0}
    ),
    "null second half": lambda d: d["cluster_list"][0]["vm_instance"][0]["numa"].append(None),
    "VM nodes as an object": _set(f"{VM0}.numa", {"node": 0, "cpu": 8, "mem_mb": 16384.0}),
    "implausible node": _set(f"{HOST0}.numa.0.total_cpu", 10**6),
    "64-bit overflow": _set(f"{HOST0}.numa.0.total_cpu", 2**63),
    "overflowing VM cores": _set(f"{VM0}.numa.0.cpu", 2**64 + 1),
    "overflowing node id": _set(f"{VM0}.numa.0.node", -(2**63) - 1),
    "over-committed": _set(f"{VM0}.numa.0.cpu", 44),
    "violated group": _set(f"{SETS}.0.data", ["v1", "v2"]),
    "unknown granularity": _set(f"{SETS}.0.granularity", "zone"),
    "no VM": _set("cluster_list.0.vm_instance", []),
    "no cluster": _set("cluster_list", []),
}


@pytest.mark.parametrize("edit", list(EDITS), ids=list(EDITS))
def test_every_edge_reads_or_fails_as_the_checked_reader(edit: str) -> None:
    data = copy.deepcopy(_cluster())
    EDITS[edit](data)
    typed, checked = _both(json.dumps(data).encode())
    if isinstance(checked, str):
        assert typed == checked
    else:
        assert not isinstance(typed, str), typed
        _assert_same(typed, checked)


@pytest.mark.parametrize(
    "raw", [b"\xff\xfe", b"{not json", b"[]", b'{"cluster_list": 3}', b'{"cluster_list": [{"host_info": "\x80"}]}']
)
def test_undecodable_bytes_get_the_checked_readers_error(raw: bytes) -> None:
    with pytest.raises(SnapshotError, match=r"^s: "):
        decode_vmr2l_snapshot(raw, source="s")


def test_snapshot_requests_in_the_usual_form_skip_the_request_model() -> None:
    body = {"snapshot": _cluster(), "max_migrations": 3, "samples": 2, "seed": 5}
    request = decode_snapshot_request(json.dumps(body).encode())
    assert isinstance(request, SnapshotRequest)
    assert (request.max_migrations, request.samples, request.seed) == (3, 2, 5)
    _assert_same(request.snapshot, parse_vmr2l_snapshot(_cluster(), source="request snapshot"))
    # anything else goes to the request model, which names the problem
    for other in (
        {**body, "max_migrations": 0},
        {**body, "samples": 33},
        {**body, "extra": 1},
        {"observation": {}, "mask": []},
        {**body, "snapshot": {**_cluster(), "cluster_list": []}},
        {**body, "snapshot": {"cluster_list": [{**_cluster()["cluster_list"][0], "vm_instance": [_vm("v", "x", 1)]}]}},
    ):
        assert decode_snapshot_request(json.dumps(other).encode()) is None
    assert decode_snapshot_request(b'{"snapshot": {"cluster_list": "\x80"}}') is None  # not UTF-8
