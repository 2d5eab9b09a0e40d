"""LLM request traces: loaders of real formats and generators calibrated to them.

A ``RequestTrace`` is a struct of arrays, sorted by arrival time: arrival (s), prompt tokens,
output tokens, model index, and whether the request failed (BurstGPT logs failures as 0
response tokens). Loaders refuse malformed files with the file, line and column named;
generators draw from a ``numpy.random.Generator``.

Formats (../shared/data/README.md):
- Azure LLM inference trace 2023 (Splitwise, as processed by vidur): ``arrived_at``,
  ``num_prefill_tokens``, ``num_decode_tokens``.
- BurstGPT (HPMLL/BurstGPT): ``Timestamp``, ``Session ID`` (optional), ``Elapsed time``,
  ``Model``, ``Request tokens``, ``Response tokens``, ``Total tokens``, ``Log Type``.
- Azure LLM inference trace 2023 as published (Azure/AzurePublicDataset): ``TIMESTAMP``
  (wall clock ``YYYY-MM-DD HH:MM:SS.fffffff``, .NET's seven fractional digits), ``ContextTokens``,
  ``GeneratedTokens``.
- Length-only traces (the vAttention artifact's arXiv summarisation sample): ``num_prefill_tokens``,
  ``num_decode_tokens`` and optionally ``num_total_tokens`` and ``pd_ratio``; they carry no arrival
  times, so ``load_trace`` gives them Poisson arrivals at a chosen rate.

``load_trace(path, rate=None)`` detects the format from the header line and calls the loader of
that format.
"""

from __future__ import annotations

import io
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd


class TraceError(ValueError):
    """A trace file or array that is not a valid request trace."""


@dataclass(frozen=True)
class RequestTrace:
    arrival_s: np.ndarray  # float64, non-decreasing
    prompt_tokens: np.ndarray  # int64 >= 1
    output_tokens: np.ndarray  # int64 >= 0 (0 only for failed requests)
    model: np.ndarray  # int64 index into ``models``
    failed: np.ndarray  # bool
    models: tuple[str, ...] = ("default",)

    def __post_init__(self) -> None:
        n = len(self.arrival_s)
        for name in ("prompt_tokens", "output_tokens", "model", "failed"):
            if len(getattr(self, name)) != n:
                raise TraceError(f"{name} has {len(getattr(self, name))} entries, arrival_s has {n}")
        if n and np.any(np.diff(self.arrival_s) < 0):
            raise TraceError("arrival_s must be non-decreasing")

    def __len__(self) -> int:
        return len(self.arrival_s)

    @property
    def duration_s(self) -> float:
        return float(self.arrival_s[-1] - self.arrival_s[0]) if len(self) > 1 else 0.0

    @property
    def rate(self) -> float:
        """Mean arrival rate (requests/s)."""
        return (len(self) - 1) / self.duration_s if self.duration_s > 0 else float("nan")

    def _take(self, rows: np.ndarray | slice, arrival: np.ndarray | None = None) -> RequestTrace:
        return RequestTrace(
            arrival_s=self.arrival_s[rows] if arrival is None else arrival,
            prompt_tokens=self.prompt_tokens[rows],
            output_tokens=self.output_tokens[rows],
            model=self.model[rows],
            failed=self.failed[rows],
            models=self.models,
        )

    def scaled(self, rate_factor: float) -> RequestTrace:
        """Replay at ``rate_factor`` times the rate (inter-arrival times divided by it)."""
        if rate_factor <= 0:
            raise TraceError(f"rate_factor must be positive, got {rate_factor}")
        start = self.arrival_s[0] if len(self) else 0.0
        return self._take(slice(None), start + (self.arrival_s - start) / rate_factor)

    def window(self, start_s: float, end_s: float) -> RequestTrace:
        """The requests arriving in [start_s, end_s), re-based to start at 0."""
        if end_s <= start_s:
            raise TraceError(f"window end {end_s} must be after its start {start_s}")
        lo, hi = np.searchsorted(self.arrival_s, [start_s, end_s], side="left")
        return self._take(slice(lo, hi), self.arrival_s[lo:hi] - start_s)

    def head(self, n: int) -> RequestTrace:
        return self._take(slice(0, n))


