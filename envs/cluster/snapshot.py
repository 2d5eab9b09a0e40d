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

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

N_NUMA = 2
# Placement codes of a VM on its host: NUMA node 0, NUMA node 1, or split across both.
PLACE_NUMA0, PLACE_NUMA1, PLACE_BOTH = 0, 1, 2
N_PLACEMENTS = 3
GRANULARITY_HOST, GRANULARITY_RACK = 0, 1


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

    @property
    def n_pms(self) -> int:
        return len(self.pm_ids)

    @property
    def n_vms(self) -> int:
        return len(self.vm_ids)

    def usage(self) -> tuple[np.ndarray, np.ndarray]:
        """Used CPU and memory per PM and NUMA node, (P, 2) each, from the VM placements."""
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
        bad = np.flatnonzero((self.pm_cpu_total < 0).any(1) | (self.pm_mem_total < 0).any(1))
        if bad.size:
            raise SnapshotError(f"{self.name}: PM {self.pm_ids[bad[0]]} has a negative capacity")
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
            sizes = np.array([len(m) for m in groups], dtype=np.int64)
            members = np.concatenate(groups)
            group = np.repeat(np.arange(len(groups)), sizes)
            host = self.vm_pm[members]
            by_host = np.repeat(np.asarray(self.group_granularity) == GRANULARITY_HOST, sizes)
            domain = np.where(by_host, host, self.pm_rack[host])
        except (IndexError, TypeError, ValueError):
            return 0
        order = np.lexsort((domain, group))
        g, d = group[order], domain[order]
        clash = (g[1:] == g[:-1]) & (d[1:] == d[:-1])
        return int(g[1:][clash].min()) if clash.any() else len(groups)


def _field(record: dict[str, Any], key: str, where: str) -> Any:
    if not isinstance(record, dict) or key not in record:
        raise SnapshotError(f"{where}: missing field {key!r}")
    return record[key]


