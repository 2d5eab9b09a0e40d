"""Event features: validation of a feature table and its fixed numeric encoding.

The encoding (one-hot categoricals in a fixed category order, then the numeric columns) is
shared by the gymnasium env's observations, the learners and the export's input schema, so a
model trained on one is served on the other without drift.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from infragym.envs.health.simulator import CATEGORICAL_FEATURES, NUMERIC_FEATURES

INTEGER_FEATURES = frozenset(
    {"heartbeat_lost", "error_count_1h", "error_count_24h", "prior_incidents_30d", "num_vms", "hour_of_day"}
)
# Bounds checked on input (inclusive). Upper bounds are plausibility limits, far beyond any
# real fleet, so that a corrupt value (1e300, a wrapped counter) is refused rather than fitted:
# servers are retired within ~7 years (30 allowed); 10^6 errors an hour is ~280 a second, beyond
# what any node's log rate limit lets through; a server hosts at most a few hundred VMs
# (1,024 allowed) of at most ~900 vCPUs (the largest cloud VM sizes; 1,024 allowed).
FEATURE_BOUNDS: dict[str, tuple[float | None, float | None]] = {
    "node_age_days": (0.0, 30 * 365.0),
    "heartbeat_lost": (0, 1),
    "error_count_1h": (0, 1_000_000),
    "error_count_24h": (0, 24_000_000),
    "prior_incidents_30d": (0, 30 * 24 * 60),  # one a minute
    "num_vms": (0, 1024),
    "live_migratable_share": (0.0, 1.0),
    "mean_vm_cores": (0.0, 1024.0),
    "large_vm_share": (0.0, 1.0),
    "cpu_utilisation": (0.0, 1.0),
    "memory_utilisation": (0.0, 1.0),
    "cluster_free_capacity": (0.0, 1.0),
    "hour_of_day": (0, 23),
}
# Typical magnitudes, so that encoded observations are O(1) for neural policies.
FEATURE_SCALE: dict[str, float] = {
    "node_age_days": 1000.0,
    "error_count_1h": 10.0,
    "error_count_24h": 20.0,
    "prior_incidents_30d": 5.0,
    "num_vms": 10.0,
    "mean_vm_cores": 16.0,
    "hour_of_day": 24.0,
}


# The canonical dtype of each categorical column, built once (building one validates its categories).
_CATEGORY_DTYPES = {c: pd.CategoricalDtype(list(v)) for c, v in CATEGORICAL_FEATURES.items()}


def _canonical(values: pd.Series, column: str) -> bool:
    """Whether ``values`` is already categorical with exactly this column's categories, in order
    (an unordered dtype's ``==`` ignores the order, which would scramble the codes)."""
    dtype, target = values.dtype, _CATEGORY_DTYPES[column]
    return isinstance(dtype, pd.CategoricalDtype) and not dtype.ordered and dtype.categories.equals(target.categories)


_CATEGORY_CODES = {c: {category: i for i, category in enumerate(v)} for c, v in CATEGORICAL_FEATURES.items()}


def _codes(column: str, strings: np.ndarray) -> np.ndarray:
    """Category codes of non-null strings, -1 where unknown. A few rows: a dict look-up each
    (pandas' indexer costs more to set up than that); more: pandas'."""
    if len(strings) <= 64:
        lookup = _CATEGORY_CODES[column]
        return np.array([lookup.get(s, -1) for s in strings], dtype=np.intp)
    return _CATEGORY_DTYPES[column].categories.get_indexer(strings)


class FeatureError(ValueError):
    """A feature table with a missing column, a wrong type or an invalid value."""


def encoded_feature_names() -> list[str]:
    names = [f"{col}={cat}" for col, cats in CATEGORICAL_FEATURES.items() for cat in cats]
    return names + list(NUMERIC_FEATURES)


def _first_bad_row(index: Sequence[object], mask: np.ndarray) -> object:
    return index[np.flatnonzero(mask)[0]]


def validate_features(frame: pd.DataFrame, source: str = "features", *, strict_dtypes: bool = False) -> pd.DataFrame:
    """Check columns, dtypes, NaN and ranges; return a copy with canonical dtypes.

    Errors name ``source`` (a file or "features"), the column and the first offending row.
    ``strict_dtypes`` (files): count columns must have an integer dtype; otherwise (a service's
    data frames) whole-valued floats are accepted for them.
    """
    if not isinstance(frame, pd.DataFrame):
        raise FeatureError(f"{source}: expected a pandas DataFrame, got {type(frame).__name__}")
    missing = [c for c in (*CATEGORICAL_FEATURES, *NUMERIC_FEATURES) if c not in frame.columns]
    if missing:
        raise FeatureError(f"{source}: missing column(s) {missing}")
    # Columns are collected and the frame built once: inserting them one by one into a frame
    # costs more than the checks for a service's one-event frames.
    out: dict[str, object] = {}
    for column, categories in CATEGORICAL_FEATURES.items():
        values = frame[column]
        if not (
            isinstance(values.dtype, pd.CategoricalDtype)
            or pd.api.types.is_string_dtype(values.dtype)
            or values.dtype == object
        ):
            raise FeatureError(f"{source}: column {column!r} must hold strings, got dtype {values.dtype}")
        dtype = _CATEGORY_DTYPES[column]
        if _canonical(values, column):  # a validated frame: its codes are ours
            codes = values.array.codes.copy()
            null = codes < 0
            as_str = None
        else:
            # a string column already holds the strings astype("string") would make (a service's
            # one-event frames): skip the conversion
            as_str = values if isinstance(values.dtype, pd.StringDtype) else values.astype("string")
            null = as_str.isna().to_numpy()
        if null.any():
            raise FeatureError(f"{source}: column {column!r} is null at row {_first_bad_row(frame.index, null)}")
        if as_str is not None:
            codes = _codes(column, as_str.to_numpy(dtype=object))
        unknown = codes < 0
        if unknown.any():
            row = _first_bad_row(frame.index, unknown)
            raise FeatureError(
                f"{source}: column {column!r} has unknown value {as_str.loc[row]!r} at row {row} "
                f"(expected one of {list(categories)})"
            )
        out[column] = pd.Categorical.from_codes(codes, dtype=dtype)
    for column in NUMERIC_FEATURES:
        values = frame[column]
        if values.dtype == bool:
            values = values.astype(np.int64)
        if not pd.api.types.is_numeric_dtype(values.dtype):
            raise FeatureError(f"{source}: column {column!r} must be numeric, got dtype {values.dtype}")
        if strict_dtypes and column in INTEGER_FEATURES and not pd.api.types.is_integer_dtype(values.dtype):
            raise FeatureError(f"{source}: column {column!r} must be an integer column, got dtype {values.dtype}")
        out[column] = _checked_numeric(column, values.to_numpy(dtype=np.float64), source, frame.index, values.loc)
    return pd.DataFrame(out, index=frame.index)


def encode_features(frame: pd.DataFrame, *, scaled: bool = False) -> np.ndarray:
    """Encode a validated feature table as a float matrix in ``encoded_feature_names()`` order."""
    columns: dict[str, np.ndarray] = {}
    for column, categories in CATEGORICAL_FEATURES.items():
        values = frame[column]
        if _canonical(values, column):
            columns[column] = values.array.codes  # validated: no re-coding (a service encodes one event at a time)
        else:
            columns[column] = pd.Categorical(values, categories=categories).codes
    # column by column: selecting a sub-frame costs more than the copies for a few rows
    for column in NUMERIC_FEATURES:
        columns[column] = frame[column].to_numpy(dtype=np.float64)
    return encode_feature_columns(columns, scaled=scaled)


def _checked_numeric(column: str, array: np.ndarray, source: str, rows: Sequence[object], given: Any) -> np.ndarray:
    """A numeric feature column checked (finite, within FEATURE_BOUNDS, whole where it counts);
    returned as int64 for the integer features. ``rows`` labels the rows in messages and
    ``given[row]`` is the value as the caller gave it."""
    bad = ~np.isfinite(array)
    if bad.any():
        raise FeatureError(f"{source}: column {column!r} is NaN or infinite at row {_first_bad_row(rows, bad)}")
    low, high = FEATURE_BOUNDS[column]
    out_of_range = np.zeros(len(array), dtype=bool)
    if low is not None:
        out_of_range |= array < low
    if high is not None:
        out_of_range |= array > high
    if out_of_range.any():
        row = _first_bad_row(rows, out_of_range)
        raise FeatureError(f"{source}: column {column!r} = {given[row]} at row {row} is outside [{low}, {high}]")
    if column in INTEGER_FEATURES:
        if not np.all(array == np.round(array)):
            row = _first_bad_row(rows, array != np.round(array))
            raise FeatureError(f"{source}: column {column!r} must be whole numbers (row {row})")
        return array.astype(np.int64)
    return array


def validate_feature_records(records: Sequence[Mapping[str, Any]], source: str = "events") -> dict[str, np.ndarray]:
    """:func:`validate_features` for a list of records (a service's JSON events), without
    building a data frame: the same checks, rows named by position. Returns each feature column
    as an array: categories as codes into ``CATEGORICAL_FEATURES[column]``, integer features as
    int64, the others as float64 (what :func:`encode_feature_columns` takes)."""
    if not records:
        raise FeatureError(f"{source}: no events")
    missing = [c for c in (*CATEGORICAL_FEATURES, *NUMERIC_FEATURES) if any(c not in r for r in records)]
    if missing:
        raise FeatureError(f"{source}: missing column(s) {missing}")
    rows = range(len(records))
    out: dict[str, np.ndarray] = {}
    for column, categories in CATEGORICAL_FEATURES.items():
        lookup = _CATEGORY_CODES[column]
        values = [r[column] for r in records]
        codes = np.array([lookup.get(v, -1) if isinstance(v, str) else -1 for v in values], dtype=np.intp)
        unknown = codes < 0
        if unknown.any():
            row = _first_bad_row(rows, unknown)
            raise FeatureError(
                f"{source}: column {column!r} has unknown value {values[row]!r} at row {row} "
                f"(expected one of {list(categories)})"
            )
        out[column] = codes
    for column in NUMERIC_FEATURES:
        values = [r[column] for r in records]
        if not all(isinstance(v, int | float) for v in values):
            row = next(i for i, v in enumerate(values) if not isinstance(v, int | float))
            raise FeatureError(f"{source}: column {column!r} must be numeric (row {row}: {values[row]!r})")
        out[column] = _checked_numeric(column, np.asarray(values, dtype=np.float64), source, rows, values)
    return out


def encode_feature_columns(columns: Mapping[str, np.ndarray], *, scaled: bool = False) -> np.ndarray:
    """The encoding of :func:`encode_features` from validated columns (categories as codes)."""
    blocks = [np.eye(len(categories))[columns[column]] for column, categories in CATEGORICAL_FEATURES.items()]
    numeric = np.column_stack([np.asarray(columns[c], dtype=np.float64) for c in NUMERIC_FEATURES])
    if scaled:
        numeric = numeric / np.array([FEATURE_SCALE.get(c, 1.0) for c in NUMERIC_FEATURES])
    blocks.append(numeric)
    return np.concatenate(blocks, axis=1)