# ---------------------------------------------------------------------- loaders
# A token count above this cannot be right: no model's context window is near it (the longest
# published ones hold 10M tokens), and counts must stay exact in float64 and int64.
MAX_TOKENS = 2**31 - 1
# BurstGPT's documented ``Log Type`` values (HPMLL/BurstGPT README).
BURSTGPT_LOG_TYPES = ("Conversation log", "API log")


def _numeric_column(
    frame: pd.DataFrame, column: str, path: Path, *, integer: bool, minimum: float, maximum: float = np.inf
) -> np.ndarray:
    values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise TraceError(f"{path}: line {row + 2}, column {column!r}: {frame[column].iloc[row]!r} is not a number")
    if integer and np.any(values != np.round(values)):
        row = int(np.flatnonzero(values != np.round(values))[0])
        raise TraceError(f"{path}: line {row + 2}, column {column!r}: {values[row]} is not a whole number")
    low = values < minimum
    if low.any():
        row = int(np.flatnonzero(low)[0])
        raise TraceError(f"{path}: line {row + 2}, column {column!r}: {values[row]} is below {minimum}")
    high = values > maximum
    if high.any():
        row = int(np.flatnonzero(high)[0])
        raise TraceError(
            f"{path}: line {row + 2}, column {column!r}: {frame[column].iloc[row]} is above {maximum:g}, "
            "which no real trace holds"
        )
    return values.astype(np.int64) if integer else values


def _read_csv(path: str | os.PathLike[str], required: tuple[str, ...]) -> tuple[pd.DataFrame, Path]:
    path = Path(path)
    if not path.is_file():
        raise TraceError(f"{path}: no such file")
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise TraceError(f"{path}: cannot read ({err})") from err
    if not raw.strip():
        raise TraceError(f"{path}: empty file (expected a header line with columns {list(required)})")
    # Producers end every line with a newline; a last line without one is a file cut mid-write
    # (a number cut short would otherwise load as a smaller, wrong value).
    if not raw.endswith((b"\n", b"\r")):
        last_line = raw.count(b"\n") + 1
        raise TraceError(
            f"{path}: line {last_line}: the file ends without a newline, as a truncated file does "
            "(a cut number would load as a wrong value); restore the full file"
        )
    try:
        frame = pd.read_csv(io.BytesIO(raw), dtype=str, keep_default_na=False, encoding="utf-8")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as err:
        raise TraceError(f"{path}: not a readable UTF-8 CSV file ({err})") from err
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise TraceError(f"{path}: missing column(s) {missing} (found {list(frame.columns)})")
    if frame.empty:
        raise TraceError(f"{path}: the header has no request lines below it (an empty trace)")
    return frame, path


def _check_monotone(times: np.ndarray, path: Path, column: str) -> None:
    backwards = np.flatnonzero(np.diff(times) < 0)
    if backwards.size:
        row = int(backwards[0]) + 1
        raise TraceError(
            f"{path}: line {row + 2}, column {column!r}: time {times[row]} is before the previous {times[row - 1]}"
        )


def load_azure_trace(path: str | os.PathLike[str]) -> RequestTrace:
    """The Azure 2023 LLM inference trace as vidur processed it."""
    frame, path = _read_csv(path, ("arrived_at", "num_prefill_tokens", "num_decode_tokens"))
    arrival = _numeric_column(frame, "arrived_at", path, integer=False, minimum=0.0)
    _check_monotone(arrival, path, "arrived_at")
    prompt = _numeric_column(frame, "num_prefill_tokens", path, integer=True, minimum=1, maximum=MAX_TOKENS)
    output = _numeric_column(frame, "num_decode_tokens", path, integer=True, minimum=0, maximum=MAX_TOKENS)
    n = len(frame)
    return RequestTrace(arrival, prompt, output, np.zeros(n, np.int64), output == 0)


