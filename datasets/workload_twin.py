"""Workload twins: fit BurstGPT's workload characterisation to a trace, draw synthetic twins.

BurstGPT (KDD'25; PAPERS.md) characterises an LLM-serving workload by: Gamma inter-arrival times
whose shape and rate change from window to window over the day; Zipf request and response
lengths, with a response-vs-request relation that differs by model; conversation patterns
(turns per conversation, intervals between turns); and failures (response tokens = 0). Its
generator draws Gamma gaps and Zipf lengths. ``fit_workload`` fits that model to any
``RequestTrace`` (per window where the parameters vary), ``WorkloadModel.generate`` draws a twin
of any length and rate, and ``twin_report`` says how close a twin is to a trace.

Choices beyond the paper (named as extensions in docs/components/workload_twin.md):
- Gamma parameters by moments per window (shape = 1 / CV^2, rate = requests / window time):
  exact for the CV the report checks, and defined when timestamps tie (BurstGPT logs whole
  seconds, so many gaps are 0, where a maximum-likelihood Gamma fit is undefined).
- Lengths: the paper's Zipf family (truncated at the trace's minimum and maximum, exponent by
  maximum likelihood) or, when it fits the trace worse by KS distance, the empirical quantile
  function (``length_family="auto"``); both fits' KS distances are kept in the model.
- The response-vs-request relation: response lengths fitted per request-length quantile bin
  (per model), which keeps the rank correlation without assuming a functional form.
- Conversations: sessions start as the Gamma process; a conversation's later turns follow its
  start after the fitted intervals (think time + response time, as logged), so the merged
  stream's burstiness is a consequence of the two, as in the real service.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy import optimize, stats

if TYPE_CHECKING:
    from infragym.datasets.llm_traces import RequestTrace

# llm_traces re-exports fit_workload and twin_report on its last line, so this module imports it
# only inside functions: either module can then be imported first.

# Quantile levels at which fitted models report medians and tails.
QUANTILE_LEVELS = np.linspace(0.0, 1.0, 513)
# The empirical quantile functions keep at most this many order statistics (all of them, plus
# every one of the 32 largest and smallest: the tails are where serving latency is decided; a
# coarse top knot interpolated up to the maximum would invent a tail of huge prompts).
QUANTILE_KNOTS = 4096
TAIL_KNOTS = 32
# Fewer gaps than this in a window and its Gamma shape is the whole trace's (a CV estimated from
# a handful of heavy-tailed gaps is mostly noise).
MIN_GAPS_PER_WINDOW = 30
ARRIVAL_FITS = ("moments", "mle", "empirical")
# Gaps' worth of weight the whole trace's CV^2 gets in a window's moment estimate (shrinkage).
SHRINK_GAPS = 200.0
# Pseudo-counts that pull a window's model mix and failure share towards the trace's (a window
# with 3 requests should not get a failure probability of 0 or 1/3).
WINDOW_PRIOR_COUNT = 20.0
# A Zipf table up to this many values is sampled exactly; beyond, the continuous power law.
ZIPF_TABLE_MAX = 1 << 21
# "auto" keeps the paper's Zipf family unless the empirical fit is this much closer (KS): on data
# that is Zipf both fits are within sampling noise of it, and the parametric one then extrapolates.
ZIPF_KS_MARGIN = 0.01
DAY_S = 86_400.0


class TwinError(ValueError):
    """Bad input to fitting or generating a workload twin."""


# ---------------------------------------------------------------------- lengths
def quantile_knots(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(levels, values) of an empirical quantile function: order statistics at their plotting
    positions (i + 0.5) / n, thinned to ``QUANTILE_KNOTS`` in the body."""
    values = np.sort(np.asarray(x, dtype=np.float64))
    n = values.size
    idx = np.round(np.linspace(0, n - 1, min(n, QUANTILE_KNOTS))).astype(np.int64)
    tails = np.concatenate([np.arange(min(n, TAIL_KNOTS)), np.arange(max(n - TAIL_KNOTS, 0), n)])
    idx = np.unique(np.concatenate([idx, tails]))
    return (idx + 0.5) / n, values[idx]


def _interp_log(u: np.ndarray, levels: np.ndarray, values: np.ndarray, floor: float) -> np.ndarray:
    """The quantile function at ``u``, interpolated in log space (heavy-tailed quantities)."""
    return np.exp(np.interp(u, levels, np.log(np.maximum(values, floor))))


def _zipf_log_norm(a: float, xmin: int, cap: int) -> float:
    if cap - xmin < ZIPF_TABLE_MAX:
        k = np.arange(xmin, cap + 1, dtype=np.float64)
        return float(np.log(np.sum(k**-a)))
    # Euler-Maclaurin on the continuous power law (the table would be too large).
    if abs(a - 1.0) < 1e-9:
        return float(np.log(np.log((cap + 0.5) / (xmin - 0.5))))
    return float(np.log(((cap + 0.5) ** (1 - a) - (xmin - 0.5) ** (1 - a)) / (1 - a)))


def _zipf_cdf(values: np.ndarray, a: float, xmin: int, cap: int) -> np.ndarray:
    """P(X <= v) of the Zipf distribution truncated to [xmin, cap]."""
    v = np.clip(np.floor(values), xmin - 1, cap)
    if cap - xmin < ZIPF_TABLE_MAX:
        k = np.arange(xmin, cap + 1, dtype=np.float64)
        cum = np.concatenate([[0.0], np.cumsum(k**-a)])
        return cum[(v - xmin + 1).astype(np.int64)] / cum[-1]
    lo, hi = xmin - 0.5, cap + 0.5
    if abs(a - 1.0) < 1e-9:
        return np.log((v + 0.5) / lo) / np.log(hi / lo)
    return ((v + 0.5) ** (1 - a) - lo ** (1 - a)) / (hi ** (1 - a) - lo ** (1 - a))


