"""The decision service: every loaded export behind one FastAPI application.

Exports are verified and loaded once, before the application exists (a code-bearing export that
is neither signed nor trusted stops the start-up, naming it); afterwards nothing is read from
disk. Each model's operations become typed routes ``POST /v1/models/{model}/{operation}`` whose
request bodies are validated against the export's own schema (422 naming the field), inference
runs in a bounded thread pool off the event loop, and every request is counted and timed in
Prometheus metrics. Bodies over a limit get 413 (FastAPI's own limit). An optional bearer token
guards the model endpoints; health, readiness and metrics stay open for probes and scrapers.
"""

from __future__ import annotations

import logging
import math
import re
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from fastapi import Depends, FastAPI, HTTPException
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

from infragym import __version__, components
from infragym.export import ExportError, load_export
from infragym.serve.operations import Operation, RequestError

log = logging.getLogger("infragym.serve")

MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
DEFAULT_THREADS = 4
# Latency buckets (s) from sub-millisecond lookups to multi-second plans.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ServeError(RuntimeError):
    """The service cannot start: an export that cannot be served, a bad name or a bad token."""


@dataclass
class ServedModel:
    """One loaded export and its operations."""

    name: str
    component: str
    directory: str
    manifest: dict[str, Any]
    predictor: Any
    operations: dict[str, Operation] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        libraries = self.manifest.get("libraries") or {}
        return {
            "name": self.name,
            "component": self.component,
            "version": libraries.get("infragym", "unknown"),
            "format_version": self.manifest.get("format_version"),
            "operations": sorted(self.operations),
            "metrics": self.manifest.get("metrics", {}),
        }


def _split_spec(spec: str) -> tuple[str | None, str]:
    """``NAME=PATH`` or ``PATH``."""
    name, sep, path = spec.partition("=")
    if sep and MODEL_NAME.match(name) and not Path(spec).exists():
        return name, path
    return None, spec


def load_models(exports: Sequence[str], *, trust: bool = False) -> list[ServedModel]:
    """Verify and load every export (``PATH`` or ``NAME=PATH``); names default to the component's
    and are made unique. Raises :class:`ServeError` naming the export that cannot be served."""
    if not exports:
        raise ServeError("give at least one export folder to serve")
    models: list[ServedModel] = []
    taken: set[str] = set()
    for spec in exports:
        name, path = _split_spec(spec)
        try:
            predictor, manifest = load_export(path, trust=trust)
        except ExportError as err:
            raise ServeError(f"cannot serve {path}: {err}") from err
        component = components.get(manifest["component"])
        if component.serving is None:
            raise ServeError(f"cannot serve {path}: component {component.name!r} declares no serving operations")
        factory: Callable[[Any, dict[str, Any]], Sequence[Operation]] = components.import_target(component.serving)
        operations = {op.name: op for op in factory(predictor, manifest)}
        if name is None:
            name = component.name
            suffix = 2
            while name in taken:
                name, suffix = f"{component.name}-{suffix}", suffix + 1
        if name in taken:
            raise ServeError(f"model name {name!r} is given twice")
        if not MODEL_NAME.match(name):
            raise ServeError(f"model name {name!r}: use letters, digits, '_', '.', '-' (at most 64)")
        taken.add(name)
        models.append(ServedModel(name, component.name, str(path), manifest, predictor, operations))
    return models


