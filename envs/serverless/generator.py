"""A serverless region's invocations and cold-start times, calibrated to published facts.

Sources (../shared/PAPERS.md, "Serverless cold starts"):
- [H] Joosen et al., "Serverless Cold Starts and Where to Find Them", EuroSys'25 (Huawei Cloud,
  5 regions, 31 days, 85B requests, 11.9M cold starts).
- [S] Shahrad et al., "Serverless in the Wild", USENIX ATC'20 (Azure Functions 2019).

What is calibrated to what (each constant below names its source):
- popularity: per-function mean daily invocations LogNormal in log10 space through two of [S]'s
  facts (Sec. 3.3, Fig. 5a): 45% of apps are invoked at most once per hour, 81% at most once per
  minute; heavy tail (a few hot functions carry most invocations);
- inter-arrivals: a Weibull renewal process per non-timer function with the shape whose
  coefficient of variation is [H]'s cold-start inter-arrival CV (sd 3.66 s / mean 1.25 s =
  2.93, shape ~0.42: bursty); timer-triggered functions fire periodically ([S] Sec. 3.3: timers
  make the most predictable functions) with small jitter; short bursts of concurrent requests;
- the trigger mix ([S] Fig. 3, share of functions by trigger; configurable);
- cold-start time LogNormal with [H]'s mean 3.24 s and sd 7.10 s (Sec. 4), split into pod
  allocation, code deployment, dependency deployment and scheduling; region profiles from [H]
  Sec. 4-5: Region 1 up to ~7 s, dominated by dependency deployment and scheduling; Region 2 up
  to ~3 s, dominated by pod allocation ("up to" read here as the 90th percentile);
- runtime language and pod size effects on cold-start time: the direction is [H]'s (Sec. 5:
  cold starts differ by runtime and grow with the pool's resources); the sizes of the multipliers
  are assumptions of this generator (the paper's per-runtime numbers are not in PAPERS.md), named
  below as such.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy import optimize, special, stats

from infragym.datasets.serverless import SECONDS_PER_DAY, InvocationTrace

# ---------------------------------------------------------------- popularity ([S] Sec. 3.3)
SHARE_AT_MOST_HOURLY = 0.45  # [S]: 45% of apps invoked at most once per hour
SHARE_AT_MOST_PER_MINUTE = 0.81  # [S]: 81% of apps invoked at most once per minute
_Z_HOURLY = stats.norm.ppf(SHARE_AT_MOST_HOURLY)
_Z_MINUTE = stats.norm.ppf(SHARE_AT_MOST_PER_MINUTE)
POPULARITY_LOG10_SD = (math.log10(1440) - math.log10(24)) / (_Z_MINUTE - _Z_HOURLY)
POPULARITY_LOG10_MEDIAN = math.log10(24) - _Z_HOURLY * POPULARITY_LOG10_SD  # invocations per day
MAX_RATE_PER_S = 0.1  # cap of a scaled-down region (not a paper figure): above one request per 10 s a
# function stays warm under every keep-alive compared here; the cap lowers the request count (and
# so raises the cold-start share of requests) without changing which policy wins

# ---------------------------------------------------------------- inter-arrivals ([H] Sec. 4)
COLD_START_IAT_MEAN_S = 1.25  # [H]: cold-start inter-arrival Weibull, mean 1.25 s
COLD_START_IAT_SD_S = 3.66  # [H]: sd 3.66 s


def weibull_shape_for_cv(cv: float) -> float:
    """The Weibull shape k whose coefficient of variation is ``cv``."""

    def gap(k: float) -> float:
        g1, g2 = special.gamma(1 + 1 / k), special.gamma(1 + 2 / k)
        return math.sqrt(g2 / g1**2 - 1) - cv

    return float(optimize.brentq(gap, 0.1, 10.0))


WEIBULL_SHAPE = weibull_shape_for_cv(COLD_START_IAT_SD_S / COLD_START_IAT_MEAN_S)
# common cron periods ([S] Sec. 3.3: timers fire periodically); a timer takes the one nearest its
# drawn mean rate (in log scale), so timers follow the same popularity distribution
TIMER_PERIODS_MIN = np.array([1, 5, 10, 15, 30, 60, 120, 360, 720, 1440])
BURST_PROBABILITY = 0.02  # a request opens a burst of concurrent requests (assumption; [H] Sec. 5 names bursts)
BURST_MEAN_EXTRA = 4.0  # extra requests per burst, geometric (assumption)

# Share of functions by trigger, [S] Fig. 3 (functions): HTTP 55%, queue 15%, event 2%,
# orchestration 7%, timer 16%, storage 2%, other 3%.
DEFAULT_TRIGGER_MIX = {
    "http": 0.55,
    "queue": 0.15,
    "event": 0.02,
    "orchestration": 0.07,
    "timer": 0.16,
    "storage": 0.02,
    "other": 0.03,
}

# ---------------------------------------------------------------- durations and memory
DURATION_LOG10_MEDIAN = -0.3  # per-function median execution ~0.5 s ([S] Fig. 7: ~50% of functions average < 1 s)
DURATION_LOG10_SD = 0.8  # [S] Fig. 7: averages span ms to minutes
DURATION_WITHIN_SIGMA = 0.6  # LogNormal sigma of one function's executions (assumption)
# Huawei pools pool<N>-<millicores>-<MB> ([H] data release: pool22-300-128, pool24-600-512);
# shares: most apps are small ([S] Sec. 3.5: 90% of apps never use more than 400 MB).
POOL_MEMORY_MB = np.array([128.0, 256.0, 512.0, 1024.0, 2048.0])
POOL_CPU_MILLICORES = np.array([300, 400, 600, 1000, 2000])
POOL_SHARES = np.array([0.45, 0.25, 0.2, 0.07, 0.03])
RUNTIMES = ("python", "nodejs", "java", "go", "custom")
RUNTIME_SHARES = np.array([0.45, 0.3, 0.12, 0.08, 0.05])  # assumption (Python and Node.js dominate in [H] Sec. 5)

# ---------------------------------------------------------------- cold starts ([H] Sec. 4-5)
COLD_START_MEAN_S = 3.24  # [H]: cold-start time LogNormal, mean 3.24 s
COLD_START_SD_S = 7.10  # [H]: sd 7.10 s
COLD_START_SIGMA = math.sqrt(math.log1p((COLD_START_SD_S / COLD_START_MEAN_S) ** 2))
COLD_START_MU = math.log(COLD_START_MEAN_S) - COLD_START_SIGMA**2 / 2
_Z90 = stats.norm.ppf(0.9)


@dataclass(frozen=True)
class RegionProfile:
    """A region's cold-start time: LogNormal(mu, COLD_START_SIGMA) split into the four parts
    with Dirichlet shares around ``part_shares`` (pod allocation, code, dependencies, scheduling)."""

    name: str
    mu: float
    part_shares: tuple[float, float, float, float]
    concentration: float = 20.0  # Dirichlet concentration of the split (assumption)


REGIONS: dict[str, RegionProfile] = {
    # all regions together: [H]'s mean 3.24 s, sd 7.10 s
    "all": RegionProfile("all", COLD_START_MU, (0.25, 0.1, 0.3, 0.35)),
    # [H]: Region 1 up to ~7 s, dependency deployment and scheduling dominate
    "region1": RegionProfile("region1", math.log(7.0) - _Z90 * COLD_START_SIGMA, (0.08, 0.07, 0.4, 0.45)),
    # [H]: Region 2 up to ~3 s, pod allocation dominates
    "region2": RegionProfile("region2", math.log(3.0) - _Z90 * COLD_START_SIGMA, (0.6, 0.1, 0.15, 0.15)),
}
# Runtime and pool-size multipliers of the cold-start time: direction from [H] Sec. 5, sizes assumed.
RUNTIME_COLD_START_FACTOR = {"python": 1.0, "nodejs": 0.8, "java": 1.6, "go": 0.7, "custom": 1.3, "unknown": 1.0}
POOL_SIZE_EXPONENT = 0.1  # cold start x (memory / 128 MB) ** 0.1 (assumption)


def cold_start_times(
    trace: InvocationTrace, rng: np.random.Generator, region: str = "all"
) -> tuple[np.ndarray, np.ndarray]:
    """A cold-start time for every invocation (s) and its four parts ((n, 4), summing to it),
    as the invocation would see it if it started a pod: common random numbers for every policy."""
    if region not in REGIONS:
        raise ValueError(f"unknown region {region!r}; choose from {sorted(REGIONS)}")
    profile = REGIONS[region]
    n = len(trace)
    factor_by_function = (
        np.array([RUNTIME_COLD_START_FACTOR.get(r, 1.0) for r in trace.runtime], dtype=np.float64)
        * (trace.memory_mb / 128.0) ** POOL_SIZE_EXPONENT
    )
    total = rng.lognormal(profile.mu, COLD_START_SIGMA, n) * factor_by_function[trace.function]
    shares = rng.dirichlet(np.asarray(profile.part_shares) * profile.concentration, n)
    return total, shares * total[:, None]


def _trigger_mix(mix: Mapping[str, float] | None) -> tuple[list[str], np.ndarray]:
    mix = dict(mix or DEFAULT_TRIGGER_MIX)
    names = list(mix)
    shares = np.array([float(mix[k]) for k in names])
    if np.any(shares < 0) or shares.sum() <= 0:
        raise ValueError(f"trigger_mix: shares must be >= 0 with a positive sum, got {mix}")
    return names, shares / shares.sum()


def generate_region(
    n_functions: int,
    days: float,
    rng: np.random.Generator,
    *,
    trigger_mix: Mapping[str, float] | None = None,
    max_rate_per_s: float = MAX_RATE_PER_S,
) -> InvocationTrace:
    """``days`` of a region with ``n_functions`` functions (see the module's calibration)."""
    if n_functions <= 0 or days <= 0:
        raise ValueError("n_functions and days must be positive")
    horizon = days * SECONDS_PER_DAY
    names, shares = _trigger_mix(trigger_mix)
    trigger = rng.choice(len(names), size=n_functions, p=shares)
    per_day = 10 ** rng.normal(POPULARITY_LOG10_MEDIAN, POPULARITY_LOG10_SD, n_functions)
    rate = np.minimum(per_day / SECONDS_PER_DAY, max_rate_per_s)
    is_timer = np.array([names[t] == "timer" for t in trigger])
    nearest = np.abs(np.log(TIMER_PERIODS_MIN[None, :] * 60.0 * per_day[:, None] / SECONDS_PER_DAY)).argmin(axis=1)
    period = 60.0 * TIMER_PERIODS_MIN[nearest]

    counts = np.where(is_timer, np.floor(horizon / period), 0).astype(np.int64)
    # renewal process: draw enough Weibull gaps (mean 1/rate) for the horizon, vectorised over functions
    scale = 1.0 / (rate * special.gamma(1 + 1 / WEIBULL_SHAPE))
    expected = np.where(is_timer, 0.0, rate * horizon)
    cv = COLD_START_IAT_SD_S / COLD_START_IAT_MEAN_S  # the count's sd is ~cv * sqrt(mean)
    draws = np.where(is_timer, 0, np.ceil(expected + 8 * cv * np.sqrt(expected) + 5)).astype(np.int64)
    owner = np.repeat(np.arange(n_functions), draws)
    gaps = rng.weibull(WEIBULL_SHAPE, owner.size) * scale[owner]
    starts = np.r_[0, np.cumsum(draws)[:-1]]
    # the first arrival uniformly within the first mean gap (a stationary start), then the gaps
    offsets = rng.random(n_functions) / np.maximum(rate, 1e-12)
    before = np.r_[np.cumsum(gaps) - gaps, 0.0]  # exclusive running sum (padded for empty tails)
    renewal = offsets[owner] + before[:-1] - before[starts][owner]
    renewal_mask = renewal < horizon
    arrival_parts = [renewal[renewal_mask]]
    function_parts = [owner[renewal_mask]]
    # timers: every period from a random phase, jittered by up to a second
    t_owner = np.repeat(np.arange(n_functions), counts)
    if t_owner.size:
        k = np.arange(t_owner.size) - np.repeat(np.r_[0, np.cumsum(counts)[:-1]], counts)
        phase = rng.random(n_functions) * period
        t_arrival = phase[t_owner] + k * period[t_owner] + rng.random(t_owner.size)
        keep = t_arrival < horizon
        arrival_parts.append(t_arrival[keep])
        function_parts.append(t_owner[keep])
    arrival = np.concatenate(arrival_parts)
    function = np.concatenate(function_parts)
    # bursts: a few requests open a run of near-simultaneous ones (concurrent pods)
    opens = (rng.random(arrival.size) < BURST_PROBABILITY) & ~is_timer[function]
    extra = rng.geometric(1.0 / (1.0 + BURST_MEAN_EXTRA), int(opens.sum())) - 1
    burst_owner = np.repeat(np.flatnonzero(opens), extra)
    if burst_owner.size:
        b_arrival = arrival[burst_owner] + rng.exponential(0.5, burst_owner.size)
        keep = b_arrival < horizon
        arrival = np.r_[arrival, b_arrival[keep]]
        function = np.r_[function, function[burst_owner][keep]]

    median_duration = 10 ** rng.normal(DURATION_LOG10_MEDIAN, DURATION_LOG10_SD, n_functions)
    duration = median_duration[function] * rng.lognormal(0.0, DURATION_WITHIN_SIGMA, arrival.size)
    duration = np.minimum(duration, 600.0)  # platform time-out (Azure Functions' 10 min limit)
    pool = rng.choice(len(POOL_MEMORY_MB), size=n_functions, p=POOL_SHARES)
    runtime = rng.choice(len(RUNTIMES), size=n_functions, p=RUNTIME_SHARES)
    order = np.argsort(arrival, kind="stable")
    width = len(str(n_functions))
    functions = tuple(
        f"f{i:0{width}d}-pool-{POOL_CPU_MILLICORES[pool[i]]}-{int(POOL_MEMORY_MB[pool[i]])}" for i in range(n_functions)
    )
    return InvocationTrace(
        arrival_s=arrival[order],
        function=function[order].astype(np.int64),
        duration_s=duration[order],
        functions=functions,
        memory_mb=POOL_MEMORY_MB[pool].astype(np.float64),
        trigger=tuple(names[t] for t in trigger),
        runtime=tuple(RUNTIMES[r] for r in runtime),
        source=f"generated: {n_functions} functions, {days:g} days",
    )


__all__ = [
    "COLD_START_MEAN_S",
    "COLD_START_SD_S",
    "DEFAULT_TRIGGER_MIX",
    "REGIONS",
    "WEIBULL_SHAPE",
    "cold_start_times",
    "generate_region",
    "weibull_shape_for_cv",
]
