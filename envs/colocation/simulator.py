"""Co-location interference simulator: shared-host contention -> performance ratio + telemetry.

One *task* (the CloudPerfTrace unit) is a target VM running one application on a host with
co-located neighbours, observed for ``trace_seconds`` at 1 s resolution. Every second:

1. each VM demands the six shared resources (cores/SMT, last-level cache, memory bandwidth,
   network, disk, power) as ``load x family base demand x phase multiplier x burst``;
2. the host's total demand against its capacity gives the contention: the unsatisfied share
   ``max(0, 1 - capacity / demand)`` and the neighbours' pressure ``(total - own) / capacity``;
3. the VM's slowdown is ``1 + sum_r sensitivity_r x (a_r x unsatisfied_r + b_r x pressure_r x
   utilisation_r)``, smoothed over a few seconds (throughput is measured over windows), and
   ``P = 1 / slowdown`` in (0, 1];
4. ~200 metrics are drawn from the latent demand, service and contention of the VM and of its
   neighbours through a fixed random *metric catalogue* (sparse mixtures of latents, lags,
   noise, saturation at 100 %, 32-bit counters differenced without wrap handling, and some
   uninformative metrics), in the six groups real collectors produce.

Everything is vectorised over tasks, VMs and time (arrays ``(tasks, vms, time, resources)``);
there is no Python loop over VMs or seconds. The catalogue depends only on ``catalogue_seed``,
so every trace (and every split) shares the same metric semantics, as a real collector does.

Calibration: family demands and sensitivities follow the CloudSuite characterisation (Ferdman
et al., ASPLOS'12: scale-out services are LLC/memory-latency bound, analytics memory-bandwidth
bound) and Bubble-Up (Mars et al., MICRO'11: memory-subsystem slowdowns of up to ~50 %); the
contention coefficients put the median P near 0.85 with a tail below 0.5, the range of
CloudPerfTrace's ``perf_ori`` in the CloudFormer paper (arXiv 2509.03394, Sec. 5).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import lfilter

RESOURCES: tuple[str, ...] = ("cpu", "llc", "membw", "net", "disk", "power")
GROUPS: tuple[str, ...] = ("tr_self", "lin_self", "td_self", "tr_oth", "lin_oth", "td_oth")


@dataclass(frozen=True)
class AppFamily:
    """An application family: demand per resource at full load and sensitivity to contention."""

    demand: tuple[float, float, float, float, float, float]  # share of host capacity at load 1
    sensitivity: tuple[float, float, float, float, float, float]
    n_phases: int
    mean_phase_s: float  # mean phase duration (phases switch as a Poisson process)
    burstiness: float  # std of the AR(1) burst multiplier


# Order of RESOURCES: cpu, llc, membw, net, disk, power. 13 families: the 11 CloudPerfTrace
# applications (CloudFormer paper, Sec. 5) plus video transcoding and an HPC kernel.
FAMILIES: dict[str, AppFamily] = {
    "data_serving": AppFamily((0.25, 0.30, 0.25, 0.30, 0.30, 0.20), (0.6, 1.2, 0.9, 0.8, 0.7, 0.1), 3, 60.0, 0.15),
    "redis": AppFamily((0.15, 0.35, 0.20, 0.40, 0.05, 0.10), (0.8, 1.4, 0.8, 1.2, 0.1, 0.1), 2, 45.0, 0.25),
    "web_search": AppFamily((0.35, 0.40, 0.20, 0.20, 0.05, 0.30), (1.0, 1.6, 0.7, 0.5, 0.1, 0.3), 3, 40.0, 0.20),
    "graph_analytics": AppFamily((0.30, 0.35, 0.45, 0.10, 0.10, 0.30), (0.6, 1.0, 1.5, 0.2, 0.2, 0.2), 4, 50.0, 0.10),
    "data_analytics": AppFamily((0.40, 0.25, 0.35, 0.15, 0.30, 0.35), (0.8, 0.6, 1.1, 0.4, 0.8, 0.2), 3, 70.0, 0.10),
    "ml_training": AppFamily((0.50, 0.20, 0.40, 0.15, 0.10, 0.50), (1.1, 0.5, 1.2, 0.4, 0.2, 0.6), 2, 90.0, 0.05),
    "hbase": AppFamily((0.25, 0.25, 0.20, 0.25, 0.40, 0.20), (0.6, 0.9, 0.6, 0.7, 1.2, 0.1), 3, 60.0, 0.20),
    "alluxio": AppFamily((0.15, 0.30, 0.35, 0.35, 0.20, 0.15), (0.4, 0.8, 1.1, 1.1, 0.6, 0.1), 2, 55.0, 0.15),
    "object_storage": AppFamily((0.10, 0.10, 0.15, 0.45, 0.50, 0.10), (0.3, 0.3, 0.4, 1.3, 1.4, 0.1), 2, 50.0, 0.25),
    "oltp_database": AppFamily((0.30, 0.35, 0.25, 0.15, 0.35, 0.25), (0.9, 1.3, 0.8, 0.3, 1.0, 0.2), 3, 45.0, 0.20),
    "stream_processing": AppFamily((0.35, 0.25, 0.30, 0.35, 0.10, 0.30), (0.9, 0.8, 0.9, 1.0, 0.2, 0.3), 3, 35.0, 0.20),
    "video_transcoding": AppFamily((0.60, 0.15, 0.25, 0.10, 0.15, 0.60), (1.3, 0.4, 0.6, 0.2, 0.3, 0.8), 2, 80.0, 0.10),
    "hpc_kernel": AppFamily((0.55, 0.40, 0.55, 0.05, 0.05, 0.55), (1.0, 1.2, 1.6, 0.1, 0.1, 0.7), 2, 120.0, 0.05),
}
WORKLOADS: tuple[str, ...] = tuple(FAMILIES)
LOAD_LEVELS = np.array([0.4, 0.7, 1.0])
# Contention coefficients per resource: ``a`` weighs demand that cannot be served (queueing,
# throttling), ``b`` the interference of neighbours below saturation (LLC thrashing and SMT
# sharing hurt long before the resource is full; disks and NICs much less so).
UNSERVED_WEIGHT = np.array([0.45, 0.2, 0.45, 0.35, 0.4, 0.25])
PRESSURE_WEIGHT = np.array([0.06, 0.15, 0.08, 0.03, 0.04, 0.02])
# Latents a metric can read, per VM: demand (6), served demand (6), host unsatisfied share (6),
# neighbours' pressure (6), work rate = load x P (1), load (1).
N_LATENTS = 26
_DEMAND, _SERVED, _UNSAT, _PRESS, _WORK, _LOAD = (
    slice(0, 6),
    slice(6, 12),
    slice(12, 18),
    slice(18, 24),
    slice(24, 25),
    slice(25, 26),
)
# Which latents each collector mostly sees (indices into the 26): the VM's own view (tr), perf
# counters (lin: served demand, work, contention), top-down fractions (td: contention, work).
_GROUP_LATENTS = {
    "tr": np.r_[0:12, 24, 25],
    "lin": np.r_[6:24, 24],
    "td": np.r_[12:25],
}
_BASE_NAMES = {
    "tr": ["cpu_util", "cpu_user", "cpu_sys", "cpu_iowait", "cpu_steal", "mem_used", "mem_cache", "net_rx_bytes",
           "net_tx_bytes", "net_rx_pkts", "net_tx_pkts", "disk_read_bytes", "disk_write_bytes", "disk_iops",
           "disk_await", "ctx_switches", "interrupts", "load_avg", "run_queue", "page_faults"],
    "lin": ["instructions", "cycles", "ref_cycles", "cache_references", "cache_misses", "llc_loads",
            "llc_load_misses", "llc_stores", "branch_instructions", "branch_misses", "dtlb_load_misses",
            "itlb_misses", "mem_loads", "mem_stores", "stalled_cycles_frontend", "stalled_cycles_backend",
            "l1d_misses", "l2_misses", "offcore_requests", "energy_pkg"],
    "td": ["retiring", "frontend_bound", "backend_bound", "bad_speculation", "memory_bound", "core_bound",
           "l1_bound", "l2_bound", "l3_bound", "dram_bound", "store_bound", "fetch_latency", "fetch_bandwidth"],
}  # fmt: skip


def group_sizes(n_metrics: int) -> dict[str, int]:
    """Metrics per group for ``n_metrics`` in all (half own, half neighbours; 39/44/17 % tr/lin/td)."""
    if n_metrics < 12 or n_metrics % 2:
        raise ValueError(f"n_metrics must be an even number >= 12, got {n_metrics}")
    half = n_metrics // 2
    tr, td = round(0.39 * half), round(0.17 * half)
    sizes = {"tr": tr, "lin": half - tr - td, "td": td}
    return {f"{kind}_{side}": sizes[kind] for side in ("self", "oth") for kind in ("tr", "lin", "td")}


@dataclass
class MetricCatalogue:
    """How each metric is derived from the latents: fixed by a seed, shared by all traces."""

    names: dict[str, list[str]]  # group -> metric names
    weights: dict[str, np.ndarray]  # group -> (N_LATENTS, n) sparse non-negative mixing
    kind: dict[str, np.ndarray]  # group -> 0 gauge %, 1 rate, 2 wrapping counter, 3 uninformative
    transform: dict[str, np.ndarray]  # 0 identity, 1 sqrt, 2 log1p
    lag: dict[str, np.ndarray]  # seconds
    scale: dict[str, np.ndarray]
    noise: dict[str, np.ndarray]  # multiplicative noise std


def make_catalogue(n_metrics: int, seed: int = 20250903, uninformative_fraction: float = 0.08) -> MetricCatalogue:
    """Build the metric catalogue for ``n_metrics`` metrics (see ``group_sizes``)."""
    rng = np.random.default_rng(seed)
    cat = MetricCatalogue({}, {}, {}, {}, {}, {}, {})
    for group, size in group_sizes(n_metrics).items():
        kind_name = group.split("_")[0]
        base = _BASE_NAMES[kind_name]
        cat.names[group] = [
            f"{base[i % len(base)]}{'' if i < len(base) else f'_{i // len(base)}'}" for i in range(size)
        ]
        allowed = _GROUP_LATENTS[kind_name]
        weights = np.zeros((N_LATENTS, size))
        n_inputs = rng.integers(1, 4, size)
        for j in range(size):  # catalogue construction only (once), not a hot path
            picks = rng.choice(allowed, size=n_inputs[j], replace=False)
            weights[picks, j] = rng.lognormal(0.0, 0.5, n_inputs[j])
        cat.weights[group] = weights
        kind = rng.choice(3, size=size, p=[0.3, 0.55, 0.15] if kind_name == "lin" else [0.6, 0.35, 0.05])
        if kind_name == "td":
            kind[:] = 0  # top-down metrics are fractions of pipeline slots
        kind[rng.random(size) < uninformative_fraction] = 3
        cat.kind[group] = kind
        cat.transform[group] = rng.integers(0, 3, size)
        cat.lag[group] = rng.integers(0, 4, size)
        cat.scale[group] = np.where(kind == 2, 10.0 ** rng.uniform(6, 8.5, size), 10.0 ** rng.uniform(0, 3, size))
        cat.noise[group] = rng.uniform(0.02, 0.15, size)
    return cat


@dataclass
class Traces:
    """Simulated tasks: per-second metrics, P and metadata."""

    metrics: dict[str, np.ndarray]  # group -> (tasks, time, n_group) float32
    perf: np.ndarray  # (tasks, time) float32, P of the target VM in (0, 1]
    workload: np.ndarray  # (tasks,) str, the target VM's application family
    scenario: np.ndarray  # (tasks,) str, "static" | "dynamic"
    n_neighbours: np.ndarray  # (tasks, time) int, active neighbours
    metric_names: dict[str, list[str]]

    @property
    def n_tasks(self) -> int:
        return len(self.workload)


def contention(
    demand: np.ndarray, capacity: np.ndarray, sensitivity: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Slowdown of every VM on its host, from the VMs' demands (axis -3 is the VM axis).

    Args:
        demand: ``(..., vms, time, 6)`` share of host capacity each VM asks for.
        capacity: broadcastable to ``(..., 1, time, 6)``.
        sensitivity: ``(..., vms, time, 6)`` of each VM's application.

    Returns:
        slowdown ``(..., vms, time)`` >= 1, served demand, the host's unsatisfied share and each
        VM's neighbours' pressure (the last three shaped like ``demand``).
    """
    total = demand.sum(axis=-3, keepdims=True)
    util = total / capacity
    unsatisfied = np.maximum(0.0, 1.0 - 1.0 / np.maximum(util, 1e-9))
    pressure = np.maximum(total - demand, 0.0) / capacity
    served = demand * (1.0 - unsatisfied)
    slowdown = 1.0 + np.sum(
        sensitivity * (UNSERVED_WEIGHT * unsatisfied + PRESSURE_WEIGHT * pressure * np.minimum(util, 2.0)), axis=-1
    )
    return slowdown, served, np.broadcast_to(unsatisfied, demand.shape), pressure


