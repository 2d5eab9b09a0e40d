"""Workload twins: fit BurstGPT's workload characterisation to a trace, draw synthetic twins.

BurstGPT (KDD'25; PAPERS.md) characterises an LLM-serving workload by: Gamma inter-arrival times
whose shape and rate change from window to window over the day; Zipf request and response
lengths, with a response-vs-request relation that differs by model; conversation patterns
(turns per conversation, intervals between turns); and failures (response tokens = 0). Its
generator draws Gamma gaps and Zipf lengths. ``fit_workload`` fits that model to any
``RequestTrace`` (per window where the parameters vary), ``WorkloadModel.generate`` draws a twin
of any length and rate, and ``twin_report.twin_report`` says how close a twin is to a trace. The
length models live in ``twin_lengths``.

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
from scipy import stats

from infragym.datasets.twin_lengths import (
    QUANTILE_LEVELS,
    LengthModel,
    ResponseModel,
    TwinError,
    fit_lengths,
    fit_response,
    interp_log,
    quantile_knots,
)

if TYPE_CHECKING:
    from infragym.datasets.llm_traces import RequestTrace

# llm_traces re-exports fit_workload and twin_report on its last lines, so this module imports it
# only inside functions: either module can then be imported first.

# Fewer gaps than this in a window and its Gamma shape is the whole trace's (a CV estimated from
# a handful of heavy-tailed gaps is mostly noise).
MIN_GAPS_PER_WINDOW = 30
ARRIVAL_FITS = ("moments", "mle", "empirical")
# Gaps' worth of weight the whole trace's CV^2 gets in a window's moment estimate (shrinkage).
SHRINK_GAPS = 200.0
# Pseudo-counts that pull a window's model mix and failure share towards the trace's (a window
# with 3 requests should not get a failure probability of 0 or 1/3).
WINDOW_PRIOR_COUNT = 20.0
DAY_S = 86_400.0
# Requests of a model a window needs for its own request-length fit (else the model's overall).
MIN_WINDOW_LENGTHS = 500


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
        return interp_log(rng.random(size), self.interval_levels, self.interval_quantiles, 1e-3)

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
    Per model: request-length distribution (also per window, where fitted) and
    response-given-request distribution."""

    arrivals: ArrivalWindows
    models: tuple[str, ...]
    model_mix: np.ndarray  # (windows, models)
    failure: np.ndarray  # (windows, models): P(failed)
    prompt: tuple[LengthModel, ...]  # per model
    response: tuple[ResponseModel, ...]  # per model
    conversations: ConversationModel | None
    request_rate: float  # requests/s of the fitted trace (all turns)
    time_resolution_s: float  # 1.0 when the trace logs whole seconds (BurstGPT), else 0
    # Request lengths by window and model where they vary over the day (None: the model's own);
    # see ``fit_workload(length_by_window=...)``.
    prompt_by_window: tuple[tuple[LengthModel | None, ...], ...] | None = None

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
            if not rows.size:
                continue
            prompt[rows] = self.prompt[m].sample(rng, rows.size)
            if self.prompt_by_window is not None:
                for w in np.unique(window[rows]):
                    own = self.prompt_by_window[w][m]
                    if own is not None:
                        in_window = rows[window[rows] == w]
                        prompt[in_window] = own.sample(rng, in_window.size)
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
            "prompt_median_by_window": None
            if self.prompt_by_window is None
            else [[None if p is None else p.summary()["median"] for p in row] for row in self.prompt_by_window],
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
    length_by_window: bool | None = None,
) -> WorkloadModel:
    """Fit BurstGPT's workload model to ``trace``.

    ``conversation``: per-request conversation ids (-1 outside any; BurstGPT's ``Session ID``,
    see ``load_burstgpt_conversations``). ``window_s``: windows of the per-window fits (default
    ``default_window_s``). ``period_s``: fold windows by time of the period (default: the day
    when the trace spans a day or more, else no folding). ``length_family``: see
    ``fit_lengths``; ``arrival_fit``: see ``fit_arrivals``. ``length_by_window``: fit request
    lengths per window (time of day) and model too, where a window has at least
    ``MIN_WINDOW_LENGTHS`` requests of the model (default: when windows fold by day, i.e. the
    lengths' daily variation is observed more than once)."""
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
    by_window = None
    if length_by_window or (length_by_window is None and period_s is not None):
        by_window = tuple(
            tuple(
                fit_lengths(trace.prompt_tokens[sel], length_family)
                if (sel := (window == w) & (trace.model == m)).sum() >= MIN_WINDOW_LENGTHS
                else None
                for m in range(n_models)
            )
            for w in range(arrivals.n_windows)
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
        prompt_by_window=by_window,
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
    daily peak), Zipf a = 1.1 lengths below a cap, failures 1.8-7.3% (assumed here to rise with the load).
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
    "default_window_s",
    "fit_arrivals",
    "fit_conversations",
    "fit_lengths",
    "fit_workload",
    "gamma_arrivals",
    "load_burstgpt_conversations",
    "quantile_knots",
    "split_halves",
]
