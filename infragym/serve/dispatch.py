"""The service's hot path: ``POST /v1/models/{model}/{operation}`` answered in front of FastAPI.

Profiled under load (py-spy, one worker, a small LightGBM model: 1.0 ms of server CPU per
request), the model itself took 15% of a request and FastAPI's and Starlette's layers (exception and body-limit
middlewares, the router, dependency solving, the async exit stack) most of the rest. This ASGI
layer answers the operations' requests directly: the body is read under the size limit (413), and
parsing, validation, inference and serialisation run together in the worker threads
(:class:`OperationAnswer`). Everything else (health, model listing, the OpenAPI page, unknown
routes) goes on to FastAPI, where the operations are also registered, so the OpenAPI document and
the in-process behaviour are the same. Authentication and metrics are the middlewares around it.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

import anyio
from pydantic import BaseModel, ValidationError

from infragym.export import ExportError
from infragym.serve.operations import Operation, RequestError

log = logging.getLogger("infragym.serve")

JSON_HEADERS = [(b"content-type", b"application/json")]


class Disconnected(Exception):
    """The client went away before its body was read: nobody reads an answer."""


class Rejected(Exception):
    """A request answered with an error status and a JSON ``detail``."""

    def __init__(self, status: int, detail: Any) -> None:
        super().__init__(status, detail)
        self.status, self.detail = status, detail


def validation_detail(errors: Sequence[Any], prefix: tuple[str, ...] = ("body",)) -> list[dict[str, Any]]:
    """Each error's location, message and type; the offending input only when it is small (a
    NaN, a wrong category): a whole rejected window is not sent back."""
    detail = []
    for error in errors:
        item = {"loc": [*prefix, *error.get("loc", ())], "msg": error.get("msg", ""), "type": error.get("type", "")}
        given = error.get("input")
        if given is None or isinstance(given, bool | int | float | str):
            item["input"] = jsonable(given) if not isinstance(given, str) else given[:200]
        if error.get("ctx"):
            item["ctx"] = jsonable(error["ctx"])
        detail.append(item)
    return detail


def jsonable(value: Any) -> Any:
    """A validation error's input or context as JSON: non-finite numbers as text."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


class OperationAnswer:
    """One operation's whole answer from its raw body, run in a worker thread: parsing a large
    body (a cluster snapshot) must not stall the event loop either. pydantic parses and validates
    the JSON in one pass with its own parser (after the operation's own ``decode``, where it has
    one, passed on the body), and the response is serialised once."""

    def __init__(self, label: str, operation: Operation) -> None:
        self.label = label
        self.request: type[BaseModel] = operation.request
        self.handle: Callable[[Any], BaseModel] = operation.handle
        self.decode: Callable[[bytes], Any] | None = operation.decode

    def __call__(self, raw: bytes) -> bytes:
        body = self._guarded(self.decode, raw) if self.decode is not None else None
        if body is None:
            try:
                body = self.request.model_validate_json(raw)
            except ValidationError as err:
                raise Rejected(422, validation_detail(err.errors(include_url=False))) from err
        return self._guarded(self.handle, body).model_dump_json().encode()

    def _guarded(self, step: Callable[[Any], Any], value: Any) -> Any:
        """``step(value)``; input it refuses is 422, anything else a logged 500 (a bug, never the
        client's input), and the process stays up."""
        try:
            return step(value)
        except (RequestError, ValueError, KeyError, ExportError) as err:
            raise Rejected(422, f"{self.label}: {err}") from err
        except Exception as err:
            log.exception("%s failed", self.label)
            raise Rejected(500, f"{self.label}: internal error ({type(err).__name__})") from err


async def send_json(send: Callable, status: int, content: bytes) -> None:
    headers = [*JSON_HEADERS, (b"content-length", str(len(content)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": content})


class OperationDispatcher:
    """ASGI middleware: the operations' POSTs answered here (see the module's docstring);
    ``answers`` maps a path to its :class:`OperationAnswer`."""

    def __init__(
        self,
        app: Any,
        answers: dict[str, OperationAnswer],
        limiter: anyio.CapacityLimiter,
        max_body_bytes: int,
    ) -> None:
        self.app = app
        self.answers = answers
        self.limiter = limiter
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        answer = self.answers.get(scope.get("path", "")) if scope["type"] == "http" else None
        if answer is None or scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return
        try:
            raw = await self._body(scope, receive)
            content = await anyio.to_thread.run_sync(answer, raw, limiter=self.limiter)
        except Disconnected:
            return
        except anyio.get_cancelled_exc_class():
            # The server cancels what is still running when its shutdown grace period ends: the
            # client learns that, rather than getting uvicorn's 500 (and the log a traceback).
            # The request's own task ends here, as the cancellation asked.
            await send_json(send, 503, json.dumps({"detail": "the service is shutting down; retry"}).encode())
            return
        except Rejected as rejected:
            await send_json(send, rejected.status, json.dumps({"detail": rejected.detail}).encode())
            return
        await send_json(send, 200, content)

    async def _body(self, scope: dict[str, Any], receive: Callable) -> bytes:
        """The request body; 413 as soon as it is known to exceed the limit (from its declared
        length, before reading, or while reading)."""
        too_large = Rejected(413, f"request body over the limit of {self.max_body_bytes} bytes")
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    raise Rejected(400, "invalid content-length header") from None
                if declared > self.max_body_bytes:
                    raise too_large
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise Disconnected
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise too_large
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)
