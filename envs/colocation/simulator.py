"""Executions of co-located VMs: request-rate traces -> contention -> P and black-box telemetry.

One *execution* (the unit of CloudPerfTrace, arXiv 2509.03394) is one application run in a
target VM under one co-location (1-8 neighbours drawn at random among the 11 applications, each
with its own request-rate trace) and one request-rate trace, observed every second. Its label is
the paper's P = PM_ideal / PM_actual (for throughput: actual / ideal), where PM_ideal is the same
trace *replayed alone* on the host: the simulator computes both runs from the same trace.

Mechanisms, each second, vectorised over executions, seconds and the 9 VM slots of a socket:

1. **Request rates** per scenario (paper, Sec. 5): static levels, monotonic ramps, periodic
   (three frequencies: periods 20, 60 and 180 s) and random (piecewise-constant levels that
   change at random times). Static shares per application: Table III.
2. **Shared LLC**: occupancy shares in proportion to each VM's insertion (miss) intensity, as
   LRU sharing does (Chandra et al., HPCA'05; Qureshi & Patt, MICRO'06), capped at the working
   set; a VM's occupancy *refills* slowly (time constant 8 s, assumed) after a neighbour leaves or
   when it starts cold, but is *evicted* at once: transients after every co-location change.
   Working sets change between phases (x0.6-1.4 every ~60 s, assumed).
3. **Miss curves**: MPKI = MPKI_cached x (working set / occupancy)^0.5 up to MPKI_uncached (the
   square-root rule, Hartstein et al., CF'06).
4. **Memory bandwidth queueing**: the loaded DRAM latency L = L0 (1 + 0.6 rho / (1 - rho)) with
   rho the socket's bandwidth utilisation (capped at 0.97): flat at low load, steep near
   saturation, the shape of Intel MLC loaded-latency curves; CPI = CPI0 x SMT + MPKI/1000 x L x
   f x (1 - MLP overlap 0.5); solved as a fixed point (bandwidth depends on CPI).
5. **SMT**: 9 VMs x 4 vCPUs fill the socket's 36 hyper-threads; once more than 18 threads are
   busy, the excess pairs share cores at 0.62 of their speed (Marr et al., 2002).
6. **Network and disk**: a shared 10 GbE NIC and SSD (assumed); demand beyond capacity is
   shared in proportion (processor sharing).
7. **Performance**: slowdown = max(CPI co-located / CPI alone, 1 / NIC share, 1 / disk share)
   ^ gamma (gamma per application: ``calibration.py``, matched to Table III's P minimum). Open-loop
   throughput serves min(offered, capacity); latency follows an M/M/1 server (service time x
   slowdown / (1 - utilisation)); execution time integrates progress until the fixed work is done
   (the execution is then longer than alone: T_i varies with contention).
8. **Telemetry** (black-box): 20 latent quantities per VM (CPU time, instructions, cycles, IPC,
   LLC references / misses / occupancy, memory bandwidth, network and disk bytes, memory, context
   switches, top-down fractions, steal) read through a fixed metric catalogue into the paper's
   groups (53 libvirt, 38 perf, 12 top-down per VM; ``_oth`` = mean over the neighbours) with
   scales spanning orders of magnitude, multiplexing noise and a few constant metrics. The
   application's own work rate is not a metric: instructions per request and bytes per request
   vary per execution (log-normal, sigma 0.35, assumed), and CPU time *rises* under contention.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from infragym.envs.colocation.applications import (
    APPLICATION_NAMES,
    APPLICATIONS,
    EXEC_TIME,
    LATENCY,
    OPEN_LOOP,
    Host,
    profile_arrays,
)

GROUPS: tuple[str, ...] = ("tr_self", "lin_self", "td_self", "tr_oth", "lin_oth", "td_oth")
# Paper (Sec. 5): 53 libvirt VM metrics, 38 perf hardware counters, 12 Intel top-down metrics.
PAPER_GROUP_SIZES: dict[str, int] = {"tr": 53, "lin": 38, "td": 12}
SCENARIOS: tuple[str, ...] = ("static", "monotonic", "periodic", "random")
PERIODS_S = np.array([20.0, 60.0, 180.0])  # the three periodic frequencies (assumed periods)
REFILL_S = 8.0  # LLC refill time constant (assumed)
PHASE_S = 60.0  # mean phase length of a working set (assumed)
MLP_OVERLAP = 0.5  # share of miss latency hidden by memory-level parallelism (assumed)
UNIX_START = 1_640_995_200.0  # 2022-01-01: executions get Unix timestamps, as the real rows
# Latent quantities per VM and second, and which collector reads which (tr: libvirt, lin: perf
# counters, td: top-down).
LATENTS = (
    "cpu_util", "instructions", "cycles", "ipc", "llc_references", "llc_misses", "llc_occupancy", "mem_bandwidth",
    "net_rx", "net_tx", "net_packets", "disk_read", "disk_write", "mem_used", "context_switches", "memory_bound",
    "smt_shared", "frontend_bound", "bad_speculation", "steal",
)  # fmt: skip
_COLLECTOR_LATENTS = {
    "tr": [0, 6, 7, 8, 9, 10, 11, 12, 13, 14, 19, 2],
    "lin": [1, 2, 3, 4, 5, 7, 15, 16, 17, 18],
    "td": [3, 15, 16, 17, 18],
}


def group_sizes(per_vm: dict[str, int] | None = None) -> dict[str, int]:
    """Metrics per group in ``GROUPS`` order (default: the paper's 53 / 38 / 12 per VM)."""
    per_vm = dict(per_vm or PAPER_GROUP_SIZES)
    for kind in ("tr", "lin", "td"):
        if int(per_vm.get(kind, 0)) < 1:
            raise ValueError(f"group_sizes.{kind} must be >= 1, got {per_vm.get(kind)}")
    return {f"{kind}_{side}": int(per_vm[kind]) for side in ("self", "oth") for kind in ("tr", "lin", "td")}


@dataclass
class MetricCatalogue:
    """How each metric reads the latents: fixed by a seed, shared by every execution (as one
    collector's metric semantics are)."""

    names: dict[str, list[str]]  # collector (tr / lin / td) -> metric names
    weights: dict[str, np.ndarray]  # collector -> (len(LATENTS), n) non-negative
    scale: dict[str, np.ndarray]  # collector -> (n,)
    noise: dict[str, np.ndarray]  # collector -> (n,) multiplicative noise sigma


def make_catalogue(per_vm: dict[str, int], seed: int) -> MetricCatalogue:
    """A catalogue with ``per_vm[kind]`` metrics per collector; every latent a collector reads
    appears as some metric's main input; ~5 % of the metrics are constant (e.g. a balloon size)."""
    rng = np.random.default_rng(seed)
    cat = MetricCatalogue({}, {}, {}, {})
    for kind in ("tr", "lin", "td"):
        size, allowed = int(per_vm[kind]), _COLLECTOR_LATENTS[kind]
        main = np.array([allowed[j % len(allowed)] for j in range(size)])
        weights = np.zeros((len(LATENTS), size))
        weights[main, np.arange(size)] = 1.0
        second = rng.random(size) < 0.35
        other = rng.choice(allowed, size=size)
        weights[other[second], np.flatnonzero(second)] += rng.uniform(0.1, 0.6, int(second.sum()))
        constant = rng.random(size) < 0.05
        weights[:, constant] = 0.0
        cat.weights[kind] = weights
        cat.scale[kind] = np.where(kind == "td", 1.0, 10.0 ** rng.uniform(-1.0, 4.0, size))
        cat.noise[kind] = rng.uniform(0.02, 0.12 if kind == "lin" else 0.06, size)  # perf multiplexing
        cat.names[kind] = [f"{'const' if constant[j] else LATENTS[main[j]]}_{j}" for j in range(size)]
    return cat


@dataclass
class SimulatedExecutions:
    """Executions in the real data's terms (what ``write_cloudperf`` stores as rows)."""

    metrics: list[np.ndarray]  # per execution (T_i, n_metrics) float32, GROUPS order
    timestamps: list[np.ndarray]  # per execution (T_i,) float64 Unix seconds
    perf: np.ndarray  # (n,) P in (0, 1]
    application: np.ndarray  # (n,) str
    scenario: np.ndarray  # (n,) str, one of SCENARIOS
    workload: np.ndarray  # (n,) int: the request-rate level id (static level or trace kind)
    n_neighbours: np.ndarray  # (n,) int
    group_sizes: dict[str, int]
    metric_names: list[str] = field(default_factory=list)


class ColocationSimulator:
    """Simulates CloudPerfTrace-like executions (see the module docstring for the mechanisms).

    Args:
        n_executions: executions in all, split over the applications in Table III's proportions.
        min_seconds / max_seconds: duration range of an execution (execution-time applications
            run until their work is done, so they exceed it under contention).
        group_sizes: metrics per VM per collector (``tr``, ``lin``, ``td``); default the paper's.
        max_neighbours: up to ``Host.max_vms - 1`` neighbours (paper: up to 9 VMs per socket).
        change_probability: chance that a neighbour arrives or leaves during an execution.
        catalogue_seed: the collector's metric semantics (not the data's seed).
        applications: the applications simulated (default all 11).
        chunk: executions simulated together (memory ~ chunk x seconds x 9 VMs x 20 latents).
        gamma: per-application contention exponents replacing Table ``APPLICATIONS``' (calibration).
    """

    def __init__(
        self,
        *,
        n_executions: int = 660,
        min_seconds: int = 60,
        max_seconds: int = 180,
        group_sizes: dict[str, int] | None = None,
        max_neighbours: int = 8,
        change_probability: float = 0.3,
        catalogue_seed: int = 20250903,
        applications: tuple[str, ...] | list[str] | None = None,
        chunk: int = 64,
        gamma: dict[str, float] | None = None,
    ) -> None:
        if not 1 <= min_seconds <= max_seconds:
            raise ValueError(f"need 1 <= min_seconds <= max_seconds, got {min_seconds}, {max_seconds}")
        if not 1 <= max_neighbours <= Host.max_vms - 1:
            raise ValueError(f"max_neighbours must be in [1, {Host.max_vms - 1}], got {max_neighbours}")
        apps = list(applications or APPLICATION_NAMES)
        unknown = [a for a in apps if a not in APPLICATIONS]
        if unknown:
            raise ValueError(f"unknown applications {unknown}; known: {list(APPLICATION_NAMES)}")
        if n_executions < len(apps):
            raise ValueError(f"n_executions ({n_executions}) must be >= the number of applications ({len(apps)})")
        self.n_executions, self.min_seconds, self.max_seconds = n_executions, min_seconds, max_seconds
        self.per_vm = dict(group_sizes or PAPER_GROUP_SIZES)
        self.group_sizes = globals()["group_sizes"](self.per_vm)
        self.max_neighbours, self.change_probability = max_neighbours, change_probability
        self.applications, self.chunk = apps, chunk
        self.host = Host()
        self.profile = profile_arrays()
        for name, value in (gamma or {}).items():  # calibration.py tries exponents this way
            self.profile["gamma"][APPLICATION_NAMES.index(name)] = float(value)
        self.catalogue = make_catalogue(self.per_vm, catalogue_seed)
        self.metric_names = [f"{g}.{n}" for g in GROUPS for n in self.catalogue.names[g.split("_")[0]]]

    # ------------------------------------------------------------------ public
    def executions_per_application(self) -> dict[str, int]:
        """Table III's run counts, scaled to ``n_executions`` (each application at least 1)."""
        runs = np.array([APPLICATIONS[a].runs for a in self.applications], float)
        counts = np.maximum(1, np.floor(self.n_executions * runs / runs.sum()).astype(int))
        counts[np.argsort(-runs)[: max(0, self.n_executions - counts.sum())]] += 1
        return dict(zip(self.applications, counts.tolist(), strict=True))

    def simulate(self, rng: np.random.Generator, *, telemetry: bool = True) -> SimulatedExecutions:
        """All executions; ``telemetry=False`` computes only P (fidelity checks at large sample)."""
        apps = np.concatenate(
            [np.full(n, APPLICATION_NAMES.index(a)) for a, n in self.executions_per_application().items()]
        )
        rng.shuffle(apps)
        parts = [
            self._simulate_chunk(apps[lo : lo + self.chunk], rng, telemetry) for lo in range(0, len(apps), self.chunk)
        ]
        metrics = [m for p in parts for m in p["metrics"]]
        stamps = [s for p in parts for s in p["timestamps"]]
        return SimulatedExecutions(
            metrics=metrics,
            timestamps=stamps,
            perf=np.concatenate([p["perf"] for p in parts]).astype(np.float32),
            application=np.array([APPLICATION_NAMES[a] for a in apps]),
            scenario=np.concatenate([p["scenario"] for p in parts]),
            workload=np.concatenate([p["workload"] for p in parts]),
            n_neighbours=np.concatenate([p["n_neighbours"] for p in parts]),
            group_sizes=dict(self.group_sizes),
            metric_names=list(self.metric_names),
        )

    # ------------------------------------------------------------------ traces
    def _loads(
        self, app: np.ndarray, length: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Request rate relative to the capacity alone, ``(*app.shape, length)``, per scenario."""
        lo, hi = self.profile["load_lo"][app], self.profile["load_hi"][app]
        static = rng.random(app.shape) < self.profile["static"][app]
        kind = np.where(static, 0, rng.integers(1, 4, app.shape))
        t = np.arange(length, dtype=float)
        u = lambda: rng.random(app.shape)[..., None]  # noqa: E731
        lo_, hi_ = lo[..., None], hi[..., None]
        level = lo_ + (hi_ - lo_) * u()
        # static: 8 levels, as a load generator's fixed steps (assumed)
        static_load = lo_ + (hi_ - lo_) * np.floor(8 * u()) / 7
        start, end = lo_ + (hi_ - lo_) * u(), lo_ + (hi_ - lo_) * u()
        monotonic = start + (end - start) * t / max(1, length - 1)
        period = PERIODS_S[rng.integers(0, 3, app.shape)][..., None]
        periodic = level + 0.5 * np.minimum(level - lo_, hi_ - level) * 2 * np.sin(2 * np.pi * t / period + 6.3 * u())
        changes = np.cumsum(rng.random((*app.shape, length)) < 1.0 / 15.0, axis=-1)
        table = lo_ + (hi_ - lo_) * rng.random((*app.shape, length + 1))
        random = np.take_along_axis(table, changes, axis=-1)
        load = np.select([kind[..., None] == k for k in range(4)], [static_load, monotonic, periodic, random])
        workload = np.where(kind == 0, np.rint(7 * (static_load[..., 0] - lo) / np.maximum(hi - lo, 1e-9)), 7 + kind)
        return np.clip(load, 0.02, None), kind, workload.astype(int)

    # ------------------------------------------------------------------ one chunk
    def _simulate_chunk(self, apps: np.ndarray, rng: np.random.Generator, telemetry: bool) -> dict:
        host, prof = self.host, self.profile
        n, v = len(apps), host.max_vms
        kinds = np.array([APPLICATIONS[APPLICATION_NAMES[a]].kind for a in apps])
        nominal = rng.integers(self.min_seconds, self.max_seconds + 1, n)
        # execution-time jobs may run up to 1 / P_min longer co-located (Table III: >= 0.86)
        horizon = np.where(kinds == EXEC_TIME, np.ceil(nominal / 0.8).astype(int), nominal)
        length = int(horizon.max())
        # VM slots: 0 the target, 1..8 neighbours (random applications, random count)
        n_neigh = rng.integers(1, self.max_neighbours + 1, n)
        slot_app = np.concatenate([apps[:, None], rng.integers(0, len(APPLICATION_NAMES), (n, v - 1))], axis=1)
        present = np.arange(v)[None] <= n_neigh[:, None]
        load, scen, workload = self._loads(slot_app, length, rng)
        t = np.arange(length)
        arrive = np.where(rng.random((n, v)) < self.change_probability / 2, rng.integers(0, length, (n, v)), 0)
        leave = np.where(rng.random((n, v)) < self.change_probability / 2, rng.integers(0, length, (n, v)), length)
        arrive[:, 0], leave[:, 0] = 0, length
        active = present[..., None] & (t >= arrive[..., None]) & (t < np.maximum(leave, arrive + 1)[..., None])
        load = np.where(active, load, 0.0)  # (n, v, T)
        # working-set phases (x0.6-1.4, switching at Poisson times)
        phase = np.cumsum(rng.random((n, v, length)) < 1.0 / PHASE_S, axis=-1)
        phase_scale = np.take_along_axis(rng.uniform(0.6, 1.4, (n, v, length + 1)), phase, axis=-1)

        cpu = prof["cpu"][slot_app][..., None]
        threads = host.vcpus * cpu * np.minimum(load, 1.0)  # busy vCPUs
        wss = prof["wss"][slot_app][..., None] * phase_scale
        mlo, mhi = prof["mpki_lo"][slot_app][..., None], prof["mpki_hi"][slot_app][..., None]
        cpi0 = prof["cpi"][slot_app][..., None]
        net = prof["net"][slot_app][..., None] * load
        disk = prof["disk"][slot_app][..., None] * load

        co = self._contention(threads, wss, mlo, mhi, cpi0, net, disk, active, arrive)
        # each VM replayed alone (the paper's PM_ideal): the whole LLC, no SMT sharing, own bandwidth
        alone = self._contention_alone(threads, wss, mlo, mhi, cpi0, net, disk)
        gamma = prof["gamma"][slot_app][..., None]
        raw = np.maximum(
            np.maximum(co["cpi"] / alone["cpi"], alone["net_share"] / co["net_share"]), 1.0 / co["disk_share"]
        )
        slowdown = np.where(active, np.maximum(raw, 1.0) ** gamma, 1.0)

        perf = np.empty(n)
        lengths = nominal.copy()
        target_load, target_slow = load[:, 0], slowdown[:, 0]
        in_run = t[None] < nominal[:, None]
        for k, mask in ((OPEN_LOOP, kinds == OPEN_LOOP), (LATENCY, kinds == LATENCY)):
            if not mask.any():
                continue
            offered, s, run = target_load[mask], target_slow[mask], in_run[mask]
            if k == OPEN_LOOP:
                ideal = (np.minimum(offered, 1.0) * run).sum(-1)
                actual = (np.minimum(offered, 1.0 / s) * run).sum(-1)
                perf[mask] = actual / ideal
            else:
                lat_alone = 1.0 / (1.0 - np.minimum(offered, 0.99))
                lat_co = s / (1.0 - np.minimum(offered * s, 0.99))
                perf[mask] = (lat_alone * offered * run).sum(-1) / (lat_co * offered * run).sum(-1)
        jobs = kinds == EXEC_TIME
        if jobs.any():
            progress = np.cumsum(1.0 / target_slow[jobs], axis=-1)
            work = nominal[jobs].astype(float)
            done = progress >= work[:, None]
            finished = np.where(done.any(-1), done.argmax(-1) + 1, length)
            extra = np.where(done.any(-1), 0.0, (work - progress[:, -1]) * target_slow[jobs][:, -1])
            lengths[jobs] = finished
            perf[jobs] = work / (finished + extra)
        perf = np.clip(perf, 1e-3, 1.0)
        out = {
            "perf": perf,
            "scenario": np.array(SCENARIOS)[scen[:, 0]],
            "workload": workload[:, 0],
            "n_neighbours": n_neigh,
            "metrics": [],
            "timestamps": [],
        }
        if telemetry:
            latents = self._latents(slot_app, load, slowdown, co, active, rng)
            metrics = self._read_metrics(latents, active, rng)  # (n, T, n_metrics)
            starts = UNIX_START + np.sort(rng.uniform(0, 317 * 86400, n)).round()  # paper: ~317 days
            out["metrics"] = [metrics[i, : lengths[i]] for i in range(n)]
            out["timestamps"] = [starts[i] + np.arange(lengths[i], dtype=np.float64) for i in range(n)]
        return out

    def _contention(self, threads, wss, mlo, mhi, cpi0, net, disk, active, arrive) -> dict[str, np.ndarray]:
        """Co-located: shared LLC with refill lag, SMT, bandwidth queueing fixed point, NIC/SSD."""
        host = self.host
        busy = threads.sum(axis=1, keepdims=True)
        smt_share = np.clip(2.0 * (busy - host.cores) / np.maximum(busy, 1e-9), 0.0, 1.0)
        smt = 1.0 + smt_share * (1.0 / host.smt_speed - 1.0)
        intensity = threads * mhi
        target = host.llc_mb * intensity / np.maximum(intensity.sum(axis=1, keepdims=True), 1e-9)
        capped = np.minimum(target, wss)
        spare = np.maximum(host.llc_mb - capped.sum(axis=1, keepdims=True), 0.0)
        room = np.where(target < wss, intensity, 0.0)
        target = np.minimum(wss, capped + spare * room / np.maximum(room.sum(axis=1, keepdims=True), 1e-9))
        occ = np.empty_like(target)
        refill = 1.0 - np.exp(-1.0 / REFILL_S)
        occ[..., 0] = np.where(arrive > 0, 0.0, target[..., 0])
        for s in range(1, target.shape[-1]):  # a recurrence in time, vectorised over executions and VMs
            prev = np.where(active[..., s - 1], occ[..., s - 1], 0.0)
            occ[..., s] = np.where(target[..., s] > prev, prev + (target[..., s] - prev) * refill, target[..., s])
        return self._pipeline(threads, wss, mlo, mhi, cpi0, occ, smt, net, disk, shared=True) | {
            "occupancy": occ,
            "smt_share": np.broadcast_to(smt_share, threads.shape),
        }

    def _contention_alone(self, threads, wss, mlo, mhi, cpi0, net, disk) -> dict[str, np.ndarray]:
        occ = np.minimum(wss, self.host.llc_mb)
        return self._pipeline(threads, wss, mlo, mhi, cpi0, occ, 1.0, net, disk, shared=False)

    def _pipeline(self, threads, wss, mlo, mhi, cpi0, occ, smt, net, disk, *, shared: bool) -> dict[str, np.ndarray]:
        host = self.host
        mpki = np.clip(mlo * np.sqrt(wss / np.maximum(occ, 1e-3)), mlo, mhi)
        latency = np.full_like(threads, host.mem_latency_ns)
        for _ in range(4):  # fixed point: bandwidth <- CPI <- loaded latency <- bandwidth
            cpi = cpi0 * smt + mpki / 1000.0 * latency * host.ghz * (1.0 - MLP_OVERLAP)
            instr = threads * host.ghz / cpi  # 1e9 instructions / s
            bandwidth = instr * mpki / 1000.0 * 64.0 * 1.4  # GB/s, with write-backs
            total = bandwidth.sum(axis=1, keepdims=True) if shared else bandwidth
            rho = np.minimum(total / host.mem_gb_s, 0.97)
            latency = host.mem_latency_ns * (1.0 + 0.6 * rho / (1.0 - rho))
        net_total = net.sum(axis=1, keepdims=True) if shared else net
        disk_total = disk.sum(axis=1, keepdims=True) if shared else disk
        return {
            "cpi": cpi,
            "mpki": mpki,
            "instructions": instr,
            "bandwidth": bandwidth,
            "latency": latency,
            "net_share": np.minimum(1.0, host.nic_mb_s / np.maximum(net_total, 1e-9)),
            "disk_share": np.minimum(1.0, host.disk_mb_s / np.maximum(disk_total, 1e-9)),
        }

    # ------------------------------------------------------------------ telemetry
    def _latents(self, slot_app, load, slowdown, co, active, rng) -> np.ndarray:
        """(n, v, T, len(LATENTS)) black-box quantities of every VM."""
        host, prof = self.host, self.profile
        n, v, _ = load.shape
        per_exec = lambda: rng.lognormal(0.0, 0.35, (n, v, 1))  # noqa: E731 - request mix of the execution
        served = np.minimum(load, 1.0 / slowdown)
        cpu = prof["cpu"][slot_app][..., None]
        util = np.clip(cpu * np.minimum(load, 1.0) * slowdown**0.7, 0.0, 1.0) * active
        cycles = host.vcpus * util * host.ghz
        ipc = 1.0 / co["cpi"]
        # busy-polling threads retire instructions without serving requests (assumed share 0.3)
        instructions = cycles * ipc * (0.7 * served / np.maximum(np.minimum(load, 1.0), 1e-3) + 0.3) * per_exec()
        misses = instructions * co["mpki"] / 1000.0
        references = misses * rng.uniform(2.0, 6.0, (n, v, 1))
        rx = prof["net"][slot_app][..., None] * load * per_exec() * co["net_share"]
        tx = prof["net"][slot_app][..., None] * served * per_exec()
        packets = (rx + tx) / rng.uniform(0.2, 1.4, (n, v, 1))
        disk = prof["disk"][slot_app][..., None] * served * per_exec()
        mem_used = np.minimum(host.vm_mem_gb, (1.0 + 0.4 * prof["wss"][slot_app][..., None]) * (0.6 + 0.4 * load))
        memory_bound = (co["mpki"] / 1000.0 * co["latency"] * host.ghz * (1.0 - MLP_OVERLAP)) / co["cpi"]
        frontend = rng.uniform(0.1, 0.35, (n, v, 1)) * (1.0 - memory_bound)
        bad_spec = rng.uniform(0.02, 0.12, (n, v, 1)) * np.ones_like(load)
        busy = (host.vcpus * util).sum(axis=1, keepdims=True)
        steal = 0.02 * np.clip(busy - 30.0, 0.0, None) / 6.0 * np.ones_like(load)
        latents = np.stack(
            [
                util, instructions, cycles, ipc, references, misses, co["occupancy"], co["bandwidth"], rx, tx,
                packets, disk * 0.6, disk * 0.4, mem_used, served * per_exec() * 20.0, memory_bound,
                co["smt_share"] * (util > 0), frontend, bad_spec, steal,
            ],
            axis=-1,
        )  # fmt: skip
        return np.where(active[..., None], latents, 0.0)

    def _read_metrics(self, latents: np.ndarray, active: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """(n, T, n_metrics): the target's metrics and the mean of its neighbours' (GROUPS order)."""
        own = latents[:, 0]
        neigh_active = active[:, 1:, :, None]
        count = np.maximum(neigh_active.sum(axis=1), 1)
        others = (latents[:, 1:] * neigh_active).sum(axis=1) / count
        blocks = []
        for values in (own, others):
            for kind in ("tr", "lin", "td"):
                cat = self.catalogue
                clean = values @ cat.weights[kind] * cat.scale[kind]
                noise = rng.lognormal(0.0, 1.0, clean.shape) ** cat.noise[kind]
                constant = cat.weights[kind].sum(axis=0) == 0
                block = np.where(constant, cat.scale[kind], clean * noise)
                blocks.append(block.astype(np.float32))
        return np.concatenate(blocks, axis=-1)
