"""The decision service: every loaded export behind one FastAPI application.

Exports are verified and loaded once, before the application exists (a code-bearing export that
is neither signed nor trusted stops the start-up, naming it); afterwards nothing is read from
disk. Each model's operations become typed routes ``POST /v1/models/{model}/{operation}`` whose
request bodies are validated against the export's own schema (422 naming the field); parsing,
inference and serialisation run in a bounded thread pool off the event loop, answered by the
lean ASGI layer of :mod:`infragym.serve.dispatch` in front of FastAPI (which documents them and
serves everything else). Every request is counted and timed in Prometheus metrics. Bodies over a
limit get 413. An optional bearer token guards the model endpoints; health, readiness and metrics
stay open for probes and scrapers.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest, multiprocess

from infragym import __version__, components
from infragym.export import ExportError, load_export
from infragym.serve.dispatch import OperationAnswer, OperationDispatcher, Rejected, validation_detail
from infragym.serve.operations import Operation

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


# prometheus-client's multiprocess mode: each worker of ``--workers N`` writes its samples to
# files in this directory (``infragym serve`` sets it), and ``/metrics``, answered by whichever
# worker gets the scrape, sums them all.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def exposition_registry(own: CollectorRegistry) -> CollectorRegistry:
    """What ``/metrics`` exposes: every worker's samples in multiprocess mode, else this process's."""
    directory = os.environ.get(MULTIPROC_ENV)
    if not directory:
        return own
    merged = CollectorRegistry()
    multiprocess.MultiProcessCollector(merged, path=directory)
    return merged


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
    app = DecisionServiceApp(
        title="InfraGym decision service",
        version=__version__,
        description="Exported InfraGym models: " + ", ".join(f"{m.name} ({m.component})" for m in models),
        max_body_size=max_body_bytes,  # larger bodies get 413 before they are read
    )
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.state.ready = True
    app.state.request_models = []
    app.state.answers = {}
    app.state.examples = {}  # path -> the operation's example body (the start-up's warm-up)
    app.openapi = _openapi_with_request_models(app)  # type: ignore[method-assign]
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
        text = generate_latest(exposition_registry(registry)).decode()
        return PlainTextResponse(text, media_type=CONTENT_TYPE_LATEST)

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

    # In front of FastAPI's own middleware stack, outermost first: metrics (401s and 413s are
    # counted too), the bearer token, then the operations' hot path.
    front: Any = OperationDispatcher(app.fastapi, app.state.answers, limiter, max_body_bytes)
    if token is not None:
        front = BearerTokenGuard(front, token=token)
    app.front = RequestMetrics(front, registry=registry)
    return app


class DecisionServiceApp(FastAPI):
    """FastAPI with the service's ASGI layers (:attr:`front`) in front of its middleware stack:
    a request passes FastAPI's layers only when the operations' hot path does not answer it."""

    front: Any = None

    async def __call__(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        await (self.front or self.fastapi)(scope, receive, send)

    async def fastapi(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        """The application as FastAPI serves it."""
        await super().__call__(scope, receive, send)  # type: ignore[arg-type]


async def _validation_error(request: Any, exc: Exception) -> JSONResponse:
    """422 naming each field and what was expected (FastAPI's own validation: path parameters)."""
    return JSONResponse({"detail": validation_detail(exc.errors(), prefix=())}, status_code=422)  # type: ignore[attr-defined]


def _add_operation(
    app: FastAPI, model: ServedModel, operation: Operation, limiter: anyio.CapacityLimiter, authorise: Callable
) -> None:
    request_model, response_model = operation.request, operation.response
    answer = OperationAnswer(f"{model.name}/{operation.name}", operation)
    path = f"/v1/models/{model.name}/{operation.name}"
    app.state.answers[path] = answer  # served by OperationDispatcher in front of FastAPI
    if operation.example is not None:
        app.state.examples[path] = operation.example()

    async def endpoint(request: Request) -> Response:
        # The same answer when the application is used without the dispatcher in front.
        try:
            content = await anyio.to_thread.run_sync(answer, await request.body(), limiter=limiter)
        except Rejected as rejected:
            return JSONResponse({"detail": rejected.detail}, status_code=rejected.status)
        return Response(content, media_type="application/json")

    endpoint.__name__ = f"{model.name}_{operation.name}".replace("-", "_").replace(".", "_")
    app.post(
        path,
        tags=[model.name],
        summary=f"{model.name} ({model.component}): {operation.summary}",
        response_model=response_model,  # documented; the answer itself is serialised above
        dependencies=[Depends(authorise)],
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": f"{_SCHEMA_REF}{request_model.__name__}"}}},
            }
        },
        responses={
            401: {"description": "missing or wrong bearer token"},
            413: {"description": "body too large"},
            422: {"description": "the body does not match the model's schema (each field named)"},
        },
    )(endpoint)
    app.state.request_models.append(request_model)


_SCHEMA_REF = "#/components/schemas/"


def _openapi_with_request_models(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """FastAPI's OpenAPI document plus the operations' request models: the endpoints read their
    bodies themselves (parsed and validated off the event loop), so FastAPI does not see them."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            schemas = spec.setdefault("components", {}).setdefault("schemas", {})
            for request_model in app.state.request_models:
                schema = request_model.model_json_schema(ref_template=_SCHEMA_REF + "{model}")
                schemas.update(schema.pop("$defs", {}))
                schemas[request_model.__name__] = schema
            app.openapi_schema = spec
        return app.openapi_schema

    return openapi
