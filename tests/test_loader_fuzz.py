"""Fuzz harness of the loaders: mutated valid files either load into an object that satisfies
the loader's invariants, or raise the loader's own error (a ``ValueError`` subclass) naming
the file. No other exception escapes a loader.

Each loader gets a valid file in its real format, then hypothesis mutates it: wrong types,
NaN/inf, negative, huge and empty values, truncation, bad UTF-8, deep nesting, duplicated
rows and ids, wrong shapes. Examples are bounded (``max_examples``) so the suite stays fast.
"""

from __future__ import annotations

import ast
import io
import json
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from infragym.datasets.agent_programs import MAX_TOOL_SECONDS, AgentPrograms, ProgramError, load_agent_trajectories
from infragym.datasets.cloudperf import GROUPS, PAPER_GROUP_SIZES, CloudPerfError, load_cloudperf
from infragym.datasets.health_log import (
    LOG_COLUMNS,
    MAX_COST_NODE_HOURS,
    MAX_DOWNTIME_MIN,
    HealthLogError,
    generate_health_log,
    load_health_log,
)
from infragym.datasets.llm_traces import MAX_TOKENS, RequestTrace, TraceError, load_azure_trace, load_burstgpt
from infragym.envs.health.features import FEATURE_BOUNDS
from infragym.envs.health.simulator import ACTIONS, UnhealthyNodeSimulator
from infragym.envs.serving.cost_model import (
    PROFILE_ARCH_COLUMNS,
    PROFILE_LAYER_OPS,
    CostModel,
    Efficiency,
    ProfileError,
    calibrate,
    read_profile,
)
from infragym.envs.serving.hardware import MODELS

FUZZ = settings(
    max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow], database=None
)

# Values a careless or hostile producer writes into a field.
BAD_TEXT = [
    "",
    "nan",
    "NaN",
    "inf",
    "-inf",
    "-1",
    "0",
    "1.5",
    "1e300",
    "-1e300",
    "9223372036854775808",
    "18446744073709551616",
    "1" * 400,
    "abc",
    "true",
    "None",
    "🙂",
    '"',
    ",",
    " ",
]
BAD_BYTES = [b"\xff", b"\xc3\x28", b"\x00", b"\xed\xa0\x80"]


def _expect(loader: Callable[[Path], Any], path: Path, error: type[ValueError], check: Callable[[Any], None]) -> None:
    """The only outcomes: a valid object, or ``error`` whose message names ``path``."""
    try:
        loaded = loader(path)
    except error as err:
        assert str(path) in str(err) or path.name in str(err), f"error does not name the file: {err}"
        return
    check(loaded)


# ------------------------------------------------------------------------ text mutations
@st.composite
def csv_mutation(draw: st.DrawFn, text: str) -> bytes:
    """A CSV's bytes after one or two mutations: a field replaced, a line dropped or
    duplicated, the file truncated, bad bytes inserted, or only the header kept."""
    lines = text.splitlines(keepends=True)
    for _ in range(draw(st.integers(1, 2))):
        kind = draw(st.sampled_from(["field", "field", "field", "drop", "dup", "truncate", "bytes", "header", "swap"]))
        if kind == "field" and len(lines) > 1:
            i = draw(st.integers(1, len(lines) - 1))
            fields = lines[i].rstrip("\n").split(",")
            j = draw(st.integers(0, len(fields) - 1))
            fields[j] = draw(st.sampled_from(BAD_TEXT) | st.text(max_size=8))
            lines[i] = ",".join(fields) + "\n"
        elif kind == "drop" and len(lines) > 1:
            del lines[draw(st.integers(0, len(lines) - 1))]
        elif kind == "dup" and len(lines) > 1:
            i = draw(st.integers(1, len(lines) - 1))
            lines.insert(i, lines[i])
        elif kind == "swap" and len(lines) > 2:
            i = draw(st.integers(1, len(lines) - 2))
            lines[i], lines[i + 1] = lines[i + 1], lines[i]
        elif kind == "header":
            lines = lines[:1]
    data = "".join(lines).encode("utf-8")
    if draw(st.booleans()) and data:
        action = draw(st.sampled_from(["truncate", "bytes"]))
        at = draw(st.integers(0, len(data)))
        data = data[:at] if action == "truncate" else data[:at] + draw(st.sampled_from(BAD_BYTES)) + data[at:]
    return data


def _check_trace(trace: RequestTrace) -> None:
    assert len(trace) >= 1
    assert np.isfinite(trace.arrival_s).all() and (trace.arrival_s >= 0).all()
    assert (np.diff(trace.arrival_s) >= 0).all()
    assert trace.prompt_tokens.dtype == np.int64 and (trace.prompt_tokens >= 1).all()
    assert (trace.output_tokens >= 0).all()
    assert (trace.prompt_tokens <= MAX_TOKENS).all() and (trace.output_tokens <= MAX_TOKENS).all()
    np.testing.assert_array_equal(trace.failed, trace.output_tokens == 0)
    assert ((trace.model >= 0) & (trace.model < len(trace.models))).all()
    assert all(name.strip() for name in trace.models)


