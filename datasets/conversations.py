"""Multi-turn conversations: turns, user think time, context growing per turn (issue 15 section 2).

FastSwitch's workload is multi-turn chat: each turn's prompt repeats the whole conversation so
far (earlier prompts and responses) plus the user's new message, and the next turn comes a
think time after the response. A serving system that keeps a conversation's KV cache (on the
GPU or as a host copy across turns) saves re-prefilling or re-transferring that prior context.

A ``ConversationProfile`` holds the per-conversation statistics: the share of sessions that are
conversations (the rest single requests), turns per conversation, think time, new tokens per
turn and response tokens. Two calibrations:

- ``profile_from_workload``: the conversation statistics fitted to a trace by
  ``workload_twin.fit_workload`` (BurstGPT's turns per conversation and intervals between turns).
  BurstGPT logs the interval between submissions, which contains the previous response's
  generation; the think time is that interval less the previous response's time at
  ``response_s_per_token`` (an assumption: 20 ms/token, decode of an 8B model on one GPU under
  load), at least ``MIN_THINK_S``.
- ``profile_from_agents``: real agent trajectories (``agent_programs``): turns per program, the
  tool-execution time between turns as the think time, tokens appended per turn and outputs.

``generate_conversations`` draws requests with conversation and turn ids and each turn's prior
context (tokens of earlier turns its prompt repeats). A conversation that would outgrow the
model's context window ends there (the user starts a new chat).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from infragym.datasets.workload_twin import (
    ArrivalWindows,
    LengthModel,
    TwinError,
    WorkloadModel,
    fit_lengths,
    gamma_arrivals,
    quantile_knots,
)

if TYPE_CHECKING:
    from infragym.datasets.agent_programs import AgentPrograms
    from infragym.datasets.llm_traces import RequestTrace

# Assumption (see the module docstring): the time to generate one response token when converting
# BurstGPT's submission-to-submission intervals into think times.
RESPONSE_S_PER_TOKEN = 0.02
# The shortest think time: a person reads and types for at least a second.
MIN_THINK_S = 1.0
# Llama-3.1's context window (128K tokens): prompts never exceed it.
MAX_CONTEXT_TOKENS = 131_072


@dataclass(frozen=True)
class ConversationProfile:
    """What one conversation looks like. ``think_levels``/``think_quantiles``: the think time's
    quantile function (s, after the previous response completes)."""

    share: float  # sessions that are multi-turn conversations (the rest: one request)
    turns_pmf: np.ndarray  # turns_pmf[k - 1] = P(k turns) for a conversation
    think_levels: np.ndarray
    think_quantiles: np.ndarray
    new_tokens: LengthModel  # tokens the user (or tool) adds per turn (the first turn: the whole prompt)
    output_tokens: LengthModel  # response tokens per turn
    source: str = ""

    def __post_init__(self) -> None:
        if not 0 <= self.share <= 1:
            raise TwinError(f"share must be in [0, 1], got {self.share}")
        pmf = np.asarray(self.turns_pmf, dtype=np.float64)
        if pmf.ndim != 1 or pmf.size == 0 or np.any(pmf < 0) or not np.isclose(pmf.sum(), 1.0):
            raise TwinError("turns_pmf must be a non-empty probability vector over 1..max turns")
        if np.any(np.diff(self.think_levels) < 0) or np.any(np.asarray(self.think_quantiles) < 0):
            raise TwinError("think time quantiles must be non-negative at increasing levels")

    @property
    def mean_turns(self) -> float:
        return float(np.dot(np.arange(1, len(self.turns_pmf) + 1), self.turns_pmf))

    def sample_think(self, rng: np.random.Generator, size: int) -> np.ndarray:
        u = rng.random(size)
        return np.exp(np.interp(u, self.think_levels, np.log(np.maximum(self.think_quantiles, 1e-6))))


def profile_from_workload(
    model: WorkloadModel, *, response_s_per_token: float = RESPONSE_S_PER_TOKEN, model_index: int = 0
) -> ConversationProfile:
    """The conversation statistics of a fitted workload (``fit_workload(trace, conversation=...)``).

    Turns per conversation and the conversation share are the fit's; the think time is the
    fitted interval between turns less the mean response time (``response_s_per_token`` x the
    model's mean response tokens), at least ``MIN_THINK_S``; new tokens per turn are the fitted
    request lengths of model ``model_index``, response tokens its responses (fitted to a sample
    of its response-given-request model)."""
    conversations = model.conversations
    if conversations is None:
        raise TwinError("the workload was fitted without conversation ids: it has no conversation statistics")
    response = model.response[model_index]
    rng = np.random.default_rng(0)
    # The mean response length over request lengths: sample the fitted joint model.
    prompts = model.prompt[model_index].sample(rng, 20_000)
    responses = response.sample(prompts, rng)
    mean_response = float(responses.mean())
    think = np.maximum(conversations.interval_quantiles - response_s_per_token * mean_response, MIN_THINK_S)
    return ConversationProfile(
        share=conversations.share,
        turns_pmf=conversations.turns_pmf,
        think_levels=conversations.interval_levels,
        think_quantiles=think,
        new_tokens=model.prompt[model_index],
        output_tokens=fit_lengths(np.maximum(responses, 1)),
        source="workload fit",
    )


def profile_from_agents(programs: AgentPrograms) -> ConversationProfile:
    """Agent programs as conversations: every program is one (share 1); turns per program; the
    tool's execution time between turns is the think time; tokens appended per turn and outputs
    as the trajectories have them."""
    turns = np.diff(programs.offsets)
    pmf = np.bincount(turns)[1:].astype(np.float64)
    durations = programs.tool_duration_s[~programs.is_last]
    levels, quantiles = quantile_knots(durations if durations.size else np.zeros(1))
    return ConversationProfile(
        share=1.0,
        turns_pmf=pmf / pmf.sum(),
        think_levels=levels,
        think_quantiles=quantiles,
        new_tokens=fit_lengths(programs.new_tokens, "empirical"),
        output_tokens=fit_lengths(programs.output_tokens, "empirical"),
        source=f"agents ({programs.workload})",
    )


@dataclass(frozen=True)
class ConversationRequests:
    """Requests of multi-turn conversations, sorted by arrival.

    ``trace.prompt_tokens`` is each turn's whole prompt: ``prior_context_tokens`` (the earlier
    turns' prompts and responses, repeated) + ``new_tokens``. ``think_s``: the think time before
    the turn (after the previous response completes; 0 for a first turn), for simulators that
    release a turn when its predecessor finishes; ``trace.arrival_s`` places it open-loop, after
    the previous turn's arrival + its response time at ``response_s_per_token`` + the think time.
    """

    trace: RequestTrace
    conversation: np.ndarray  # int64 id per request (a single request: a conversation of one turn)
    turn: np.ndarray  # int64, 0 for a conversation's first request
    prior_context_tokens: np.ndarray  # int64
    new_tokens: np.ndarray  # int64 >= 1
    think_s: np.ndarray  # float64 >= 0

    def __len__(self) -> int:
        return len(self.trace)


def generate_conversations(
    profile: ConversationProfile,
    n_requests: int,
    rng: np.random.Generator,
    *,
    rate: float = 1.0,
    arrivals: ArrivalWindows | None = None,
    max_context_tokens: int = MAX_CONTEXT_TOKENS,
    response_s_per_token: float = RESPONSE_S_PER_TOKEN,
) -> ConversationRequests:
    """``n_requests`` requests of conversations starting as a Poisson process at ``rate``
    sessions/s, or as a fitted workload's per-window Gamma process (``arrivals``, e.g.
    ``fit_workload(...).arrivals``). The first ``n_requests`` by arrival are returned."""
    if n_requests <= 0:
        raise TwinError(f"n_requests must be positive, got {n_requests}")
    if not (np.isfinite(rate) and rate > 0):
        raise TwinError(f"rate must be a positive number of sessions/s, got {rate}")
    if max_context_tokens < 2:
        raise TwinError(f"max_context_tokens must be >= 2, got {max_context_tokens}")
    n_sessions = int(np.ceil(n_requests / (1 + profile.share * (profile.mean_turns - 1)) * 1.1)) + 8
    while True:
        if arrivals is None:
            starts = np.cumsum(rng.exponential(1.0 / rate, n_sessions))
            starts -= starts[0]
        else:
            starts = gamma_arrivals(arrivals, n_sessions, rng, 1.0)[:n_sessions]
        out = _draw(profile, starts, rng, max_context_tokens, response_s_per_token)
        # Every request before the last session's start is drawn: a complete prefix.
        complete = int(np.searchsorted(out[0], starts[-1], side="right"))
        if complete >= n_requests:
            break
        n_sessions = int(n_sessions * 1.5) + 8
    from infragym.datasets.llm_traces import RequestTrace

    arrival, conv, turn, prior, new, output, think = (a[:n_requests] for a in out)
    trace = RequestTrace(
        arrival_s=arrival,
        prompt_tokens=prior + new,
        output_tokens=output,
        model=np.zeros(n_requests, np.int64),
        failed=np.zeros(n_requests, bool),
    )
    return ConversationRequests(trace, conv, turn, prior, new, think)


def _draw(
    profile: ConversationProfile,
    starts: np.ndarray,
    rng: np.random.Generator,
    max_context: int,
    s_per_token: float,
) -> tuple[np.ndarray, ...]:
    n = starts.size
    is_conv = rng.random(n) < profile.share
    turns = np.where(is_conv, 1 + rng.choice(len(profile.turns_pmf), size=n, p=profile.turns_pmf), 1)
    session = np.repeat(np.arange(n), turns)
    first = np.concatenate([[0], np.cumsum(turns)[:-1]])
    turn = np.arange(session.size) - np.repeat(first, turns)
    new = profile.new_tokens.sample(rng, session.size)
    output = np.maximum(profile.output_tokens.sample(rng, session.size), 1)
    # Context before each turn: the conversation's earlier prompts' new tokens and responses.
    grown = np.cumsum(new + output)
    base = np.repeat(grown[first] - (new + output)[first], turns)
    prior = grown - (new + output) - base
    think = np.where(turn > 0, profile.sample_think(rng, session.size), 0.0)
    # Open-loop arrival: previous turn's arrival + its response's generation + the think time.
    previous_output = np.concatenate([[0], output[:-1]])
    step = np.where(turn > 0, previous_output * s_per_token + think, 0.0)
    cum = np.cumsum(step)
    arrival = starts[session] + cum - np.repeat(cum[first], turns)
    # A turn whose prompt would not fit the context window (with room for its response) ends
    # the conversation there, and every later turn of it.
    too_long = prior + new + output > max_context
    over = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
    rows = np.flatnonzero(too_long)
    np.minimum.at(over, session[rows], turn[rows])
    keep = (turn < over[session]) | (turn == 0)
    # A first turn that alone is too long is cut to fit (a client truncates the prompt); its
    # conversation ends with it, so no later turn's context counted the uncut lengths.
    cut = (turn == 0) & too_long
    output = np.where(cut, np.minimum(output, max_context // 2), output)
    new = np.where(cut, np.minimum(new, max_context - output), new)
    order = np.argsort(arrival[keep], kind="stable")
    fields = (arrival, session, turn, prior, new, output, think)
    return tuple(f[keep][order] for f in fields)


__all__ = [
    "MAX_CONTEXT_TOKENS",
    "ConversationProfile",
    "ConversationRequests",
    "generate_conversations",
    "profile_from_agents",
    "profile_from_workload",
]
