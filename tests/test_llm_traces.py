"""LLM request traces: loaders of the real formats, refusal of malformed files, generators."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from infragym.datasets.llm_traces import (
    TraceError,
    burstgpt_like,
    diurnal,
    load_azure_trace,
    load_burstgpt,
    poisson_trace,
)

from .conftest import SHARED_DATA

TRACES = SHARED_DATA / "llm_traces"
needs_traces = pytest.mark.skipif(not TRACES.is_dir(), reason="../shared/data/llm_traces is absent")

BURSTGPT_HEADER = "Timestamp,Session ID,Elapsed time,Model,Request tokens,Response tokens,Total tokens,Log Type\n"


@needs_traces
def test_azure_traces_have_the_published_statistics() -> None:
    conv = load_azure_trace(TRACES / "azure_conv_splitwise.csv")
    assert len(conv) == 19_366
    assert conv.rate == pytest.approx(5.53, abs=0.05)  # PAPERS.md: 5.53 req/s, CV 1.09
    gaps = np.diff(conv.arrival_s)
    assert gaps.std() / gaps.mean() == pytest.approx(1.09, abs=0.02)
    assert conv.prompt_tokens.mean() == pytest.approx(1155, abs=2)
    assert np.median(conv.output_tokens) == 129
    code = load_azure_trace(TRACES / "azure_code_splitwise.csv")
    gaps = np.diff(code.arrival_s)
    assert gaps.std() / gaps.mean() == pytest.approx(13.15, abs=0.1)


def test_burstgpt_fixture_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "burst.csv"
    path.write_text(
        BURSTGPT_HEADER
        + "0,1,1.2,ChatGPT,120,30,150,Conversation log\n"
        + "2,,0.0,GPT-4,500,0,500,API log\n"
        + "2,3,3.5,ChatGPT,10,200,210,Conversation log\n"
    )
    trace = load_burstgpt(path)
    assert trace.models == ("ChatGPT", "GPT-4")
    np.testing.assert_array_equal(trace.model, [0, 1, 0])
    np.testing.assert_array_equal(trace.failed, [False, True, False])  # 0 response tokens = failed
    np.testing.assert_array_equal(trace.output_tokens, [30, 0, 200])


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "0,1,1.2,ChatGPT,120,30,150,Conversation log\n5,1,1,ChatGPT,abc,3,3,API log\n",
            r"line 3, column 'Request tokens'",
        ),
        ("5,1,1.2,ChatGPT,120,30,150,Conversation log\n4,1,1,ChatGPT,1,3,4,API log\n", r"line 3.*'Timestamp'.*before"),
        ("-1,1,1.2,ChatGPT,120,30,150,Conversation log\n", r"line 2, column 'Timestamp'.*below"),
        ("0,1,1.2,ChatGPT,120,30,999,Conversation log\n", r"line 2, column 'Total tokens'"),
    ],
)
def test_malformed_burstgpt_is_refused_naming_the_line(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(BURSTGPT_HEADER + body)
    with pytest.raises(TraceError, match=message):
        load_burstgpt(path)


def test_missing_columns_and_files_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "azure.csv"
    path.write_text("arrived_at,num_prefill_tokens\n0,10\n")
    with pytest.raises(TraceError, match=r"azure\.csv: missing column.*num_decode_tokens"):
        load_azure_trace(path)
    with pytest.raises(TraceError, match="no such file"):
        load_azure_trace(tmp_path / "absent.csv")


def test_scaling_and_windowing() -> None:
    trace = poisson_trace(10_000, np.random.default_rng(0), rate=4.0)
    assert trace.scaled(3.0).rate == pytest.approx(3 * trace.rate)
    window = trace.window(100.0, 200.0)
    assert window.arrival_s.min() >= 0 and window.arrival_s.max() < 100.0
    assert len(window) == pytest.approx(400, rel=0.2)
    with pytest.raises(TraceError):
        trace.scaled(0)


def test_burstgpt_like_generator_matches_its_parameters() -> None:
    trace = burstgpt_like(200_000, np.random.default_rng(1), rate=8.0, gamma_shape=0.3, failure_fraction=0.05)
    assert trace.rate == pytest.approx(8.0, rel=0.03)
    gaps = np.diff(trace.arrival_s)
    assert gaps.std() / gaps.mean() == pytest.approx(1 / np.sqrt(0.3), rel=0.05)  # Gamma CV, bursty
    assert trace.failed.mean() == pytest.approx(0.05, abs=0.005)
    assert (trace.output_tokens[trace.failed] == 0).all()
    assert trace.prompt_tokens.max() <= 4096 and trace.output_tokens.max() <= 2048
    assert np.bincount(trace.model).tolist()[0] / len(trace) == pytest.approx(0.8, abs=0.01)


def test_diurnal_modulation_keeps_the_mean_rate_and_shapes_the_day() -> None:
    base = poisson_trace(200_000, np.random.default_rng(2), rate=5.0)
    day = diurnal(base, period_s=4000.0, amplitude=0.6)
    assert np.all(np.diff(day.arrival_s) >= 0)
    assert day.rate == pytest.approx(base.rate, rel=0.02)
    counts = np.histogram(day.arrival_s % 4000.0, bins=4)[0]
    # sin > 0 in the first half of each period: more arrivals there.
    assert counts[:2].sum() > 1.5 * counts[2:].sum()