BURSTGPT_COLUMNS = ("Timestamp", "Model", "Request tokens", "Response tokens", "Total tokens", "Log Type")


def load_burstgpt(path: str | os.PathLike[str]) -> RequestTrace:
    """A BurstGPT trace; a request with 0 response tokens failed."""
    frame, path = _read_csv(path, BURSTGPT_COLUMNS)
    arrival = _numeric_column(frame, "Timestamp", path, integer=False, minimum=0.0)
    _check_monotone(arrival, path, "Timestamp")
    prompt = _numeric_column(frame, "Request tokens", path, integer=True, minimum=0, maximum=MAX_TOKENS)
    output = _numeric_column(frame, "Response tokens", path, integer=True, minimum=0, maximum=MAX_TOKENS)
    total = _numeric_column(frame, "Total tokens", path, integer=True, minimum=0, maximum=2 * MAX_TOKENS)
    if "Elapsed time" in frame.columns:  # not in every release; when present, a duration (s)
        _numeric_column(frame, "Elapsed time", path, integer=False, minimum=0.0)
    model_names = frame["Model"].str.strip()
    empty = np.flatnonzero(model_names.to_numpy() == "")
    if empty.size:
        raise TraceError(f"{path}: line {int(empty[0]) + 2}, column 'Model': empty model name")
    log_type = ~frame["Log Type"].str.strip().isin(BURSTGPT_LOG_TYPES).to_numpy()
    if log_type.any():
        row = int(np.flatnonzero(log_type)[0])
        raise TraceError(
            f"{path}: line {row + 2}, column 'Log Type': {frame['Log Type'].iloc[row]!r} is not one of "
            f"{list(BURSTGPT_LOG_TYPES)}"
        )
    mismatch = np.flatnonzero(total != prompt + output)
    if mismatch.size:
        row = int(mismatch[0])
        raise TraceError(
            f"{path}: line {row + 2}, column 'Total tokens': {total[row]} != Request + Response tokens "
            f"({prompt[row]} + {output[row]})"
        )
    models = tuple(sorted(model_names.unique()))
    model = pd.Categorical(model_names, categories=models).codes.astype(np.int64)
    # A request with no prompt still occupies a prefill slot of one token.
    return RequestTrace(arrival, np.maximum(prompt, 1), output, model, output == 0, models)


# The Azure 2023 trace's TIMESTAMP: a date, a space (ISO 8601's "T" is accepted too), a time,
# and the fraction of a second .NET writes with seven digits ("2023-11-16 18:15:46.6805900");
# any 0-9 digits are accepted, a zone suffix is not (the published files carry none).
_AZURE_TIMESTAMP = re.compile(r"^(\d{4}-\d{2}-\d{2})[ T](\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?$")
AZURE_RAW_COLUMNS = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")


