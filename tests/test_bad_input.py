"""Each bad input of issue 21 (loaders), as a test: refused by the loader's own error naming
the file and the line, record, row or field; never a raw library error or a silent wrong value."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from infragym.datasets.agent_programs import ProgramError, load_agent_trajectories
from infragym.datasets.cloudperf import CloudPerfError, load_cloudperf
from infragym.datasets.health_log import (
    HealthLogDataset,
    HealthLogError,
    check_trainable,
    generate_health_log,
    load_health_log,
    write_health_log,
)
from infragym.datasets.llm_traces import TraceError, load_azure_trace, load_burstgpt
from infragym.envs.health.simulator import ACTIONS, UnhealthyNodeSimulator
from infragym.envs.serving.cost_model import ProfileError, calibrate, read_profile

from .test_loader_fuzz import _call, _cloudperf_task, _parquet_bytes, profile_text

BURST_HEADER = "Timestamp,Session ID,Elapsed time,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
AZURE_HEADER = "arrived_at,num_prefill_tokens,num_decode_tokens\n"


# ------------------------------------------------------------------------ LLM traces
def test_token_counts_beyond_int64_do_not_wrap(tmp_path: Path) -> None:
    path = tmp_path / "azure.csv"
    path.write_text(AZURE_HEADER + "0.0,9223372036854775808,3\n")
    with pytest.raises(TraceError, match=r"azure\.csv: line 2, column 'num_prefill_tokens'.*above"):
        load_azure_trace(path)
    path.write_text(BURST_HEADER + "0,1,1.0,ChatGPT,5,18446744073709551616,18446744073709551621,API log\n")
    with pytest.raises(TraceError, match=r"line 2, column 'Response tokens'.*above"):
        load_burstgpt(path)


@pytest.mark.parametrize("loader", [load_azure_trace, load_burstgpt])
def test_header_only_and_empty_files_are_refused(tmp_path: Path, loader) -> None:
    path = tmp_path / "trace.csv"
    path.write_text(AZURE_HEADER if loader is load_azure_trace else BURST_HEADER)
    with pytest.raises(TraceError, match=r"trace\.csv: the header has no request lines"):
        loader(path)
    path.write_text("")
    with pytest.raises(TraceError, match=r"trace\.csv: empty file"):
        loader(path)


def test_a_file_cut_inside_its_last_number_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "azure.csv"
    path.write_text(AZURE_HEADER + "0.0,1200,30\n0.5,88,21")  # "211" cut to "21"
    with pytest.raises(TraceError, match=r"azure\.csv: line 3: the file ends without a newline"):
        load_azure_trace(path)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("0,1,1.2,,10,20,30,API log\n", r"line 2, column 'Model': empty"),
        ("0,1,1.2,ChatGPT,10,20,30,Chat log\n", r"line 2, column 'Log Type': 'Chat log' is not one of"),
        ("0,1,soon,ChatGPT,10,20,30,API log\n", r"line 2, column 'Elapsed time'.*not a number"),
        ("0,1,-3,ChatGPT,10,20,30,API log\n", r"line 2, column 'Elapsed time'.*below"),
    ],
)
def test_burstgpt_model_log_type_and_elapsed_time_are_validated(tmp_path: Path, row: str, message: str) -> None:
    path = tmp_path / "burst.csv"
    path.write_text(BURST_HEADER + row)
    with pytest.raises(TraceError, match=message):
        load_burstgpt(path)


# ------------------------------------------------------------------------ agent trajectories
def _trajectory(calls_text: str, seconds: float | str = 1.0) -> list[dict]:
    messages = [
        {"role": "user", "content": "fix it"},
        {"role": "assistant", "content": "run", "tool_calls": calls_text},
        {"role": "tool", "content": "ok"},
        {"role": "assistant", "content": "done", "tool_calls": json.dumps([_call("submit", {}, 0.0)])},
    ]
    return [{"messages": json.dumps(messages)}]


def test_emoji_in_a_tool_call_loads_whatever_else_the_call_holds(tmp_path: Path) -> None:
    # JSON tool_calls with an escaped emoji: Python's literal_eval, tried first, read the
    # escape as two lone surrogates, unless a JSON-only word (null) elsewhere made it fail.
    path = tmp_path / "t.json"
    loaded = []
    for extra in ({}, {"cached": None}):
        call = {**_call("say_🙂", {"text": "🙂"}, 2.0), **extra}
        path.write_text(json.dumps(_trajectory(json.dumps([call]))))
        programs = load_agent_trajectories(path)
        assert programs.tool_duration_s[0] == 2.0
        loaded.append((programs.tool[0], programs.tool_args[0]))
    assert loaded == [("say_🙂", "🙂"), ("say_🙂", "🙂")]


def test_implausible_tool_time_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    path.write_text(json.dumps(_trajectory(json.dumps([_call("bash", {"command": "ls"}, 1e300)]))))
    with pytest.raises(ProgramError, match=r"t\.json record 0 message 1 tool call 0: field 'execution_time_seconds'"):
        load_agent_trajectories(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'[{"messages": "\xff"}]', r"cannot read a UTF-8 JSON list"),
        (b"[" * 100_000 + b"]" * 100_000, r"cannot read a UTF-8 JSON list"),
        (b'[{"messages": [{"role": "assistant", "tool_calls": 1' + b"0" * 5000 + b"}]}]", r"cannot read"),
        (
            json.dumps(_trajectory(json.dumps([_call("bash", {}, 0.0) | {"execution_time_seconds": [1]}]))).encode(),
            "must be a number",
        ),
        (
            json.dumps(
                _trajectory(json.dumps([_call("bash", {}, 0.0) | {"execution_time_seconds": 10**400}]))
            ).encode(),
            "execution_time_seconds",
        ),
        (
            json.dumps(
                _trajectory(json.dumps([{"function": {"name": "b", "arguments": 5}, "execution_time_seconds": 1}]))
            ).encode(),
            "must be a JSON string",
        ),
        (
            json.dumps(_trajectory(json.dumps([{"function": {"name": ["b"]}, "execution_time_seconds": 1}]))).encode(),
            "function.name",
        ),
    ],
)
def test_wrong_types_bad_utf8_nesting_and_huge_integers_are_refused_by_name(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "t.json"
    path.write_bytes(content)
    with pytest.raises(ProgramError, match=message) as caught:
        load_agent_trajectories(path)
    assert str(path) in str(caught.value)


# ------------------------------------------------------------------------ health logs
@pytest.fixture(scope="module")
def health_log() -> pd.DataFrame:
    return generate_health_log(UnhealthyNodeSimulator(), 300, np.random.default_rng(0)).log


def _write_log(frame: pd.DataFrame, path: Path) -> Path:
    frame = frame.copy()
    for column in frame.columns:
        if isinstance(frame[column].dtype, pd.CategoricalDtype):
            frame[column] = frame[column].astype(str)
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)
    return path


def test_empty_tiny_and_single_action_logs_fail_before_fitting(health_log: pd.DataFrame, tmp_path: Path) -> None:
    with pytest.raises(HealthLogError, match=r"log\.parquet: no rows"):
        load_health_log(_write_log(health_log.iloc[:0], tmp_path / "log.parquet"))
    five = load_health_log(write_health_log(health_log.iloc[:5], tmp_path / "five.parquet"))
    with pytest.raises(HealthLogError, match=r"five\.parquet: 5 event\(s\); fitting needs at least 100"):
        check_trainable(five, str(tmp_path / "five.parquet"))
    single = health_log.copy()
    single["action"] = pd.Categorical([ACTIONS[0]] * len(single), categories=ACTIONS)
    one = load_health_log(write_health_log(single, tmp_path / "one.parquet"))
    with pytest.raises(HealthLogError, match=r"one\.parquet: column 'action' logs .* every action"):
        check_trainable(one, str(tmp_path / "one.parquet"))


def test_the_deoxys_task_refuses_a_tiny_log_before_fitting(health_log: pd.DataFrame, tmp_path: Path) -> None:
    from infragym.envs.health.env import UnhealthyNodeMitigationEnv
    from infragym.logging import RunLogger
    from infragym.models.deoxys.recommender import Deoxys
    from infragym.models.deoxys.task import DeoxysTask

    path = write_health_log(health_log.iloc[:20], tmp_path / "small.parquet")
    task = DeoxysTask(
        env=UnhealthyNodeMitigationEnv(),
        dataset=HealthLogDataset(path=str(path)),
        model=Deoxys(n_estimators=4),
        baselines=(),
    )
    with pytest.raises(HealthLogError, match=r"small\.parquet: 20 event\(s\)"):
        task.fit(RunLogger())


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("downtime_min", 1e300, r"column 'downtime_min' = 1e\+300 at row 3; expected in \[0, 525600\]"),
        ("cost_node_hours", 1e12, r"column 'cost_node_hours'.*at row 3"),
        ("node_age_days", 1e9, r"column 'node_age_days'.* at row 3 is outside"),
        ("num_vms", 10**7, r"column 'num_vms'.* at row 3 is outside"),
        ("error_count_1h", 10**12, r"column 'error_count_1h'.* at row 3 is outside"),
    ],
)
def test_implausible_values_are_refused(
    health_log: pd.DataFrame, tmp_path: Path, column: str, value: float, message: str
) -> None:
    frame = health_log.copy()
    frame[column] = frame[column].astype(type(value) if isinstance(value, float) else np.int64)
    frame.loc[3, column] = value
    with pytest.raises(HealthLogError, match=message):
        load_health_log(_write_log(frame, tmp_path / "log.parquet"))


def test_duplicate_and_overflowing_event_ids_are_refused(health_log: pd.DataFrame, tmp_path: Path) -> None:
    frame = health_log.copy()
    frame.loc[7, "event_id"] = frame.loc[2, "event_id"]
    with pytest.raises(HealthLogError, match=r"log\.parquet: column 'event_id' repeats id 2 at row 7"):
        load_health_log(_write_log(frame, tmp_path / "log.parquet"))
    frame = health_log.copy()
    ids = np.arange(len(frame), dtype=np.uint64) + np.uint64(2**63)
    frame["event_id"] = ids  # distinct uint64 ids that int64 cannot hold
    with pytest.raises(HealthLogError, match=r"column 'event_id' = 9223372036854775808 at row 0 does not fit"):
        load_health_log(_write_log(frame, tmp_path / "log.parquet"))


def test_large_distinct_ids_stay_distinct(health_log: pd.DataFrame, tmp_path: Path) -> None:
    frame = health_log.copy()
    frame["event_id"] = np.arange(len(frame), dtype=np.int64) + 2**62  # float64 would merge them
    loaded = load_health_log(_write_log(frame, tmp_path / "log.parquet"))
    np.testing.assert_array_equal(loaded["event_id"].to_numpy(), frame["event_id"].to_numpy())


# ------------------------------------------------------------------------ CloudPerfTrace layout
def _layout(tmp_path: Path, frame: pd.DataFrame, *, copy_part: bool = False) -> Path:
    root = tmp_path / "parquet_ds"
    for name, task in (("5", _cloudperf_task(2, "redis", 0.0)), ("14", frame)):
        folder = root / f"tasks={name}"
        folder.mkdir(parents=True)
        (folder / "part-0.parquet").write_bytes(_parquet_bytes(task))
        if copy_part and name == "14":
            (folder / "part-1.parquet").write_bytes(_parquet_bytes(task))
    return root


def test_timestamps_that_do_not_increase_are_refused(tmp_path: Path) -> None:
    frame = _cloudperf_task(3, "minio", 0.0)
    flat = frame.loc[2, "lin_oth"].copy()
    flat[39] = flat[0]  # second 1's timestamp back to second 0's (stride 1 + 38)
    frame.at[2, "lin_oth"] = flat
    with pytest.raises(
        CloudPerfError,
        match=r"tasks=14/part-0\.parquet, row 2, column 'lin_oth': timestamps not increasing at second 1",
    ):
        load_cloudperf(_layout(tmp_path, frame))


def test_a_duplicated_part_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CloudPerfError, match=r"part-1\.parquet: the same content as part-0\.parquet"):
        load_cloudperf(_layout(tmp_path, _cloudperf_task(2, "minio", 0.0), copy_part=True))


def test_null_workload_is_refused(tmp_path: Path) -> None:
    frame = _cloudperf_task(2, "minio", 0.0)
    frame["workload"] = pd.array([None, None], dtype="Int64")
    with pytest.raises(CloudPerfError, match=r"tasks=14/part-0\.parquet, row 0, column 'workload': null"):
        load_cloudperf(_layout(tmp_path, frame))


def test_an_empty_task_folder_is_named_as_such(tmp_path: Path) -> None:
    root = _layout(tmp_path, _cloudperf_task(2, "minio", 0.0))
    (root / "tasks=14" / "part-0.parquet").unlink()
    with pytest.raises(CloudPerfError, match=r"tasks=14: no Parquet part files in this task folder"):
        load_cloudperf(root)


# ------------------------------------------------------------------------ GPU profiles
def _profile(tmp_path: Path, mutate) -> Path:
    frame = pd.read_csv(__import__("io").StringIO(profile_text()))
    mutate(frame)
    path = tmp_path / "profile.csv"
    frame.to_csv(path, index=False)
    return path


def test_infinite_and_absurd_times_are_refused(tmp_path: Path) -> None:
    def infinite(frame: pd.DataFrame) -> None:
        frame.loc[2, "time_stats.mlp_up_proj.mean"] = np.inf

    with pytest.raises(ProfileError, match=r"profile\.csv: line 4, column 'time_stats\.mlp_up_proj\.mean'"):
        calibrate(_profile(tmp_path, infinite), "a100_80gb")

    def absurd(frame: pd.DataFrame) -> None:
        frame.loc[0, "time_stats.add.mean"] = 1e300

    with pytest.raises(ProfileError, match=r"line 2, column 'time_stats\.add\.mean'.*up to 60000 ms"):
        calibrate(_profile(tmp_path, absurd), "a100_80gb")


def test_rows_of_another_model_are_refused(tmp_path: Path) -> None:
    def other(frame: pd.DataFrame) -> None:
        frame.loc[3, "n_embd"] = 8192

    with pytest.raises(ProfileError, match=r"line 5, column 'n_embd': 8192 differs from line 2's 4096"):
        read_profile(_profile(tmp_path, other))


def test_missing_empty_and_header_only_profiles_and_unknown_gpus(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match=r"nothing\.csv: no such file"):
        read_profile(tmp_path / "nothing.csv")
    path = tmp_path / "empty.csv"
    path.write_text("")
    with pytest.raises(ProfileError, match=r"empty\.csv: not a readable CSV profile"):
        read_profile(path)
    path.write_text(profile_text().splitlines()[0] + "\n")
    with pytest.raises(ProfileError, match=r"empty\.csv: a header and no measurements"):
        read_profile(path)
    good = tmp_path / "good.csv"
    good.write_text(profile_text())
    with pytest.raises(ProfileError, match=r"unknown GPU 'a200'; known: \['a100_80gb'"):
        calibrate(good, "a200")
