"""What a component offers over HTTP: named operations with request and response models.

A component declares ``serving="module:callable"`` in its registry record; the callable takes a
loaded predictor and its verified manifest and returns the component's :class:`Operation` list.
Request models are pydantic models built from the export's own schema (categories, window size,
metric names), so the service validates a body against the model it is about to call, and the
OpenAPI page lists every model's request and response.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

# Finite numbers only: JSON has no NaN, but Python's parser reads NaN/Infinity tokens.
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]


class StrictModel(BaseModel):
    """Base of request and response bodies: unknown fields are refused, not ignored."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class RequestError(ValueError):
    """A request that passed schema validation but cannot be served (answered with 422)."""


@dataclass(frozen=True)
class Operation:
    """One endpoint of a served model: ``POST /v1/models/{model}/{name}``.

    ``handle(request)`` runs in a worker thread (inference never blocks the event loop) and
    returns the response model; it raises :class:`RequestError` (or ``ValueError``) for input
    the schema could not rule out, which the service answers with 422 and the message.
    """

    name: str
    summary: str
    request: type[BaseModel]
    response: type[BaseModel]
    handle: Callable[[Any], BaseModel]
    # An example body for the docs and the load test (a small, valid request).
    example: Callable[[], dict[str, Any]] | None = None
    # A faster reader of the raw body for the usual form of a large request: returns what
    # ``handle`` takes, or None for anything else, which ``request`` then validates (and names
    # the problem). It must accept only bodies that ``request`` accepts, with the same meaning.
    decode: Callable[[bytes], Any] | None = None