def _azure_seconds(frame: pd.DataFrame, path: Path) -> np.ndarray:
    """TIMESTAMP strings -> seconds since the first one, exact to the nanosecond."""
    text = frame["TIMESTAMP"].str.strip()
    parts = text.str.extract(_AZURE_TIMESTAMP)
    bad = parts[0].isna().to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise TraceError(
            f"{path}: line {row + 2}, column 'TIMESTAMP': {frame['TIMESTAMP'].iloc[row]!r} is not a timestamp "
            "like '2023-11-16 18:15:46.6805900'"
        )
    try:
        whole = (parts[0] + "T" + parts[1]).to_numpy().astype("datetime64[s]")
    except ValueError:
        # numpy names no row: find the first one that does not parse (a month 13, a hour 25)
        for row, value in enumerate(parts[0] + "T" + parts[1]):
            try:
                np.datetime64(value, "s")
            except ValueError:
                raise TraceError(
                    f"{path}: line {row + 2}, column 'TIMESTAMP': {frame['TIMESTAMP'].iloc[row]!r} is not a valid "
                    "date and time"
                ) from None
        raise
    # np.datetime64 rolls impossible days over silently in some versions: round-trip to be sure
    back = pd.Series(whole.astype(str)).str.replace("T", " ").to_numpy()
    rolled = back != (parts[0] + " " + parts[1]).to_numpy()
    if rolled.any():
        row = int(np.flatnonzero(rolled)[0])
        raise TraceError(
            f"{path}: line {row + 2}, column 'TIMESTAMP': {frame['TIMESTAMP'].iloc[row]!r} is not a valid date and time"
        )
    fraction = parts[2].fillna("").str.ljust(9, "0").replace("", "0").astype(np.int64).to_numpy()
    nanoseconds = (whole.astype(np.int64) - whole[0].astype(np.int64)) * 1_000_000_000 + fraction - fraction[0]
    return nanoseconds / 1e9


def load_azure_raw_trace(path: str | os.PathLike[str]) -> RequestTrace:
    """The Azure 2023 LLM inference trace in its published format (``TIMESTAMP,ContextTokens,
    GeneratedTokens``); arrivals are seconds since the first request, as vidur's processed files
    hold them (its ``arrived_at`` is this column minus the first timestamp)."""
    frame, path = _read_csv(path, AZURE_RAW_COLUMNS)
    arrival = _azure_seconds(frame, path)
    _check_monotone(arrival, path, "TIMESTAMP")
    prompt = _numeric_column(frame, "ContextTokens", path, integer=True, minimum=1, maximum=MAX_TOKENS)
    output = _numeric_column(frame, "GeneratedTokens", path, integer=True, minimum=0, maximum=MAX_TOKENS)
    return RequestTrace(arrival, prompt, output, np.zeros(len(frame), np.int64), output == 0)


LENGTH_ONLY_COLUMNS = ("num_prefill_tokens", "num_decode_tokens")


def load_length_only_trace(
    path: str | os.PathLike[str], *, rate: float, rng: np.random.Generator | int = 0
) -> RequestTrace:
    """A trace of request lengths without arrival times (the vAttention artifact's format:
    ``num_prefill_tokens,num_decode_tokens[,num_total_tokens,pd_ratio]``, counts written as
    floats such as ``7564.0``), given Poisson arrivals at ``rate`` requests/s in file order."""
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not np.isfinite(rate) or rate <= 0:
        raise TraceError(f"{path}: a length-only trace needs a positive arrival rate (rate=...), got {rate!r}")
    frame, path = _read_csv(path, LENGTH_ONLY_COLUMNS)
    prompt = _numeric_column(frame, "num_prefill_tokens", path, integer=True, minimum=1, maximum=MAX_TOKENS)
    output = _numeric_column(frame, "num_decode_tokens", path, integer=True, minimum=0, maximum=MAX_TOKENS)
    if "num_total_tokens" in frame.columns:
        total = _numeric_column(frame, "num_total_tokens", path, integer=True, minimum=0, maximum=2 * MAX_TOKENS)
        mismatch = np.flatnonzero(total != prompt + output)
        if mismatch.size:
            row = int(mismatch[0])
            raise TraceError(
                f"{path}: line {row + 2}, column 'num_total_tokens': {total[row]} != num_prefill_tokens + "
                f"num_decode_tokens ({prompt[row]} + {output[row]})"
            )
    if "pd_ratio" in frame.columns:
        ratio = _numeric_column(frame, "pd_ratio", path, integer=False, minimum=0.0)
        expected = prompt / np.maximum(output, 1)
        wrong = np.flatnonzero((output > 0) & ~np.isclose(ratio, expected, rtol=1e-6))
        if wrong.size:
            row = int(wrong[0])
            raise TraceError(
                f"{path}: line {row + 2}, column 'pd_ratio': {ratio[row]} != num_prefill_tokens / num_decode_tokens "
                f"({expected[row]:.6g})"
            )
    rng = np.random.default_rng(rng) if not isinstance(rng, np.random.Generator) else rng
    gaps = rng.exponential(1.0 / rate, len(frame))
    arrival = np.cumsum(gaps) - gaps[0]
    return RequestTrace(arrival, prompt, output, np.zeros(len(frame), np.int64), output == 0)


