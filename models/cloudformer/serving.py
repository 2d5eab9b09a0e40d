"""CloudFormer over HTTP: ``predict`` takes raw metrics (seconds x metrics, the export's metric
order) and returns P = PM_ideal / PM_actual for each item. Two forms, exactly one per request:

- ``executions``: whole executions of any length T_i >= 1 (the paper's per-execution task);
- ``windows``: fixed windows of the export's ``input_schema.window`` seconds (a live monitor's
  last seconds, each read as a short execution); another length is refused by name.

A ``windows`` body of finite numbers of the right shape is read straight from its bytes into one
array (``decode``: msgspec, then numpy's checks); any other body goes through the request model,
which names what is wrong. One 30 s x 206-metric window is 6,180 numbers: as pydantic-validated
Python floats it cost about as much CPU as the network itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec
import numpy as np
from pydantic import Field, create_model, field_validator, model_validator

from infragym.serve.operations import FiniteFloat, Operation, StrictModel

Matrix = list[list[FiniteFloat]]


class _TypedWindows(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    windows: list[list[list[float]]]


@dataclass(frozen=True)
class WindowsArray:
    """A ``windows`` request read by ``decode``: (n, window, metrics) float32."""

    windows: np.ndarray


_WINDOWS_DECODER = msgspec.json.Decoder(_TypedWindows)


def operations(predictor: Any, manifest: dict[str, Any]) -> list[Operation]:
    schema = manifest["input_schema"]
    window, n_metrics = int(schema["window"]), int(schema["n_metrics"])

    def check_rows(kind: str, items: list[Matrix], seconds: int | None) -> None:
        for w, rows in enumerate(items):
            if seconds is not None and len(rows) != seconds:
                raise ValueError(f"{kind} {w} has {len(rows)} seconds, the model takes {seconds}")
            if not rows:
                raise ValueError(f"{kind} {w} has no seconds (at least 1)")
            for t, row in enumerate(rows):
                if len(row) != n_metrics:
                    raise ValueError(f"{kind} {w}, second {t} has {len(row)} metrics, the model takes {n_metrics}")

    def check_windows(cls: Any, windows: list[Matrix] | None) -> list[Matrix] | None:
        if windows is not None:
            check_rows("window", windows, window)
        return windows

    def check_executions(cls: Any, executions: list[Matrix] | None) -> list[Matrix] | None:
        if executions is not None:
            check_rows("execution", executions, None)
        return executions

    def one_form(self: Any) -> Any:
        if (self.windows is None) == (self.executions is None):
            raise ValueError("give exactly one of 'windows' (fixed length) and 'executions' (any length)")
        return self

    request = create_model(
        "CloudFormerPredictRequest",
        __base__=StrictModel,
        __validators__={
            "windows_shape": field_validator("windows")(check_windows),
            "executions_shape": field_validator("executions")(check_executions),
            "one_form": model_validator(mode="after")(one_form),
        },
        windows=(
            list[Matrix] | None,
            Field(
                default=None,
                min_length=1,
                max_length=4096,
                description=f"raw metric windows of {window} s x {n_metrics} metrics, in the order of "
                "GET /v1/models/{name} input_schema.metric_names",
            ),
        ),
        executions=(
            list[Matrix] | None,
            Field(
                default=None,
                min_length=1,
                max_length=4096,
                description=f"raw executions of any number of seconds x {n_metrics} metrics (one P each)",
            ),
        ),
    )
    response = create_model(
        "CloudFormerPredictResponse",
        __base__=StrictModel,
        p=(list[float], Field(description="P = PM_ideal / PM_actual, in (0, 1), per window or execution")),
    )

    def decode(raw: bytes) -> WindowsArray | None:
        """The usual ``windows`` body, or None for anything else (the request model reads it)."""
        try:
            windows = np.asarray(_WINDOWS_DECODER.decode(raw).windows, dtype=np.float64)
        except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError, ValueError):
            return None  # ValueError: ragged lists
        if windows.ndim != 3 or windows.shape[1:] != (window, n_metrics) or not 1 <= len(windows) <= 4096:
            return None
        if not np.isfinite(windows).all():
            return None
        return WindowsArray(windows.astype(np.float32))

    def predict(body: Any) -> Any:
        if isinstance(body, WindowsArray):
            values = predictor.predict(body.windows)
        elif body.windows is not None:
            values = predictor.predict(np.asarray(body.windows, dtype=np.float32))
        else:
            values = predictor.predict([np.asarray(e, dtype=np.float32) for e in body.executions])
        return response(p=[float(v) for v in values])

    def example() -> dict[str, Any]:
        return {"windows": [[[1.0] * n_metrics for _ in range(window)]]}

    return [
        Operation(
            "predict",
            "interference P for telemetry windows or whole executions",
            request,
            response,
            predict,
            example,
            decode=decode,
        )
    ]
