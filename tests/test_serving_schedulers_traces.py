"""load_trace: every supported format detected from its header, and bad input refused by line."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infragym.datasets.llm_traces import (
    TraceError,
    detect_trace_format,
    load_azure_raw_trace,
    load_azure_trace,
    load_trace,
)

from .conftest import SHARED_DATA

TRACES = Path(os.environ.get("INFRAGYM_DATA", SHARED_DATA)) / "llm_traces"
needs_data = pytest.mark.skipif(not TRACES.is_dir(), reason="shared llm_traces samples absent (set INFRAGYM_DATA)")

RAW = "TIMESTAMP,ContextTokens,GeneratedTokens\n"
BURST = "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@needs_data
def test_raw_azure_matches_vidurs_processed_file() -> None:
    """vidur's arrived_at is the raw TIMESTAMP minus the first one: both loaders must agree."""
    for service in ("conv", "code"):
        raw = load_trace(TRACES / f"azure_llm_2023_{service}_raw_first30min.csv")
        processed = load_azure_trace(TRACES / f"azure_{service}_splitwise.csv")
        n = len(raw)
        assert n == {"conv": 9754, "code": 5100}[service]
        np.testing.assert_allclose(raw.arrival_s, processed.arrival_s[:n], atol=1e-9)
        np.testing.assert_array_equal(raw.prompt_tokens, processed.prompt_tokens[:n])
        np.testing.assert_array_equal(raw.output_tokens, processed.output_tokens[:n])
        assert raw.arrival_s[-1] < 1800.0  # the first half hour


@needs_data
def test_length_only_trace_gets_poisson_arrivals_at_the_rate() -> None:
    path = TRACES / "arxiv_summarization_vattention_sample.csv"
    assert detect_trace_format(path) == "length_only"
    with pytest.raises(TraceError, match="pass rate="):
        load_trace(path)
    trace = load_trace(path, rate=2.0, rng=3)
    assert len(trace) == 2895
    assert trace.prompt_tokens[0] == 7564 and trace.output_tokens[0] == 192
    assert abs(trace.rate - 2.0) < 0.15  # 2,895 exponential gaps: the mean is within ~2%
    gaps = np.diff(trace.arrival_s)
    assert abs(gaps.std() / gaps.mean() - 1.0) < 0.1  # exponential: CV 1
    assert 7000 < np.median(trace.prompt_tokens) < 10000  # "prefill median ~8k" (data README)
    again = load_trace(path, rate=2.0, rng=3)
    np.testing.assert_array_equal(trace.arrival_s, again.arrival_s)


def test_every_format_is_detected_from_its_header(tmp_path: Path) -> None:
    vidur = write(tmp_path, "v.csv", "arrived_at,num_prefill_tokens,num_decode_tokens\n0.0,10,5\n2.0,20,0\n")
    raw = write(tmp_path, "r.csv", RAW + "2023-11-16 18:15:46.6805900,374,44\n2023-11-16 18:15:50.9951690,396,109\n")
    burst = write(tmp_path, "b.csv", BURST + "0,ChatGPT,10,5,15,Conversation log\n4,GPT-4,7,0,7,API log\n")
    lengths = write(tmp_path, "l.csv", "num_prefill_tokens,num_decode_tokens\n100.0,10.0\n200.0,20.0\n")
    assert [detect_trace_format(p) for p in (vidur, raw, burst, lengths)] == [
        "azure_vidur",
        "azure_raw",
        "burstgpt",
        "length_only",
    ]
    trace = load_trace(raw)
    np.testing.assert_allclose(trace.arrival_s, [0.0, 4.314579])  # 7-digit fractions, exact
    assert load_trace(burst).failed.tolist() == [False, True]
    # a trace with arrival times replayed at a chosen mean rate
    assert load_trace(vidur, rate=2.0).arrival_s[-1] == pytest.approx(0.5)
    assert load_trace(lengths, rate=1.0).prompt_tokens.tolist() == [100, 200]


def test_raw_azure_accepts_what_the_format_allows(tmp_path: Path) -> None:
    """Fewer fractional digits, none, an ISO 'T', a day boundary: all valid timestamps."""
    path = write(
        tmp_path,
        "r.csv",
        RAW + "2023-11-16 23:59:59.9,1,1\n2023-11-16T23:59:59.95,2,2\n2023-11-17 00:00:00,3,3\n",
    )
    np.testing.assert_allclose(load_azure_raw_trace(path).arrival_s, [0.0, 0.05, 0.1])


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("r.csv", RAW + "2023-11-16 18:15:46.6805900,374,44\n18:15:50,396,109\n", r"line 3, column 'TIMESTAMP'"),
        ("r.csv", RAW + "2023-13-16 18:15:46.68,374,44\n", r"line 2, column 'TIMESTAMP'.*not a valid date"),
        ("r.csv", RAW + "2023-02-30 18:15:46.68,374,44\n", r"line 2, column 'TIMESTAMP'.*not a valid date"),
        ("r.csv", RAW + "2023-11-16 18:15:46.6,374,44\n2023-11-16 18:15:45.0,3,4\n", r"line 3.*before the previous"),
        ("r.csv", RAW + "2023-11-16 18:15:46.6,0,44\n", r"line 2, column 'ContextTokens'.*below 1"),
        ("r.csv", RAW + "2023-11-16 18:15:46.6,10,4.5\n", r"line 2, column 'GeneratedTokens'.*whole number"),
        ("l.csv", "num_prefill_tokens,num_decode_tokens,num_total_tokens\n10.0,5.0,16.0\n", r"line 2.*num_total"),
        ("l.csv", "num_prefill_tokens,num_decode_tokens,pd_ratio\n10,5,3.0\n", r"line 2, column 'pd_ratio'"),
        ("l.csv", "num_prefill_tokens,num_decode_tokens\n10,five\n", r"line 2, column 'num_decode_tokens'"),
        ("x.csv", "time,tokens\n1,2\n", r"x\.csv: line 1: the header .* matches no supported trace format"),
    ],
)
def test_bad_traces_are_refused_naming_file_line_and_column(tmp_path: Path, name: str, text: str, message: str) -> None:
    path = write(tmp_path, name, text)
    with pytest.raises(TraceError, match=message) as err:
        load_trace(path, rate=1.0)
    assert name in str(err.value)
    assert isinstance(err.value, ValueError)


def test_bad_rate_and_missing_file_are_refused(tmp_path: Path) -> None:
    lengths = write(tmp_path, "l.csv", "num_prefill_tokens,num_decode_tokens\n100,10\n")
    for rate in (0.0, -1.0, float("nan")):
        with pytest.raises(TraceError, match="rate"):
            load_trace(lengths, rate=rate)
    with pytest.raises(TraceError, match="no such file"):
        load_trace(tmp_path / "absent.csv")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    header=st.sampled_from([RAW, "num_prefill_tokens,num_decode_tokens,num_total_tokens,pd_ratio\n"]),
    body=st.text(alphabet="0123456789-:. ,T\nx", max_size=120),
)
def test_any_mangled_body_loads_or_is_refused_with_a_trace_error(tmp_path: Path, header: str, body: str) -> None:
    """Fuzz: whatever follows a valid header either loads as a valid trace or raises TraceError
    (a ValueError naming the file), never another exception."""
    path = tmp_path / "fuzz.csv"
    path.write_text(header + body)
    try:
        trace = load_trace(path, rate=1.0)
    except TraceError as err:
        assert "fuzz.csv" in str(err)
        return
    assert len(trace) >= 1
    assert np.all(np.diff(trace.arrival_s) >= 0) and np.all(trace.prompt_tokens >= 1)
