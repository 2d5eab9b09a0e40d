"""The legacy log as Parquet: round-trip and refusal of bad files with a clear message."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from infragym.datasets.health_log import (
    LOG_COLUMNS,
    HealthLogDataset,
    HealthLogError,
    generate_health_log,
    load_health_log,
    write_health_log,
)
from infragym.envs.health import ACTIONS, UnhealthyNodeSimulator


@pytest.fixture(scope="module")
def log() -> pd.DataFrame:
    return generate_health_log(UnhealthyNodeSimulator(), 500, np.random.default_rng(0)).log


def _write_raw(frame: pd.DataFrame, path: Path) -> Path:
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)
    return path


def _plain(log: pd.DataFrame) -> pd.DataFrame:
    frame = log.copy()
    for column in frame.columns:
        if isinstance(frame[column].dtype, pd.CategoricalDtype):
            frame[column] = frame[column].astype(str)
    return frame


def test_round_trip(log: pd.DataFrame, tmp_path: Path) -> None:
    path = write_health_log(log, tmp_path / "log.parquet")
    loaded = load_health_log(path)
    assert list(loaded.columns) == list(LOG_COLUMNS)
    pd.testing.assert_frame_equal(loaded, log[list(LOG_COLUMNS)], check_dtype=False, check_categorical=False)
    assert set(loaded["action"].unique()) <= set(ACTIONS)


def test_generated_log_has_observed_outcome_of_logged_action(log: pd.DataFrame) -> None:
    logged = generate_health_log(UnhealthyNodeSimulator(), 300, np.random.default_rng(1))
    rows = np.arange(300)
    actions = np.array([ACTIONS.index(a) for a in logged.log["action"]])
    np.testing.assert_allclose(logged.log["downtime_min"], logged.potential_outcomes["downtime_min"][rows, actions])


def test_missing_column_is_named(log: pd.DataFrame, tmp_path: Path) -> None:
    path = _write_raw(_plain(log).drop(columns=["error_count_24h"]), tmp_path / "missing.parquet")
    with pytest.raises(HealthLogError, match=r"missing\.parquet.*error_count_24h"):
        load_health_log(path)


def test_wrong_dtype_is_named(log: pd.DataFrame, tmp_path: Path) -> None:
    frame = _plain(log)
    frame["num_vms"] = frame["num_vms"].astype(str)
    path = _write_raw(frame, tmp_path / "dtype.parquet")
    with pytest.raises(HealthLogError, match=r"dtype\.parquet.*'num_vms'.*numeric"):
        load_health_log(path)


def test_nan_is_named_with_row(log: pd.DataFrame, tmp_path: Path) -> None:
    frame = _plain(log)
    frame.loc[17, "downtime_min"] = np.nan
    path = _write_raw(frame, tmp_path / "nan.parquet")
    with pytest.raises(HealthLogError, match=r"nan\.parquet.*'downtime_min'.*row 17"):
        load_health_log(path)
    frame = _plain(log)
    frame["cpu_utilisation"] = frame["cpu_utilisation"].astype(float)
    frame.loc[3, "cpu_utilisation"] = np.nan
    with pytest.raises(HealthLogError, match=r"'cpu_utilisation'.*row 3"):
        load_health_log(_write_raw(frame, tmp_path / "nan2.parquet"))


def test_unknown_action_label_is_named(log: pd.DataFrame, tmp_path: Path) -> None:
    frame = _plain(log)
    frame.loc[42, "action"] = "reimage"
    path = _write_raw(frame, tmp_path / "label.parquet")
    with pytest.raises(HealthLogError, match=r"label\.parquet.*'action'.*'reimage'.*row 42"):
        load_health_log(path)


def test_unknown_category_and_out_of_range_values(log: pd.DataFrame, tmp_path: Path) -> None:
    frame = _plain(log)
    frame.loc[5, "fault_signal"] = "cosmic_ray"
    with pytest.raises(HealthLogError, match=r"'fault_signal'.*'cosmic_ray'.*row 5"):
        load_health_log(_write_raw(frame, tmp_path / "cat.parquet"))
    frame = _plain(log)
    frame.loc[9, "interrupted"] = 2
    with pytest.raises(HealthLogError, match=r"'interrupted'.*row 9"):
        load_health_log(_write_raw(frame, tmp_path / "range.parquet"))


def test_not_parquet_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "junk.parquet"
    bad.write_text("not parquet")
    with pytest.raises(HealthLogError, match=r"junk\.parquet.*Parquet"):
        load_health_log(bad)
    with pytest.raises(HealthLogError, match="no such file"):
        load_health_log(tmp_path / "absent.parquet")


def test_dataset_writes_and_reloads_the_log(tmp_path: Path) -> None:
    dataset = HealthLogDataset(n_events=400, n_test_events=200, save_dir=str(tmp_path))
    logged = dataset.logged_events(UnhealthyNodeSimulator(), np.random.default_rng(0))
    assert (tmp_path / "health_log.parquet").is_file()
    train, holdout = dataset.split(logged, np.random.default_rng(1))
    assert len(train) + len(holdout) == 400 and len(holdout) == 120
    assert not set(train.log["event_id"]) & set(holdout.log["event_id"])
    assert train.potential_outcomes is not None and len(train.potential_outcomes["downtime_min"]) == len(train)
    # A dataset pointed at that file trains on it (no ground truth for a real log).
    reloaded = HealthLogDataset(path=str(tmp_path / "health_log.parquet")).logged_events(
        UnhealthyNodeSimulator(), np.random.default_rng(0)
    )
    assert len(reloaded) == 400 and reloaded.potential_outcomes is None


def test_float_count_column_is_refused_in_a_file(log: pd.DataFrame, tmp_path: Path) -> None:
    frame = _plain(log)
    frame["num_vms"] = frame["num_vms"].astype(float)
    with pytest.raises(HealthLogError, match=r"'num_vms'.*integer"):
        load_health_log(_write_raw(frame, tmp_path / "float.parquet"))
