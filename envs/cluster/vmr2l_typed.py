"""The VMR2L snapshot format read from JSON bytes straight into columns: the usual form, fast.

A cluster manager sends the whole snapshot with every request (the medium one: 280 PMs, 2,089
VMs, 587 KB). Parsed into Python dicts and walked record by record (``parse_vmr2l_snapshot``)
that costs about 9 ms of CPU, more than the policy itself; here msgspec decodes the bytes
against typed structs of the format's usual form in C (string ids, integer core counts, numeric
sizes; structs without garbage-collector tracking) and the columns are read off the structs
with comprehensions and checked with numpy: about 0.9 ms to decode, 1.8 ms to read and validate
(``bench/vm2rl/snapshot_cpu.py``).

The usual form is what VMR2L's files and tooling write. Everything else the format allows
(integer ids, ``4.0`` core counts, free fields of any type, hosts with their NUMA nodes in any
order) and everything that must be refused goes to the checked reader, which accepts the
former and names the problem in the latter: :func:`decode_vmr2l_snapshot` gives the same
snapshot, or the same error, as ``json.loads`` + ``parse_vmr2l_snapshot`` (tested on the shipped
samples, generated clusters and each refusal).
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
import numpy as np

from infragym.envs.cluster.snapshot import (
    GRANULARITY_HOST,
    GRANULARITY_RACK,
    MAX_NUMA_CPU,
    MAX_NUMA_MEM_MB,
    PLACE_BOTH,
    ClusterSnapshot,
    SnapshotError,
)
from infragym.envs.cluster.vmr2l_format import HOST_STATUSES, assemble_snapshot, parse_vmr2l_snapshot


class HostNuma(msgspec.Struct, gc=False):
    node: int
    total_cpu: int
    memory_huge_total_mb: float
    free_cpu: float | None = None
    memory_huge_free_mb: float | None = None


# The ``numa`` arrays of hosts (two nodes) and VMs (one or two) decode as array-like structs,
# not lists: lists are tracked by the garbage collector, and 2,369 of them per medium snapshot
# made the decode 0.09 ms slower (1.00 -> 0.91 ms, collector on, the loaded service's heap
# frozen as `infragym serve` freezes it). Any other length is a ValidationError: the checked
# reader's case.
class HostNodes(msgspec.Struct, array_like=True, forbid_unknown_fields=True, gc=False):
    first: HostNuma
    second: HostNuma


class Host(msgspec.Struct, gc=False):
    node_id: str
    status: str
    numa: HostNodes
    rack_id: int | str | None = ""


class VmNuma(msgspec.Struct, frozen=True, gc=False):
    node: int
    cpu: int
    mem_mb: float


_ONE_NODE = VmNuma(node=-1, cpu=0, mem_mb=0.0)  # the second half of a VM on one NUMA node


class VmNodes(msgspec.Struct, array_like=True, forbid_unknown_fields=True, gc=False):
    first: VmNuma
    second: VmNuma = _ONE_NODE  # ``null`` is refused, not read as absent


class Vm(msgspec.Struct, gc=False):
    instance_id: str
    host_id: str
    numa: VmNodes
    allow_migration: bool | int


class DeploymentSet(msgspec.Struct, gc=False):
    granularity: str
    # ids as strings, the usual form (integer ids go to the checked reader)
    data: list[str]


class OtherRequirement(msgspec.Struct, gc=False):
    deployment_set: list[DeploymentSet] | None = None


class Cluster(msgspec.Struct, gc=False):
    host_info: list[Host]
    vm_instance: list[Vm]
    other_requirement: OtherRequirement | None = None


class Snapshot(msgspec.Struct, gc=False):
    """A VMR2L snapshot file in its usual form (unknown fields, e.g. ``vm_type_list``, ignored
    as the checked reader ignores them)."""

    cluster_list: list[Cluster]


_DECODER = msgspec.json.Decoder(Snapshot)
_STATUSES = frozenset(HOST_STATUSES)
_GRANULARITIES = {"host": GRANULARITY_HOST, "rack": GRANULARITY_RACK}


def snapshot_from_struct(data: Snapshot, *, source: str = "snapshot", name: str = "snapshot") -> ClusterSnapshot | None:
    """The snapshot from decoded structs, or None if anything is outside the usual form or must
    be refused (the checked reader then reads it again and names the problem). A snapshot that
    reads but is impossible as a whole (an over-committed NUMA node, a violated anti-affinity
    group) raises the checked reader's :class:`SnapshotError`, word for word."""
    try:
        return _from_struct(data, source, name)
    except OverflowError:  # an integer beyond 64 bits (JSON allows any): the checked reader's
        return None