@dataclass(frozen=True)
class LengthModel:
    """A token-length distribution: truncated Zipf (BurstGPT's family) or empirical quantiles.

    ``ks_zipf`` and ``ks_empirical`` are the KS distances of both fits to the data fitted."""

    family: str  # "zipf" or "empirical"
    zipf_a: float
    xmin: int
    cap: int
    levels: np.ndarray  # the empirical quantile function: levels in (0, 1) ...
    quantiles: np.ndarray  # ... and the lengths there
    ks_zipf: float
    ks_empirical: float

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        u = rng.random(size)
        if self.family == "empirical":
            values = _interp_log(u, self.levels, self.quantiles, 0.5)
            return np.clip(np.round(values), self.xmin, self.cap).astype(np.int64)
        if self.cap - self.xmin < ZIPF_TABLE_MAX:
            k = np.arange(self.xmin, self.cap + 1, dtype=np.float64)
            cum = np.cumsum(k**-self.zipf_a)
            return (self.xmin + np.searchsorted(cum, u * cum[-1], side="left")).astype(np.int64)
        lo, hi, e = self.xmin - 0.5, self.cap + 0.5, 1 - self.zipf_a
        if abs(e) < 1e-9:
            x = lo * (hi / lo) ** u
        else:
            x = (lo**e + u * (hi**e - lo**e)) ** (1 / e)
        return np.clip(np.round(x), self.xmin, self.cap).astype(np.int64)

    def summary(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "zipf_a": self.zipf_a,
            "min": self.xmin,
            "cap": self.cap,
            "median": float(np.interp(0.5, self.levels, self.quantiles)),
            "ks_zipf": self.ks_zipf,
            "ks_empirical": self.ks_empirical,
        }


def fit_lengths(values: np.ndarray, family: str = "auto") -> LengthModel:
    """Fit a length distribution to positive integer lengths.

    ``family``: "zipf" (BurstGPT's: p(k) ~ k^-a on [min, max], a by maximum likelihood),
    "empirical" (the quantile function), or "auto" (the paper's Zipf unless the empirical fit
    is closer by more than ``ZIPF_KS_MARGIN`` in KS distance)."""
    if family not in ("auto", "zipf", "empirical"):
        raise TwinError(f"length family must be 'auto', 'zipf' or 'empirical', got {family!r}")
    x = np.asarray(values, dtype=np.int64)
    if x.size == 0:
        raise TwinError("cannot fit a length distribution to no values")
    if np.any(x < 1):
        raise TwinError(f"lengths must be >= 1 to fit (found {int(x.min())})")
    xmin, cap = int(x.min()), int(x.max())
    levels, quantiles = quantile_knots(x)
    mean_log = float(np.mean(np.log(x)))
    if cap > xmin:
        fit = optimize.minimize_scalar(
            lambda a: a * mean_log + _zipf_log_norm(a, xmin, cap), bounds=(1e-3, 8.0), method="bounded"
        )
        a = float(fit.x)
    else:
        a = 1.0
    ks_zipf = _ks_to_cdf(x, lambda v: _zipf_cdf(v, a, xmin, cap))
    model = LengthModel("empirical", a, xmin, cap, levels, quantiles, ks_zipf, 0.0)
    # The empirical fit's own KS distance: how far a large sample of it lands from the data (the
    # log interpolation and rounding are its only errors).
    probe = model.sample(np.random.default_rng(0), max(4 * x.size, 20_000))
    ks_emp = float(stats.ks_2samp(x, probe).statistic)
    chosen = family if family != "auto" else ("zipf" if ks_zipf <= ks_emp + ZIPF_KS_MARGIN else "empirical")
    return LengthModel(chosen, a, xmin, cap, levels, quantiles, ks_zipf, ks_emp)


def _ks_to_cdf(x: np.ndarray, cdf: Any) -> float:
    """KS distance between a discrete sample and a discrete CDF (checked at every support point)."""
    values, counts = np.unique(x, return_counts=True)
    emp_hi = np.cumsum(counts) / x.size
    emp_lo = emp_hi - counts / x.size
    model_hi = cdf(values.astype(np.float64))
    model_lo = cdf(values.astype(np.float64) - 1)
    return float(max(np.max(np.abs(emp_hi - model_hi)), np.max(np.abs(emp_lo - model_lo))))


