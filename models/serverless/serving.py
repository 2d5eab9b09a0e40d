"""The serverless keep-alive policy over HTTP: ``windows`` gives, for each idle event of a
function (a pod that just went idle), the pre-warm and keep-alive windows of the learned rule and
the predicted idle-time quantiles behind them."""

from __future__ import annotations

from typing import Any

from pydantic import Field, create_model

from infragym.envs.serverless.policies import N_LAGS
from infragym.serve.operations import FiniteFloat, Operation, StrictModel


class IdleEvent(StrictModel):
    """A pod of a function just went idle."""

    idle_times_s: list[FiniteFloat] = Field(
        default_factory=list, max_length=1000, description=f"recent idle times, most recent first (s; {N_LAGS} used)"
    )
    # bounded: the feature is a float64 (and no function has been called 2**53 times)
    invocations_so_far: int = Field(0, ge=0, le=2**53, description="invocations of the function before this one")
    trigger: str = Field("unknown", max_length=50, description="http, timer, queue, event, orchestration, ...")
    memory_mb: FiniteFloat = Field(128.0, gt=0, description="the pod's memory (MB)")
    duration_s: FiniteFloat = Field(0.0, ge=0, description="execution time of the invocation that just ended")
    end_time_s: FiniteFloat = Field(0.0, ge=0, description="when it ended (s; time of day is a feature)")


class Windows(StrictModel):
    prewarm_s: float
    keep_alive_s: float
    idle_quantiles_s: dict[str, float]


def operations(predictor: Any, manifest: dict[str, Any]) -> list[Operation]:
    request = create_model(
        "ServerlessWindowsRequest",
        __base__=StrictModel,
        events=(list[IdleEvent], Field(min_length=1, max_length=100_000)),
    )
    response = create_model("ServerlessWindowsResponse", __base__=StrictModel, windows=(list[Windows], ...))

    def windows(body: Any) -> Any:
        for event in body.events:
            if any(x < 0 for x in event.idle_times_s):
                raise ValueError("idle_times_s must be >= 0")
        rows = predictor.predict([e.model_dump() for e in body.events])
        return response(
            windows=[
                {
                    "prewarm_s": r.pop("prewarm_s"),
                    "keep_alive_s": r.pop("keep_alive_s"),
                    "idle_quantiles_s": {k.removeprefix("idle_").removesuffix("_s"): v for k, v in r.items()},
                }
                for r in rows
            ]
        )

    def example() -> dict[str, Any]:
        return {"events": [{"idle_times_s": [42.0, 61.0, 30.0], "invocations_so_far": 12, "trigger": "http"}]}

    return [
        Operation(
            "windows",
            "pre-warm and keep-alive windows for a batch of idle events",
            request,
            response,
            windows,
            example,
        )
    ]