class ColocationSimulator:
    """Shared hosts with co-located VMs; generates CloudPerfTrace-shaped telemetry traces.

    Args:
        n_metrics: metrics per VM per second over the six groups (206 in CloudPerfTrace).
        trace_seconds: length of one task's trace.
        tasks_per_workload: tasks simulated per target application family.
        max_neighbours: co-located VMs besides the target (each task draws 1..max).
        dynamic_fraction: share of tasks whose neighbours arrive and leave (the rest are static).
        mean_neighbour_change_s: mean time between a dynamic neighbour's arrivals and departures.
        perf_noise: std of the measurement noise on P.
        catalogue_seed: seed of the metric catalogue (the collector's semantics, not the data).
    """

    def __init__(
        self,
        *,
        n_metrics: int = 206,
        trace_seconds: int = 600,
        tasks_per_workload: int = 16,
        max_neighbours: int = 5,
        dynamic_fraction: float = 0.5,
        mean_neighbour_change_s: float = 90.0,
        perf_noise: float = 0.01,
        catalogue_seed: int = 20250903,
    ) -> None:
        if trace_seconds < 10:
            raise ValueError(f"trace_seconds must be >= 10, got {trace_seconds}")
        if tasks_per_workload < 1 or max_neighbours < 1:
            raise ValueError("tasks_per_workload and max_neighbours must be >= 1")
        if not 0.0 <= dynamic_fraction <= 1.0:
            raise ValueError(f"dynamic_fraction must be in [0, 1], got {dynamic_fraction}")
        self.n_metrics = n_metrics
        self.trace_seconds = trace_seconds
        self.tasks_per_workload = tasks_per_workload
        self.max_neighbours = max_neighbours
        self.dynamic_fraction = dynamic_fraction
        self.mean_neighbour_change_s = mean_neighbour_change_s
        self.perf_noise = perf_noise
        self.catalogue = make_catalogue(n_metrics, catalogue_seed)
        self._demand = np.array([f.demand for f in FAMILIES.values()])
        self._sens = np.array([f.sensitivity for f in FAMILIES.values()])
        self._phases = np.array([f.n_phases for f in FAMILIES.values()])
        self._phase_s = np.array([f.mean_phase_s for f in FAMILIES.values()])
        self._burst = np.array([f.burstiness for f in FAMILIES.values()])
        # Phase multipliers per family and phase (fixed: a phase is part of the application).
        prng = np.random.default_rng(catalogue_seed + 1)
        self._phase_mult = prng.uniform(0.5, 1.5, (len(FAMILIES), 4, len(RESOURCES)))

    # ------------------------------------------------------------------ contention
    def latents(
        self, rng: np.random.Generator, workloads: np.ndarray, dynamic: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-VM latents ``(tasks, vms, time, 26)``, P ``(tasks, vms, time)``, active mask."""
        n, t, v = len(workloads), self.trace_seconds, self.max_neighbours + 1
        n_segments = 8
        # Neighbour apps, one per arrival segment of each slot; slot 0 is the target VM.
        seg_apps = rng.integers(0, len(FAMILIES), (n, v, n_segments))
        seg_apps[:, 0, :] = workloads[:, None]
        seg_load = rng.choice(LOAD_LEVELS, (n, v, n_segments)) * rng.lognormal(0.0, 0.1, (n, v, n_segments))
        n_active = rng.integers(1, v, n)  # static tasks: that many neighbours all the time
        active = np.arange(v)[None, :] <= n_active[:, None]  # (n, v)
        active = np.broadcast_to(active[:, :, None], (n, v, t)).copy()
        # Dynamic tasks: every neighbour slot alternates stays and gaps; a change of state is a
        # Poisson event (mean ``mean_neighbour_change_s``), a new application after every gap.
        toggles = rng.random((n, v, t)) < 1.0 / self.mean_neighbour_change_s
        state = rng.random((n, v)) < 0.7
        flips = np.cumsum(toggles, axis=2)
        dyn_active = state[:, :, None] ^ (flips % 2).astype(bool)
        segment = np.minimum(flips // 2, n_segments - 1)
        active = np.where(dynamic[:, None, None], dyn_active, active)
        active[:, 0, :] = True
        segment = np.where(dynamic[:, None, None], segment, 0)
        segment[:, 0, :] = 0
        apps = np.take_along_axis(seg_apps, segment, axis=2)  # (n, v, t)
        load = np.take_along_axis(seg_load, segment, axis=2)
        # Phases: a Poisson switch per second; the phase index cycles through the family's phases.
        switch = rng.random((n, v, t)) < 1.0 / self._phase_s[apps]
        phase = (np.cumsum(switch, axis=2) + rng.integers(0, 4, (n, v, 1))) % self._phases[apps]
        mult = self._phase_mult[apps, phase]  # (n, v, t, 6)
        # Bursts: AR(1) multiplier per VM (lfilter along time: no Python loop over seconds).
        eps = rng.normal(0.0, 1.0, (n, v, t)) * self._burst[apps] * np.sqrt(1 - 0.9**2)
        burst = np.exp(lfilter([1.0], [1.0, -0.9], eps, axis=2))
        demand = (load * burst)[..., None] * self._demand[apps] * mult * active[..., None]
        # Host capacity: a bit of heterogeneity across hosts (SKU, turbo, NIC, disks).
        capacity = rng.uniform(0.85, 1.15, (n, 1, 1, len(RESOURCES)))
        slowdown, served, unsatisfied, pressure = contention(demand, capacity, self._sens[apps])
        # Throughput is measured over a few seconds: exponential smoothing of the slowdown.
        slowdown = lfilter([0.4], [1.0, -0.6], slowdown, axis=2, zi=0.6 * slowdown[..., :1])[0]
        perf = np.clip(1.0 / slowdown * np.exp(rng.normal(0.0, self.perf_noise, slowdown.shape)), 0.02, 1.0)
        lat = np.empty((n, v, t, N_LATENTS))
        lat[..., _DEMAND] = demand
        lat[..., _SERVED] = served
        lat[..., _UNSAT] = unsatisfied
        lat[..., _PRESS] = pressure
        lat[..., _WORK] = (load * perf * active)[..., None]
        lat[..., _LOAD] = (load * active)[..., None]
        return lat, perf, active

    # ------------------------------------------------------------------ telemetry
    def _observe(self, group: str, latents: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Metrics of one group from latents ``(tasks, time, 26)`` -> ``(tasks, time, n)``."""
        cat = self.catalogue
        w, kind, lag = cat.weights[group], cat.kind[group], cat.lag[group]
        raw = latents @ w
        raw = np.where(cat.transform[group] == 1, np.sqrt(raw), np.where(cat.transform[group] == 2, np.log1p(raw), raw))
        shifted = raw.copy()
        for lag_s in range(1, int(lag.max()) + 1):  # collector lags: a handful of distinct values
            cols = lag == lag_s
            shifted[:, lag_s:, cols] = raw[:, :-lag_s, cols]
            shifted[:, :lag_s, cols] = raw[:, :1, cols]
        values = shifted * np.exp(rng.normal(0.0, 1.0, raw.shape) * cat.noise[group])
        gauge = kind == 0
        # Gauges are percentages that saturate at 100 (a pegged CPU hides how much more it wants).
        values[..., gauge] = np.minimum(100.0, 60.0 * values[..., gauge] * cat.scale[group][gauge] ** 0.1)
        values[..., ~gauge] *= cat.scale[group][~gauge]
        counter = kind == 2
        if counter.any():
            # Per-second deltas of 32-bit counters taken without wrap handling: a negative spike
            # of -2^32 whenever the counter wraps.
            start = rng.uniform(0, 2**32, (len(values), 1, int(counter.sum())))
            cumulative = np.cumsum(values[..., counter], axis=1) + start
            wrapped = np.mod(cumulative, 2.0**32)
            values[..., counter] = np.diff(wrapped, axis=1, prepend=wrapped[:, :1] - values[:, :1, counter])
        junk = kind == 3
        if junk.any():
            # Uninformative: constants, white noise and random walks (a collector's dead weight).
            shape = (len(values), values.shape[1], int(junk.sum()))
            style = np.arange(shape[2]) % 3
            noise = rng.normal(0.0, 1.0, shape)
            junk_values = np.where(style == 0, 1.0, np.where(style == 1, noise, np.cumsum(noise, axis=1)))
            values[..., junk] = junk_values * cat.scale[group][junk]
        return values.astype(np.float32)

    def simulate(
        self,
        rng: np.random.Generator,
        workloads: list[str] | tuple[str, ...] | None = None,
    ) -> Traces:
        """Simulate ``tasks_per_workload`` tasks for each family in ``workloads`` (default all)."""
        workloads = tuple(workloads) if workloads is not None else WORKLOADS
        unknown = [w for w in workloads if w not in FAMILIES]
        if unknown:
            raise ValueError(f"unknown workload(s) {unknown}; known: {list(WORKLOADS)}")
        ids = np.repeat([WORKLOADS.index(w) for w in workloads], self.tasks_per_workload)
        dynamic = rng.random(len(ids)) < self.dynamic_fraction
        lat, perf, active = self.latents(rng, ids, dynamic)
        own = lat[:, 0]
        others = lat[:, 1:].sum(axis=1)
        metrics = {}
        for group in GROUPS:
            metrics[group] = self._observe(group, own if group.endswith("_self") else others, rng)
        return Traces(
            metrics=metrics,
            perf=perf[:, 0].astype(np.float32),
            workload=np.array([WORKLOADS[i] for i in ids]),
            scenario=np.where(dynamic, "dynamic", "static"),
            n_neighbours=active[:, 1:].sum(axis=1),
            metric_names=self.catalogue.names,
        )
