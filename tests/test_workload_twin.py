"""Workload twins (BurstGPT): parameter recovery, generation, the honest half-vs-half check on the
Azure traces, BurstGPT's Session ID format, and refusal of bad input."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infragym.datasets.llm_traces import RequestTrace, fit_workload, load_azure_trace, poisson_trace, twin_report
from infragym.datasets.twin_report import default_cluster
from infragym.datasets.workload_twin import (
    DAY_S,
    TwinError,
    WorkloadModel,
    burstgpt_reference_model,
    conversation_structure,
    fit_lengths,
    load_burstgpt_conversations,
    split_halves,
)

from .conftest import SHARED_DATA

# The shared samples: INFRAGYM_DATA where set (as paths.data_dir), else the checkout's ../shared/data.
TRACES = Path(os.environ.get("INFRAGYM_DATA") or SHARED_DATA) / "llm_traces"
needs_traces = pytest.mark.skipif(not TRACES.is_dir(), reason="../shared/data/llm_traces is absent")


@pytest.fixture(scope="module")
def reference_days() -> tuple[WorkloadModel, RequestTrace, np.ndarray]:
    """Four days of a BurstGPT-like workload (published Gamma shapes, Zipf 1.1, failures)."""
    reference = burstgpt_reference_model(mean_rate=0.4)
    trace, conv = reference.generate_with_conversations(4 * 34_560, np.random.default_rng(0))
    return reference, trace, conv


def test_fit_recovers_the_reference_parameters_by_hour_of_day(reference_days) -> None:
    reference, trace, conv = reference_days
    assert trace.duration_s > 3.5 * DAY_S  # 4 days at 0.4 req/s
    model = fit_workload(trace, conversation=conv)
    assert model.arrivals.period_s == DAY_S and model.arrivals.n_windows == 24  # folded by hour
    # Session-start Gamma shapes by hour: the published 0.25-0.5 day profile.
    shape, truth = model.arrivals.shape, reference.arrivals.shape
    assert np.corrcoef(shape, truth)[0, 1] > 0.8
    assert np.abs(shape - truth).mean() < 0.06
    assert np.corrcoef(model.arrivals.rate, reference.arrivals.rate)[0, 1] > 0.95
    # Failures rise with load (1.8-7.3%), recovered by hour.
    assert np.corrcoef(model.failure[:, 0], reference.failure[:, 0])[0, 1] > 0.8
    # Zipf a = 1.1 by maximum likelihood; "auto" keeps the paper's family on Zipf data.
    for prompt in model.prompt:
        assert prompt.zipf_a == pytest.approx(1.1, abs=0.02) and prompt.family == "zipf"
    conversations = model.conversations
    assert conversations is not None
    assert conversations.share == pytest.approx(0.6, abs=0.02)
    assert conversations.mean_turns == pytest.approx(3.0, abs=0.1)
    assert conversations.summary()["interval_median_s"] == pytest.approx(45.0, rel=0.06)


def test_twin_of_the_first_half_matches_the_second(reference_days) -> None:
    _, trace, conv = reference_days
    (first, first_conv), (second, second_conv) = split_halves(trace, conv)
    model = fit_workload(first, conversation=first_conv)
    twin, twin_conv = model.generate_with_conversations(len(second), np.random.default_rng(7))
    report = twin_report(second, twin, conversation=second_conv, twin_conversation=twin_conv, cluster=False)
    assert report["requests/twin"] == len(second)
    assert report["rate/twin"] == pytest.approx(report["rate/trace"], rel=0.1)
    assert report["iat_cv_window_mae"] < 0.15
    assert report["prompt_ks"] < 0.03 and report["output_ks"] < 0.03
    assert report["failed/twin"] == pytest.approx(report["failed/trace"], abs=0.01)
    assert report["conversation/mean_turns/twin"] == pytest.approx(report["conversation/mean_turns/trace"], rel=0.1)
    assert report["conversation/interval_ks"] < 0.05
    assert len(report["iat_cv_by_window"]["trace"]) == len(report["iat_cv_by_window"]["twin"])


def test_generate_is_exact_in_count_sorted_seeded_and_scales_the_rate() -> None:
    model = fit_workload(poisson_trace(5_000, np.random.default_rng(3), rate=4.0))
    twin = model.generate(3_000, np.random.default_rng(1))
    assert isinstance(twin, RequestTrace) and len(twin) == 3_000
    assert np.all(np.diff(twin.arrival_s) >= 0) and twin.arrival_s[0] >= 0
    assert twin.rate == pytest.approx(4.0, rel=0.1)
    again = model.generate(3_000, np.random.default_rng(1))
    np.testing.assert_array_equal(twin.arrival_s, again.arrival_s)
    np.testing.assert_array_equal(twin.prompt_tokens, again.prompt_tokens)
    assert not np.array_equal(twin.prompt_tokens, model.generate(3_000, np.random.default_rng(2)).prompt_tokens)
    faster = model.generate(6_000, np.random.default_rng(1), rate=12.0)
    assert faster.rate == pytest.approx(12.0, rel=0.1)
    gaps = np.diff(faster.arrival_s)
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, abs=0.1)  # Poisson stays Poisson


def test_lengths_zipf_mle_and_the_empirical_fallback() -> None:
    rng = np.random.default_rng(4)
    x = rng.zipf(1.6, 40_000)
    x = x[x <= 5000]
    zipf = fit_lengths(x)
    assert zipf.family == "zipf" and zipf.zipf_a == pytest.approx(1.6, abs=0.03)
    drawn = zipf.sample(rng, 40_000)
    assert drawn.min() >= 1 and drawn.max() <= 5000
    assert np.mean(drawn == 1) == pytest.approx(np.mean(x == 1), abs=0.01)
    lognormal = np.maximum(1, np.round(rng.lognormal(np.log(1000), 0.8, 20_000))).astype(np.int64)
    fit = fit_lengths(lognormal)
    assert fit.family == "empirical" and fit.ks_zipf > 0.2 and fit.ks_empirical < 0.02
    assert np.median(fit.sample(rng, 20_000)) == pytest.approx(np.median(lognormal), rel=0.05)


def test_conversation_structure_turns_and_openings() -> None:
    conv = np.array([5, -1, 5, 2, 5, 2, -1])
    opens, turn, turns = conversation_structure(conv)
    np.testing.assert_array_equal(opens, [True, True, False, True, False, False, True])
    np.testing.assert_array_equal(turn, [0, 0, 1, 0, 2, 1, 0])
    assert sorted(turns.tolist()) == [2, 3]


BURSTGPT_HEADER = "Timestamp,Session ID,Elapsed time,Model,Request tokens,Response tokens,Total tokens,Log Type\n"


def test_burstgpt_session_ids_become_conversations(tmp_path: Path) -> None:
    rows = []
    rng = np.random.default_rng(5)
    t = 0
    for i in range(400):
        t += int(rng.integers(0, 6))
        if i % 3 == 0:
            session, log = "", "API log"
        else:
            session, log = f"s{int(rng.integers(0, 60))}", "Conversation log"
        req, resp = int(rng.integers(1, 900)), int(rng.integers(0, 400))
        rows.append(f"{t},{session},1.5,{'GPT-4' if i % 5 == 0 else 'ChatGPT'},{req},{resp},{req + resp},{log}\n")
    path = tmp_path / "burst.csv"
    path.write_text(BURSTGPT_HEADER + "".join(rows))
    trace, conv = load_burstgpt_conversations(path)
    assert len(conv) == len(trace) == 400
    assert np.all(conv[::3] == -1) and np.all(conv[1::3] >= 0)
    assert len(np.unique(conv[conv >= 0])) <= 60
    model = fit_workload(trace, conversation=conv)
    assert model.time_resolution_s == 1.0  # BurstGPT logs whole seconds; a twin does too
    twin, twin_conv = model.generate_with_conversations(500, np.random.default_rng(0))
    assert np.all(twin.arrival_s == np.round(twin.arrival_s))
    assert twin.models == ("ChatGPT", "GPT-4") and np.any(twin_conv >= 0) and np.any(twin_conv == -1)
    assert np.all(twin.output_tokens[twin.failed] == 0)
    # a release without the Session ID column: every request outside a conversation
    old = tmp_path / "v1.csv"
    old.write_text("Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n5,ChatGPT,3,4,7,API log\n")
    assert load_burstgpt_conversations(old)[1].tolist() == [-1]


def test_bad_input_is_refused_with_a_clear_error() -> None:
    trace = poisson_trace(100, np.random.default_rng(0), rate=1.0)
    with pytest.raises(TwinError, match="at least 10 requests"):
        fit_workload(trace.head(5))
    with pytest.raises(TwinError, match=r"conversation has shape \(3,\), expected \(100,\)"):
        fit_workload(trace, conversation=np.array([1, 2, 3]))
    with pytest.raises(TwinError, match="window_s must be positive"):
        fit_workload(trace, window_s=-1.0)
    with pytest.raises(TwinError, match="arrival fit method must be one of"):
        fit_workload(trace, arrival_fit="median")
    model = fit_workload(trace)
    with pytest.raises(TwinError, match="n_requests must be positive"):
        model.generate(0, np.random.default_rng(0))
    with pytest.raises(TwinError, match="rate must be a positive"):
        model.generate(10, np.random.default_rng(0), rate=-2.0)
    with pytest.raises(TwinError, match="lengths must be >= 1"):
        fit_lengths(np.array([0, 3, 4]))
    assert issubclass(TwinError, ValueError)


def test_the_reexport_works_whichever_module_is_imported_first() -> None:
    code = (
        "import infragym.datasets.twin_report as r, infragym.datasets.llm_traces as l, "
        "infragym.datasets.workload_twin as w; "
        "assert l.fit_workload is w.fit_workload and l.twin_report is r.twin_report"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@needs_traces
def test_azure_twins_match_the_held_out_half_and_the_simulated_latency() -> None:
    conv = load_azure_trace(TRACES / "azure_conv_splitwise.csv")
    (first, _), (second, _) = split_halves(conv)
    twin = fit_workload(first).generate(len(second), np.random.default_rng(0))
    report = twin_report(second, twin, cluster=default_cluster())
    assert report["iat_cv/twin"] == pytest.approx(report["iat_cv/trace"], abs=0.15)
    assert report["iat_ks"] < 0.05
    assert report["prompt_ks"] < 0.12 and report["output_ks"] < 0.12
    assert report["latency/ttft_s_p50/rel_err"] < 0.2
    assert report["latency/ttft_s_p99/rel_err"] < 0.5
    assert report["latency/tbt_s_p99/rel_err"] < 0.3
    # The code trace is far burstier (CV ~13): the per-window Gamma keeps that; Poisson cannot.
    code = load_azure_trace(TRACES / "azure_code_splitwise.csv")
    (first, _), (second, _) = split_halves(code)
    twin = fit_workload(first).generate(len(second), np.random.default_rng(0))
    report = twin_report(second, twin, cluster=False)
    assert report["iat_cv/twin"] > 5 and report["iat_cv/trace"] > 5
    # ... but no Gamma has its on/off shape (bursts ~0.1 s apart, pauses of 10-200 s): the
    # empirical-gap extension does, and with it the simulated latency.
    empirical = fit_workload(first, arrival_fit="empirical").generate(len(second), np.random.default_rng(0))
    closer = twin_report(second, empirical, cluster=False)
    assert closer["iat_ks"] < 0.25 < report["iat_ks"]
    assert closer["iat_cv/twin"] > 5


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(10, 400),
    tie_share=st.floats(0.0, 0.9),
    whole_seconds=st.booleans(),
    n_models=st.integers(1, 3),
    fail_share=st.floats(0.0, 0.5),
    conversations=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_any_valid_trace_fits_and_generates_a_valid_twin(
    n: int, tie_share: float, whole_seconds: bool, n_models: int, fail_share: float, conversations: bool, seed: int
) -> None:
    """Ties, whole-second timestamps, failures, several models, sparse conversations: the fit
    never fails on a valid trace, and its twin is a valid trace of the requested size."""
    rng = np.random.default_rng(seed)
    gaps = np.where(rng.random(n) < tie_share, 0.0, rng.exponential(3.0, n))
    gaps[1] = max(gaps[1], 1.0)  # not all at one instant
    arrival = np.cumsum(gaps)
    if whole_seconds:
        arrival = np.floor(arrival)
    failed = rng.random(n) < fail_share
    output = np.where(failed, 0, rng.integers(1, 3000, n))
    trace = RequestTrace(
        arrival,
        rng.integers(1, 9000, n),
        output,
        rng.integers(0, n_models, n),
        failed,
        tuple(f"m{i}" for i in range(n_models)),
    )
    conv = np.where(rng.random(n) < 0.5, rng.integers(0, max(n // 4, 1), n), -1) if conversations else None
    model = fit_workload(trace, conversation=conv)
    twin, twin_conv = model.generate_with_conversations(300, np.random.default_rng(seed + 1))
    assert len(twin) == 300 and len(twin_conv) == 300 and twin.models == trace.models
    assert np.all(np.diff(twin.arrival_s) >= 0) and np.all(np.isfinite(twin.arrival_s))
    assert np.all(twin.prompt_tokens >= 1) and np.all((twin.output_tokens == 0) == twin.failed)
    assert twin.prompt_tokens.max() <= trace.prompt_tokens.max()
    if whole_seconds:
        assert np.all(twin.arrival_s == np.round(twin.arrival_s))


def test_request_lengths_that_change_over_the_day_are_fitted_by_hour() -> None:
    """Short prompts by night, long ones by day (two days observed): the twin keeps the change."""
    rng = np.random.default_rng(11)
    n = 2 * 86_400 // 4
    arrival = np.sort(rng.uniform(0, 2 * DAY_S, n))
    daytime = (arrival % DAY_S) >= DAY_S / 2
    prompt = np.maximum(1, np.round(rng.lognormal(np.where(daytime, np.log(3000), np.log(200)), 0.5))).astype(np.int64)
    output = rng.integers(1, 500, n)
    trace = RequestTrace(arrival, prompt, output, np.zeros(n, np.int64), np.zeros(n, bool))
    model = fit_workload(trace)
    assert model.prompt_by_window is not None and len(model.prompt_by_window) == 24
    twin = model.generate(20_000, np.random.default_rng(0), start_s=0.0)
    twin_day = (twin.arrival_s % DAY_S) >= DAY_S / 2
    assert np.median(twin.prompt_tokens[~twin_day]) == pytest.approx(200, rel=0.1)
    assert np.median(twin.prompt_tokens[twin_day]) == pytest.approx(3000, rel=0.1)
    pooled = fit_workload(trace, length_by_window=False).generate(20_000, np.random.default_rng(0), start_s=0.0)
    pooled_day = (pooled.arrival_s % DAY_S) >= DAY_S / 2
    long_prompts = pooled.prompt_tokens > 1000  # one distribution all day long: half long, day or night
    assert long_prompts[pooled_day].mean() == pytest.approx(long_prompts[~pooled_day].mean(), abs=0.05)
    report = twin_report(trace, twin, window_s=3600.0, cluster=False)
    assert report["prompt_ks_window_mean"] < 0.1
