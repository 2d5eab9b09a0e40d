"""CloudFormer over HTTP: ``predict`` takes a batch of raw telemetry windows (seconds x metrics,
the export's window and metric order) and returns P = performance / isolated performance for each.
The window's shape comes from the export's schema; a window of another shape is refused by name."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field, create_model, field_validator

from infragym.serve.operations import FiniteFloat, Operation, StrictModel


def operations(predictor: Any, manifest: dict[str, Any]) -> list[Operation]:
    schema = manifest["input_schema"]
    window, n_metrics = int(schema["window"]), int(schema["n_metrics"])

    def check_shape(cls: Any, windows: list[list[list[float]]]) -> list[list[list[float]]]:
        for w, rows in enumerate(windows):
            if len(rows) != window:
                raise ValueError(f"window {w} has {len(rows)} seconds, the model takes {window}")
            for t, row in enumerate(rows):
                if len(row) != n_metrics:
                    raise ValueError(f"window {w}, second {t} has {len(row)} metrics, the model takes {n_metrics}")
        return windows

    request = create_model(
        "CloudFormerPredictRequest",
        __base__=StrictModel,
        __validators__={"shape": field_validator("windows")(check_shape)},
        windows=(
            list[list[list[FiniteFloat]]],
            Field(
                min_length=1,
                max_length=4096,
                description=f"raw telemetry windows of {window} s x {n_metrics} metrics, in the order of "
                "GET /v1/models/{name} input_schema.metric_names",
            ),
        ),
    )
    response = create_model(
        "CloudFormerPredictResponse",
        __base__=StrictModel,
        p=(list[float], Field(description="P = performance / isolated performance, in (0, 1), per window")),
    )

    def predict(body: Any) -> Any:
        values = predictor.predict(np.asarray(body.windows, dtype=np.float32))
        return response(p=[float(v) for v in values])

    def example() -> dict[str, Any]:
        return {"windows": [[[1.0] * n_metrics for _ in range(window)]]}

    return [
        Operation("predict", "interference P for a batch of telemetry windows", request, response, predict, example)
    ]
