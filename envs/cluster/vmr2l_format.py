"""The VMR2L snapshot JSON format: reader (``load_vmr2l_snapshot``, ``parse_vmr2l_snapshot``)
and writer (``snapshot_to_vmr2l``).

What is read, as VMR2L's own env reads it (zhykoties/VMR2L_eurosys; VM2RL, EuroSys'25): each
NUMA node starts at its totals (``total_cpu``, ``memory_huge_total_mb``) and the VMs placed on it
are subtracted. The per-node ``free_cpu`` / ``memory_huge_free_mb`` fields are never used there,
and files written by VMR2L's tooling carry free fields that disagree with their VMs (its writer
copies NUMA node 0's free memory into node 1's field). So the free fields are informational
here: mismatches are counted and reported (a ``SnapshotWarning`` and ``ClusterSnapshot.info``),
never refused; they may also be absent.

Host statuses are those VMR2L knows (``ACTIVE``, ``OUTAGE``, ``DISABLED``, any case): only ACTIVE
hosts take VMs and count in the fragment rate; the VMs listed on other hosts stay put.

Refused, with a :class:`SnapshotError` naming the file, the record (cluster, host/VM index and
id) and the field: what cannot be a cluster. Missing fields; numbers that are not numbers
(strings, booleans, null, NaN, infinities), fractional core counts, sizes out of range (negative,
zero-core VMs, NUMA nodes beyond ``MAX_NUMA_CPU`` / ``MAX_NUMA_MEM_MB``); ``allow_migration``
other than a boolean or 0/1; unknown host statuses; duplicate host or VM ids; a VM on an unknown
host; a double-NUMA VM whose halves differ or sit on one node; NUMA nodes over-committed by their
VMs; anti-affinity groups already violated or whose member list is not a list; an empty cluster
(no ACTIVE host or no VM); undecodable bytes and JSON nested too deep to read.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import warnings
from collections.abc import Collection, Iterable, Sequence
from pathlib import Path
from typing import Any

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

log = logging.getLogger(__name__)
HOST_STATUSES = ("ACTIVE", "OUTAGE", "DISABLED")
FREE_MEM_TOLERANCE_MB = 1e-3


class SnapshotWarning(UserWarning):
    """A snapshot loaded, with something worth knowing (free fields that disagree with its VMs)."""


def _show(value: Any) -> str:
    """A short repr for an error message (a value nested too deep for repr: its type)."""
    try:
        text = repr(value)
    except RecursionError:
        return f"a deeply nested {type(value).__name__}"
    return text if len(text) <= 60 else text[:57] + "..."


# --------------------------------------------------------------------------- field readers
def _record(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise SnapshotError(f"{where}: expected an object, got {type(value).__name__} {_show(value)}")
    return value


def _list(value: Any, where: str, key: str) -> list[Any]:
    if not isinstance(value, list):
        raise SnapshotError(f"{where}: field {key!r} must be a list, got {type(value).__name__} {_show(value)}")
    return value


def _get(record: Any, key: str, where: str) -> Any:
    record = _record(record, where)
    if key not in record:
        raise SnapshotError(f"{where}: missing field {key!r}")
    return record[key]


def _whole(value: Any, where: str, key: str, lo: int, hi: int) -> int:
    """A whole number in [lo, hi]: an int, or a float with no fractional part (4.0)."""
    if type(value) is int or (isinstance(value, int) and not isinstance(value, bool)):
        number = int(value)
    elif type(value) is float and math.isfinite(value) and value.is_integer():
        number = int(value)
    else:
        raise SnapshotError(f"{where}: field {key!r} must be a whole number, got {_show(value)}")
    if not lo <= number <= hi:
        raise SnapshotError(f"{where}: field {key!r} = {number} is out of range [{lo}, {hi}]")
    return number


def _real(value: Any, where: str, key: str, lo: float, hi: float) -> float:
    """A finite number in [lo, hi] (booleans and strings are not numbers)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SnapshotError(f"{where}: field {key!r} must be a number, got {_show(value)}")
    number = float(value)
    if not math.isfinite(number) or not lo <= number <= hi:
        raise SnapshotError(f"{where}: field {key!r} = {_show(value)} is not a finite number in [{lo:g}, {hi:g}]")
    return number


