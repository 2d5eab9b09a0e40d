"""The load test's HTTP client (``bench/serve/_loadgen.py``) against a small uvicorn app on
loopback: it counts what the server answered (errors by status, with the body's start), follows
chunked answers and closed connections, stops at its request bound, and refuses other hosts."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn

from bench.serve._loadgen import require_loopback, run_load

HOST = "127.0.0.1"


async def app(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
    """Echoes the body's length; ``/fail`` answers every third request 503; ``/chunked`` answers
    in two chunks; ``/close`` closes the connection after each answer."""
    if scope["type"] != "http":
        return
    size = 0
    while True:
        message = await receive()
        size += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    app.calls = getattr(app, "calls", 0) + 1  # type: ignore[attr-defined]
    path = scope["path"]
    status = 503 if path == "/fail" and app.calls % 3 == 0 else 200  # type: ignore[attr-defined]
    content = b'{"detail": "busy"}' if status == 503 else b'{"size": %d}' % size
    headers = [(b"content-type", b"application/json")]
    if path == "/close":
        headers.append((b"connection", b"close"))
    if path == "/chunked":
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": content[:3], "more_body": True})
        await send({"type": "http.response.body", "body": content[3:]})
        return
    headers.append((b"content-length", str(len(content)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": content})


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host=HOST, port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    yield f"http://{HOST}:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def test_every_answer_counted_and_the_request_bound_kept(base_url: str) -> None:
    body = b'{"x": "' + b"a" * 100_000 + b'"}'
    result = run_load(base_url, "/ok", body, concurrency=4, seconds=30, max_requests=200, warmup=4)
    assert result.requests == 200 and result.errors == 0 and result.first_error is None
    assert 0 < result.p50_ms <= result.p99_ms <= result.max_ms
    assert result.client_cpu_ms is not None and result.client_cpu_ms > 0


def test_error_answers_are_errors_with_their_body(base_url: str) -> None:
    app.calls = 0  # type: ignore[attr-defined]
    result = run_load(base_url, "/fail", b"{}", concurrency=1, seconds=30, max_requests=30, warmup=0)
    assert result.requests == 30 and result.errors == 10
    assert result.first_error == '503: {"detail": "busy"}'


@pytest.mark.parametrize("path", ["/chunked", "/close"])
def test_chunked_answers_and_closed_connections(base_url: str, path: str) -> None:
    result = run_load(base_url, path, b"{}", concurrency=2, seconds=30, max_requests=40, warmup=2)
    assert (result.requests, result.errors) == (40, 0), result.first_error


def test_the_duration_bounds_a_level(base_url: str) -> None:
    started = time.monotonic()
    result = run_load(base_url, "/ok", b"{}", concurrency=2, seconds=0.5, max_requests=10**9, warmup=2)
    assert time.monotonic() - started < 10 and result.seconds < 2 and result.requests > 0


def test_only_loopback_is_loaded() -> None:
    require_loopback("http://localhost:8000")
    require_loopback("http://[::1]:8000")
    with pytest.raises(ValueError, match="only targets loopback"):
        require_loopback("http://10.0.0.1:8000")
    with pytest.raises(ValueError, match="only targets loopback"):
        run_load("http://example.com", "/", b"{}", concurrency=1, seconds=1, max_requests=1)
