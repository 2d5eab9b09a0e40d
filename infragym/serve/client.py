"""A Python client of the decision service (``infragym serve``), on httpx.

    from infragym.serve.client import Client

    with Client("http://127.0.0.1:8000", token=...) as service:
        service.ready()                                   # True once every model is loaded
        service.models()                                  # name, component, version, metrics
        answer = service.predict("<model>", **body)      # the body its request model describes
        answer = service.call("<model>", "<operation>", body)

Every model endpoint answering 4xx/5xx raises :class:`ServiceError`, which carries the status and
the service's own detail (for a 422: each field and what was expected), so a caller sees why a
request was refused rather than a bare status line.
"""

from __future__ import annotations

import os
import socket
from typing import Any

import httpx

TOKEN_VARIABLE = "INFRAGYM_SERVE_TOKEN"
DEFAULT_TIMEOUT_S = 30.0


class ServiceError(RuntimeError):
    """The service answered 4xx/5xx: ``status_code`` and its ``detail`` (a message, or for 422 the
    list of ``{"loc", "msg", "type"}`` errors naming each field)."""

    def __init__(self, method: str, path: str, status_code: int, detail: Any) -> None:
        self.method = method
        self.path = path
        self.status_code = status_code
        self.detail = detail
        super().__init__(f"{method} {path}: {status_code} {_reason(status_code)}: {describe_detail(detail)}")


def _reason(status_code: int) -> str:
    return httpx.codes.get_reason_phrase(status_code) or "Error"


def describe_detail(detail: Any) -> str:
    """A service error's detail as one line: validation errors as ``field.path: message``."""
    if isinstance(detail, list):
        parts = []
        for error in detail:
            if isinstance(error, dict):
                where = ".".join(str(p) for p in error.get("loc", ()))
                parts.append(f"{where}: {error.get('msg', error)}" if where else str(error.get("msg", error)))
            else:
                parts.append(str(error))
        return "; ".join(parts)
    return str(detail)


class Client:
    """Calls one running service at ``base_url``.

    ``token``: the bearer token of a service started with ``--token-file`` (default: the
    ``INFRAGYM_SERVE_TOKEN`` variable, as the service reads it). ``timeout``: seconds per request.
    ``transport``: an httpx transport to use instead of the network (tests, retries, proxies).
    """

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        *,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        token = token if token is not None else os.environ.get(TOKEN_VARIABLE) or None
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.base_url = base_url.rstrip("/")
        if transport is None:
            # TCP_NODELAY: httpx writes headers and body separately, and Nagle's algorithm would
            # hold the body until the server's delayed ACK (~40 ms per request on Linux).
            transport = httpx.HTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
        self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout, transport=transport)

    # ------------------------------------------------------------------ probes (never need a token)
    def health(self) -> bool:
        """Whether the process answers (``GET /healthz``)."""
        return self._http.get("/healthz").status_code == 200

    def ready(self) -> bool:
        """Whether every model is loaded (``GET /readyz``; 503 while loading)."""
        return self._http.get("/readyz").status_code == 200

    def metrics(self) -> str:
        """The Prometheus exposition text (``GET /metrics``)."""
        return self._request("GET", "/metrics").text

    # ------------------------------------------------------------------ models
    def models(self) -> list[dict[str, Any]]:
        """Every served model: name, component, version, operations and the manifest's metrics."""
        return self._request("GET", "/v1/models").json()["models"]

    def describe(self, name: str) -> dict[str, Any]:
        """One model: its summary, the manifest's input and output schema and the JSON schema of
        every operation's request and response."""
        return self._request("GET", f"/v1/models/{name}").json()

    def call(self, name: str, operation: str, body: dict[str, Any]) -> dict[str, Any]:
        """``POST /v1/models/{name}/{operation}`` with ``body``; the decoded response."""
        return self._request("POST", f"/v1/models/{name}/{operation}", json=body).json()

    def predict(self, name: str, body: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
        """The model's ``predict`` operation: ``body`` and/or its fields as keywords."""
        return self.call(name, "predict", {**(body or {}), **fields})

    def act(self, name: str, body: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
        """The model's ``act`` operation (a policy's next action or plan)."""
        return self.call(name, "act", {**(body or {}), **fields})

    def ttl(self, name: str, body: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
        """The model's ``ttl`` operation (a time-to-live per item)."""
        return self.call(name, "ttl", {**(body or {}), **fields})

    # ------------------------------------------------------------------ plumbing
    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = self._http.request(method, path, **kwargs)
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail", response.text)
            except (ValueError, AttributeError):  # not JSON, or JSON without a detail field
                detail = response.text
            raise ServiceError(method, path, response.status_code, detail)
        return response

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client({self.base_url!r})"