def load_vmr2l_snapshot(path: str | os.PathLike[str]) -> ClusterSnapshot:
    """Read a VMR2L snapshot JSON file; every cluster in it is merged into one pool.

    Raises SnapshotError naming the file and the PM/VM for missing fields, VMs on unknown hosts,
    negative sizes, over-committed NUMA nodes, or free CPU/memory that contradicts the VMs.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise SnapshotError(f"{path}: cannot read a JSON snapshot ({err})") from err
    return parse_vmr2l_snapshot(data, source=str(path), name=str(path))


# Per-item readers. The parser first tries a ``*_fast`` reader: plain indexing of the usual JSON
# types, the same conversions (int(), float(), str(), bool()) and every check, but no error
# text. Anything it does not accept (a failed check, a missing key, an unusual type) goes to the
# ``*_checked`` reader, the original code, which raises the same first error with the same message
# as before (or, for input the fast reader is merely unsure of, returns the same values).
_Host = tuple[str, list[int], list[int], list[float], list[float], bool]
_Vm = tuple[str, str, int, float, bool, int, bool]


def _host_fast(host: Any) -> _Host | None:
    if type(host) is not dict:
        return None
    try:
        node_id = str(host["node_id"])
        numa = host["numa"]
        if type(numa) is not list or len(numa) != 2:
            return None
        a, b = numa
        if type(a) is not dict or type(b) is not dict:
            return None
        na, nb = a["node"], b["node"]
        if type(na) is not int or type(nb) is not int:
            return None
        if na == 0 and nb == 1:  # the stable sort by node the checked reader does
            n0, n1 = a, b
        elif na == 1 and nb == 0:
            n0, n1 = b, a
        else:
            return None
        cpu = [int(n0["total_cpu"]), int(n1["total_cpu"])]
        free_cpu = [int(n0["free_cpu"]), int(n1["free_cpu"])]
        mem = [float(n0["memory_huge_total_mb"]), float(n1["memory_huge_total_mb"])]
        free_mem = [float(n0["memory_huge_free_mb"]), float(n1["memory_huge_free_mb"])]
        active = str(host["status"]).upper() == "ACTIVE"
    except Exception:  # the checked reader reproduces (and names) the error
        return None
    return node_id, cpu, free_cpu, mem, free_mem, active


def _host_checked(host: Any, where: str, path: str, pm_index: dict[str, int]) -> _Host:
    node_id = str(_field(host, "node_id", where))
    hwhere = f"{path}: PM {node_id}"
    if node_id in pm_index:
        raise SnapshotError(f"{hwhere}: duplicate PM id")
    numa = _field(host, "numa", hwhere)
    if not isinstance(numa, list) or sorted(_field(n, "node", hwhere) for n in numa) != [0, 1]:
        raise SnapshotError(f"{hwhere}: expected 'numa' entries for nodes 0 and 1")
    numa = sorted(numa, key=lambda n: n["node"])
    cpu = [int(_field(n, "total_cpu", hwhere)) for n in numa]
    free_cpu = [int(_field(n, "free_cpu", hwhere)) for n in numa]
    mem = [float(_field(n, "memory_huge_total_mb", hwhere)) for n in numa]
    free_mem = [float(_field(n, "memory_huge_free_mb", hwhere)) for n in numa]
    active = str(_field(host, "status", hwhere)).upper() == "ACTIVE"
    return node_id, cpu, free_cpu, mem, free_mem, active


def _vm_fast(vm: Any) -> _Vm | None:
    if type(vm) is not dict:
        return None
    try:
        vid = str(vm["instance_id"])
        host = str(vm["host_id"])
        numa = vm["numa"]
        if type(numa) is not list:
            return None
        if len(numa) == 1:
            (n0,) = numa
            if type(n0) is not dict:
                return None
            cpu, mem, node = int(n0["cpu"]), float(n0["mem_mb"]), int(n0["node"])
            if not (cpu > 0 and mem >= 0 and (node == 0 or node == 1)):
                return None
            double, place = False, node
        elif len(numa) == 2:
            n0, n1 = numa
            if type(n0) is not dict or type(n1) is not dict:
                return None
            cpu, cpu1 = int(n0["cpu"]), int(n1["cpu"])
            mem, mem1 = float(n0["mem_mb"]), float(n1["mem_mb"])
            nodes = [int(n0["node"]), int(n1["node"])]
            if not (cpu > 0 and mem >= 0 and cpu == cpu1 and mem == mem1 and (nodes == [0, 1] or nodes == [1, 0])):
                return None
            double, place = True, PLACE_BOTH
        else:
            return None
        migratable = bool(vm["allow_migration"])
    except Exception:  # the checked reader reproduces (and names) the error
        return None
    return vid, host, cpu, mem, double, place, migratable


def _vm_checked(vm: Any, where: str, path: str, pm_index: dict[str, int], vm_index: dict[str, int]) -> _Vm:
    vid = str(_field(vm, "instance_id", where))
    vwhere = f"{path}: VM {vid}"
    if vid in vm_index:
        raise SnapshotError(f"{vwhere}: duplicate VM id")
    host = str(_field(vm, "host_id", vwhere))
    if host not in pm_index:
        raise SnapshotError(f"{vwhere}: host_id {host!r} is not a PM of the snapshot")
    numa = _field(vm, "numa", vwhere)
    if not isinstance(numa, list) or len(numa) not in (1, 2):
        raise SnapshotError(f"{vwhere}: 'numa' must list 1 or 2 NUMA nodes")
    cpus = [int(_field(n, "cpu", vwhere)) for n in numa]
    mems = [float(_field(n, "mem_mb", vwhere)) for n in numa]
    nodes = [int(_field(n, "node", vwhere)) for n in numa]
    if any(x <= 0 for x in cpus) or any(x < 0 for x in mems):
        raise SnapshotError(f"{vwhere}: negative or zero size (cpu={cpus}, mem_mb={mems})")
    if len(numa) == 2 and (sorted(nodes) != [0, 1] or cpus[0] != cpus[1] or mems[0] != mems[1]):
        raise SnapshotError(f"{vwhere}: a double-NUMA VM must use equal halves on nodes 0 and 1")
    if len(numa) == 1 and nodes[0] not in (0, 1):
        raise SnapshotError(f"{vwhere}: NUMA node {nodes[0]} does not exist (0 or 1)")
    place = PLACE_BOTH if len(numa) == 2 else nodes[0]
    return vid, host, cpus[0], mems[0], len(numa) == 2, place, bool(_field(vm, "allow_migration", vwhere))


def parse_vmr2l_snapshot(data: Any, *, source: str = "snapshot", name: str = "snapshot") -> ClusterSnapshot:
    """A snapshot from the parsed VMR2L JSON (``load_vmr2l_snapshot`` without the file); errors
    name ``source`` and the PM/VM at fault. Only :class:`SnapshotError` leaves it: a field of the
    wrong type (a mapping where a number belongs) is reported as such, never as a TypeError."""
    try:
        return _parse_vmr2l_snapshot(data, source=source, name=name)
    except SnapshotError:
        raise
    except (TypeError, ValueError, AttributeError, KeyError, IndexError, OverflowError) as err:
        raise SnapshotError(f"{source}: a field has the wrong type or value ({type(err).__name__}: {err})") from err


def _parse_vmr2l_snapshot(data: Any, *, source: str, name: str) -> ClusterSnapshot:
    path = source
    clusters = _field(data, "cluster_list", str(path))
    if not isinstance(clusters, list) or not clusters:
        raise SnapshotError(f"{path}: 'cluster_list' must be a non-empty list")
    pm_ids: list[str] = []
    # per NUMA node, PM-major (flat for the same reason as the VM lists below)
    cpu_total: list[int] = []
    mem_total: list[float] = []
    free_cpu: list[int] = []
    free_mem: list[float] = []
    active: list[bool] = []
    racks: list[int] = []
    groups: dict[tuple[int, tuple[str, ...]], None] = {}
    pm_index: dict[str, int] = {}
    rack_codes: dict[str, int] = {}
    for c, cluster in enumerate(clusters):
        where = f"{path} cluster_list[{c}]"
        for h, host in enumerate(_field(cluster, "host_info", where)):
            parsed = _host_fast(host)
            if parsed is None or parsed[0] in pm_index:
                parsed = _host_checked(host, f"{where} host_info[{h}]", path, pm_index)
            node_id, cpu, fcpu, mem, fmem, is_active = parsed
            pm_index[node_id] = len(pm_ids)
            pm_ids.append(node_id)
            cpu_total.extend(cpu)
            free_cpu.extend(fcpu)
            mem_total.extend(mem)
            free_mem.extend(fmem)
            active.append(is_active)
            racks.append(rack_codes.setdefault(str(host.get("rack_id", "")), len(rack_codes)))
        for s in (cluster.get("other_requirement") or {}).get("deployment_set", []) or []:
            gran = _field(s, "granularity", f"{where} deployment_set")
            if gran not in ("host", "rack"):
                raise SnapshotError(f"{where}: deployment_set granularity {gran!r}, expected 'host' or 'rack'")
            code = GRANULARITY_HOST if gran == "host" else GRANULARITY_RACK
            groups[(code, tuple(sorted(set(map(str, _field(s, "data", f"{where} deployment_set"))))))] = None
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
        where = f"{path} cluster_list[{c}]"
        for i, vm in enumerate(_field(cluster, "vm_instance", where)):
            parsed_vm = _vm_fast(vm)
            if parsed_vm is None or parsed_vm[0] in vm_index or parsed_vm[1] not in pm_index:
                parsed_vm = _vm_checked(vm, f"{where} vm_instance[{i}]", path, pm_index, vm_index)
            vid, host_id, cpu0, mem0, double, place, migratable = parsed_vm
            vm_index[vid] = len(vm_ids)
            vm_ids.append(vid)
            vm_cpu.append(cpu0)
            vm_mem.append(mem0)
            vm_double.append(double)
            vm_pm.append(pm_index[host_id])
            vm_place.append(place)
            vm_mig.append(migratable)
    granularity = []
    members = []
    for code, ids in groups:
        present = np.array(sorted(vm_index[i] for i in ids if i in vm_index), dtype=np.int64)
        if present.size >= 2:  # a group with 0 or 1 VM of this snapshot constrains nothing
            granularity.append(code)
            members.append(present)
    snap = ClusterSnapshot(
        pm_ids=np.array(pm_ids),
        pm_cpu_total=np.array(cpu_total, dtype=np.int64).reshape(-1, 2),
        pm_mem_total=np.array(mem_total, dtype=np.float64).reshape(-1, 2),
        pm_active=np.array(active, dtype=bool),
        pm_rack=np.array(racks, dtype=np.int64),
        vm_ids=np.array(vm_ids),
        vm_cpu=np.array(vm_cpu, dtype=np.int64),
        vm_mem=np.array(vm_mem, dtype=np.float64),
        vm_double=np.array(vm_double, dtype=bool),
        vm_pm=np.array(vm_pm, dtype=np.int64),
        vm_placement=np.array(vm_place, dtype=np.int64),
        vm_migratable=np.array(vm_mig, dtype=bool),
        group_granularity=np.array(granularity, dtype=np.int64),
        group_members=members,
        name=name,
    )
    snap.validate()
    # The file's free counters must agree with its VMs (else it lost or invented VMs).
    used_cpu, used_mem = snap.usage()
    mismatch = (snap.pm_cpu_total - used_cpu != np.array(free_cpu).reshape(-1, 2)) | (
        np.abs(snap.pm_mem_total - used_mem - np.array(free_mem).reshape(-1, 2)) > 1e-3
    )
    if mismatch.any():
        p, n = np.argwhere(mismatch)[0]
        raise SnapshotError(
            f"{path}: PM {pm_ids[p]} NUMA node {n}: free CPU/memory in the file ({free_cpu[2 * p + n]} cores, "
            f"{free_mem[2 * p + n]:.0f} MB) contradicts its VMs ({snap.pm_cpu_total[p, n] - used_cpu[p, n]} cores, "
            f"{snap.pm_mem_total[p, n] - used_mem[p, n]:.0f} MB free)"
        )
    return snap