def _flag(value: Any, where: str, key: str) -> bool:
    """A boolean, or 0/1 (never a string: ``"false"`` would be truthy)."""
    if isinstance(value, bool):
        return value
    if type(value) is int and value in (0, 1):
        return bool(value)
    raise SnapshotError(f"{where}: field {key!r} must be true/false (or 0/1), got {_show(value)}")


def _identifier(value: Any, where: str, key: str) -> str:
    if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
        return str(value)
    raise SnapshotError(f"{where}: field {key!r} must be a string id, got {_show(value)}")


def _free(value: Any) -> float | None:
    """A free field's value if it is a readable number (informational: never refused)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


# --------------------------------------------------------------------------- records
_Host = tuple[str, list[int], list[float], list[float | None], list[float | None], bool, str]
_Vm = tuple[str, str, int, float, bool, int, bool]


def _host_fast(host: Any) -> _Host | None:
    """The usual host record (plain dicts, ints, a known status), else None for the checked reader."""
    if type(host) is not dict:
        return None
    try:
        node_id, numa, status = host["node_id"], host["numa"], host["status"]
        if type(node_id) is not str or type(numa) is not list or len(numa) != 2 or type(status) is not str:
            return None
        a, b = numa
        if type(a) is not dict or type(b) is not dict:
            return None
        if a["node"] == 0 and b["node"] == 1 and type(a["node"]) is int and type(b["node"]) is int:
            n0, n1 = a, b
        elif a["node"] == 1 and b["node"] == 0 and type(a["node"]) is int and type(b["node"]) is int:
            n0, n1 = b, a
        else:
            return None
        c0, c1 = n0["total_cpu"], n1["total_cpu"]
        m0, m1 = n0["memory_huge_total_mb"], n1["memory_huge_total_mb"]
        if not (type(c0) is int and type(c1) is int and 0 <= c0 <= MAX_NUMA_CPU and 0 <= c1 <= MAX_NUMA_CPU):
            return None
        if not (type(m0) in (int, float) and type(m1) in (int, float)):
            return None
        if not (0.0 <= m0 <= MAX_NUMA_MEM_MB and 0.0 <= m1 <= MAX_NUMA_MEM_MB):  # False for NaN
            return None
        upper = status.upper()
        if upper not in HOST_STATUSES:
            return None
        rack = host.get("rack_id", "")
        if type(rack) is int:  # real files: integer rack ids
            rack = str(rack)
        elif type(rack) is not str:
            return None
        free_cpu = [_free(n0.get("free_cpu")), _free(n1.get("free_cpu"))]
        free_mem = [_free(n0.get("memory_huge_free_mb")), _free(n1.get("memory_huge_free_mb"))]
    except (KeyError, TypeError):
        return None
    return node_id, [c0, c1], [float(m0), float(m1)], free_cpu, free_mem, upper == "ACTIVE", rack


def _host_checked(host: Any, where: str) -> _Host:
    node_id = _identifier(_get(host, "node_id", where), where, "node_id")
    where = f"{where} (PM {node_id})"
    numa = _list(_get(host, "numa", where), where, "numa")
    nodes = [
        _whole(_get(n, "node", f"{where} numa[{i}]"), f"{where} numa[{i}]", "node", 0, 1) for i, n in enumerate(numa)
    ]
    if sorted(nodes) != [0, 1]:
        raise SnapshotError(f"{where}: field 'numa' must list NUMA nodes 0 and 1 once each, got nodes {nodes}")
    by_node = [numa[nodes.index(0)], numa[nodes.index(1)]]
    cpu, mem, free_cpu, free_mem = [], [], [], []
    for n, record in enumerate(by_node):
        nwhere = f"{where} numa node {n}"
        cpu.append(_whole(_get(record, "total_cpu", nwhere), nwhere, "total_cpu", 0, MAX_NUMA_CPU))
        mem.append(
            _real(_get(record, "memory_huge_total_mb", nwhere), nwhere, "memory_huge_total_mb", 0.0, MAX_NUMA_MEM_MB)
        )
        free_cpu.append(_free(record.get("free_cpu")))
        free_mem.append(_free(record.get("memory_huge_free_mb")))
    status = _get(host, "status", where)
    if not isinstance(status, str) or status.upper() not in HOST_STATUSES:
        raise SnapshotError(f"{where}: field 'status' = {_show(status)}, expected one of {', '.join(HOST_STATUSES)}")
    rack = host.get("rack_id", "")
    rack = "" if rack is None else _identifier(rack, where, "rack_id")
    return node_id, cpu, mem, free_cpu, free_mem, status.upper() == "ACTIVE", rack


def _vm_fast(vm: Any) -> _Vm | None:
    """The usual VM record, else None for the checked reader (which names the problem)."""
    if type(vm) is not dict:
        return None
    try:
        vid, host, numa, mig = vm["instance_id"], vm["host_id"], vm["numa"], vm["allow_migration"]
        if type(vid) is not str or type(host) is not str or type(numa) is not list:
            return None
        if type(mig) is not bool and not (type(mig) is int and (mig == 0 or mig == 1)):  # real files: 0/1
            return None
        if len(numa) == 1:
            (n0,) = numa
            if type(n0) is not dict:
                return None
            cpu, mem, node = n0["cpu"], n0["mem_mb"], n0["node"]
            if not (type(cpu) is int and type(node) is int and type(mem) in (int, float)):
                return None
            if not (0 < cpu <= MAX_NUMA_CPU and 0.0 <= mem <= MAX_NUMA_MEM_MB and (node == 0 or node == 1)):
                return None
            double, place = False, node
        elif len(numa) == 2:
            n0, n1 = numa
            if type(n0) is not dict or type(n1) is not dict:
                return None
            cpu, mem = n0["cpu"], n0["mem_mb"]
            if not (type(cpu) is int and type(mem) in (int, float) and type(n0["node"]) is int):
                return None
            if not (0 < cpu <= MAX_NUMA_CPU and 0.0 <= mem <= MAX_NUMA_MEM_MB):
                return None
            if not (type(n1["cpu"]) is int and n1["cpu"] == cpu and n1["mem_mb"] == mem and type(n1["node"]) is int):
                return None
            if {n0["node"], n1["node"]} != {0, 1}:
                return None
            double, place = True, PLACE_BOTH
        else:
            return None
    except (KeyError, TypeError):
        return None
    return vid, host, cpu, float(mem), double, place, bool(mig)


def _vm_checked(vm: Any, where: str) -> _Vm:
    vid = _identifier(_get(vm, "instance_id", where), where, "instance_id")
    where = f"{where} (VM {vid})"
    host = _identifier(_get(vm, "host_id", where), where, "host_id")
    numa = _list(_get(vm, "numa", where), where, "numa")
    if len(numa) not in (1, 2):
        raise SnapshotError(f"{where}: field 'numa' must list 1 or 2 NUMA nodes, got {len(numa)}")
    cpus, mems, nodes = [], [], []
    for i, record in enumerate(numa):
        nwhere = f"{where} numa[{i}]"
        cpus.append(_whole(_get(record, "cpu", nwhere), nwhere, "cpu", 1, MAX_NUMA_CPU))
        mems.append(_real(_get(record, "mem_mb", nwhere), nwhere, "mem_mb", 0.0, MAX_NUMA_MEM_MB))
        nodes.append(_whole(_get(record, "node", nwhere), nwhere, "node", 0, 1))
    if len(numa) == 2 and (sorted(nodes) != [0, 1] or cpus[0] != cpus[1] or mems[0] != mems[1]):
        raise SnapshotError(
            f"{where}: a double-NUMA VM must use equal halves on nodes 0 and 1 "
            f"(got nodes {nodes}, cpu {cpus}, mem_mb {mems})"
        )
    migratable = _flag(_get(vm, "allow_migration", where), where, "allow_migration")
    place = PLACE_BOTH if len(numa) == 2 else nodes[0]
    return vid, host, cpus[0], mems[0], len(numa) == 2, place, migratable


# --------------------------------------------------------------------------- parser
def load_vmr2l_snapshot(path: str | os.PathLike[str]) -> ClusterSnapshot:
    """Read a VMR2L snapshot JSON file; every cluster in it is merged into one pool.

    Raises:
        SnapshotError: unreadable or undecodable file, or any refusal listed in the module
            docstring, naming the file, the record and the field.
    """
    from infragym.envs.cluster.vmr2l_typed import decode_vmr2l_snapshot  # it builds on this module

    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise SnapshotError(f"{path}: cannot read the snapshot ({err})") from err
    return decode_vmr2l_snapshot(raw, source=str(path), name=str(path))


def parse_vmr2l_snapshot(data: Any, *, source: str = "snapshot", name: str = "snapshot") -> ClusterSnapshot:
    """A snapshot from the parsed VMR2L JSON (``load_vmr2l_snapshot`` without the file); errors
    name ``source``, the record and the field. Only :class:`SnapshotError` leaves it."""
    try:
        return _parse(data, source=source, name=name)
    except SnapshotError:
        raise
    except (TypeError, ValueError, AttributeError, KeyError, IndexError, OverflowError, RecursionError) as err:
        # a safety net: every field has its own reader, which names it
        raise SnapshotError(f"{source}: unreadable snapshot ({type(err).__name__}: {err})") from err


def _parse(data: Any, *, source: str, name: str) -> ClusterSnapshot:
    clusters = _list(_get(data, "cluster_list", source), source, "cluster_list")
    if not clusters:
        raise SnapshotError(f"{source}: field 'cluster_list' is empty")
    pm_ids: list[str] = []
    cpu_total: list[int] = []  # per NUMA node, PM-major
    mem_total: list[float] = []
    free_cpu: list[float | None] = []
    free_mem: list[float | None] = []
    active: list[bool] = []
    racks: list[int] = []
    groups: dict[tuple[int, tuple[str, ...]], None] = {}
    pm_index: dict[str, int] = {}
    rack_codes: dict[str, int] = {}
    for c, cluster in enumerate(clusters):
        where = f"{source}: cluster_list[{c}]"
        hosts = _list(_get(cluster, "host_info", where), where, "host_info")
        for h, host in enumerate(hosts):
            parsed = _host_fast(host)
            if parsed is None:
                parsed = _host_checked(host, f"{where}.host_info[{h}]")
            node_id, cpu, mem, fcpu, fmem, is_active, rack = parsed
            if node_id in pm_index:
                raise SnapshotError(f"{where}.host_info[{h}] (PM {node_id}): duplicate PM id")
            pm_index[node_id] = len(pm_ids)
            pm_ids.append(node_id)
            cpu_total.extend(cpu)
            mem_total.extend(mem)
            free_cpu.extend(fcpu)
            free_mem.extend(fmem)
            active.append(is_active)
            racks.append(rack_codes.setdefault(rack, len(rack_codes)))
        other = cluster.get("other_requirement")
        if other is None:
            continue
        other = _record(other, f"{where}.other_requirement")
        sets = other.get("deployment_set")
        sets = [] if sets is None else _list(sets, f"{where}.other_requirement", "deployment_set")
        for k, group in enumerate(sets):
            gwhere = f"{where}.other_requirement.deployment_set[{k}]"
            gran = _get(group, "granularity", gwhere)
            if gran not in ("host", "rack"):
                raise SnapshotError(f"{gwhere}: field 'granularity' = {_show(gran)}, expected 'host' or 'rack'")
            members = _list(_get(group, "data", gwhere), gwhere, "data")
            ids = {_identifier(m, gwhere, f"data[{i}]") for i, m in enumerate(members)}
            code = GRANULARITY_HOST if gran == "host" else GRANULARITY_RACK
            groups[(code, tuple(sorted(ids)))] = None
    vm_index: dict[str, int] = {}
    # Plain lists of scalars, no container per item: objects kept alive per VM would set off
    # the cyclic garbage collector (full collections of a large heap: the latency tail).
    vm_ids: list[str] = []
    vm_cpu: list[int] = []
    vm_mem: list[float] = []
    vm_double: list[bool] = []
    vm_pm: list[int] = []
    vm_place: list[int] = []
    vm_mig: list[bool] = []
    for c, cluster in enumerate(clusters):
        where = f"{source}: cluster_list[{c}]"
        for i, vm in enumerate(_list(_get(cluster, "vm_instance", where), where, "vm_instance")):
            parsed_vm = _vm_fast(vm)
            if parsed_vm is None:
                parsed_vm = _vm_checked(vm, f"{where}.vm_instance[{i}]")
            vid, host_id, cpu0, mem0, double, place, migratable = parsed_vm
            if vid in vm_index:
                raise SnapshotError(f"{where}.vm_instance[{i}] (VM {vid}): duplicate VM id")
            pm = pm_index.get(host_id)
            if pm is None:
                raise SnapshotError(
                    f"{where}.vm_instance[{i}] (VM {vid}): host_id {host_id!r} is not a PM of the snapshot"
                )
            vm_index[vid] = len(vm_ids)
            vm_ids.append(vid)
            vm_cpu.append(cpu0)
            vm_mem.append(mem0)
            vm_double.append(double)
            vm_pm.append(pm)
            vm_place.append(place)
            vm_mig.append(migratable)
    return assemble_snapshot(
        pm_ids=pm_ids,
        cpu_total=cpu_total,
        mem_total=mem_total,
        free_cpu=free_cpu,
        free_mem=free_mem,
        active=active,
        racks=racks,
        groups=groups,
        vm_index=vm_index,
        vm_cpu=vm_cpu,
        vm_mem=vm_mem,
        vm_double=vm_double,
        vm_pm=vm_pm,
        vm_place=vm_place,
        vm_mig=vm_mig,
        source=source,
        name=name,
    )


def assemble_snapshot(
    *,
    pm_ids: Sequence[str],
    cpu_total: Sequence[int] | np.ndarray,
    mem_total: Sequence[float] | np.ndarray,
    free_cpu: Sequence[float | None] | np.ndarray,
    free_mem: Sequence[float | None] | np.ndarray,
    active: Sequence[bool] | np.ndarray,
    racks: Sequence[int] | np.ndarray,
    groups: Iterable[tuple[int, Collection[str]]],
    vm_index: dict[str, int],
    vm_cpu: Sequence[int] | np.ndarray,
    vm_mem: Sequence[float] | np.ndarray,
    vm_double: Sequence[bool] | np.ndarray,
    vm_pm: Sequence[int] | np.ndarray,
    vm_place: Sequence[int] | np.ndarray,
    vm_mig: Sequence[bool] | np.ndarray,
    source: str,
    name: str,
) -> ClusterSnapshot:
    """The snapshot from the columns a reader collected (per NUMA node columns PM-major, VMs
    in ``vm_index`` order), validated, with the free-field report: the one ending of both the
    checked reader and the typed one (``vmr2l_typed``), so both give the same snapshot.

    ``groups``: the distinct anti-affinity groups in file order, each its granularity and its
    distinct member ids (any order: members are sorted by VM index here)."""
    # Each group's members present in this snapshot, as sorted VM indices, in one pass over
    # all groups (real snapshots hold hundreds of small ones): one sort of (group, VM) keys,
    # then each kept group a slice of the sorted VMs. The ids of a group are distinct, so its
    # VM indices are too. (On the medium snapshot np.split into its 300 groups takes 0.20 ms,
    # array_split swapping axes per piece; slicing the 288 kept ones, 0.045 ms.)
    keys = list(groups)
    n_vms = len(vm_index)
    sizes = np.array([len(ids) for _, ids in keys], dtype=np.int64)
    index = np.array([vm_index.get(i, -1) for _, ids in keys for i in ids], dtype=np.int64)
    group = np.repeat(np.arange(len(keys), dtype=np.int64), sizes)
    present = index >= 0
    group, index = group[present], index[present]
    offset = group * n_vms  # group is sorted already: the sorted keys keep each one's group
    members = np.sort(offset + index) - offset
    counts = np.bincount(group, minlength=len(keys))
    ends = np.cumsum(counts)
    # a group with 0 or 1 VM of this snapshot constrains nothing
    kept = np.flatnonzero(counts >= 2)
    granularity = [keys[g][0] for g in kept.tolist()]
    members_of = [members[a:b] for a, b in zip((ends[kept] - counts[kept]).tolist(), ends[kept].tolist(), strict=True)]
    snap = ClusterSnapshot(
        pm_ids=_str_array(list(pm_ids)),
        pm_cpu_total=np.array(cpu_total, dtype=np.int64).reshape(-1, 2),
        pm_mem_total=np.array(mem_total, dtype=np.float64).reshape(-1, 2),
        pm_active=np.array(active, dtype=bool),
        pm_rack=np.array(racks, dtype=np.int64),
        vm_ids=_str_array(list(vm_index)),
        vm_cpu=np.array(vm_cpu, dtype=np.int64),
        vm_mem=np.array(vm_mem, dtype=np.float64),
        vm_double=np.array(vm_double, dtype=bool),
        vm_pm=np.array(vm_pm, dtype=np.int64),
        vm_placement=np.array(vm_place, dtype=np.int64),
        vm_migratable=np.array(vm_mig, dtype=bool),
        group_granularity=np.array(granularity, dtype=np.int64),
        group_members=members_of,
        name=name,
    )
    try:
        snap.validate()
    except SnapshotError as err:
        raise SnapshotError(f"{source}: {err}" if not str(err).startswith(source) else str(err)) from None
    snap.info.update(_free_field_report(snap, free_cpu, free_mem, source))
    return snap


_UTF32 = "utf-32-le" if sys.byteorder == "little" else "utf-32-be"  # numpy's native str layout


def _str_array(items: list[str]) -> np.ndarray:
    """``np.array(items, dtype=str)``, the same array: ids of one length (as the VMR2L files
    write them: 22 characters) joined and read as UTF-32 in one go. On the medium snapshot's
    2,089 VM ids 0.06 ms instead of 0.12 ms (numpy converts str by str)."""
    lengths = list(map(len, items))
    if lengths and lengths[0] > 0 and lengths.count(lengths[0]) == len(lengths):
        try:
            text = "".join(items).encode(_UTF32)
        except UnicodeEncodeError:  # a lone surrogate: numpy's error, or not, as numpy decides
            pass
        else:
            return np.frombuffer(text, dtype=np.dtype(f"U{lengths[0]}")).copy()
    return np.array(items, dtype=str)


def _free_field_report(
    snap: ClusterSnapshot,
    free_cpu: Sequence[float | None] | np.ndarray,
    free_mem: Sequence[float | None] | np.ndarray,
    source: str,
) -> dict[str, Any]:
    """Compare the file's free fields with the free capacity its VMs leave (informational)."""
    used_cpu, used_mem = snap.usage()
    derived_cpu = snap.pm_cpu_total - used_cpu
    derived_mem = snap.pm_mem_total - used_mem
    # numpy reads None as NaN in a float64 array
    file_cpu = np.array(free_cpu, dtype=np.float64).reshape(-1, 2)
    file_mem = np.array(free_mem, dtype=np.float64).reshape(-1, 2)
    cpu_diff = np.where(np.isnan(file_cpu), 0.0, np.abs(file_cpu - derived_cpu))
    mem_diff = np.where(np.isnan(file_mem), 0.0, np.abs(file_mem - derived_mem))
    mismatch = (cpu_diff > 0) | (mem_diff > FREE_MEM_TOLERANCE_MB)
    report: dict[str, Any] = {
        "free_field_mismatches": int(mismatch.sum()),
        "free_fields_missing": int(np.isnan(file_cpu).sum() + np.isnan(file_mem).sum()),
    }
    if mismatch.any():
        # the worst host: largest CPU disagreement, then largest memory disagreement
        per_host_cpu, per_host_mem = cpu_diff.max(1), mem_diff.max(1)
        worst = int(np.lexsort((per_host_mem, per_host_cpu))[-1])
        report.update(
            free_field_worst_host=str(snap.pm_ids[worst]),
            free_field_worst_cpu=float(per_host_cpu[worst]),
            free_field_worst_mem_mb=float(per_host_mem[worst]),
        )
        message = (
            f"{source}: the free CPU/memory fields of {report['free_field_mismatches']} NUMA node(s) disagree "
            f"with their VMs (worst: PM {report['free_field_worst_host']}, {per_host_cpu[worst]:g} cores, "
            f"{per_host_mem[worst]:.0f} MB); usage is derived from the VMs, as VMR2L does"
        )
        warnings.warn(message, SnapshotWarning, stacklevel=3)
        log.warning(message)
    return report