@dataclass(frozen=True)
class ResponseModel:
    """Response length given request length: one length model per request-length quantile bin
    (responses of failed requests excluded). ``spearman`` is the fitted data's rank correlation."""

    edges: np.ndarray  # inner bin edges of request tokens (len = bins - 1)
    bins: tuple[LengthModel, ...]
    spearman: float

    def sample(self, request: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        which = np.searchsorted(self.edges, request, side="right")
        out = np.empty(len(request), dtype=np.int64)
        for b, model in enumerate(self.bins):
            rows = np.flatnonzero(which == b)
            if rows.size:
                out[rows] = model.sample(rng, rows.size)
        return out


def fit_response(request: np.ndarray, response: np.ndarray, *, bins: int, family: str) -> ResponseModel:
    request, response = np.asarray(request), np.asarray(response)
    n_bins = int(max(1, min(bins, request.size // 200)))  # >= 200 responses per bin
    edges = np.unique(np.quantile(request, np.linspace(0, 1, n_bins + 1)[1:-1])) if n_bins > 1 else np.array([])
    which = np.searchsorted(edges, request, side="right")
    models = []
    for b in range(len(edges) + 1):
        chunk = response[which == b]
        models.append(fit_lengths(chunk if chunk.size else response, family))
    rho = float(stats.spearmanr(request, response).statistic) if request.size > 2 else float("nan")
    return ResponseModel(edges.astype(np.float64), tuple(models), rho)


# ---------------------------------------------------------------------- arrivals
@dataclass(frozen=True)
class ArrivalWindows:
    """Gamma inter-arrival parameters per window of ``window_s``.

    With ``period_s`` set (traces of a day or more: the day), window ``k`` is the ``k``-th
    ``window_s`` of every period (time of day) and the fit pools the days; otherwise the windows
    run along the fitted trace and a twin longer than it repeats them in order."""

    window_s: float
    period_s: float | None
    shape: np.ndarray  # per window
    rate: np.ndarray  # sessions (or requests) per second, per window
    count: np.ndarray  # gaps observed per window
    start_phase_s: float  # time within the period (or 0) at which the fitted trace started
    # family "empirical" (an extension for traffic no Gamma fits, e.g. on/off bursts): gaps are
    # the window's mean gap (1 / rate[k]) times a draw from the quantile function of all fitted
    # gaps divided by their window's mean gap (``gap_levels`` -> ``gap_quantiles``).
    family: str = "gamma"
    gap_levels: np.ndarray | None = None
    gap_quantiles: np.ndarray | None = None

    @property
    def n_windows(self) -> int:
        return len(self.shape)

    def draw_gaps(self, k: int, rate_factor: float, size: int, rng: np.random.Generator) -> np.ndarray:
        """``size`` gaps of window ``k`` with its rate multiplied by ``rate_factor``."""
        if self.family == "gamma":
            shape, rate = self.shape[k], self.rate[k] * rate_factor
            return rng.gamma(shape, 1.0 / (shape * rate), size)
        assert self.gap_levels is not None and self.gap_quantiles is not None
        unit = np.interp(rng.random(size), self.gap_levels, self.gap_quantiles)
        return unit / (self.rate[k] * rate_factor)

    def window_of(self, t: np.ndarray) -> np.ndarray:
        """Window index of twin times (the twin starts at the fitted trace's phase)."""
        k = np.floor((np.asarray(t) + self.start_phase_s) / self.window_s).astype(np.int64)
        return k % self.n_windows


def _window_grid(t0: float, t_end: float, window_s: float, period_s: float | None) -> tuple[int, np.ndarray]:
    """Number of windows and the exposure (seconds of trace) that falls in each."""
    if period_s is None:
        # A last stretch shorter than half a window joins the previous window (as its own window
        # it would be fitted on seconds of data, and a twin would give it a whole window's time).
        k = max(1, int(np.floor((t_end - t0) / window_s + 0.5)))
        exposure = np.full(k, window_s)
        exposure[-1] = max(t_end - t0 - (k - 1) * window_s, 1e-9)
        return k, exposure
    k = int(np.ceil(period_s / window_s))
    first = np.floor(t0 / window_s) * window_s
    starts = np.arange(first, t_end, window_s)
    lengths = np.minimum(starts + window_s, t_end) - np.maximum(starts, t0)
    index = (np.floor((starts % period_s) / window_s)).astype(np.int64) % k
    return k, np.maximum(np.bincount(index, weights=lengths, minlength=k), 0.0)


def fit_arrivals(
    times: np.ndarray, *, t_end: float, window_s: float, period_s: float | None, method: str = "moments"
) -> ArrivalWindows:
    """Per-window Gamma fit of the gaps of sorted ``times`` (each gap belongs to the window of
    the arrival that ends it). ``method``: "moments" (shape = 1 / CV^2: the window's CV exactly)
    or "mle" (maximum likelihood on the positive gaps: the bulk of the gap distribution, at the
    cost of the CV when a few long pauses dominate it), or "empirical" (an extension beyond
    BurstGPT's Gamma: every window draws from the empirical distribution of all gaps divided by
    their window's mean gap, scaled to its own rate); the rate is requests / window time."""
    if method not in ARRIVAL_FITS:
        raise TwinError(f"arrival fit method must be one of {ARRIVAL_FITS}, got {method!r}")
    t = np.asarray(times, dtype=np.float64)
    t0 = float(t[0])
    k, exposure = _window_grid(t0, t_end, window_s, period_s)
    if period_s is None:
        index = np.minimum(((t - t0) // window_s).astype(np.int64), k - 1)
        phase = 0.0
    else:
        index = ((t % period_s) // window_s).astype(np.int64) % k
        phase = t0 % period_s
    arrivals = np.bincount(index, minlength=k).astype(np.float64)
    gaps, gap_window = np.diff(t), index[1:]
    count = np.bincount(gap_window, minlength=k)
    s1 = np.bincount(gap_window, weights=gaps, minlength=k)
    s2 = np.bincount(gap_window, weights=gaps**2, minlength=k)
    global_cv2 = gaps.var() / gaps.mean() ** 2 if gaps.size > 1 and gaps.mean() > 0 else 1.0
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = s1 / count
        var = s2 / count - mean**2
        cv2 = var / mean**2
    enough = (count >= MIN_GAPS_PER_WINDOW) & np.isfinite(cv2) & (cv2 > 0)
    global_cv2 = global_cv2 if global_cv2 > 0 else 1.0
    # Shrink each window's CV^2 towards the trace's by its number of gaps: a CV estimated from a
    # few hundred heavy-tailed gaps is noisy, and a twin should not copy that noise.
    weight = count / (count + SHRINK_GAPS)
    cv2 = np.where(enough, weight * cv2 + (1 - weight) * global_cv2, global_cv2)
    if method == "mle":
        positive = gaps > 0
        pooled = _gamma_mle(gaps[positive])
        for w in range(k):
            sel = positive & (gap_window == w)
            cv2[w] = 1.0 / (_gamma_mle(gaps[sel]) if sel.sum() >= MIN_GAPS_PER_WINDOW else pooled)
    rate = np.where(exposure > 0, arrivals / np.maximum(exposure, 1e-12), 0.0)
    if method == "empirical":
        with np.errstate(invalid="ignore", divide="ignore"):
            unit = gaps / mean[gap_window]
        unit = unit[np.isfinite(unit)]
        if unit.size < 10:
            raise TwinError("an empirical gap fit needs at least 10 inter-arrival gaps in windows with a mean gap")
        levels, quantiles = quantile_knots(unit / unit.mean())
        return ArrivalWindows(window_s, period_s, 1.0 / cv2, rate, count, phase, "empirical", levels, quantiles)
    return ArrivalWindows(window_s, period_s, 1.0 / cv2, rate, count, phase)


def _gamma_mle(gaps: np.ndarray) -> float:
    """Maximum-likelihood Gamma shape (location 0) of positive gaps; 1 (Poisson) when too few."""
    if gaps.size < 2 or np.all(gaps == gaps[0]):
        return 1.0
    # Closed-form start (Minka 2002) refined by scipy's fit.
    s = np.log(gaps.mean()) - np.mean(np.log(gaps))
    start = (3 - s + np.sqrt((s - 3) ** 2 + 24 * s)) / (12 * s)
    shape, _, _ = stats.gamma.fit(gaps, start, floc=0)
    return float(shape)


def gamma_arrivals(windows: ArrivalWindows, n_min: int, rng: np.random.Generator, rate_factor: float) -> np.ndarray:
    """At least ``n_min`` arrival times from 0 on: a renewal process whose gap distribution is the
    one (Gamma, or the scaled empirical gaps) of the window where the gap starts."""
    chunks, total, t = [], 0, 0.0
    while total < n_min:
        k = int(windows.window_of(np.array([t]))[0])
        end = (np.floor((t + windows.start_phase_s) / windows.window_s) + 1) * windows.window_s
        end -= windows.start_phase_s
        rate = windows.rate[k] * rate_factor
        if rate <= 0:
            t = end
            continue
        expected = rate * (end - t)
        m = int(expected * 1.2 + 5 * np.sqrt(expected) + 16)
        arrivals = t + np.cumsum(windows.draw_gaps(k, rate_factor, m, rng))
        while arrivals[-1] < end:
            arrivals = np.concatenate([arrivals, arrivals[-1] + np.cumsum(windows.draw_gaps(k, rate_factor, m, rng))])
        # keep the gaps that start inside this window: up to the first arrival past its end
        last = int(np.searchsorted(arrivals, end, side="left"))
        kept = arrivals[: last + 1]
        chunks.append(kept)
        total += kept.size
        t = float(kept[-1])
    return np.concatenate(chunks)


# ---------------------------------------------------------------------- conversations
@dataclass(frozen=True)
class ConversationModel:
    """Conversation patterns: the share of sessions that are conversations (the rest are single
    API requests), turns per conversation (a pmf over 1..max) and the interval between
    consecutive turns (empirical quantiles, s)."""

    share: float
    turns_pmf: np.ndarray  # turns_pmf[k - 1] = P(k turns)
    interval_levels: np.ndarray  # the intervals' quantile function: levels in (0, 1) ...
    interval_quantiles: np.ndarray  # ... and the intervals there (s)

    @property
    def mean_turns(self) -> float:
        return float(np.dot(np.arange(1, len(self.turns_pmf) + 1), self.turns_pmf))

    def sample_turns(self, rng: np.random.Generator, size: int) -> np.ndarray:
        return 1 + rng.choice(len(self.turns_pmf), size=size, p=self.turns_pmf)

    def sample_intervals(self, rng: np.random.Generator, size: int) -> np.ndarray:
        return _interp_log(rng.random(size), self.interval_levels, self.interval_quantiles, 1e-3)

    def summary(self) -> dict[str, float]:
        return {
            "share": self.share,
            "mean_turns": self.mean_turns,
            "max_turns": float(len(self.turns_pmf)),
            "interval_median_s": float(np.interp(0.5, self.interval_levels, self.interval_quantiles)),
            "interval_p90_s": float(np.interp(0.9, self.interval_levels, self.interval_quantiles)),
        }


def conversation_structure(conversation: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For per-request conversation ids (-1: none), in arrival order: whether each request opens
    a session (a conversation's first turn or a request outside any), each request's turn index
    (0 for the first) and the number of turns of each conversation id present."""
    conv = np.asarray(conversation, dtype=np.int64)
    inside = conv >= 0
    opens = ~inside
    turn = np.zeros(conv.size, dtype=np.int64)
    if inside.any():
        rows = np.flatnonzero(inside)
        ids = conv[rows]
        order = np.argsort(ids, kind="stable")  # stable: keeps arrival order within an id
        sorted_ids = ids[order]
        first = np.concatenate([[True], sorted_ids[1:] != sorted_ids[:-1]])
        group_start = np.maximum.accumulate(np.where(first, np.arange(sorted_ids.size), 0))
        turn[rows[order]] = np.arange(sorted_ids.size) - group_start
        opens[rows[order[first]]] = True
        turns = np.diff(np.concatenate([np.flatnonzero(first), [sorted_ids.size]]))
    else:
        turns = np.zeros(0, dtype=np.int64)
    return opens, turn, turns


def fit_conversations(arrival: np.ndarray, conversation: np.ndarray) -> ConversationModel | None:
    conv = np.asarray(conversation, dtype=np.int64)
    if not np.any(conv >= 0):
        return None
    _, _, turns = conversation_structure(conv)
    rows = np.flatnonzero(conv >= 0)
    order = rows[np.lexsort((arrival[rows], conv[rows]))]
    same = conv[order][1:] == conv[order][:-1]
    intervals = np.diff(arrival[order])[same]
    pmf = np.bincount(turns)[1:].astype(np.float64)
    pmf /= pmf.sum()
    n_single = int(np.sum(conv < 0))
    share = turns.size / (turns.size + n_single)
    levels, quantiles = quantile_knots(intervals if intervals.size else np.zeros(1))
    return ConversationModel(float(share), pmf, levels, quantiles)


# ---------------------------------------------------------------------- the model
@dataclass(frozen=True)
class WorkloadModel:
    """A fitted workload (BurstGPT's characterisation, per window where it varies).

    Per window: Gamma session arrivals, the model mix and each model's failure probability.
    Per model: request-length distribution and response-given-request distribution."""

    arrivals: ArrivalWindows
    models: tuple[str, ...]
    model_mix: np.ndarray  # (windows, models)
    failure: np.ndarray  # (windows, models): P(failed)
    prompt: tuple[LengthModel, ...]  # per model
    response: tuple[ResponseModel, ...]  # per model
    conversations: ConversationModel | None
    request_rate: float  # requests/s of the fitted trace (all turns)
    time_resolution_s: float  # 1.0 when the trace logs whole seconds (BurstGPT), else 0

    def generate(
        self, n_requests: int, rng: np.random.Generator, rate: float | None = None, *, start_s: float | None = None
    ) -> RequestTrace:
        """A twin of ``n_requests`` requests, arriving from time 0.

        ``rate`` (requests/s): more or fewer users at the same time of day, i.e. every window's
        session rate scaled by ``rate / request_rate`` (burstiness, think times and the day's
        shape are kept); None: the fitted rates. ``start_s``: where in the fitted windows the
        twin starts (time of day for a model folded by day, else seconds from the fitted trace's
        start); None: where the fitted trace started."""
        return self.generate_with_conversations(n_requests, rng, rate, start_s=start_s)[0]

    def generate_with_conversations(
        self, n_requests: int, rng: np.random.Generator, rate: float | None = None, *, start_s: float | None = None
    ) -> tuple[RequestTrace, np.ndarray]:
        """A twin (as ``generate``) and each request's conversation id (-1: outside any)."""
        if n_requests <= 0:
            raise TwinError(f"n_requests must be positive, got {n_requests}")
        if rate is not None and not (np.isfinite(rate) and rate > 0):
            raise TwinError(f"rate must be a positive number of requests/s, got {rate}")
        if start_s is not None:
            if not np.isfinite(start_s):
                raise TwinError(f"start_s must be a finite time, got {start_s}")
            moved = replace(self, arrivals=replace(self.arrivals, start_phase_s=float(start_s)))
            return moved.generate_with_conversations(n_requests, rng, rate)
        factor = 1.0 if rate is None else rate / self.request_rate
        conv = self.conversations
        per_session = 1.0 if conv is None else 1.0 + conv.share * (conv.mean_turns - 1.0)
        n_sessions = int(np.ceil(n_requests / per_session * 1.05)) + 8
        while True:
            starts = gamma_arrivals(self.arrivals, n_sessions, rng, factor)
            times, conv_id, session = self._expand(starts, rng)
            # Every request before the last session start is drawn (later turns come after
            # their start): a prefix of that length is a complete sample of the process.
            complete = int(np.searchsorted(times, starts[-1], side="right"))
            if complete >= n_requests:
                break
            n_sessions = int(n_sessions * 1.5) + 8
        times, conv_id, session = times[:n_requests], conv_id[:n_requests], session[:n_requests]
        return self._fill(times, session, rng), conv_id

    def _expand(self, starts: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Session starts -> request times (sorted), conversation ids and the session of each."""
        n = starts.size
        conv = self.conversations
        if conv is None:
            return starts, np.full(n, -1, np.int64), np.arange(n)
        is_conv = rng.random(n) < conv.share
        turns = np.where(is_conv, conv.sample_turns(rng, n), 1)
        session = np.repeat(np.arange(n), turns)
        first = np.concatenate([[0], np.cumsum(turns)[:-1]])
        within = np.arange(session.size) - np.repeat(first, turns)
        gaps = np.where(within > 0, conv.sample_intervals(rng, session.size), 0.0)
        cum = np.cumsum(gaps)
        offset = cum - np.repeat(cum[first], turns)
        times = starts[session] + offset
        conv_id = np.where(is_conv[session], session, -1)
        order = np.argsort(times, kind="stable")
        return times[order], conv_id[order], session[order]

    def _fill(self, times: np.ndarray, session: np.ndarray, rng: np.random.Generator) -> RequestTrace:
        n = times.size
        window = self.arrivals.window_of(times)
        # A session's model is drawn at its first request (the mix of its start window).
        _, first_row, session_index = np.unique(session, return_index=True, return_inverse=True)
        cum = np.cumsum(self.model_mix[window[first_row]], axis=1)
        session_model = (rng.random(first_row.size)[:, None] > cum).sum(axis=1)
        model = np.minimum(session_model[session_index], len(self.models) - 1).astype(np.int64)
        prompt = np.empty(n, np.int64)
        output = np.empty(n, np.int64)
        for m in range(len(self.models)):
            rows = np.flatnonzero(model == m)
            if rows.size:
                prompt[rows] = self.prompt[m].sample(rng, rows.size)
                output[rows] = self.response[m].sample(prompt[rows], rng)
        failed = rng.random(n) < self.failure[window, model]
        output[failed] = 0
        if self.time_resolution_s > 0:
            times = np.floor(times / self.time_resolution_s) * self.time_resolution_s
        from infragym.datasets.llm_traces import RequestTrace

        return RequestTrace(times, prompt, output, model, failed, self.models)

    def summary(self) -> dict[str, Any]:
        """The fitted parameters (JSON-ready)."""
        a = self.arrivals
        return {
            "window_s": a.window_s,
            "period_s": a.period_s,
            "arrival_family": a.family,
            "gamma_shape": a.shape.tolist(),
            "session_rate": a.rate.tolist(),
            "request_rate": self.request_rate,
            "models": list(self.models),
            "model_mix": self.model_mix.mean(axis=0).tolist(),
            "failure_by_window": self.failure.tolist(),
            "prompt": [p.summary() for p in self.prompt],
            "response_spearman": [r.spearman for r in self.response],
            "conversations": None if self.conversations is None else self.conversations.summary(),
        }


def default_window_s(duration_s: float, n: int) -> float:
    """An hour of the day for traces of a day or more (BurstGPT's daily periodicity); otherwise
    about 12 windows, widened so that a window holds >= 300 requests on average."""
    if duration_s >= DAY_S:
        return 3600.0
    rate = n / max(duration_s, 1e-9)
    return float(max(duration_s / 12.0, 300.0 / max(rate, 1e-9), 1.0))


def fit_workload(
    trace: RequestTrace,
    *,
    conversation: np.ndarray | None = None,
    window_s: float | None = None,
    period_s: float | None = None,
    length_family: str = "auto",
    response_bins: int = 8,
    arrival_fit: str = "moments",
) -> WorkloadModel:
    """Fit BurstGPT's workload model to ``trace``.

    ``conversation``: per-request conversation ids (-1 outside any; BurstGPT's ``Session ID``,
    see ``load_burstgpt_conversations``). ``window_s``: windows of the per-window fits (default
    ``default_window_s``). ``period_s``: fold windows by time of the period (default: the day
    when the trace spans a day or more, else no folding). ``length_family``: see
    ``fit_lengths``; ``arrival_fit``: see ``fit_arrivals``."""
    if len(trace) < 10:
        raise TwinError(f"a workload fit needs at least 10 requests, the trace has {len(trace)}")
    n = len(trace)
    t = trace.arrival_s
    duration = float(t[-1] - t[0])
    if duration <= 0:
        raise TwinError("all requests arrive at the same time: no inter-arrival process to fit")
    if conversation is None:
        conversation = np.full(n, -1, np.int64)
    conversation = np.asarray(conversation, dtype=np.int64)
    if conversation.shape != (n,):
        raise TwinError(f"conversation has shape {conversation.shape}, expected ({n},) (one id per request)")
    window_s = default_window_s(duration, n) if window_s is None else float(window_s)
    if not (np.isfinite(window_s) and window_s > 0):
        raise TwinError(f"window_s must be positive, got {window_s}")
    if period_s is None and duration >= DAY_S:
        period_s = DAY_S
    opens, _, _ = conversation_structure(conversation)
    # The end of the observed span: one mean gap after the last arrival.
    t_end = float(t[-1] + duration / (n - 1))
    arrivals = fit_arrivals(t[opens], t_end=t_end, window_s=window_s, period_s=period_s, method=arrival_fit)
    window = arrivals.window_of(t - t[0])
    n_models = len(trace.models)
    # model mix and failure share per window, pulled towards the whole trace's
    session_rows = np.flatnonzero(opens)
    mix_counts = np.zeros((arrivals.n_windows, n_models))
    np.add.at(mix_counts, (window[session_rows], trace.model[session_rows]), 1.0)
    overall_mix = mix_counts.sum(axis=0) / mix_counts.sum()
    model_mix = (mix_counts + WINDOW_PRIOR_COUNT * overall_mix) / (
        mix_counts.sum(axis=1, keepdims=True) + WINDOW_PRIOR_COUNT
    )
    totals = np.zeros((arrivals.n_windows, n_models))
    fails = np.zeros((arrivals.n_windows, n_models))
    np.add.at(totals, (window, trace.model), 1.0)
    np.add.at(fails, (window, trace.model), trace.failed.astype(np.float64))
    model_fail = (fails.sum(axis=0) + 0.5) / (totals.sum(axis=0) + 1.0)
    failure = (fails + WINDOW_PRIOR_COUNT * model_fail) / (totals + WINDOW_PRIOR_COUNT)
    prompts, responses = [], []
    pooled_ok = ~trace.failed & (trace.output_tokens > 0)
    for m in range(n_models):
        rows = trace.model == m
        if not rows.any():  # a model the trace lists but never calls: never drawn (mix 0)
            rows = np.ones(n, bool)
        prompts.append(fit_lengths(trace.prompt_tokens[rows], length_family))
        ok = rows & pooled_ok
        if not ok.any():
            ok = pooled_ok if pooled_ok.any() else rows
        responses.append(
            fit_response(
                trace.prompt_tokens[ok],
                np.maximum(trace.output_tokens[ok], 1),
                bins=response_bins,
                family=length_family,
            )
        )
    resolution = 1.0 if np.all(t == np.round(t)) else 0.0
    return WorkloadModel(
        arrivals=arrivals,
        models=trace.models,
        model_mix=model_mix,
        failure=failure,
        prompt=tuple(prompts),
        response=tuple(responses),
        conversations=fit_conversations(t, conversation),
        request_rate=(n - 1) / duration,
        time_resolution_s=resolution,
    )


# ---------------------------------------------------------------------- BurstGPT's format
def load_burstgpt_conversations(path: str | os.PathLike[str]) -> tuple[RequestTrace, np.ndarray]:
    """A BurstGPT trace (``load_burstgpt``) with each request's conversation id: the release
    v2.0 ``Session ID`` column (only conversation-mode requests have one; an empty cell is a
    request outside any conversation, -1). A file without the column (releases before v2.0)
    gives -1 everywhere."""
    from infragym.datasets.llm_traces import load_burstgpt

    trace = load_burstgpt(path)
    frame = pd.read_csv(Path(path), dtype=str, keep_default_na=False, encoding="utf-8")
    if "Session ID" not in frame.columns:
        return trace, np.full(len(trace), -1, np.int64)
    ids = frame["Session ID"].str.strip()
    present = (ids != "").to_numpy()
    codes = np.full(len(trace), -1, np.int64)
    codes[present] = pd.factorize(ids[present])[0]
    return trace, codes


# ---------------------------------------------------------------------- the report
def _window_cvs(t: np.ndarray, window_s: float, n_windows: int) -> np.ndarray:
    """Inter-arrival CV in each window (from the trace's start); NaN with fewer than 3 gaps."""
    rel = t - t[0]
    gaps = np.diff(rel)
    index = (rel[1:] // window_s).astype(np.int64)
    keep = index < n_windows
    index, gaps = index[keep], gaps[keep]
    count = np.bincount(index, minlength=n_windows).astype(np.float64)
    s1 = np.bincount(index, weights=gaps, minlength=n_windows)
    s2 = np.bincount(index, weights=gaps**2, minlength=n_windows)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = s1 / count
        cv = np.sqrt(np.maximum(s2 / count - mean**2, 0.0)) / mean
    return np.where(count >= 3, cv, np.nan)


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    return float(stats.spearmanr(x, y).statistic) if x.size > 2 else float("nan")


def _cv(x: np.ndarray) -> float:
    return float(x.std() / x.mean()) if x.size > 1 and x.mean() > 0 else float("nan")


def _conversation_stats(t: np.ndarray, conversation: np.ndarray) -> dict[str, float]:
    model = fit_conversations(t, conversation)
    if model is None:
        return {}
    stats_ = model.summary()
    stats_["requests_in_conversations"] = float(np.mean(np.asarray(conversation) >= 0))
    return stats_


def twin_report(
    trace: RequestTrace,
    twin: RequestTrace,
    *,
    conversation: np.ndarray | None = None,
    twin_conversation: np.ndarray | None = None,
    window_s: float | None = None,
    cluster: Any = None,
) -> dict[str, Any]:
    """How close ``twin`` is to ``trace``: a dict of named statistics.

    Arrivals: rate, inter-arrival CV overall and per window (lists under ``iat_cv_by_window``,
    their mean absolute difference), KS distance of the inter-arrival times. Lengths: KS
    distances of request and response tokens (responses of successful requests), the
    response-vs-request rank correlations, failure shares, the model mix's total variation.
    Conversations (when both id arrays are given): turns, intervals, KS of intervals. Serving:
    p50/p99 TTFT, TBT and end-to-end latency of the serving simulator (``cluster``: a
    ``ServingCluster``; default ``default_cluster()``; False skips it) on both."""
    if len(trace) < 3 or len(twin) < 3:
        raise TwinError("twin_report needs at least 3 requests in both traces")
    window_s = default_window_s(trace.duration_s, len(trace)) if window_s is None else float(window_s)
    n_windows = max(1, int(np.ceil(min(trace.duration_s, twin.duration_s) / window_s)))
    gaps_a, gaps_b = np.diff(trace.arrival_s), np.diff(twin.arrival_s)
    cv_a, cv_b = _window_cvs(trace.arrival_s, window_s, n_windows), _window_cvs(twin.arrival_s, window_s, n_windows)
    both = np.isfinite(cv_a) & np.isfinite(cv_b)
    ok_a = ~trace.failed & (trace.output_tokens > 0)
    ok_b = ~twin.failed & (twin.output_tokens > 0)
    report: dict[str, Any] = {
        "requests/trace": float(len(trace)),
        "requests/twin": float(len(twin)),
        "rate/trace": trace.rate,
        "rate/twin": twin.rate,
        "iat_cv/trace": _cv(gaps_a),
        "iat_cv/twin": _cv(gaps_b),
        "iat_ks": float(stats.ks_2samp(gaps_a, gaps_b).statistic),
        "window_s": window_s,
        "iat_cv_by_window": {"trace": cv_a.tolist(), "twin": cv_b.tolist()},
        "iat_cv_window_mae": float(np.mean(np.abs(cv_a[both] - cv_b[both]))) if both.any() else float("nan"),
        "prompt_ks": float(stats.ks_2samp(trace.prompt_tokens, twin.prompt_tokens).statistic),
        "output_ks": float(stats.ks_2samp(trace.output_tokens[ok_a], twin.output_tokens[ok_b]).statistic)
        if ok_a.any() and ok_b.any()
        else float("nan"),
        "prompt_mean/trace": float(trace.prompt_tokens.mean()),
        "prompt_mean/twin": float(twin.prompt_tokens.mean()),
        "output_mean/trace": float(trace.output_tokens[ok_a].mean()) if ok_a.any() else float("nan"),
        "output_mean/twin": float(twin.output_tokens[ok_b].mean()) if ok_b.any() else float("nan"),
        "response_spearman/trace": _spearman(trace.prompt_tokens[ok_a], trace.output_tokens[ok_a]),
        "response_spearman/twin": _spearman(twin.prompt_tokens[ok_b], twin.output_tokens[ok_b]),
        "failed/trace": float(trace.failed.mean()),
        "failed/twin": float(twin.failed.mean()),
    }
    if trace.models == twin.models:
        mix_a = np.bincount(trace.model, minlength=len(trace.models)) / len(trace)
        mix_b = np.bincount(twin.model, minlength=len(twin.models)) / len(twin)
        report["model_mix_tv"] = float(0.5 * np.abs(mix_a - mix_b).sum())
    if conversation is not None and twin_conversation is not None:
        pairs = (("trace", trace.arrival_s, conversation), ("twin", twin.arrival_s, twin_conversation))
        for name, arrival, ids in pairs:
            for key, value in _conversation_stats(arrival, ids).items():
                report[f"conversation/{key}/{name}"] = value
        ia, ib = _turn_intervals(trace.arrival_s, conversation), _turn_intervals(twin.arrival_s, twin_conversation)
        if ia.size and ib.size:
            report["conversation/interval_ks"] = float(stats.ks_2samp(ia, ib).statistic)
    if cluster is not False:
        report.update(serving_latency(trace, twin, cluster))
    return report


def _turn_intervals(arrival: np.ndarray, conversation: np.ndarray) -> np.ndarray:
    conv = np.asarray(conversation, dtype=np.int64)
    rows = np.flatnonzero(conv >= 0)
    order = rows[np.lexsort((arrival[rows], conv[rows]))]
    same = conv[order][1:] == conv[order][:-1]
    return np.diff(arrival[order])[same]


def default_cluster() -> Any:
    """One H100 replica of Llama-3.1-8B with vLLM's defaults and chunked prefill (vLLM V1's
    default): without it a prompt beyond the 8,192-token step budget is refused and holds up
    the queue behind it, and a twin's sampled tail is bound to draw such prompts."""
    from infragym.envs.serving.simulator import ReplicaConfig, ServingCluster

    return ServingCluster(replica=ReplicaConfig(chunked_prefill=True))


LATENCY_KEYS = ("ttft_s_p50", "ttft_s_p99", "tbt_s_p50", "tbt_s_p99", "e2e_s_p50", "e2e_s_p99")


def serving_latency(trace: RequestTrace, twin: RequestTrace, cluster: Any = None) -> dict[str, float]:
    """The serving simulator's latency percentiles on trace and twin, and the twin's relative
    error (``latency/<metric>/trace``, ``.../twin``, ``.../rel_err``)."""
    cluster = cluster if cluster is not None else default_cluster()
    out: dict[str, float] = {}
    metrics = {name: cluster.run(t).metrics for name, t in (("trace", trace), ("twin", twin))}
    for key in LATENCY_KEYS:
        a, b = metrics["trace"].get(key, float("nan")), metrics["twin"].get(key, float("nan"))
        out[f"latency/{key}/trace"] = a
        out[f"latency/{key}/twin"] = b
        out[f"latency/{key}/rel_err"] = abs(b - a) / a if a > 0 else float("nan")
    return out


# ---------------------------------------------------------------------- a BurstGPT-like reference
def burstgpt_reference_model(
    *,
    mean_rate: float = 2.0,
    models: tuple[str, ...] = ("ChatGPT", "GPT-4"),
    model_mix: tuple[float, ...] = (0.8, 0.2),
) -> WorkloadModel:
    """A workload model with BurstGPT's published constants, to generate BurstGPT-like traces
    with hour-of-day variation and conversations (no public BurstGPT sample ships with the data).

    Published (PAPERS.md): Gamma shapes 0.25-0.5 (varied here over the day, burstiest at the
    daily peak), Zipf a = 1.1 lengths below a cap, failures 1.8-7.3% (varied here with the load).
    Assumptions (not in PAPERS.md): the daily rate profile (peak/trough 3x), caps 4,096 request
    and 2,048 response tokens (``burstgpt_like``'s), the model mix, the conversation share (60%
    of sessions), turns (geometric, mean 3, at most 40) and turn intervals (log-normal, median
    45 s, sigma 1)."""
    hours = np.arange(24)
    profile = 1.0 + 0.5 * np.sin(2 * np.pi * (hours - 9) / 24)  # peak mid-afternoon, 3x the trough
    load = (profile - profile.min()) / (profile.max() - profile.min())
    shape = 0.5 - 0.25 * load  # PAPERS.md: shape 0.25-0.5
    failure = 0.018 + (0.073 - 0.018) * load  # PAPERS.md: failures 1.8-7.3%
    turns_mean, max_turns = 3.0, 40
    p = 1.0 / turns_mean
    pmf = p * (1 - p) ** np.arange(max_turns)
    pmf /= pmf.sum()
    share = 0.6
    per_session = 1.0 + share * (float(np.dot(np.arange(1, max_turns + 1), pmf)) - 1.0)
    session_rate = mean_rate / per_session * profile / profile.mean()
    levels = np.clip(QUANTILE_LEVELS, 1e-6, 1 - 1e-6)
    intervals = np.exp(np.log(45.0) + stats.norm.ppf(levels))

    def zipf(cap: int) -> LengthModel:
        return LengthModel("zipf", 1.1, 1, cap, np.array([0.0, 1.0]), np.array([1.0, cap]), 0.0, 0.0)

    n_models = len(models)
    return WorkloadModel(
        arrivals=ArrivalWindows(3600.0, DAY_S, shape, session_rate, np.zeros(24, np.int64), 0.0),
        models=models,
        model_mix=np.tile(np.asarray(model_mix, dtype=np.float64), (24, 1)),
        failure=np.tile(failure[:, None], (1, n_models)),
        prompt=tuple(zipf(4096) for _ in models),
        response=tuple(ResponseModel(np.array([]), (zipf(2048),), float("nan")) for _ in models),
        conversations=ConversationModel(share, pmf, levels, intervals),
        request_rate=mean_rate,
        time_resolution_s=1.0,
    )


def split_halves(trace: RequestTrace, conversation: np.ndarray | None = None) -> tuple[Any, Any]:
    """The first and second half of a trace by time, each re-based to start at 0, with their
    conversation ids: ``((first, ids), (second, ids))``."""
    middle = trace.arrival_s[0] + trace.duration_s / 2
    cut = int(np.searchsorted(trace.arrival_s, middle, side="left"))
    ids = np.full(len(trace), -1, np.int64) if conversation is None else np.asarray(conversation)
    first = trace.window(trace.arrival_s[0], middle)
    second = trace.window(middle, trace.arrival_s[-1] + 1e-9)
    return (first, ids[:cut]), (second, ids[cut : cut + len(second)])


__all__ = [
    "ARRIVAL_FITS",
    "ArrivalWindows",
    "ConversationModel",
    "LengthModel",
    "ResponseModel",
    "TwinError",
    "WorkloadModel",
    "burstgpt_reference_model",
    "conversation_structure",
    "default_cluster",
    "default_window_s",
    "fit_arrivals",
    "fit_lengths",
    "fit_response",
    "fit_workload",
    "gamma_arrivals",
    "load_burstgpt_conversations",
    "quantile_knots",
    "serving_latency",
    "split_halves",
    "twin_report",
]
