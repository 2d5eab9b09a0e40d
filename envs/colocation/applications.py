"""The 11 CloudPerfTrace applications and the host they share (CloudFormer, arXiv 2509.03394).

Published facts (paper, Table III and Sec. 5; ``/work/shared/PAPERS.md``) are marked *paper*.
The per-application resource profiles are not published: they are *assumed* from the public
characterisations cited beside each column, and only their order of magnitude matters; the one
free parameter per application, the contention exponent ``gamma``, is calibrated so that the
simulated P range matches Table III (``envs/colocation/calibration.py``; never on a model's score).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# How an application's performance metric PM responds to contention (paper, Sec. 5: ops/s, req/s,
# execution time, latency, throughput, ops/ms).
OPEN_LOOP = "open_loop"  # throughput under an open-loop request-rate trace: served = min(offered, capacity)
LATENCY = "latency"  # mean latency of an M/M/1-like server at utilisation offered / capacity
EXEC_TIME = "exec_time"  # a fixed amount of work: time to finish at the co-located speed


@dataclass(frozen=True)
class Application:
    """One application of CloudPerfTrace.

    Args:
        task_id: the ``tasks=<id>`` partition (paper / data README).
        metric: the performance metric PM (paper, Sec. 5).
        kind: ``OPEN_LOOP``, ``LATENCY`` or ``EXEC_TIME``.
        runs: executions in CloudPerfTrace (paper, Table III): the simulator's mix.
        static_share: share of static (constant request rate) runs (paper, Table III).
        p_range: min and max of P over its runs (paper, Table III).
        load: range of the offered request rate relative to the capacity alone (assumed: open-loop
            benchmarks run below their knee; Alluxio's clients saturate it, whence P max 0.93).
        cpu: busy share of the VM's 4 vCPUs at full load (assumed; CloudSuite, Ferdman et al.,
            ASPLOS'12, Fig. 2-3: scale-out services keep cores busy but at low IPC).
        cpi: cycles per instruction alone with its working set in the LLC (assumed from the
            same study: IPC 0.6-1.3 on scale-out workloads).
        wss_mb: LLC working set (assumed; CloudSuite: instruction and data working sets exceed
            the LLC for data serving, web search, analytics).
        mpki: LLC misses per kilo-instruction with the working set cached / with no cache (assumed).
        net_mb_s: network bytes at full load, MB/s (assumed from the benchmarks' request sizes:
            object stores stream MBs per request, Redis small packets at high rates).
        disk_mb_s: disk bytes at full load, MB/s (assumed).
        gamma: contention exponent (``calibration.py``): capacity = (alone / co-located)^gamma.
    """

    task_id: int
    metric: str
    kind: str
    runs: int
    static_share: float
    p_range: tuple[float, float]
    load: tuple[float, float]
    cpu: float
    cpi: float
    wss_mb: float
    mpki: tuple[float, float]
    net_mb_s: float
    disk_mb_s: float
    gamma: float


# Table III of the paper: runs, static share, P min-max: the first three fields after the metric
# kind. gamma (last): calibrated by ``python -m infragym.envs.colocation.calibration`` so that the
# minimum P over the paper's number of runs matches Table III's minimum.
APPLICATIONS: dict[str, Application] = {
    "data_serving": Application(4, "ops/s", OPEN_LOOP, 4209, 0.65, (0.67, 1.00), (0.3, 0.95), 0.60, 1.3, 20, (2.0, 12.0), 150, 40, 0.547),  # noqa: E501
    "redis": Application(5, "req/s", OPEN_LOOP, 4862, 0.51, (0.06, 0.99), (0.3, 1.0), 0.35, 0.9, 12, (1.0, 8.0), 300, 2, 3.22),  # noqa: E501
    "web_search": Application(6, "ops/s", OPEN_LOOP, 2849, 0.76, (0.26, 1.00), (0.3, 1.0), 0.90, 1.1, 30, (1.5, 10.0), 60, 5, 1.939),  # noqa: E501
    "graph_analytics": Application(7, "execution time", EXEC_TIME, 3195, 1.00, (0.86, 0.98), (1.0, 1.0), 0.95, 1.4, 40, (8.0, 30.0), 5, 10, 0.188),  # noqa: E501
    "data_analytics": Application(9, "execution time", EXEC_TIME, 3085, 1.00, (0.88, 0.97), (1.0, 1.0), 0.90, 1.2, 25, (4.0, 18.0), 20, 40, 0.167),  # noqa: E501
    "mlperf": Application(10, "req/s", OPEN_LOOP, 3355, 1.00, (0.84, 0.97), (1.0, 1.2), 0.95, 0.8, 8, (1.0, 6.0), 40, 5, 0.225),  # noqa: E501
    "hbase": Application(11, "latency", LATENCY, 4759, 1.00, (0.58, 0.98), (0.3, 0.7), 0.50, 1.2, 16, (2.0, 12.0), 100, 80, 0.204),  # noqa: E501
    "alluxio": Application(13, "throughput", OPEN_LOOP, 3085, 0.83, (0.58, 0.93), (1.0, 1.3), 0.40, 1.0, 10, (1.5, 9.0), 500, 60, 0.584),  # noqa: E501
    "minio": Application(14, "throughput", OPEN_LOOP, 3139, 0.82, (0.11, 0.99), (0.3, 1.0), 0.35, 1.0, 4, (1.0, 5.0), 700, 200, 2.411),  # noqa: E501
    "tpcc": Application(15, "latency", LATENCY, 2985, 1.00, (0.28, 1.00), (0.2, 0.8), 0.60, 1.3, 14, (3.0, 15.0), 40, 50, 0.283),  # noqa: E501
    "flink": Application(16, "ops/ms", OPEN_LOOP, 3181, 1.00, (0.32, 1.00), (0.3, 1.0), 0.80, 1.0, 18, (2.0, 14.0), 200, 10, 1.279),  # noqa: E501
}  # fmt: skip
APPLICATION_NAMES: tuple[str, ...] = tuple(APPLICATIONS)
TASK_IDS: dict[int, str] = {app.task_id: name for name, app in APPLICATIONS.items()}
# The applications that only ever ran static request rates (Table III static share 100 %): the
# paper's 4 unseen applications per partition are 2 of these and 2 of the others.
STATIC_APPLICATIONS: tuple[str, ...] = tuple(n for n, a in APPLICATIONS.items() if a.static_share >= 1.0)


def profile_arrays() -> dict[str, np.ndarray]:
    """The applications' profiles as arrays indexed by application number (vectorised lookups)."""
    apps = list(APPLICATIONS.values())
    return {
        "cpu": np.array([a.cpu for a in apps]),
        "cpi": np.array([a.cpi for a in apps]),
        "wss": np.array([float(a.wss_mb) for a in apps]),
        "mpki_lo": np.array([a.mpki[0] for a in apps]),
        "mpki_hi": np.array([a.mpki[1] for a in apps]),
        "net": np.array([float(a.net_mb_s) for a in apps]),
        "disk": np.array([float(a.disk_mb_s) for a in apps]),
        "gamma": np.array([a.gamma for a in apps]),
        "load_lo": np.array([a.load[0] for a in apps]),
        "load_hi": np.array([a.load[1] for a in apps]),
        "static": np.array([a.static_share for a in apps]),
        "runs": np.array([float(a.runs) for a in apps]),
    }


@dataclass(frozen=True)
class Host:
    """One socket of the paper's server (2x Intel Xeon Gold 6240; up to 9 server VMs of 4 vCPUs
    and 8 GB per socket, client VMs on the other socket: paper, Sec. 5)."""

    cores: int = 18  # Xeon Gold 6240: 18 cores / 36 threads (Intel ARK)
    llc_mb: float = 24.75  # Xeon Gold 6240 L3 (Intel ARK)
    ghz: float = 2.6  # base frequency (Intel ARK)
    # 6 channels of DDR4-2933 = 140.8 GB/s peak (Intel ARK); ~70 % is sustainable (STREAM-like).
    mem_gb_s: float = 100.0
    mem_latency_ns: float = 85.0  # idle DRAM latency of a Cascade Lake socket (Intel MLC, typical)
    # Hyper-Threading: two busy siblings give ~1.25x one thread's throughput (Marr et al., Intel
    # Technology Journal 2002: up to 30 %), so each runs at ~0.62 of its speed alone.
    smt_speed: float = 0.62
    nic_mb_s: float = 1250.0  # assumed 10 GbE shared by the socket's VMs
    disk_mb_s: float = 500.0  # assumed one shared SATA SSD
    max_vms: int = 9  # paper: up to 9 server VMs per socket
    vcpus: int = 4  # paper: 4 vCPUs / 8 GB per VM
    vm_mem_gb: float = 8.0
