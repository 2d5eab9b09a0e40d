"""Reader of splitwise-sim's measured performance/power table (``data/perf_model.csv``).

Format (Mutinifni/splitwise-sim, by POLCA's first author; ../shared/data/README.md): one row per
measured run, columns ``model, hardware, prompt_size, batch_size, token_size, peak_power,
average_power, prompt_time, token_time, e2e_time, tensor_parallel``. Times are in ms
(``prompt_time``: the prefill of the whole batch; ``token_time``: the mean time per decode
iteration); ``peak_power``/``average_power`` are fractions of the GPU's TDP, and 0 where the
run did not record power (all H100 rows). Every configuration is measured several times.

The reader accepts any row the format allows (extra columns, power columns absent or 0) and
refuses only what cannot be right, naming the file, line and column.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from infragym.envs.serving.hardware import MODELS

REQUIRED = (
    "model",
    "hardware",
    "prompt_size",
    "batch_size",
    "token_size",
    "prompt_time",
    "token_time",
    "tensor_parallel",
)
CONFIG_COLUMNS = ("prompt_size", "batch_size", "token_size", "tensor_parallel")
TIME_COLUMNS = ("prompt_time", "token_time")
POWER_COLUMNS = ("peak_power", "average_power")
# A measured time above an hour (ms) or a power above twice TDP cannot be a measurement: the
# slowest run of the shared data takes ~11 s, the highest peak ~1.09 x TDP.
MAX_TIME_MS = 3_600_000.0
MAX_POWER_FRACTION = 2.0
MAX_SIZE = 2**31 - 1


class PerfDataError(ValueError):
    """A performance table that is not in splitwise-sim's format."""


@dataclass(frozen=True)
class Accelerator:
    """A GPU as splitwise-sim names it, with its power constants.

    ``idle_w``, ``prefill_w``, ``decode_w``: splitwise-sim's ``power_model_constant.yaml``
    (A100 63/400/250 W, H100 75/700/380 W); ``tdp_w``: the GPU's board TDP (A100-80GB SXM
    400 W, H100 SXM 700 W; NVIDIA datasheets), the unit of the table's power fractions;
    ``cap_w``: the GPU power cap (``sku_dgx-h100-pcap.yaml`` caps a DGX-H100 at 7,140 of
    10,200 W, 70%: 490 W per GPU); ``server_tdp_w``: the DGX's TDP (``sku_dgx-*.yaml``).
    """

    name: str
    gpu: str  # key of ``infragym.envs.serving.hardware.GPUS``
    idle_w: float
    prefill_w: float
    decode_w: float
    tdp_w: float
    server_tdp_w: float
    gpus_per_server: int = 8
    cap_w: float | None = None

    @property
    def platform_w(self) -> float:
        """The server's non-GPU share (CPUs, NICs, NVSwitches, fans) at its TDP."""
        return self.server_tdp_w - self.gpus_per_server * self.tdp_w


ACCELERATORS: dict[str, Accelerator] = {
    "a100-80gb": Accelerator("a100-80gb", "a100_80gb", 63.0, 400.0, 250.0, 400.0, 6500.0),
    "h100-80gb": Accelerator("h100-80gb", "h100", 75.0, 700.0, 380.0, 700.0, 10200.0),
    "h100-80gb-pcap": Accelerator("h100-80gb-pcap", "h100", 75.0, 700.0, 380.0, 700.0, 10200.0, cap_w=0.7 * 700.0),
}


def _fail(path: Path, row: int, column: str, message: str) -> PerfDataError:
    return PerfDataError(f"{path}: line {row + 2}, column {column!r}: {message}")


def read_perf_csv(path: str | os.PathLike[str]) -> pd.DataFrame:
    """One splitwise-format table, checked; power columns added as NaN where not measured."""
    path = Path(path)
    if not path.is_file():
        raise PerfDataError(f"{path}: no such file")
    raw = path.read_bytes()
    if not raw.strip():
        raise PerfDataError(f"{path}: empty file (expected a header with columns {list(REQUIRED)})")
    try:
        frame = pd.read_csv(io.BytesIO(raw), dtype=str, keep_default_na=False, encoding="utf-8")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as err:
        raise PerfDataError(f"{path}: not a readable UTF-8 CSV file ({err})") from err
    frame.columns = [c.strip() for c in frame.columns]
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise PerfDataError(f"{path}: missing column(s) {missing} (found {list(frame.columns)})")
    if frame.empty:
        raise PerfDataError(f"{path}: a header and no measurements")
    out = pd.DataFrame({"model": frame["model"].str.strip(), "hardware": frame["hardware"].str.strip()})
    for column, known in (("model", MODELS), ("hardware", ACCELERATORS)):
        unknown = np.flatnonzero(~out[column].isin(list(known)).to_numpy())
        if unknown.size:
            row = int(unknown[0])
            raise _fail(path, row, column, f"{out[column].iloc[row]!r} is not known; known: {sorted(known)}")
    for column in (*CONFIG_COLUMNS, *TIME_COLUMNS, *(c for c in POWER_COLUMNS if c in frame.columns)):
        values = pd.to_numeric(frame[column].str.strip(), errors="coerce").to_numpy(np.float64)
        bad = ~np.isfinite(values)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise _fail(path, row, column, f"{frame[column].iloc[row]!r} is not a number")
        if column in CONFIG_COLUMNS:
            wrong = (values < 1) | (values != np.round(values)) | (values > MAX_SIZE)
            expected = "a whole number >= 1"
        elif column in TIME_COLUMNS:
            wrong = (values <= 0) | (values > MAX_TIME_MS)
            expected = f"a positive time in ms up to {MAX_TIME_MS:g}"
        else:
            wrong = (values < 0) | (values > MAX_POWER_FRACTION)
            expected = f"a fraction of TDP in [0, {MAX_POWER_FRACTION:g}] (0: not measured)"
        if wrong.any():
            row = int(np.flatnonzero(wrong)[0])
            raise _fail(path, row, column, f"{frame[column].iloc[row]!r}; expected {expected}")
        if column in POWER_COLUMNS:
            values = np.where(values > 0, values, np.nan)  # 0: the run recorded no power
        out[column] = values.astype(np.int64) if column in CONFIG_COLUMNS else values
    for column in POWER_COLUMNS:
        if column not in out:
            out[column] = np.nan
    return out


def read_perf_tables(paths: Iterable[str | os.PathLike[str]]) -> pd.DataFrame:
    """Several tables, concatenated (a ``source`` column names each row's file)."""
    frames = []
    for path in paths:
        frame = read_perf_csv(path)
        frame["source"] = Path(path).name
        frames.append(frame)
    if not frames:
        raise PerfDataError("no performance table given")
    return pd.concat(frames, ignore_index=True)


__all__ = ["ACCELERATORS", "Accelerator", "PerfDataError", "read_perf_csv", "read_perf_tables"]
