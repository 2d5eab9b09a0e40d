"""The historical log of unhealthy-node events under the legacy policy, as Parquet.

A row is one logged event: its features, the action the legacy policy took, and the observed
outcomes of that action only (what an operations log holds). ``load_health_log`` validates a
file and refuses a missing column, a wrong dtype, a NaN or an unknown action label with an
error naming the file, column and row.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from infragym.envs.health.features import FeatureError, validate_features
from infragym.envs.health.simulator import (
    ACTIONS,
    CATEGORICAL_FEATURES,
    NUMERIC_FEATURES,
    OUTCOMES,
    EventBatch,
    UnhealthyNodeSimulator,
)
from infragym.io import atomic_write_bytes

LOG_COLUMNS: tuple[str, ...] = ("event_id", *CATEGORICAL_FEATURES, *NUMERIC_FEATURES, "action", *OUTCOMES)
CHUNK = 50_000


class HealthLogError(ValueError):
    """A log file that does not match the schema."""


# Plausibility bounds of the outcomes (inclusive): a value beyond them cannot be a logged
# mitigation. A node down for more than a year has been retired, not mitigated; a mitigation
# costs at most a few hundred node-hours (a node rebuilt and its VMs re-created), 10^5 is far
# beyond that. Without them one 1e300 downtime dominates every fit (and stalls it for minutes).
MAX_DOWNTIME_MIN = 365 * 24 * 60.0
MAX_COST_NODE_HOURS = 1e5
# The fewest events, and the fewest per logged action, a log must hold to fit the causal
# forest: cross-fitting splits the log into ``cv`` folds, each needing every action (econml
# refuses a fold without one), and honest forests split again; below this, the estimate is
# noise. ``HealthLogDataset`` checks it when it trains on a file.
MIN_EVENTS = 100
MIN_EVENTS_PER_ACTION = 10


@dataclass
class LoggedEvents:
    """A log, plus the ground truth that only a simulator knows (None for real logs)."""

    log: pd.DataFrame
    potential_outcomes: dict[str, np.ndarray] | None = None  # realised, (n, n_actions)
    expected_outcomes: dict[str, np.ndarray] | None = None  # given the features, (n, n_actions)

    def __len__(self) -> int:
        return len(self.log)

    def subset(self, rows: np.ndarray) -> LoggedEvents:
        def take(d: dict[str, np.ndarray] | None) -> dict[str, np.ndarray] | None:
            return None if d is None else {k: v[rows] for k, v in d.items()}

        return LoggedEvents(
            self.log.iloc[rows].reset_index(drop=True),
            take(self.potential_outcomes),
            take(self.expected_outcomes),
        )


def simulate_events(
    simulator: UnhealthyNodeSimulator, n: int, rng: np.random.Generator, *, desc: str = "simulating events"
) -> tuple[EventBatch, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Draw ``n`` events in chunks (progress bar) with realised and expected potential outcomes."""
    features, causes, probs = [], [], []
    realised: dict[str, list[np.ndarray]] = {k: [] for k in OUTCOMES}
    expected: dict[str, list[np.ndarray]] = {k: [] for k in OUTCOMES}
    with tqdm(total=n, desc=desc, unit="event", leave=False) as bar:
        for start in range(0, n, CHUNK):
            batch = simulator.sample_events(min(CHUNK, n - start), rng)
            outcome = simulator.outcome_table(batch, rng)
            mean = simulator.outcome_table(batch)
            features.append(batch.features)
            causes.append(batch.root_cause)
            probs.append(batch.cause_probs)
            for k in OUTCOMES:
                realised[k].append(outcome[k])
                expected[k].append(mean[k])
            bar.update(len(batch))
    events = EventBatch(
        features=pd.concat(features, ignore_index=True),
        root_cause=np.concatenate(causes),
        cause_probs=np.concatenate(probs),
    )
    return (
        events,
        {k: np.concatenate(v) for k, v in realised.items()},
        {k: np.concatenate(v) for k, v in expected.items()},
    )


def generate_health_log(simulator: UnhealthyNodeSimulator, n: int, rng: np.random.Generator) -> LoggedEvents:
    """Simulate ``n`` events, let the (randomised) legacy policy act, log what it observed."""
    events, realised, expected = simulate_events(simulator, n, rng, desc="simulating the legacy log")
    actions = simulator.sample_legacy_actions(events.features, rng)
    rows = np.arange(n)
    log = events.features.copy()
    log.insert(0, "event_id", np.arange(n, dtype=np.int64))
    log["action"] = pd.Categorical.from_codes(actions, ACTIONS)
    for k in OUTCOMES:
        log[k] = realised[k][rows, actions]
    log["interrupted"] = log["interrupted"].round().astype(np.int64)
    return LoggedEvents(log=log, potential_outcomes=realised, expected_outcomes=expected)


