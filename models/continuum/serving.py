"""Continuum over HTTP: ``predict`` gives each tool call's duration quantiles and mean; ``ttl``
gives how long to keep the program's KV cache pinned during the call (the paper's rule with the
exported predictor and eta), from each call's reload cost and queueing delay."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, create_model

from infragym.serve.operations import FiniteFloat, Operation, StrictModel


class ToolCall(StrictModel):
    """A tool call of an agent program, as the predictors take it."""

    tool: str = Field(min_length=1, max_length=200, description="tool name, e.g. bash, str_replace_editor")
    arguments: str = Field("", max_length=100_000, description="argument text (a shell command for bash)")
    turn: int | None = Field(None, ge=0, description="index of the LLM call in its program")
    context_tokens: int | None = Field(None, ge=0, description="tokens in the program's context")
    prev_duration_s: FiniteFloat | None = Field(None, ge=0, description="the program's previous tool duration")
    prog_mean_duration_s: FiniteFloat | None = Field(None, ge=0, description="mean of its earlier durations")
    prev_same_tool_s: FiniteFloat | None = Field(None, ge=0, description="its previous duration of this tool")


class TTLCall(ToolCall):
    """A tool call with what pinning its KV cache would save."""

    reload_s: FiniteFloat = Field(ge=0, description="seconds to reload (recompute or swap in) the KV cache")
    queue_delay_s: FiniteFloat = Field(0.0, ge=0, description="expected queueing delay of the next turn")


class Prediction(StrictModel):
    quantiles: dict[str, float]
    mean: float


def _records(calls: list[ToolCall]) -> list[dict[str, Any]]:
    fields = tuple(ToolCall.model_fields)
    return [{k: v for k, v in call.model_dump(include=set(fields)).items() if v is not None} for call in calls]


def operations(predictor: Any, manifest: dict[str, Any]) -> list[Operation]:
    names = tuple(predictor.predictors)
    predict_request = create_model(
        "ContinuumPredictRequest",
        __base__=StrictModel,
        tool_calls=(list[ToolCall], Field(min_length=1, max_length=100_000)),
        predictor=(Literal[names] | None, Field(None, description=f"default: the selected one, {predictor.best}")),
    )
    predict_response = create_model(
        "ContinuumPredictResponse", __base__=StrictModel, predictions=(list[Prediction], ...)
    )
    ttl_request = create_model(
        "ContinuumTTLRequest", __base__=StrictModel, tool_calls=(list[TTLCall], Field(min_length=1, max_length=100_000))
    )
    ttl_response = create_model(
        "ContinuumTTLResponse",
        __base__=StrictModel,
        ttl_s=(list[float], Field(description="seconds to keep each call's KV cache pinned (0: evict now)")),
    )

    def predict(body: Any) -> Any:
        # the predictor's arrays directly: the same numbers as ContinuumPredictor.predict's frame
        model = predictor.predictors[body.predictor or predictor.best]
        quantiles, means, _ = model.distribution(_records(body.tool_calls))
        keys = [f"q{level:g}" for level in model.levels]
        return predict_response(
            predictions=[
                {"quantiles": dict(zip(keys, map(float, row), strict=True)), "mean": float(mean)}
                for row, mean in zip(quantiles, means, strict=True)
            ]
        )

    def ttl(body: Any) -> Any:
        calls = body.tool_calls
        values = predictor.ttl(
            _records(calls), reload_s=[c.reload_s for c in calls], queue_delay_s=[c.queue_delay_s for c in calls]
        )
        return ttl_response(ttl_s=[float(v) for v in values])

    def predict_example() -> dict[str, Any]:
        return {"tool_calls": [{"tool": "bash", "arguments": "pytest -x tests/test_api.py", "turn": 3}]}

    def ttl_example() -> dict[str, Any]:
        return {"tool_calls": [{"tool": "bash", "arguments": "ls", "turn": 3, "reload_s": 2.0, "queue_delay_s": 0.5}]}

    return [
        Operation(
            "predict",
            "tool-duration quantiles for a batch of tool calls",
            predict_request,
            predict_response,
            predict,
            predict_example,
        ),
        Operation(
            "ttl", "KV-cache time-to-live for a batch of tool calls", ttl_request, ttl_response, ttl, ttl_example
        ),
    ]
