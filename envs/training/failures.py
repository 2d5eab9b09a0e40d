"""When and why the job's nodes fail: a renewal process per node slot, plus the job-level
streams of planned maintenance, straggler onsets and false alarms.

Each of the job's node slots holds a node that fails after exponential or Weibull inter-failure
times whose mean matches Llama 3's rate per GPU [Llama3]; with heterogeneity a share of nodes
fail several times as often [AIReSim], and the mean over nodes still matches Llama 3's rate (its
fleet had bad nodes too). Weibull shapes below 1 [Schroeder06] give a decreasing hazard: a node
that just failed and was restarted in place is likely to fail again soon, which is what breaks
Young/Daly's exponential assumption. Every process starts in its stationary state (the first
time is a forward-recurrence time), so the run has no artificial burst at t = 0.

The cause of each failure is drawn from Llama 3's Table 5 mix when the failure time is drawn, so
an oracle that knows failure times knows their causes too. Separate random streams per
concern keep policies on common random numbers: two policies given one seed see the same
maintenance, stragglers and false alarms, and the same node clocks until their recovery choices
differ.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from infragym.envs.training import calibration as cal
from infragym.envs.training.calibration import JobSpec

DISTRIBUTIONS = ("exponential", "weibull")


@dataclass(frozen=True)
class FailureSpec:
    """The failure model of a scenario.

    Attributes:
        distribution: ``exponential`` or ``weibull`` inter-failure times per node.
        weibull_shape: Weibull shape k (< 1: decreasing hazard) [Schroeder06].
        bad_node_fraction: share of nodes that fail ``bad_node_multiplier`` times as often [AIReSim].
        rate_scale: multiplies Llama 3's failure rate (1: as published).
        multi_node_fraction: share of node-losing failures that also take out a second node of the
            same erasure-coding group (a shared power supply or chassis); *assumption*, 0 by default.
        maintenance: planned interruptions at Llama 3's rate.
        stragglers: slow-host episodes.
        spare_nodes: spare nodes ready to swap in (*assumption*: 1% of the job's nodes).
    """

    distribution: str = "exponential"
    weibull_shape: float = cal.WEIBULL_SHAPE
    bad_node_fraction: float = 0.0
    bad_node_multiplier: float = cal.BAD_NODE_MULTIPLIER
    rate_scale: float = 1.0
    multi_node_fraction: float = 0.0
    maintenance: bool = True
    stragglers: bool = True
    spare_nodes: int | None = None

    def __post_init__(self) -> None:
        if self.distribution not in DISTRIBUTIONS:
            raise ValueError(f"distribution must be one of {DISTRIBUTIONS}, got {self.distribution!r}")
        if not 0 < self.weibull_shape <= 5:
            raise ValueError(f"weibull_shape must be in (0, 5], got {self.weibull_shape}")
        if not 0 <= self.bad_node_fraction < 1 or self.bad_node_multiplier < 1:
            raise ValueError("bad_node_fraction must be in [0, 1) and bad_node_multiplier >= 1")
        if self.rate_scale <= 0 or not 0 <= self.multi_node_fraction <= 1:
            raise ValueError("rate_scale must be > 0 and multi_node_fraction in [0, 1]")


SCENARIOS: dict[str, FailureSpec] = {
    # Llama 3's rates, exponential inter-failure times, homogeneous nodes.
    "llama3": FailureSpec(),
    # Weibull (k = 0.75) with 15% of nodes failing 5x as often: Young/Daly's assumptions broken.
    "weibull_hetero": FailureSpec(distribution="weibull", bad_node_fraction=cal.BAD_NODE_FRACTION),
}


def poisson_times(rng: np.random.Generator, rate_s: float, horizon_s: float) -> np.ndarray:
    """Sorted arrival times of a Poisson process of ``rate_s`` on [0, horizon_s)."""
    if rate_s <= 0:
        return np.empty(0)
    n = rng.poisson(rate_s * horizon_s)
    return np.sort(rng.uniform(0.0, horizon_s, size=n))


class NodeFailures:
    """Per-slot next failure times and causes, renewed as nodes fail, reboot or are swapped.

    Args:
        job: the job (its node count and per-GPU failure rate).
        spec: the failure model.
        rng: the node clocks' random stream.
    """

    def __init__(self, job: JobSpec, spec: FailureSpec, rng: np.random.Generator) -> None:
        self.job = job
        self.spec = spec
        self.rng = rng
        n = job.n_nodes
        mean_rate = job.failure_rate_s * spec.rate_scale / n
        f, mult = spec.bad_node_fraction, spec.bad_node_multiplier
        self.good_rate = mean_rate / (1 - f + f * mult)
        self.bad_rate = self.good_rate * mult
        self.bad = rng.random(n) < f
        self.failures = np.zeros(n, dtype=np.int64)  # failures seen per slot since its node arrived
        self.next_time = np.empty(n)
        self.next_cause = np.empty(n, dtype=np.int64)
        self.next_partner = np.empty(n, dtype=bool)  # takes a second node of its group out
        self._draw(np.arange(n), 0.0, stationary=True)
        self._first = int(np.argmin(self.next_time))

    def _rates(self, slots: np.ndarray) -> np.ndarray:
        return np.where(self.bad[slots], self.bad_rate, self.good_rate)

    def _draw(self, slots: np.ndarray, now: float, *, stationary: bool) -> None:
        rates = self._rates(slots)
        if self.spec.distribution == "exponential":
            gaps = self.rng.exponential(1.0 / rates)
        else:
            k = self.spec.weibull_shape
            scale = 1.0 / (rates * math.gamma(1 + 1 / k))
            if stationary:
                # Forward-recurrence time: U x a length-biased interval; a length-biased
                # Weibull(k, s) is s * G^(1/k) with G ~ Gamma(1 + 1/k, 1).
                length = scale * self.rng.gamma(1 + 1 / k, size=slots.size) ** (1 / k)
                gaps = self.rng.random(slots.size) * length
            else:
                gaps = scale * self.rng.weibull(k, size=slots.size)
        self.next_time[slots] = now + gaps
        self.next_cause[slots] = self.rng.choice(len(cal.CAUSES), size=slots.size, p=cal.CAUSE_PROBS)
        self.next_partner[slots] = self.rng.random(slots.size) < self.spec.multi_node_fraction
        self._first = int(np.argmin(self.next_time))

    def peek(self) -> tuple[float, int]:
        """The earliest next failure: (time, slot)."""
        return float(self.next_time[self._first]), self._first

    def renew(self, slot: int, now: float) -> None:
        """The slot's node failed and runs again (restarted in place): a fresh inter-failure time."""
        self.failures[slot] += 1
        self._draw(np.array([slot]), now, stationary=False)

    def replace(self, slot: int, now: float) -> None:
        """A different node takes the slot (a spare, or a repaired node): its own badness and a
        stationary clock (it has been running elsewhere)."""
        self.bad[slot] = self.rng.random() < self.spec.bad_node_fraction
        self.failures[slot] = 0
        self._draw(np.array([slot]), now, stationary=True)


@dataclass
class JobStreams:
    """The job-level event streams of one run: sorted arrival times on [0, horizon)."""

    maintenance: np.ndarray
    stragglers: np.ndarray
    false_alarms: np.ndarray

    @classmethod
    def draw(cls, job: JobSpec, spec: FailureSpec, horizon_s: float, seed: int) -> JobStreams:
        rngs = [np.random.default_rng(s) for s in np.random.SeedSequence([seed, 7]).spawn(3)]
        return cls(
            maintenance=poisson_times(rngs[0], cal.PLANNED_PER_GPU_S * job.n_gpus * spec.maintenance, horizon_s),
            stragglers=poisson_times(rngs[1], cal.STRAGGLERS_PER_GPU_S * job.n_gpus * spec.stragglers, horizon_s),
            false_alarms=poisson_times(rngs[2], cal.C4_FALSE_ALARMS_PER_GPU_S * job.n_gpus, horizon_s),
        )
