"""Running the decision service: verify and load every export, then serve it with uvicorn.

Exports are verified and loaded before the socket is bound, so a tampered export or an unsigned
code-bearing one stops the start-up with a message naming it. With one worker uvicorn serves the
application object built here; with several, uvicorn starts worker processes that each build the
application themselves from the settings this process passes in an environment variable (JSON;
the bearer token itself is not copied there: each worker reads it from the same file or variable).

Nothing here imports the training stack (torch, Lightning, Hydra, W&B).
"""

from __future__ import annotations

import dataclasses
import gc
import json
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from fastapi import FastAPI

from infragym.serve import workers
from infragym.serve.app import (
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_THREADS,
    MULTIPROC_ENV,
    ServeError,
    create_app,
    load_models,
)
from infragym.serve.dispatch import Rejected

log = logging.getLogger("infragym.serve")

# The service's settings, as JSON, for the worker processes of ``--workers N``.
SETTINGS_ENV = "INFRAGYM_SERVE_SETTINGS"
# The bearer token, when it is not read from ``--token-file``.
TOKEN_ENV = "INFRAGYM_SERVE_TOKEN"
# Shorter tokens are guessable; app.create_app refuses them too.
MIN_TOKEN_CHARS = 16
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})


@dataclass(frozen=True)
class ServeSettings:
    """What ``infragym serve`` was asked to do (plain values: they travel to workers as JSON)."""

    exports: tuple[str, ...]
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    trust: bool = False
    token_file: str | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    threads: int = DEFAULT_THREADS
    grace_s: float = 10.0
    log_level: str = "info"

    def to_json(self) -> str:
        """The settings as JSON (for ``$INFRAGYM_SERVE_SETTINGS``)."""
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ServeSettings:
        """The settings :meth:`to_json` wrote."""
        values = json.loads(text)
        values["exports"] = tuple(values["exports"])
        return cls(**values)


def resolve_token(token_file: str | None) -> str | None:
    """The bearer token: the first line of ``token_file``, else ``$INFRAGYM_SERVE_TOKEN``, else none
    (no authentication). An empty or short token is refused rather than silently ignored."""
    if token_file is not None:
        try:
            token = Path(token_file).read_text().strip()
        except OSError as err:
            raise ServeError(f"cannot read the token file {token_file}: {err.strerror or err}") from err
        source = f"the token file {token_file}"
    elif TOKEN_ENV in os.environ:
        token = os.environ[TOKEN_ENV].strip()
        source = f"${TOKEN_ENV}"
    else:
        return None
    if len(token) < MIN_TOKEN_CHARS:
        state = "is empty" if not token else f"has {len(token)} characters"
        raise ServeError(
            f"the bearer token in {source} {state}; use at least {MIN_TOKEN_CHARS} random characters "
            '(e.g. python -c "import secrets; print(secrets.token_urlsafe(32))")'
        )
    return token


def build_app(settings: ServeSettings) -> FastAPI:
    """Verify and load the exports and build the application (raises :class:`ServeError`)."""
    token = resolve_token(settings.token_file)
    models = load_models(settings.exports, trust=settings.trust)
    app = create_app(models, token=token, max_body_bytes=settings.max_body_bytes, threads=settings.threads)
    warm_up(app)
    # Everything loaded so far lives as long as the process: moved out of the collector's reach,
    # so that the full collections a large request's objects trigger (a cluster snapshot is
    # ~10^5 of them) do not scan the models each time. Measured on a 586 KB snapshot request: the
    # slowest of 60 answers went from 120 ms to 24 ms (median ~20 ms either way).
    gc.freeze()
    return app


def warm_up(app: FastAPI) -> None:
    """Answer every operation's own example once before serving: compiled kernels (numba, about
    a second per kernel set where no on-disk cache exists yet) and first-run allocations happen
    here, not on a client's first request; an operation that cannot answer its own example stops
    the start-up (raises :class:`ServeError`) instead of failing every request."""
    for path, answer in app.state.answers.items():
        example = app.state.examples.get(path)
        if example is None:
            continue
        try:
            answer(json.dumps(example).encode())
        except Rejected as rejected:
            raise ServeError(
                f"{answer.label} refused its own example request at start-up ({rejected.status}: {rejected.detail})"
            ) from None