class RequestMetrics:
    """ASGI middleware: requests, errors and latency per model and operation (Prometheus)."""

    def __init__(self, app: Any, registry: CollectorRegistry) -> None:
        self.app = app
        self.requests = Counter(
            "infragym_requests",
            "Requests by model, operation and status",
            ["model", "operation", "status"],
            registry=registry,
        )
        self.errors = Counter(
            "infragym_errors",
            "Requests answered 4xx/5xx by model and operation",
            ["model", "operation"],
            registry=registry,
        )
        self.latency = Histogram(
            "infragym_request_latency_seconds",
            "Request latency by model and operation",
            ["model", "operation"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )

    async def __call__(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        parts = path.strip("/").split("/")
        if len(parts) != 4 or parts[:2] != ["v1", "models"] or scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return
        model, operation = parts[2], parts[3]
        status = 500
        started = time.perf_counter()

        async def tracked_send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, tracked_send)
        finally:
            self.requests.labels(model, operation, str(status)).inc()
            if status >= 400:
                self.errors.labels(model, operation).inc()
            self.latency.labels(model, operation).observe(time.perf_counter() - started)


class BearerTokenGuard:
    """ASGI middleware: the model endpoints (``/v1/...``) check the bearer token before anything
    else. FastAPI reads and parses a body before it runs an endpoint's dependencies, so without
    this an unauthorised client's malformed body got a 422 describing the schema, and every
    unauthorised body was parsed; now it gets 401 whatever it sent, and its body is never read."""

    def __init__(self, app: Any, token: str) -> None:
        self.app = app
        self.token = token.encode()

    def _authorised(self, scope: dict[str, Any]) -> bool:
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                scheme, _, credentials = value.partition(b" ")
                return scheme.lower() == b"bearer" and secrets.compare_digest(credentials.strip(), self.token)
        return False

    async def __call__(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        if scope["type"] == "http" and scope.get("path", "").startswith("/v1/") and not self._authorised(scope):
            response = JSONResponse(
                {"detail": "missing or wrong bearer token"}, 401, headers={"WWW-Authenticate": "Bearer"}
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def create_app(
    models: Sequence[ServedModel],
    *,
    token: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    threads: int = DEFAULT_THREADS,
) -> FastAPI:
    """The FastAPI application serving ``models`` (see :func:`load_models`)."""
    if token is not None and len(token) < 16:
        raise ServeError("the bearer token must have at least 16 characters")
    served = {m.name: m for m in models}
    limiter = anyio.CapacityLimiter(threads)
    registry = CollectorRegistry()
    app = FastAPI(
        title="InfraGym decision service",
        version=__version__,
        description="Exported InfraGym models: " + ", ".join(f"{m.name} ({m.component})" for m in models),
        max_body_size=max_body_bytes,  # larger bodies get 413 before they are read
    )
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.state.ready = True
    bearer = HTTPBearer(auto_error=False)

    def authorise(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        if token is None:
            return
        given = credentials.credentials if credentials is not None else ""
        if not secrets.compare_digest(given.encode(), token.encode()):
            raise HTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"])
    async def readyz() -> JSONResponse:
        ready = bool(app.state.ready) and bool(served)
        return JSONResponse(
            {"status": "ready" if ready else "loading", "models": sorted(served)}, 200 if ready else 503
        )

    @app.get("/metrics", tags=["health"])
    async def metrics() -> PlainTextResponse:
        return PlainTextResponse(generate_latest(registry).decode(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/models", tags=["models"], dependencies=[Depends(authorise)])
    async def list_models() -> dict[str, Any]:
        return {"models": [m.summary() for m in served.values()]}

    @app.get("/v1/models/{name}", tags=["models"], dependencies=[Depends(authorise)])
    async def describe(name: str) -> dict[str, Any]:
        model = _model(name)
        return {
            **model.summary(),
            "input_schema": model.manifest.get("input_schema", {}),
            "output_schema": model.manifest.get("output_schema", {}),
            "requests": {op.name: op.request.model_json_schema() for op in model.operations.values()},
            "responses": {op.name: op.response.model_json_schema() for op in model.operations.values()},
        }

    def _model(name: str) -> ServedModel:
        if name not in served:
            raise HTTPException(404, f"unknown model {name!r} (served: {', '.join(sorted(served))})")
        return served[name]

    for model in models:
        for operation in model.operations.values():
            _add_operation(app, model, operation, limiter, authorise)

    @app.post(
        "/v1/models/{name}/{operation}", tags=["models"], dependencies=[Depends(authorise)], include_in_schema=False
    )
    async def unknown_operation(name: str, operation: str) -> None:
        model = _model(name)
        raise HTTPException(
            404, f"model {name!r} has no operation {operation!r} (it has: {', '.join(sorted(model.operations))})"
        )

    if token is not None:
        app.add_middleware(BearerTokenGuard, token=token)
    app.add_middleware(RequestMetrics, registry=registry)  # outermost: 401s and 413s are counted too
    return app


def _jsonable(value: Any) -> Any:
    """A validation error's input or context as JSON: non-finite numbers as text."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


async def _validation_error(request: Any, exc: Exception) -> JSONResponse:
    """422 naming each field and what was expected. The offending input is echoed only when it is
    small (a NaN, a wrong category): a whole rejected window is not sent back."""
    errors = []
    for error in exc.errors():  # type: ignore[attr-defined]
        item = {"loc": list(error.get("loc", ())), "msg": error.get("msg", ""), "type": error.get("type", "")}
        given = error.get("input")
        if given is None or isinstance(given, bool | int | float | str):
            item["input"] = _jsonable(given) if not isinstance(given, str) else given[:200]
        if error.get("ctx"):
            item["ctx"] = _jsonable(error["ctx"])
        errors.append(item)
    return JSONResponse({"detail": errors}, status_code=422)


def _add_operation(
    app: FastAPI, model: ServedModel, operation: Operation, limiter: anyio.CapacityLimiter, authorise: Callable
) -> None:
    request_model, response_model, handle = operation.request, operation.response, operation.handle
    label = f"{model.name}/{operation.name}"

    async def endpoint(body):  # typed below, from the export schema
        try:
            return await anyio.to_thread.run_sync(handle, body, limiter=limiter)
        except (RequestError, ValueError, KeyError, ExportError) as err:
            raise HTTPException(422, f"{label}: {err}") from err
        except Exception as err:  # a bug, never the client's input: logged, answered 500, process stays up
            log.exception("%s failed", label)
            raise HTTPException(500, f"{label}: internal error ({type(err).__name__})") from err

    # FastAPI reads the body and response models from the annotations: they are built at run time.
    endpoint.__annotations__ = {"body": request_model, "return": response_model}
    endpoint.__name__ = f"{model.name}_{operation.name}".replace("-", "_").replace(".", "_")
    app.post(
        f"/v1/models/{model.name}/{operation.name}",
        tags=[model.name],
        summary=f"{model.name} ({model.component}): {operation.summary}",
        response_model=response_model,
        dependencies=[Depends(authorise)],
        responses={401: {"description": "missing or wrong bearer token"}, 413: {"description": "body too large"}},
    )(endpoint)