def _header(path: Path) -> list[str]:
    if not path.is_file():
        raise TraceError(f"{path}: no such file")
    try:
        with path.open("rb") as handle:
            first = handle.readline()
    except OSError as err:
        raise TraceError(f"{path}: cannot read ({err})") from err
    try:
        line = first.decode("utf-8-sig").strip()
    except UnicodeDecodeError as err:
        raise TraceError(f"{path}: line 1: the header is not UTF-8 text ({err})") from err
    return [c.strip().strip('"') for c in line.split(",")]


TRACE_FORMATS = {
    "azure_vidur": ("arrived_at", "num_prefill_tokens", "num_decode_tokens"),
    "azure_raw": AZURE_RAW_COLUMNS,
    "burstgpt": BURSTGPT_COLUMNS,
    "length_only": LENGTH_ONLY_COLUMNS,
}


def detect_trace_format(path: str | os.PathLike[str]) -> str:
    """The format of a trace file, from the columns of its header line (a key of TRACE_FORMATS)."""
    path = Path(path)
    columns = set(_header(path))
    for name, required in TRACE_FORMATS.items():
        if set(required) <= columns:
            return name
    raise TraceError(
        f"{path}: line 1: the header {sorted(columns)} matches no supported trace format; expected the columns of "
        + "; ".join(f"{name} {list(cols)}" for name, cols in TRACE_FORMATS.items())
    )


def load_trace(
    path: str | os.PathLike[str], rate: float | None = None, *, rng: np.random.Generator | int = 0
) -> RequestTrace:
    """Read any supported trace (vidur-processed Azure, raw Azure 2023, BurstGPT, length-only),
    detecting the format from the header.

    Args:
        path: the CSV file.
        rate: arrival rate (requests/s) given to a length-only trace (Poisson arrivals); for a
            trace with arrival times, the trace is replayed scaled to this mean rate when given.
        rng: seed or generator of the Poisson arrivals of a length-only trace.
    """
    fmt = detect_trace_format(path)
    if fmt == "length_only":
        if rate is None:
            raise TraceError(f"{path}: a length-only trace has no arrival times; pass rate= (requests/s)")
        return load_length_only_trace(path, rate=rate, rng=rng)
    loader = {"azure_vidur": load_azure_trace, "azure_raw": load_azure_raw_trace, "burstgpt": load_burstgpt}[fmt]
    trace = loader(path)
    if rate is not None:
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not np.isfinite(rate) or rate <= 0:
            raise TraceError(f"{path}: rate must be a positive number of requests/s, got {rate!r}")
        if not np.isfinite(trace.rate):
            raise TraceError(f"{path}: the trace spans no time, so it cannot be rescaled to rate={rate}")
        trace = trace.scaled(rate / trace.rate)
    return trace


# ---------------------------------------------------------------------- generators
def _zipf_capped(rng: np.random.Generator, a: float, cap: int, size: int) -> np.ndarray:
    """Zipf(a) lengths resampled until <= cap (the BurstGPT generator's rule)."""
    out = rng.zipf(a, size)
    over = out > cap
    while over.any():
        out[over] = rng.zipf(a, int(over.sum()))
        over = out > cap
    return out.astype(np.int64)