AZURE = "arrived_at,num_prefill_tokens,num_decode_tokens\n0.0,1200,30\n0.4,88,0\n0.9,4000,211\n1.5,12,7\n"
BURSTGPT = (
    "Timestamp,Session ID,Elapsed time,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
    "0,1,1.2,ChatGPT,120,30,150,Conversation log\n"
    "2,,0.0,GPT-4,500,0,500,API log\n"
    "2,3,3.5,ChatGPT,10,200,210,Conversation log\n"
    "7,,2.0,GPT-4,60,40,100,API log\n"
)


@FUZZ
@given(data=csv_mutation(AZURE))
def test_fuzz_azure_trace(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "azure.csv"
        path.write_bytes(data)
        _expect(load_azure_trace, path, TraceError, _check_trace)


@FUZZ
@given(data=csv_mutation(BURSTGPT))
def test_fuzz_burstgpt_trace(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "burst.csv"
        path.write_bytes(data)
        _expect(load_burstgpt, path, TraceError, _check_trace)


# ------------------------------------------------------------------------ agent trajectories
def _call(name: str, arguments: dict, seconds: float) -> dict:
    return {"function": {"name": name, "arguments": json.dumps(arguments)}, "execution_time_seconds": seconds}


def _trajectories() -> list[dict]:
    messages = [
        {"role": "system", "content": "You are a helpful agent."},
        {"role": "user", "content": "Fix the bug in parse()."},
        {"role": "assistant", "content": "look", "tool_calls": repr([_call("bash", {"command": "ls /testbed"}, 0.02)])},
        {"role": "tool", "content": "setup.py src tests"},
        {"role": "assistant", "content": "test", "tool_calls": repr([_call("bash", {"command": "pytest -x"}, 4.5)])},
        {"role": "tool", "content": "1 failed"},
        {"role": "assistant", "content": "done", "tool_calls": repr([_call("submit", {}, 0.0)])},
    ]
    return [{"messages": json.dumps(messages), "instance_id": f"x{i}", "traj_id": f"t{i}"} for i in range(2)]


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from(["", "🙂", "[{", "{'a': 1}", "\ud800", "1e300", "-1", "[]", "None"]),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3),
    max_leaves=8,
)


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out += _paths(value, (*prefix, i))
    return out


def _set(node: Any, path: tuple, value: Any) -> Any:
    if not path:
        return value
    node[path[0]] = _set(node[path[0]], path[1:], value)
    return node


@st.composite
def trajectory_mutation(draw: st.DrawFn) -> bytes:
    """Records with messages and tool calls decoded, one value replaced anywhere in the tree
    (or nested 100 000 levels deep), re-encoded as the producer does; then maybe bytes cut or
    corrupted."""
    records = _trajectories()
    for record in records:
        messages = json.loads(record["messages"])
        for m in messages:
            if "tool_calls" in m:
                m["tool_calls"] = ast.literal_eval(m["tool_calls"])
        record["messages"] = messages
    target = draw(st.sampled_from(_paths(records)))
    # one time in ten: a list nested 100 000 deep (spliced into the text below)
    value: Any = "DEEP" if draw(st.integers(0, 9)) == 0 else draw(JSON_VALUES)
    records = _set(records, target, value)
    encode_messages = draw(st.booleans())
    for record in records if isinstance(records, list) else []:
        if isinstance(record, dict) and isinstance(record.get("messages"), list):
            for m in record["messages"]:
                if isinstance(m, dict) and isinstance(m.get("tool_calls"), list) and draw(st.booleans()):
                    m["tool_calls"] = repr(m["tool_calls"])
            if encode_messages:
                record["messages"] = json.dumps(record["messages"])
    text = json.dumps(records).replace('"DEEP"', "[" * 100_000 + "]" * 100_000)
    data = text.encode("utf-8", errors="surrogatepass")
    if draw(st.integers(0, 3)) == 0:
        at = draw(st.integers(0, len(data)))
        data = data[:at] if draw(st.booleans()) else data[:at] + draw(st.sampled_from(BAD_BYTES)) + data[at:]
    return data


def _check_programs(programs: AgentPrograms) -> None:
    assert len(programs) >= 1 and programs.n_turns >= len(programs)
    assert np.isfinite(programs.tool_duration_s).all()
    assert ((programs.tool_duration_s >= 0) & (programs.tool_duration_s <= MAX_TOOL_SECONDS)).all()
    assert (programs.new_tokens >= 1).all() and (programs.output_tokens >= 1).all()
    assert (programs.tool_duration_s[programs.is_last] == 0).all()
    programs.tool_calls()  # the predictors' view builds


