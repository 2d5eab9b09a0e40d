"""Multi-turn conversations: context growth, turn ids, think times, calibration to a fitted
workload and to the real agent trajectories, the context window, bad input."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from infragym.datasets.conversations import (
    MIN_THINK_S,
    RESPONSE_S_PER_TOKEN,
    ConversationProfile,
    generate_conversations,
    profile_from_agents,
    profile_from_workload,
)
from infragym.datasets.llm_traces import poisson_trace
from infragym.datasets.workload_twin import TwinError, burstgpt_reference_model, fit_workload

from .conftest import SHARED_DATA

AGENTS = Path(os.environ.get("INFRAGYM_DATA") or SHARED_DATA) / "agent_traces" / "swe_agent_trajectories_sample.json"


@pytest.fixture(scope="module")
def fitted_profile() -> ConversationProfile:
    reference = burstgpt_reference_model(mean_rate=0.4)
    trace, conv = reference.generate_with_conversations(50_000, np.random.default_rng(0))
    return profile_from_workload(fit_workload(trace, conversation=conv))


def _by_conversation(requests):
    order = np.lexsort((requests.turn, requests.conversation))
    return order, requests.conversation[order]


def test_context_grows_by_each_turns_prompt_and_response(fitted_profile) -> None:
    requests = generate_conversations(fitted_profile, 20_000, np.random.default_rng(1), rate=0.5)
    trace = requests.trace
    assert len(requests) == 20_000 and np.all(np.diff(trace.arrival_s) >= 0)
    np.testing.assert_array_equal(trace.prompt_tokens, requests.prior_context_tokens + requests.new_tokens)
    order, conv = _by_conversation(requests)
    same = conv[1:] == conv[:-1]
    turn = requests.turn[order]
    # turns of a conversation are 0, 1, 2, ... in arrival order
    assert np.all(turn[1:][same] == turn[:-1][same] + 1) and np.all(turn[1:][~same] == 0) and turn[0] == 0
    prior = requests.prior_context_tokens[order]
    prompt, output = trace.prompt_tokens[order], trace.output_tokens[order]
    np.testing.assert_array_equal(prior[1:][same], prompt[:-1][same] + output[:-1][same])
    assert np.all(prior[turn == 0] == 0)
    # the next turn arrives after the response's generation plus the think time
    arrival, think = trace.arrival_s[order], requests.think_s[order]
    expected = arrival[:-1][same] + output[:-1][same] * RESPONSE_S_PER_TOKEN + think[1:][same]
    np.testing.assert_allclose(arrival[1:][same], expected, rtol=1e-9, atol=1e-6)
    assert np.all(think[turn == 0] == 0) and np.all(think[turn > 0] >= MIN_THINK_S)


def test_calibrated_to_the_fitted_conversation_statistics(fitted_profile) -> None:
    assert fitted_profile.share == pytest.approx(0.6, abs=0.02)
    assert fitted_profile.mean_turns == pytest.approx(3.0, abs=0.15)
    requests = generate_conversations(fitted_profile, 30_000, np.random.default_rng(2), rate=0.5)
    # conversations that started in the first half are complete in the sample
    early = requests.trace.arrival_s < requests.trace.arrival_s[-1] / 2
    started = np.unique(requests.conversation[early & (requests.turn == 0)])
    turns = np.bincount(requests.conversation[np.isin(requests.conversation, started)])[started]
    # a session has more than one turn when it is a conversation (share) of more than one turn
    pmf = fitted_profile.turns_pmf
    assert np.mean(turns > 1) == pytest.approx(fitted_profile.share * (1 - pmf[0]), abs=0.03)
    k = np.arange(1, len(pmf) + 1)
    multi_mean = (np.dot(k, pmf) - pmf[0]) / (1 - pmf[0])  # E[turns | more than one]
    assert turns[turns > 1].mean() == pytest.approx(multi_mean, rel=0.06)
    assert np.median(requests.think_s[requests.turn > 0]) > MIN_THINK_S


def test_the_context_window_ends_a_conversation() -> None:
    reference = burstgpt_reference_model(mean_rate=0.4)
    trace, conv = reference.generate_with_conversations(20_000, np.random.default_rng(3))
    profile = profile_from_workload(fit_workload(trace, conversation=conv))
    requests = generate_conversations(profile, 10_000, np.random.default_rng(4), rate=1.0, max_context_tokens=3000)
    total = requests.trace.prompt_tokens + requests.trace.output_tokens
    assert total.max() <= 3000
    longest = generate_conversations(profile, 10_000, np.random.default_rng(4), rate=1.0)
    assert (longest.trace.prompt_tokens + longest.trace.output_tokens).max() > 3000  # the cap did cut


@pytest.mark.skipif(not AGENTS.is_file(), reason="../shared/data/agent_traces is absent")
def test_calibrated_to_the_real_agent_trajectories() -> None:
    from infragym.datasets.agent_programs import load_agent_trajectories

    programs = load_agent_trajectories(AGENTS)
    profile = profile_from_agents(programs)
    assert profile.share == 1.0
    assert profile.mean_turns == pytest.approx(np.diff(programs.offsets).mean())  # 25 turns
    requests = generate_conversations(profile, 3_000, np.random.default_rng(5), rate=0.05, max_context_tokens=65_536)
    tools = programs.tool_duration_s[~programs.is_last]
    think = requests.think_s[requests.turn > 0]
    # bimodal (PAPERS.md: median 0.8 ms, mean 0.24 s): compare the fast share and the mean
    assert np.mean(think < 0.01) == pytest.approx(np.mean(tools < 0.01), abs=0.05)
    assert think.mean() == pytest.approx(tools.mean(), rel=0.15)
    assert np.median(requests.new_tokens) == pytest.approx(np.median(programs.new_tokens), rel=0.3)
    assert requests.turn.max() >= 20


def test_bad_input_is_refused() -> None:
    no_conversations = fit_workload(poisson_trace(500, np.random.default_rng(0), rate=2.0))
    with pytest.raises(TwinError, match="without conversation ids"):
        profile_from_workload(no_conversations)
    reference = burstgpt_reference_model()
    profile = profile_from_workload(reference)
    with pytest.raises(TwinError, match="n_requests must be positive"):
        generate_conversations(profile, 0, np.random.default_rng(0))
    with pytest.raises(TwinError, match="rate must be a positive"):
        generate_conversations(profile, 10, np.random.default_rng(0), rate=0.0)
    with pytest.raises(TwinError, match="turns_pmf"):
        ConversationProfile(
            0.5,
            np.array([0.5, 0.2]),
            profile.think_levels,
            profile.think_quantiles,
            profile.new_tokens,
            profile.output_tokens,
        )


def test_a_first_turn_beyond_the_window_is_cut_and_ends_its_conversation(fitted_profile) -> None:
    requests = generate_conversations(fitted_profile, 5_000, np.random.default_rng(6), rate=0.5, max_context_tokens=600)
    total = requests.trace.prompt_tokens + requests.trace.output_tokens
    assert total.max() <= 600 and np.all(requests.new_tokens >= 1)
    order = np.lexsort((requests.turn, requests.conversation))
    conv, turn = requests.conversation[order], requests.turn[order]
    prior, prompt = requests.prior_context_tokens[order], requests.trace.prompt_tokens[order]
    output = requests.trace.output_tokens[order]
    same = conv[1:] == conv[:-1]
    np.testing.assert_array_equal(prior[1:][same], prompt[:-1][same] + output[:-1][same])
    assert np.all(turn[1:][same] == turn[:-1][same] + 1)