def _from_struct(data: Snapshot, source: str, name: str) -> ClusterSnapshot | None:
    # One comprehension per column: per element the cheapest form measured here (a list of
    # tuples into a 2-D array, or map(attrgetter), cost more than separate lists).
    clusters = data.cluster_list
    hosts = [h for c in clusters for h in c.host_info]
    vms = [v for c in clusters for v in c.vm_instance]
    if not clusters or not hosts or not vms:
        return None
    pm_ids = [h.node_id for h in hosts]
    pm_index = {pm: i for i, pm in enumerate(pm_ids)}
    if len(pm_index) != len(pm_ids):
        return None
    node0 = [h.numa.first for h in hosts]
    node1 = [h.numa.second for h in hosts]
    first_node = np.array([n.node for n in node0])
    second_node = np.array([n.node for n in node1])
    swapped = first_node == 1
    if not (((first_node == 0) & (second_node == 1)) | (swapped & (second_node == 0))).all():
        return None
    for p in np.flatnonzero(swapped).tolist():  # per PM: [node 0, node 1], whichever order the file lists
        node0[p], node1[p] = node1[p], node0[p]
    cpu_total = np.empty((len(hosts), 2), dtype=np.int64)  # OverflowError beyond 64 bits
    cpu_total[:, 0] = [n.total_cpu for n in node0]
    cpu_total[:, 1] = [n.total_cpu for n in node1]
    mem_total = np.empty((len(hosts), 2), dtype=np.float64)
    mem_total[:, 0] = [n.memory_huge_total_mb for n in node0]
    mem_total[:, 1] = [n.memory_huge_total_mb for n in node1]
    if not ((cpu_total >= 0) & (cpu_total <= MAX_NUMA_CPU)).all():
        return None
    if not ((mem_total >= 0.0) & (mem_total <= MAX_NUMA_MEM_MB)).all():  # False for NaN and inf
        return None
    statuses = [h.status.upper() for h in hosts]
    if not _STATUSES.issuperset(statuses):
        return None
    # Rack names coded in order of first appearance, as the checked reader codes them; str() per
    # distinct rack id only (integer 2 and string "2" are one rack).
    rack_ids = [h.rack_id for h in hosts]
    rack_codes: dict[str, int] = {}
    code_of = {r: rack_codes.setdefault("" if r is None else str(r), len(rack_codes)) for r in dict.fromkeys(rack_ids)}
    racks = [code_of[r] for r in rack_ids]
    free_cpu = np.empty((len(hosts), 2), dtype=np.float64)  # an absent field (None): NaN
    free_cpu[:, 0] = [n.free_cpu for n in node0]
    free_cpu[:, 1] = [n.free_cpu for n in node1]
    free_mem = np.empty((len(hosts), 2), dtype=np.float64)
    free_mem[:, 0] = [n.memory_huge_free_mb for n in node0]
    free_mem[:, 1] = [n.memory_huge_free_mb for n in node1]

    # A group is its granularity and its set of ids: a frozenset is the same key as the checked
    # reader's sorted tuple, half the cost (no sort); assemble_snapshot sorts the members by VM.
    groups: dict[tuple[int, frozenset[str]], None] = {}
    for cluster in clusters:
        other = cluster.other_requirement
        for group in (other.deployment_set if other is not None else None) or ():
            code = _GRANULARITIES.get(group.granularity)
            if code is None:
                return None
            groups[(code, frozenset(group.data))] = None

    vm_index = {v.instance_id: i for i, v in enumerate(vms)}
    if len(vm_index) != len(vms):
        return None
    try:
        vm_pm = np.array([pm_index[v.host_id] for v in vms], dtype=np.int64)
    except KeyError:  # a VM on an unknown host
        return None
    numas = [v.numa for v in vms]
    half = [n.first for n in numas]
    split = [i for i, n in enumerate(numas) if n.second is not _ONE_NODE]
    double = np.zeros(len(vms), dtype=bool)
    double[split] = True
    vm_cpu = np.array([n.cpu for n in half], dtype=np.int64)
    vm_mem = np.array([n.mem_mb for n in half], dtype=np.float64)
    vm_node = np.array([n.node for n in half], dtype=np.int64)
    if not ((vm_cpu > 0) & (vm_cpu <= MAX_NUMA_CPU) & (vm_mem >= 0.0) & (vm_mem <= MAX_NUMA_MEM_MB)).all():
        return None
    if not ((vm_node == 0) | (vm_node == 1)).all():
        return None
    if split:
        # a split VM: equal halves on nodes 0 and 1
        rows = split
        other_half = [numas[i].second for i in rows]
        same_cpu = np.array([n.cpu for n in other_half]) == vm_cpu[rows]
        same_mem = np.array([n.mem_mb for n in other_half], dtype=np.float64) == vm_mem[rows]
        other_node = np.array([n.node for n in other_half])
        if not (same_cpu & same_mem & (other_node == 1 - vm_node[rows])).all():
            return None
    # true/false, or 0/1 as the real files write it
    migratable = np.array([v.allow_migration for v in vms], dtype=np.int64)
    if not ((migratable == 0) | (migratable == 1)).all():
        return None
    return assemble_snapshot(
        pm_ids=pm_ids,
        cpu_total=cpu_total,
        mem_total=mem_total,
        free_cpu=free_cpu,
        free_mem=free_mem,
        active=[s == "ACTIVE" for s in statuses],
        racks=racks,
        groups=groups,
        vm_index=vm_index,
        vm_cpu=vm_cpu,
        vm_mem=vm_mem,
        vm_double=double,
        vm_pm=vm_pm,
        vm_place=np.where(double, PLACE_BOTH, vm_node),
        vm_mig=migratable.astype(bool),
        source=source,
        name=name,
    )


def decode_vmr2l_snapshot(raw: bytes, *, source: str = "snapshot", name: str = "snapshot") -> ClusterSnapshot:
    """A snapshot from the bytes of a VMR2L JSON document: the typed reader for the usual form,
    the checked reader (``json`` + ``parse_vmr2l_snapshot``) for everything else.

    Raises:
        SnapshotError: undecodable bytes or JSON, or any refusal of the checked reader, naming
            ``source``, the record and the field.
    """
    try:
        snapshot = snapshot_from_struct(_DECODER.decode(raw), source=source, name=name)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError):  # msgspec raises the last itself
        snapshot = None
    if snapshot is not None:
        return snapshot
    return parse_vmr2l_snapshot(_json_document(raw, source), source=source, name=name)


def _json_document(raw: bytes, source: str) -> Any:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise SnapshotError(f"{source}: not UTF-8 text (byte {err.start}: {err.reason})") from err
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise SnapshotError(f"{source}: not JSON (line {err.lineno}, column {err.colno}: {err.msg})") from err
    except RecursionError as err:
        raise SnapshotError(f"{source}: JSON nested too deep to read") from err


__all__ = ["Snapshot", "decode_vmr2l_snapshot", "snapshot_from_struct"]