@FUZZ
@given(data=trajectory_mutation())
def test_fuzz_agent_trajectories(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "trajectories.json"
        path.write_bytes(data)
        _expect(load_agent_trajectories, path, ProgramError, _check_programs)


# ------------------------------------------------------------------------ parquet mutations
BAD_CELLS = [np.nan, np.inf, -np.inf, -1, 0, 1e300, -1e300, 2**63, "abc", "", None, True, 1.5]


@st.composite
def frame_mutation(draw: st.DrawFn, frame: pd.DataFrame, protected: tuple[str, ...] = ()) -> pd.DataFrame:
    """One or two of: a cell replaced by a bad value, a column cast to another dtype or dropped,
    rows duplicated or all removed."""
    frame = frame.copy()
    columns = [c for c in frame.columns if c not in protected]
    for _ in range(draw(st.integers(1, 2))):
        kind = draw(st.sampled_from(["cell", "cell", "cell", "dtype", "drop", "dup", "empty"]))
        column = draw(st.sampled_from(columns))
        if kind == "cell" and column in frame.columns and len(frame):
            row = draw(st.integers(0, len(frame) - 1))
            value = draw(st.sampled_from(BAD_CELLS))
            values = frame[column].astype(object).to_numpy(copy=True)
            values[row] = value
            frame[column] = pd.Series(list(values), index=frame.index).infer_objects()
        elif kind == "dtype" and column in frame.columns:
            target = draw(st.sampled_from(["str", "float64", "uint64", "bool"]))
            try:
                frame[column] = frame[column].astype(target)
            except (TypeError, ValueError):
                pass
        elif kind == "drop" and column in frame.columns:
            frame = frame.drop(columns=[column])
        elif kind == "dup" and len(frame):
            frame = pd.concat([frame, frame.iloc[[draw(st.integers(0, len(frame) - 1))]]], ignore_index=True)
        elif kind == "empty":
            frame = frame.iloc[:0]
    return frame


def _parquet_bytes(frame: pd.DataFrame) -> bytes:
    try:
        table = pa.Table.from_pandas(frame, preserve_index=False)
    except (pa.ArrowException, TypeError, ValueError, OverflowError):
        assume(False)  # not writable as Parquet: no file to load
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


@pytest.fixture(scope="module")
def health_log_frame() -> pd.DataFrame:
    log = generate_health_log(UnhealthyNodeSimulator(), 40, np.random.default_rng(0)).log
    frame = log[list(LOG_COLUMNS)].copy()
    for column in frame.columns:
        if isinstance(frame[column].dtype, pd.CategoricalDtype):
            frame[column] = frame[column].astype(str)
    return frame


def _check_health_log(log: pd.DataFrame) -> None:
    assert len(log) >= 1 and list(log.columns) == list(LOG_COLUMNS)
    assert log["event_id"].is_unique and log["event_id"].dtype == np.int64
    assert set(log["action"].astype(str)) <= set(ACTIONS)
    for column, (low, high) in FEATURE_BOUNDS.items():
        values = log[column].to_numpy(dtype=np.float64)
        assert np.isfinite(values).all() and (values >= low).all() and (high is None or (values <= high).all())
    assert ((log["downtime_min"] >= 0) & (log["downtime_min"] <= MAX_DOWNTIME_MIN)).all()
    assert ((log["cost_node_hours"] >= 0) & (log["cost_node_hours"] <= MAX_COST_NODE_HOURS)).all()
    assert set(log["interrupted"]) <= {0, 1}


@FUZZ
@given(data=st.data())
def test_fuzz_health_log(health_log_frame: pd.DataFrame, data: st.DataObject) -> None:
    frame = data.draw(frame_mutation(health_log_frame))
    raw = _parquet_bytes(frame)
    if data.draw(st.integers(0, 5)) == 0:
        raw = raw[: data.draw(st.integers(0, len(raw)))]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "log.parquet"
        path.write_bytes(raw)
        _expect(load_health_log, path, HealthLogError, _check_health_log)


def _cloudperf_task(executions: int, workload: str, offset: float) -> pd.DataFrame:
    """Rows of the real CloudPerfTrace layout: one execution per row, each group a flat list of
    T x (1 + n) values (a Unix timestamp then the group's n metrics per second; paper sizes)."""
    frame = pd.DataFrame(
        {
            "perf_ori": np.linspace(0.5, 0.9, executions) + offset,
            "workload": np.arange(executions, dtype=np.int64) % 3,
            "host": workload,  # an extra column the loader ignores
        }
    )
    for group in GROUPS:
        n = PAPER_GROUP_SIZES[group.split("_")[0]]
        frame[group] = [
            np.column_stack(
                [1.65e9 + 100 * e + np.arange(2 + e), np.arange((2 + e) * n).reshape(2 + e, n) + offset]
            ).ravel()
            for e in range(executions)
        ]
    return frame


def _write_task(root: Path, name: str, frame: pd.DataFrame) -> None:
    folder = root / f"tasks={name}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "part-0.parquet").write_bytes(_parquet_bytes(frame))


def _check_executions(data: Any) -> None:
    assert len(data) >= 1 and len(data.metrics) == len(data.perf)
    for metrics, perf in zip(data.metrics, data.perf, strict=True):
        assert metrics.ndim == 2 and metrics.shape[1] == data.n_metrics == 206 and len(metrics) >= 1
        assert np.isfinite(metrics).all() and perf > 0
    assert set(data.application) <= {"redis", "data_serving"}


@FUZZ
@given(data=st.data())
def test_fuzz_cloudperf_layout(data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder) / "parquet_ds"
        _write_task(root, "5", _cloudperf_task(3, "a", 0.0))
        mutated = data.draw(frame_mutation(_cloudperf_task(3, "b", 0.05)))
        _write_task(root, "4", mutated)
        layout = data.draw(st.sampled_from(["as is", "as is", "copy part", "empty folder", "stray file", "cut"]))
        task = root / "tasks=4"
        if layout == "copy part":
            (task / "part-1.parquet").write_bytes((task / "part-0.parquet").read_bytes())
        elif layout == "empty folder":
            (task / "part-0.parquet").unlink()
        elif layout == "stray file":
            (task / "notes.txt").write_text("not parquet")
        elif layout == "cut":
            raw = (task / "part-0.parquet").read_bytes()
            (task / "part-0.parquet").write_bytes(raw[: data.draw(st.integers(0, len(raw) - 1))])
        _expect(load_cloudperf, root, CloudPerfError, _check_executions)


# ------------------------------------------------------------------------ GPU profiles
TRUE_EFFICIENCY = Efficiency(flop_eff=0.6, mem_eff=0.8, op_overhead_s=6e-6)


def profile_text(n_tokens: tuple[int, ...] = (1, 16, 128, 1024, 4096), tps: tuple[int, ...] = (1, 2)) -> str:
    """A vidur-format MLP profile of Llama-3-8B on an A100 made by the cost model itself at
    ``TRUE_EFFICIENCY`` (so a calibration must recover it)."""
    model = MODELS["llama3.1_8b"]
    rows = []
    for tp in tps:
        times = CostModel("a100_80gb", model, tp, TRUE_EFFICIENCY).layer_op_times(np.asarray(n_tokens))
        for i, n in enumerate(n_tokens):
            row = {f"time_stats.{op}.mean": times[op][i] * 1e3 for op in PROFILE_LAYER_OPS}
            row.update(
                n_head=model.q_heads,
                n_kv_head=model.kv_heads,
                n_embd=model.hidden,
                n_expanded_embd=model.ffn,
                vocab_size=model.vocab,
                use_gated_mlp=True,
                num_tokens=n,
                num_tensor_parallel_workers=tp,
            )
            rows.append(row)
    return pd.DataFrame(rows).to_csv(index=False)


def test_profile_fixture_calibrates_to_its_efficiency(tmp_path: Path) -> None:
    path = tmp_path / "profile.csv"
    path.write_text(profile_text())
    fit = calibrate(path, "a100_80gb")
    assert fit.mape < 1e-3
    assert fit.efficiency.flop_eff == pytest.approx(0.6, rel=1e-2)
    assert fit.efficiency.mem_eff == pytest.approx(0.8, rel=1e-2)


PROFILE = profile_text(n_tokens=(1, 64, 2048), tps=(1,))


@settings(FUZZ, max_examples=40)
@given(data=csv_mutation(PROFILE))
def test_fuzz_gpu_profile(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "profile.csv"
        path.write_bytes(data)

        def check(frame: pd.DataFrame) -> None:
            assert len(frame) >= 1
            values = frame[[f"time_stats.{op}.mean" for op in PROFILE_LAYER_OPS]].to_numpy(np.float64)
            assert np.isfinite(values).all() and (values > 0).all()
            assert (frame[list(PROFILE_ARCH_COLUMNS[:-1])].nunique() == 1).all()
            fit = calibrate(path, "a100_80gb")
            assert np.isfinite(fit.mape)

        _expect(read_profile, path, ProfileError, check)


def test_errors_are_value_errors() -> None:
    for error in (TraceError, ProgramError, HealthLogError, CloudPerfError, ProfileError):
        assert issubclass(error, ValueError)
        assert re.match(r"^[A-Z]", error.__doc__ or "")
