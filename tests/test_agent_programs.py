"""Agent programs: the real-trajectory loader, its errors, the generators' structure."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from infragym.datasets.agent_programs import (
    AgentPrograms,
    ProgramError,
    bfcl_like,
    estimate_tokens,
    load_agent_trajectories,
    swe_bench_like,
    tool_key,
)

from .conftest import SHARED_DATA

TRAJECTORIES = SHARED_DATA / "agent_traces" / "swe_agent_trajectories_sample.json"


def _call(name: str, arguments: dict, seconds: float) -> dict:
    return {"function": {"name": name, "arguments": json.dumps(arguments)}, "execution_time_seconds": seconds}


def _write(path: Path, records: list) -> Path:
    path.write_text(json.dumps(records))
    return path


def _record(messages: list) -> dict:
    # The real files store messages as a JSON string and tool_calls as a Python literal string.
    for m in messages:
        if "tool_calls" in m:
            m["tool_calls"] = repr(m["tool_calls"])
    return {"messages": json.dumps(messages), "instance_id": "x", "traj_id": "t"}


def test_fixture_in_the_real_format_parses_exactly(tmp_path: Path) -> None:
    messages = [
        {"role": "system", "content": "s" * 40},  # 10 tokens
        {"role": "user", "content": "u" * 81},  # 21 tokens
        {"role": "assistant", "content": "a" * 8, "tool_calls": [_call("bash", {"command": "pytest -x t.py"}, 2.5)]},
        {"role": "tool", "content": "o" * 400},  # 100 tokens
        {"role": "assistant", "content": "b" * 4, "tool_calls": [_call("submit", {}, 0.0)]},
    ]
    progs = load_agent_trajectories(_write(tmp_path / "t.json", [_record(messages)]))
    assert len(progs) == 1 and progs.n_turns == 2
    assert progs.new_tokens.tolist() == [31, 100]
    assert progs.tool.tolist() == ["bash", ""]  # the last turn ends the program
    assert progs.tool_args[0] == "pytest -x t.py"
    assert progs.tool_duration_s.tolist() == [2.5, 0.0]
    out0 = estimate_tokens("a" * 8 + json.dumps([_call("bash", {"command": "pytest -x t.py"}, 2.5)]))
    assert progs.output_tokens[0] == out0
    # Each prompt is the previous prompt + its output + the new tokens.
    assert progs.prompt_tokens.tolist() == [31, 31 + out0 + 100]
    assert tool_key(pd.Series(["bash"]), pd.Series(["pytest -x t.py"])).tolist() == ["pytest"]


@pytest.mark.parametrize(
    ("records", "message"),
    [
        ({"not": "a list"}, "non-empty JSON list"),
        ([{"instance_id": "x"}], "record 0: missing field 'messages'"),
        ([{"messages": '[{"content": "x"}]'}], "message 0: missing field 'role'"),
        (
            [_record([{"role": "assistant", "content": "a", "tool_calls": [{"function": {"name": "bash"}}]}])],
            "execution_time_seconds",
        ),
        (
            [_record([{"role": "assistant", "content": "a", "tool_calls": [_call("bash", {}, -1.0)]}])],
            "execution_time_seconds' = -1 is outside",
        ),
        ([_record([{"role": "user", "content": "only a user"}])], "no assistant message"),
    ],
)
def test_malformed_trajectories_are_refused_by_name(tmp_path: Path, records: object, message: str) -> None:
    path = _write(tmp_path / "bad.json", records)  # type: ignore[arg-type]
    with pytest.raises(ProgramError, match=message) as info:
        load_agent_trajectories(path)
    assert str(path) in str(info.value)


@pytest.mark.skipif(not TRAJECTORIES.is_file(), reason="../shared/data is absent")
def test_real_trajectories_load() -> None:
    progs = load_agent_trajectories(TRAJECTORIES)
    assert len(progs) == 5 and progs.n_turns == 125
    calls = progs.tool_calls()
    assert len(calls) == 120
    # PAPERS.md: median 0.8 ms... per call, mean 0.24 s, max 0.6 s over the sample's tool calls.
    assert calls["duration_s"].max() == pytest.approx(0.6, abs=0.01)
    assert calls["duration_s"].mean() == pytest.approx(0.24, abs=0.02)
    assert {"editor_view", "grep", "find"} <= set(calls["tool_key"])
    _check_structure(progs)


def _check_structure(progs: AgentPrograms) -> None:
    prompt = progs.prompt_tokens
    starts = progs.offsets[:-1]
    assert np.array_equal(prompt[starts], progs.new_tokens[starts])
    rest = np.setdiff1d(np.arange(progs.n_turns), starts)
    assert np.array_equal(prompt[rest], prompt[rest - 1] + progs.output_tokens[rest - 1] + progs.new_tokens[rest])
    last = progs.is_last
    assert np.all(progs.tool_duration_s[last] == 0) and np.all(progs.tool[last] == "")
    assert np.all(progs.tool[~last] != "")


@pytest.mark.parametrize("generator", [swe_bench_like, bfcl_like])
def test_generators_make_valid_programs(generator) -> None:
    progs = generator(300, np.random.default_rng(3), rate=0.5)
    _check_structure(progs)
    assert np.all(np.diff(progs.arrival_s) >= 0)
    assert (len(progs) - 1) / progs.arrival_s[-1] == pytest.approx(0.5, rel=0.2)
    calls = progs.tool_calls()
    # History columns hold the same program's earlier durations.
    same = calls["program"].to_numpy()[1:] == calls["program"].to_numpy()[:-1]
    assert np.allclose(calls["prev_duration_s"].to_numpy()[1:][same], calls["duration_s"].to_numpy()[:-1][same])
    assert calls.groupby("program")["prev_duration_s"].apply(lambda s: np.isnan(s.iloc[0])).all()


def test_workload_shapes_differ_as_documented() -> None:
    swe = swe_bench_like(400, np.random.default_rng(0))
    bfcl = bfcl_like(400, np.random.default_rng(0))
    swe_turns, bfcl_turns = np.diff(swe.offsets), np.diff(bfcl.offsets)
    assert 15 < swe_turns.mean() < 35 and 1.5 < bfcl_turns.mean() < 4.5  # tens of turns vs a few
    d = swe.tool_calls().groupby("tool_key")["duration_s"].median()
    assert d["pytest"] > 20 * d["grep"] > 20 * d["editor_view"]  # heavy test runs, instant edits
    assert bfcl.tool_calls()["duration_s"].quantile(0.99) < 5.0


def test_split_and_resample_keep_whole_programs() -> None:
    progs = swe_bench_like(50, np.random.default_rng(1))
    train, test = progs.split(0.2, np.random.default_rng(0))
    assert len(train) + len(test) == 50 and train.n_turns + test.n_turns == progs.n_turns
    _check_structure(train)
    again = progs.resampled(200, 2.0, np.random.default_rng(0))
    assert len(again) == 200 and again.arrival_s[0] == 0.0
    _check_structure(again)
    with pytest.raises(ProgramError, match="test_fraction"):
        progs.split(1.5, np.random.default_rng(0))


def test_turn_predictions_align_with_the_tool_calls() -> None:
    from infragym.models.continuum.predictors import EmpiricalPerTool

    programs = swe_bench_like(30, np.random.default_rng(3))
    calls = programs.tool_calls()
    predictor = EmpiricalPerTool().fit(calls)
    quantiles, mean = programs.turn_predictions(predictor)
    q, m = predictor.predict_distribution(calls)
    assert quantiles.shape == (programs.n_turns, len(predictor.levels)) and mean.shape == (programs.n_turns,)
    np.testing.assert_array_equal(quantiles[calls.index.to_numpy()], q)
    np.testing.assert_array_equal(mean[calls.index.to_numpy()], m)
    last = programs.is_last
    assert last.sum() == 30 and not quantiles[last].any() and not mean[last].any()
    assert (quantiles[~last] > 0).all()