def burstgpt_like(
    n: int,
    rng: np.random.Generator,
    *,
    rate: float = 5.0,
    gamma_shape: float = 0.4,
    zipf_a: float = 1.1,
    prompt_cap: int = 4096,
    output_cap: int = 2048,
    models: tuple[str, ...] = ("ChatGPT", "GPT-4"),
    model_mix: tuple[float, ...] = (0.8, 0.2),
    failure_fraction: float = 0.03,
) -> RequestTrace:
    """BurstGPT-like workload (BurstGPT, KDD'25): Gamma inter-arrivals rescaled to ``rate``
    (shape 0.25-0.5 is bursty), Zipf(1.1) lengths resampled below caps, a model mix and a
    failure fraction (1.8-7.3% in the real trace; failed requests produce no tokens)."""
    if n <= 0 or rate <= 0 or gamma_shape <= 0:
        raise TraceError("n, rate and gamma_shape must be positive")
    if len(models) != len(model_mix) or not np.isclose(sum(model_mix), 1.0):
        raise TraceError("model_mix must have one probability per model, summing to 1")
    if not 0 <= failure_fraction < 1:
        raise TraceError(f"failure_fraction must be in [0, 1), got {failure_fraction}")
    gaps = rng.gamma(gamma_shape, 1.0 / (gamma_shape * rate), n)
    arrival = np.cumsum(gaps) - gaps[0]
    prompt = _zipf_capped(rng, zipf_a, prompt_cap, n)
    output = _zipf_capped(rng, zipf_a, output_cap, n)
    failed = rng.random(n) < failure_fraction
    output[failed] = 0
    model = rng.choice(len(models), size=n, p=np.asarray(model_mix))
    return RequestTrace(arrival, prompt, output, model.astype(np.int64), failed, tuple(models))


def poisson_trace(
    n: int,
    rng: np.random.Generator,
    *,
    rate: float,
    prompt_mean: float = 1155.0,
    output_mean: float = 211.0,
    sigma: float = 0.8,
) -> RequestTrace:
    """Poisson arrivals with log-normal lengths; defaults match the Azure conversation trace's
    means (prefill 1,155, decode 211 tokens; PAPERS.md)."""
    if n <= 0 or rate <= 0:
        raise TraceError("n and rate must be positive")
    gaps = rng.exponential(1.0 / rate, n)
    arrival = np.cumsum(gaps) - gaps[0]

    def lengths(mean: float) -> np.ndarray:
        return np.maximum(1, np.round(rng.lognormal(np.log(mean) - sigma**2 / 2, sigma, n))).astype(np.int64)

    return RequestTrace(arrival, lengths(prompt_mean), lengths(output_mean), np.zeros(n, np.int64), np.zeros(n, bool))


def diurnal(
    trace: RequestTrace, *, period_s: float = 86_400.0, amplitude: float = 0.5, phase_s: float = 0.0
) -> RequestTrace:
    """Modulate a trace's rate by 1 + amplitude x sin(2 pi (t + phase) / period) by warping time:
    the instantaneous rate is multiplied by that factor, and the mean rate is kept."""
    if not 0 <= amplitude < 1:
        raise TraceError(f"amplitude must be in [0, 1), got {amplitude}")
    if period_s <= 0:
        raise TraceError("period_s must be positive")
    omega = 2 * np.pi / period_s
    # Find warped times u with Lambda(u) = t, Lambda(u) = u - A/omega (cos(w(u+phi)) - cos(w phi)),
    # whose derivative 1 + A sin(w(u+phi)) is the rate factor; Newton steps from u = t.
    t = trace.arrival_s.astype(np.float64)
    u = t.copy()
    for _ in range(30):
        value = u - amplitude / omega * (np.cos(omega * (u + phase_s)) - np.cos(omega * phase_s)) - t
        u -= value / (1.0 + amplitude * np.sin(omega * (u + phase_s)))
    return trace._take(slice(None), np.maximum.accumulate(u))


from infragym.datasets.twin_report import twin_report  # noqa: E402,F401  (workload twins)
from infragym.datasets.workload_twin import WorkloadModel, fit_workload  # noqa: E402,F401