def write_health_log(log: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write a log as Parquet, atomically (string columns stored as dictionary strings)."""
    frame = log[list(LOG_COLUMNS)].copy()
    for column in (*CATEGORICAL_FEATURES, "action"):
        frame[column] = frame[column].astype(str)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    return atomic_write_bytes(path, sink.getvalue().to_pybytes())


def _check_numeric(frame: pd.DataFrame, column: str, source: str, *, integer: bool) -> np.ndarray:
    values = frame[column]
    if integer and not pd.api.types.is_integer_dtype(values.dtype) and values.dtype != bool:
        raise HealthLogError(f"{source}: column {column!r} must be an integer column, got dtype {values.dtype}")
    if not pd.api.types.is_numeric_dtype(values.dtype):
        raise HealthLogError(f"{source}: column {column!r} must be numeric, got dtype {values.dtype}")
    array = values.to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(array)
    if bad.any():
        raise HealthLogError(f"{source}: column {column!r} is NaN or infinite at row {int(np.flatnonzero(bad)[0])}")
    return array


def _event_ids(values: pd.Series, source: str) -> np.ndarray:
    """``event_id`` as int64 without a detour through float64 (which merges ids above 2^53),
    refusing ids outside int64 (uint64 above 2^63 would wrap) and duplicates."""
    if not pd.api.types.is_integer_dtype(values.dtype) or values.dtype == bool:
        raise HealthLogError(f"{source}: column 'event_id' must be an integer column, got dtype {values.dtype}")
    if values.isna().any():
        raise HealthLogError(f"{source}: column 'event_id' is null at row {int(np.flatnonzero(values.isna())[0])}")
    raw = values.to_numpy()
    if raw.dtype == np.uint64:
        over = raw > np.iinfo(np.int64).max
        if over.any():
            row = int(np.flatnonzero(over)[0])
            raise HealthLogError(f"{source}: column 'event_id' = {raw[row]} at row {row} does not fit in int64")
    ids = raw.astype(np.int64)
    order = np.argsort(ids, kind="stable")
    repeated = np.flatnonzero(ids[order][1:] == ids[order][:-1])
    if repeated.size:
        row = int(order[repeated[0] + 1])
        raise HealthLogError(f"{source}: column 'event_id' repeats id {ids[row]} at row {row} (ids must be unique)")
    return ids


def check_trainable(log: pd.DataFrame, source: str, *, cv: int = 2) -> None:
    """Refuse, before any fitting, a validated log too small to fit on: fewer than
    ``MIN_EVENTS`` events, or an action logged fewer than ``max(MIN_EVENTS_PER_ACTION, 2 cv)``
    times (every cross-fitting fold needs it)."""
    if len(log) < MIN_EVENTS:
        raise HealthLogError(f"{source}: {len(log)} event(s); fitting needs at least {MIN_EVENTS}")
    counts = log["action"].value_counts().reindex(list(ACTIONS), fill_value=0)
    need = max(MIN_EVENTS_PER_ACTION, 2 * cv)
    few = counts[counts < need]
    if len(few):
        raise HealthLogError(
            f"{source}: column 'action' logs {dict(few.astype(int))} time(s); every action in {list(ACTIONS)} "
            f"needs at least {need} events to estimate its effect"
        )


def validate_health_log(frame: pd.DataFrame, source: str = "log") -> pd.DataFrame:
    """Validate a log table; return it with canonical dtypes."""
    missing = [c for c in LOG_COLUMNS if c not in frame.columns]
    if missing:
        raise HealthLogError(f"{source}: missing column(s) {missing} (expected {list(LOG_COLUMNS)})")
    frame = frame.reset_index(drop=True)
    try:
        features = validate_features(frame, source=source, strict_dtypes=True)
    except FeatureError as err:
        raise HealthLogError(str(err)) from err
    event_id = _event_ids(frame["event_id"], source)
    action = frame["action"]
    if not (pd.api.types.is_string_dtype(action.dtype) or isinstance(action.dtype, pd.CategoricalDtype)):
        raise HealthLogError(f"{source}: column 'action' must hold action names, got dtype {action.dtype}")
    action_str = action.astype("string")
    null = action_str.isna().to_numpy()
    if null.any():
        raise HealthLogError(f"{source}: column 'action' is null at row {int(np.flatnonzero(null)[0])}")
    unknown = ~action_str.isin(ACTIONS).to_numpy()
    if unknown.any():
        row = int(np.flatnonzero(unknown)[0])
        raise HealthLogError(
            f"{source}: column 'action' has unknown label {action_str.iloc[row]!r} at row {row} "
            f"(expected one of {list(ACTIONS)})"
        )
    downtime = _check_numeric(frame, "downtime_min", source, integer=False)
    interrupted = _check_numeric(frame, "interrupted", source, integer=True)
    cost = _check_numeric(frame, "cost_node_hours", source, integer=False)
    for column, values, ok, expected in (
        ("downtime_min", downtime, (downtime >= 0) & (downtime <= MAX_DOWNTIME_MIN), f"in [0, {MAX_DOWNTIME_MIN:g}]"),
        ("interrupted", interrupted, np.isin(interrupted, (0, 1)), "0 or 1"),
        ("cost_node_hours", cost, (cost >= 0) & (cost <= MAX_COST_NODE_HOURS), f"in [0, {MAX_COST_NODE_HOURS:g}]"),
    ):
        if not ok.all():
            row = int(np.flatnonzero(~ok)[0])
            raise HealthLogError(f"{source}: column {column!r} = {values[row]} at row {row}; expected {expected}")
    out = features
    out.insert(0, "event_id", event_id)
    out["action"] = pd.Categorical(action_str.to_numpy(dtype=object), categories=ACTIONS)
    out["downtime_min"] = downtime
    out["interrupted"] = interrupted.astype(np.int64)
    out["cost_node_hours"] = cost
    return out


def load_health_log(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read and validate a log Parquet file; errors name the file, column and row."""
    path = Path(path)
    if not path.is_file():
        raise HealthLogError(f"{path}: no such file")
    try:
        frame = pq.read_table(path).to_pandas()
    except (pa.ArrowException, OSError, ValueError, TypeError) as err:
        raise HealthLogError(f"{path}: not a readable Parquet file ({err})") from err
    if frame.empty:
        raise HealthLogError(f"{path}: no rows (an empty log)")
    return validate_health_log(frame, source=str(path))


class HealthLogDataset:
    """Where the Deoxys task gets its data: a generated log (default) or a Parquet file.

    Args:
        n_events: logged events to generate (ignored when ``path`` is given).
        holdout_fraction: share of the log kept out of fitting, for the off-policy estimate and
            validation metrics.
        n_test_events: fresh simulated events, with ground truth, for the test metrics.
        path: an existing log Parquet file to train on instead of generating one.
        save_dir: where a generated log is written (then read back through the validating
            loader); None keeps it in memory.
    """

    def __init__(
        self,
        *,
        n_events: int = 20_000,
        holdout_fraction: float = 0.3,
        n_test_events: int = 20_000,
        path: str | None = None,
        save_dir: str | None = None,
    ) -> None:
        for key, value in (("n_events", n_events), ("n_test_events", n_test_events)):
            if isinstance(value, bool) or not isinstance(value, int | np.integer):
                raise ValueError(f"dataset.{key} must be a whole number of events, got {value!r}")
        if n_events < 100:
            raise ValueError(f"dataset.n_events must be >= 100, got {n_events}")
        if not 0.05 <= holdout_fraction <= 0.8:
            raise ValueError(f"dataset.holdout_fraction must be in [0.05, 0.8], got {holdout_fraction}")
        if n_test_events < 100:
            raise ValueError(f"dataset.n_test_events must be >= 100, got {n_test_events}")
        self.n_events = n_events
        self.holdout_fraction = holdout_fraction
        self.n_test_events = n_test_events
        self.path = path
        self.save_dir = save_dir

    def logged_events(
        self, simulator: UnhealthyNodeSimulator, rng: np.random.Generator, *, save: bool = True
    ) -> LoggedEvents:
        if self.path is not None:
            return LoggedEvents(load_health_log(self.path))
        logged = generate_health_log(simulator, self.n_events, rng)
        if save and self.save_dir is not None:
            path = write_health_log(logged.log, Path(self.save_dir) / "health_log.parquet")
            logged.log = load_health_log(path)  # round-trip through the validating loader
        return logged

    def split(self, logged: LoggedEvents, rng: np.random.Generator) -> tuple[LoggedEvents, LoggedEvents]:
        """Random split into the fitting part and the held-out part."""
        order = rng.permutation(len(logged))
        n_holdout = round(self.holdout_fraction * len(logged))
        return logged.subset(np.sort(order[n_holdout:])), logged.subset(np.sort(order[:n_holdout]))