# --------------------------------------------------------------------------- writer
def snapshot_to_vmr2l(snapshot: ClusterSnapshot, *, free_fields: str = "consistent") -> dict[str, Any]:
    """``snapshot`` in the VMR2L JSON format (one cluster).

    Args:
        free_fields: ``"consistent"`` (free = totals minus the VMs), ``"vmr2l"`` (as VMR2L's
            writer fills them: NUMA node 1's free memory is node 0's), or ``"omit"``.
    """
    if free_fields not in ("consistent", "vmr2l", "omit"):
        raise ValueError(f"free_fields {free_fields!r}: 'consistent', 'vmr2l' or 'omit'")
    s = snapshot
    used_cpu, used_mem = s.usage()
    hosts = []
    for p in range(s.n_pms):
        numa = []
        for n in (0, 1):
            node: dict[str, Any] = {
                "node": n,
                "total_cpu": int(s.pm_cpu_total[p, n]),
                "memory_huge_total_mb": float(s.pm_mem_total[p, n]),
            }
            if free_fields != "omit":
                mem_node = 0 if free_fields == "vmr2l" else n
                node["free_cpu"] = int(s.pm_cpu_total[p, n] - used_cpu[p, n])
                node["memory_huge_free_mb"] = float(s.pm_mem_total[p, mem_node] - used_mem[p, mem_node])
            numa.append(node)
        hosts.append(
            {
                "node_id": str(s.pm_ids[p]),
                "status": "ACTIVE" if s.pm_active[p] else "OUTAGE",
                "rack_id": f"rack{int(s.pm_rack[p])}",
                "numa": numa,
            }
        )
    vms = []
    for v in range(s.n_vms):
        nodes = (0, 1) if s.vm_placement[v] == PLACE_BOTH else (int(s.vm_placement[v]),)
        vms.append(
            {
                "instance_id": str(s.vm_ids[v]),
                "host_id": str(s.pm_ids[s.vm_pm[v]]),
                "allow_migration": bool(s.vm_migratable[v]),
                "numa": [{"node": n, "cpu": int(s.vm_cpu[v]), "mem_mb": float(s.vm_mem[v])} for n in nodes],
            }
        )
    sets = [
        {"granularity": "host" if g == GRANULARITY_HOST else "rack", "data": [str(s.vm_ids[i]) for i in members]}
        for g, members in zip(s.group_granularity, s.group_members, strict=True)
    ]
    return {"cluster_list": [{"host_info": hosts, "vm_instance": vms, "other_requirement": {"deployment_set": sets}}]}
