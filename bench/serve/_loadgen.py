"""A closed-loop HTTP/1.1 load generator: ``concurrency`` keep-alive connections each send the
same pre-encoded request, wait for the whole answer and send again, until the duration or the
request count runs out (whichever comes first). Loopback only: it is a benchmark tool, not a way
to load someone else's service.

The generator shares the two cores with the service it measures, so every microsecond it spends
per request is taken from the server and counted as latency. It is therefore as lean as wrk or
h2load: asyncio protocols on uvloop's loop, the request's bytes built once, each answer parsed by
httptools (llhttp, the parser of Node.js and of uvicorn's own server) and checked (status,
complete body by its length or chunks). Measured client CPU per request: httpx ~1.1 ms, aiohttp
~0.25-0.5 ms, this ~0.05 ms (its own CPU per level is reported with the results).
"""

from __future__ import annotations

import asyncio
import ipaddress
import resource
import time
from dataclasses import asdict, dataclass
from urllib.parse import urlsplit

import httptools
import numpy as np

LOOPBACK_NAMES = frozenset({"localhost"})
REQUEST_TIMEOUT_S = 60.0
# The start of an error answer's body kept for the report.
ERROR_SNIPPET_BYTES = 300


def require_loopback(base_url: str) -> None:
    host = urlsplit(base_url).hostname or ""
    if host in LOOPBACK_NAMES:
        return
    try:
        if ipaddress.ip_address(host).is_loopback:
            return
    except ValueError:
        pass
    raise ValueError(f"the load generator only targets loopback addresses, not {host!r}")


@dataclass(frozen=True)
class LoadResult:
    """What one load level measured; latencies are client-side (send to last byte read)."""

    concurrency: int
    requests: int  # answered (any status) or failed in transport
    errors: int  # non-2xx answers and transport failures
    seconds: float  # wall-clock from the first send to the last answer
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    first_error: str | None = None
    # the generator's own CPU per request (user + system), taken from the machine it measures
    client_cpu_ms: float | None = None

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    def as_dict(self) -> dict[str, float | int | str | None]:
        return {**asdict(self), "error_rate": self.error_rate}


class _Answer(Exception):
    """A transport failure of one request (the connection closed, a malformed answer, a timeout)."""


class _Connection(asyncio.Protocol):
    """One keep-alive connection: sends the request, parses the answer, resolves ``waiter`` with
    ``(status, snippet of an error body)`` or fails it with :class:`_Answer`."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.snippet = bytearray()
        self.closed = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as err:
            self._fail(f"malformed answer: {err}")

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(f"connection closed{f': {exc}' if exc else ''}")

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.snippet.clear()

    def on_body(self, body: bytes) -> None:
        if len(self.snippet) < ERROR_SNIPPET_BYTES:
            self.snippet += body[: ERROR_SNIPPET_BYTES - len(self.snippet)]

    def on_message_complete(self) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            status = self.parser.get_status_code()
            keep = self.parser.should_keep_alive()
            waiter.set_result((status, bytes(self.snippet) if status >= 300 else None, keep))

    # requests
    def send(self, request: bytes) -> asyncio.Future:
        waiter = self.loop.create_future()
        if self.closed or self.transport is None:
            waiter.set_exception(_Answer("connection closed"))
            return waiter
        self.waiter = waiter
        self.transport.write(request)
        return waiter

    def _fail(self, reason: str) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(_Answer(reason))
        if self.transport is not None and not self.closed:
            self.transport.close()


async def _drive(
    base_url: str, path: str, body: bytes, *, concurrency: int, seconds: float, max_requests: int, warmup: int
) -> LoadResult:
    loop = asyncio.get_running_loop()
    parts = urlsplit(base_url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    request = (
        f"POST {(parts.path.rstrip('/') + path)} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    latencies: list[float] = []
    errors = 0
    first_error: str | None = None
    issued = 0

    async def connect() -> _Connection:
        _, connection = await loop.create_connection(lambda: _Connection(loop), host, port)
        return connection  # asyncio sets TCP_NODELAY on TCP connections

    async def call(connection: _Connection) -> tuple[_Connection, str | None]:
        """One request; a new connection first if the last one closed. -> (connection, error)."""
        if connection.closed:
            connection = await connect()
        try:
            status, snippet, keep = await asyncio.wait_for(connection.send(request), REQUEST_TIMEOUT_S)
        except (_Answer, TimeoutError, OSError) as err:
            if connection.transport is not None:
                connection.transport.close()
            connection.closed = True
            return connection, f"{type(err).__name__}: {err}"
        if not keep and connection.transport is not None:
            connection.transport.close()
            connection.closed = True
        if status >= 300:
            return connection, f"{status}: {(snippet or b'').decode(errors='replace')}"
        return connection, None

    connections = [await connect() for _ in range(concurrency)]
    # Warm the server's code paths on every connection; not counted.
    for round_ in range(max(1, -(-warmup // concurrency))):
        connections = [c for c, _ in await asyncio.gather(*(call(c) for c in connections))]
        del round_
    cpu_before = _cpu_seconds()
    started = time.perf_counter()
    deadline = started + seconds

    async def worker(connection: _Connection) -> None:
        nonlocal errors, first_error, issued
        while issued < max_requests and time.perf_counter() < deadline:
            issued += 1
            sent = time.perf_counter()
            try:
                connection, reason = await call(connection)
            except OSError as err:  # a new connection could not be opened
                reason = f"{type(err).__name__}: {err}"
            latencies.append(time.perf_counter() - sent)
            if reason is not None:
                errors += 1
                first_error = first_error or reason
        if connection.transport is not None:
            connection.transport.close()

    await asyncio.gather(*(worker(c) for c in connections))
    elapsed = time.perf_counter() - started
    cpu = _cpu_seconds() - cpu_before
    ms = np.asarray(latencies) * 1000.0
    return LoadResult(
        concurrency=concurrency,
        requests=len(latencies),
        errors=errors,
        seconds=elapsed,
        requests_per_s=len(latencies) / elapsed if elapsed > 0 else 0.0,
        p50_ms=float(np.percentile(ms, 50)) if ms.size else float("nan"),
        p99_ms=float(np.percentile(ms, 99)) if ms.size else float("nan"),
        max_ms=float(ms.max()) if ms.size else float("nan"),
        first_error=first_error,
        client_cpu_ms=1000.0 * cpu / len(latencies) if latencies else None,
    )


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_load(
    base_url: str,
    path: str,
    body: bytes,
    *,
    concurrency: int,
    seconds: float,
    max_requests: int,
    warmup: int = 20,
) -> LoadResult:
    """Load ``POST base_url + path`` with ``body`` from ``concurrency`` closed-loop clients for at
    most ``seconds`` and at most ``max_requests`` requests."""
    require_loopback(base_url)
    if concurrency < 1 or seconds <= 0 or max_requests < 1:
        raise ValueError("concurrency, seconds and max_requests must be positive")
    import uvloop

    return uvloop.run(
        _drive(
            base_url,
            path,
            body,
            concurrency=concurrency,
            seconds=seconds,
            max_requests=max_requests,
            warmup=warmup,
        )
    )