def app_from_environment() -> FastAPI:
    """uvicorn's application factory in each worker of ``--workers N`` (settings from ``$INFRAGYM_SERVE_SETTINGS``)."""
    text = os.environ.get(SETTINGS_ENV)
    if not text:
        raise ServeError(f"${SETTINGS_ENV} is not set: start the service with `infragym serve`")
    return build_app(ServeSettings.from_json(text))


def _exit_after_graceful_shutdown(signum: int, frame: FrameType | None) -> None:
    # uvicorn shuts down gracefully on SIGTERM/SIGINT and then re-raises the signal to the handler
    # it found; exiting 0 there makes a requested stop a clean exit for process managers.
    raise SystemExit(0)


def serve(settings: ServeSettings) -> None:
    """Verify and load every export, then serve until SIGTERM/SIGINT (in-flight requests get
    ``settings.grace_s`` seconds to finish). Raises :class:`ServeError` before binding anything
    when an export cannot be served."""
    import uvicorn

    if settings.workers < 1:
        raise ServeError("--workers must be at least 1")
    # Verified (and loaded) here even with several workers: a refusal must come before binding.
    app = build_app(settings)
    if settings.host not in LOOPBACK_HOSTS and settings.token_file is None and TOKEN_ENV not in os.environ:
        log.warning(
            "serving on %s without a bearer token: anyone who reaches the port can call the models", settings.host
        )
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "timeout_graceful_shutdown": settings.grace_s,
        "log_level": settings.log_level,
    }
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _exit_after_graceful_shutdown)
    if settings.workers == 1:
        uvicorn.run(app, **options)
        return
    del app  # each worker loads its own copy
    os.environ[SETTINGS_ENV] = settings.to_json()
    # The workers' metrics meet in one directory (see app.MULTIPROC_ENV); the workers are new
    # processes, so prometheus-client starts there in multiprocess mode. A directory the user
    # chose is kept; ours is removed at exit.
    own_metrics_dir = MULTIPROC_ENV not in os.environ
    if own_metrics_dir:
        os.environ[MULTIPROC_ENV] = tempfile.mkdtemp(prefix="infragym-serve-metrics-")
    factory = {"app": f"{__name__}:app_from_environment", "factory": True}
    listener = _listening_socket(settings.host, settings.port)
    try:
        if workers.supported():
            # uvicorn's logging set up here as in the workers: the supervisor's messages too
            uvicorn.Config(**factory, **options)
            status = workers.run_workers(listener, settings.workers, {**factory, **options}, grace_s=settings.grace_s)
            if status:
                raise ServeError("a worker process could not start; see the log above")
        else:
            from uvicorn.supervisors import Multiprocess

            config = uvicorn.Config(**factory, workers=settings.workers, **options)
            Multiprocess(config, sockets=[listener]).run()
    finally:
        listener.close()
        if own_metrics_dir:
            shutil.rmtree(os.environ.pop(MULTIPROC_ENV), ignore_errors=True)


def _listening_socket(host: str, port: int) -> socket.socket:
    """The service's address, bound (with TCP_NODELAY, see :func:`_tcp_socket`); the workers'
    supervisor listens on it and hands the connections out (:mod:`infragym.serve.workers`)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = _tcp_socket(family)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        raise ServeError(f"cannot listen on {host}:{port}: {err}") from err
    sock.set_inheritable(True)
    return sock


def _tcp_socket(family: int) -> socket.socket:
    """A TCP socket created as TCP explicitly, with TCP_NODELAY.

    uvicorn's own (``socket.socket(family)``) has protocol number 0, and asyncio sets TCP_NODELAY
    only on connections whose socket says IPPROTO_TCP: without it, a response's headers and body
    (two writes) wait on the client's delayed ACK, ~40 ms per request on Linux. Accepted
    connections inherit the listener's protocol number (and, on Linux, TCP_NODELAY itself).
    """
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


if __name__ == "__main__":  # ``python -m infragym.serve.server`` is ``infragym serve``
    from infragym.cli import main

    sys.exit(main(["serve", *sys.argv[1:]]))
