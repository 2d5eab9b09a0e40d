"""Deoxys over HTTP: ``predict`` takes a batch of unhealthy-node events and returns the mitigation
decision for each (action, the model's own action, the legacy one, whether the fallback fired,
predicted effects and the objective interval). The event model is built from the export's input
schema, so an unknown category or a missing feature is refused by name."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field, create_model

from infragym.envs.health.features import encode_feature_columns, validate_feature_records
from infragym.envs.health.simulator import ACTIONS, CATEGORICAL_FEATURES, legacy_rule_arrays
from infragym.models.deoxys.recommender import ACTION_COLUMNS, action_indices
from infragym.serve.operations import FiniteFloat, Operation, StrictModel


def event_model(input_schema: dict[str, Any]) -> type[StrictModel]:
    """One event: every feature column of the export (categories as literals, numbers finite)."""
    fields: dict[str, Any] = {}
    for column, spec in input_schema["columns"].items():
        if spec.get("dtype") == "category":
            fields[column] = (Literal[tuple(spec["categories"])], ...)
        else:
            fields[column] = (FiniteFloat, ...)
    for column, spec in (input_schema.get("optional") or {}).items():
        fields[column] = (Literal[tuple(spec["categories"])] | None, None)
    return create_model("DeoxysEvent", __base__=StrictModel, **fields)


def operations(predictor: Any, manifest: dict[str, Any]) -> list[Operation]:
    # requests are small and answered concurrently by the service's thread pool
    predictor.model.set_prediction_jobs(1)
    event = event_model(manifest["input_schema"])
    actions = tuple(manifest["output_schema"]["columns"]["action"])
    action_type = Literal[actions]
    effects = [c for c in manifest["output_schema"]["columns"] if c.startswith("effect_")]
    decision = create_model(
        "DeoxysDecision",
        __base__=StrictModel,
        action=(action_type, ...),
        model_action=(action_type, ...),
        legacy_action=(action_type, ...),
        fallback=(bool, ...),
        overridden=(bool, ...),
        objective_change_lower=(float, ...),
        objective_change_upper=(float, ...),
        **{name: (float, ...) for name in effects},
    )
    request = create_model(
        "DeoxysPredictRequest",
        __base__=StrictModel,
        events=(list[event], Field(min_length=1, max_length=100_000)),  # type: ignore[valid-type]
        fallback=(bool | None, Field(None, description="override the export's fallback setting")),
    )
    response = create_model("DeoxysPredictResponse", __base__=StrictModel, decisions=(list[decision], ...))  # type: ignore[valid-type]

    model = predictor.model
    signals = np.asarray(CATEGORICAL_FEATURES["fault_signal"])

    def predict(body: Any) -> Any:
        # Arrays all the way: the same checks (validate_feature_records), encoding and decision
        # as DeoxysPredictor.predict, without its data frames (most of a one-event answer's cost).
        records = [event.__dict__ for event in body.events]
        columns = validate_feature_records(records, source="events")
        given = [r.get("legacy_action") for r in records]
        if any(g is None for g in given):
            if not all(g is None for g in given):
                raise ValueError("events: give legacy_action for every event or for none")
            legacy = legacy_rule_arrays(
                signals[columns["fault_signal"]],
                columns["heartbeat_lost"],
                columns["error_count_1h"],
                columns["error_count_24h"],
                columns["live_migratable_share"],
            )
        else:
            legacy = action_indices(given)
        outputs = model.decide_encoded(encode_feature_columns(columns), legacy, fallback=body.fallback).outputs()
        names = np.asarray(ACTIONS, dtype=object)
        values = {k: (names[v] if k in ACTION_COLUMNS else v).tolist() for k, v in outputs.items()}
        keys = tuple(values)
        return response(decisions=[dict(zip(keys, row, strict=True)) for row in zip(*values.values(), strict=True)])

    def example() -> dict[str, Any]:
        row: dict[str, Any] = {}
        for column, spec in manifest["input_schema"]["columns"].items():
            row[column] = spec["categories"][0] if spec.get("dtype") == "category" else 1.0
        return {"events": [row]}

    return [
        Operation("predict", "mitigation decisions for a batch of node events", request, response, predict, example)
    ]
