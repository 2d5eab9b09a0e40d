"""``--workers N``: worker processes behind one port, each connection handed to the worker that
holds the fewest.

HTTP/1.1 clients keep their connections open, so a connection's requests all go to the worker
that accepted it, and the spread of connections over workers is the spread of the load. With
one listening socket shared by all workers, the first worker to wake accepts every connection
waiting (asyncio and libuv accept in a loop): with 8 keep-alive connections opened together,
one worker took all 8 in 2 of 4 trials. With a ``SO_REUSEPORT`` socket per worker the kernel
picks by a hash of the addresses: four load-test runs split 8 connections 8/0, 4/4, 7/1 and
5/3, and the load test of the slowest model (587 KB requests) at concurrency 8 ranged from 80
to 122 req/s (p99 102 to 154 ms) with the same code. So the supervisor accepts every connection
itself and passes it, as a file descriptor over a Unix socket (SCM_RIGHTS), to the worker with
the fewest open connections, the way Node.js's cluster module hands connections out from its
primary process (https://nodejs.org/api/cluster.html, "How it works"). The supervisor does nothing per request.

- :class:`ConnectionBroker` (a thread of the supervisor) accepts and hands out connections;
  workers register with it over its Unix socket and tell it when a connection closes.
- :class:`BrokeredServer` (each worker) is a uvicorn server whose connections come from the
  broker instead of a listening socket; uvicorn's graceful shutdown covers them as its own.
- :func:`run_workers` starts the workers, replaces one that dies, replaces them all one at a
  time on SIGHUP, and stops them all on SIGTERM or SIGINT, each finishing its requests within
  the grace period.

POSIX only (``socket.send_fds``); elsewhere the server falls back to uvicorn's workers on one
shared socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import selectors
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn

# uvicorn's own logger for the server's life cycle: these messages appear with uvicorn's, at the
# level given with --log-level.
log = logging.getLogger("uvicorn.error")

# One byte per message: a handed-out connection (its descriptor rides on the byte) and, back
# from a worker, one closed connection. Messages of one byte keep each descriptor with its own
# byte on a stream socket, which is all macOS offers (no SOCK_SEQPACKET).
CONNECTION = b"c"
CLOSED = b"-"
# How often the supervisor looks at its workers and signals, in seconds.
SUPERVISOR_TICK_S = 0.25
# How long a replacement worker of a SIGHUP restart may take to start (it loads every export).
RESTART_TIMEOUT_S = 600.0


def supported() -> bool:
    """Whether this platform can pass connections between processes (POSIX)."""
    return hasattr(socket, "send_fds") and hasattr(socket, "AF_UNIX")


@dataclass
class _Worker:
    channel: socket.socket
    pid: int
    order: int  # registration order: ties go to the worker registered first
    connections: int = 0


class ConnectionBroker:
    """Accepts connections on ``listener`` and hands each to the registered worker holding the
    fewest open connections (ties: the earliest registered). Connections wait in the listen
    backlog until ``first_accept_after`` workers have registered, and later whenever none is.

    Workers connect to :attr:`address` (a Unix socket in a private directory), send their pid
    as decimal digits and a newline, and then receive connections (one byte with one descriptor
    each) and send one byte per connection they close. A worker whose channel closes is
    forgotten; its connections went with it.
    """

    def __init__(self, listener: socket.socket, *, first_accept_after: int = 1) -> None:
        self.listener = listener
        # At start-up nothing is accepted before this many workers have registered: the first
        # worker ready would otherwise take every connection opened meanwhile.
        self._first_accept_after = first_accept_after
        self.listener.setblocking(False)
        self._directory = tempfile.mkdtemp(prefix="infragym-serve-")  # 0700: only this user
        self.address = str(Path(self._directory) / "broker.sock")
        self._registration = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._registration.bind(self.address)
        self._registration.listen(64)
        self._registration.setblocking(False)
        self._wake_read, self._wake_write = socket.socketpair()
        self._wake_read.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._workers: dict[socket.socket, _Worker] = {}
        self._pending: dict[socket.socket, bytes] = {}  # channels that have not sent their pid yet
        self._registered = 0
        self._listening = False
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="infragym-connection-broker", daemon=True)
        self.on_register: Callable[[int], None] | None = None

    # ------------------------------------------------------------------ control
    def start(self) -> None:
        self._selector.register(self._registration, selectors.EVENT_READ, self._register)
        self._selector.register(self._wake_read, selectors.EVENT_READ, None)
        self._thread.start()

    def stop(self) -> None:
        """Stop accepting (connections still in the backlog are refused) and close everything;
        the workers see their channel close. Idempotent."""
        if self._stopping:
            return
        self._stopping = True
        with contextlib.suppress(OSError):
            self._wake_write.send(b"x")
        self._thread.join(timeout=10)
        for sock in [*self._workers, *self._pending, self._registration, self.listener]:
            with contextlib.suppress(OSError):
                sock.close()
        self._wake_read.close()
        self._wake_write.close()
        self._selector.close()
        shutil.rmtree(self._directory, ignore_errors=True)

    def connections(self) -> dict[int, int]:
        """Open connections per worker pid (a snapshot, for tests and logs)."""
        return {w.pid: w.connections for w in list(self._workers.values())}

    # ------------------------------------------------------------------ the broker's thread
    def _run(self) -> None:
        while not self._stopping:
            for key, _ in self._selector.select(timeout=1.0):
                if key.data is None or self._stopping:
                    continue
                try:
                    key.data(key.fileobj)
                except Exception:  # a bug here must not stop the service from accepting
                    log.exception("connection broker: %s failed", getattr(key.data, "__name__", key.data))

    def _register(self, registration: socket.socket) -> None:
        while True:
            try:
                channel, _ = registration.accept()
            except (BlockingIOError, InterruptedError):
                return
            channel.setblocking(False)
            self._pending[channel] = b""
            self._selector.register(channel, selectors.EVENT_READ, self._greeting)

    def _greeting(self, channel: socket.socket) -> None:
        data = _receive(channel, 64)
        if data is None:
            return
        greeting = self._pending.get(channel, b"") + data
        if not data or len(greeting) > 32:
            self._drop(channel)
            return
        if not greeting.endswith(b"\n"):
            self._pending[channel] = greeting
            return
        del self._pending[channel]
        try:
            pid = int(greeting.decode("ascii"))
        except ValueError:
            self._drop(channel)
            return
        self._registered += 1
        self._workers[channel] = _Worker(channel, pid, self._registered)
        self._selector.modify(channel, selectors.EVENT_READ, self._closed)
        if self._registered >= self._first_accept_after and not self._listening:
            self._selector.register(self.listener, selectors.EVENT_READ, self._accept)
            self._listening = True
        log.info("worker [%d] takes connections", pid)
        if self.on_register is not None:
            self.on_register(pid)

    def _closed(self, channel: socket.socket) -> None:
        worker = self._workers.get(channel)
        data = _receive(channel, 4096)
        if data is None:
            return
        if not data or worker is None:
            self._drop(channel)
            return
        worker.connections = max(0, worker.connections - data.count(CLOSED))

    def _accept(self, listener: socket.socket) -> None:
        while self._workers:
            try:
                connection, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # e.g. the peer reset it while it waited in the backlog
                continue
            with connection:  # the worker has its own descriptor once sent
                self._hand_out(connection)

    def _hand_out(self, connection: socket.socket) -> None:
        for worker in sorted(self._workers.values(), key=lambda w: (w.connections, w.order)):
            try:
                socket.send_fds(worker.channel, [CONNECTION], [connection.fileno()])
            except (BlockingIOError, InterruptedError):
                continue  # its channel is full (the worker is stuck): the next one
            except OSError:
                self._drop(worker.channel)
                continue
            worker.connections += 1
            return
        # no worker could take it: closing it tells the client at once

    def _drop(self, channel: socket.socket) -> None:
        worker = self._workers.pop(channel, None)
        self._pending.pop(channel, None)
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(channel)
        channel.close()
        if worker is not None:
            log.info("worker [%d] left (%d connections)", worker.pid, worker.connections)
        if not self._workers and self._listening:
            self._selector.unregister(self.listener)
            self._listening = False


def _receive(channel: socket.socket, size: int) -> bytes | None:
    """What a non-blocking channel has: None if nothing yet, b"" if it closed or failed."""
    try:
        return channel.recv(size)
    except (BlockingIOError, InterruptedError):
        return None
    except OSError:
        return b""


class BrokeredServer(uvicorn.Server):
    """A uvicorn server taking its connections from a :class:`ConnectionBroker` at ``address``:
    it registers once the application has started, serves each connection it is handed as if it
    had accepted it, and reports each one that closes. When the broker goes away (the supervisor
    died), the worker shuts down gracefully."""

    def __init__(self, config: Any, address: str) -> None:
        super().__init__(config)
        self.broker_address = address
        self.channel: socket.socket | None = None
        self._unreported = 0
        self._setting_up: set[asyncio.Task] = set()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=[])  # the lifespan, and no listening socket of its own
        if self.should_exit:
            return
        loop = asyncio.get_running_loop()
        channel = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        channel.connect(self.broker_address)
        channel.sendall(f"{os.getpid()}\n".encode())
        channel.setblocking(False)
        self.channel = channel
        protocol_class = self.config.http_protocol_class
        server = self

        class ReportingProtocol(protocol_class):  # type: ignore[misc, valid-type]
            def connection_lost(self, exc: Exception | None) -> None:
                try:
                    super().connection_lost(exc)
                finally:
                    server._report_closed()

        def protocol() -> asyncio.Protocol:
            return ReportingProtocol(
                config=self.config, server_state=self.server_state, app_state=self.lifespan.state, _loop=loop
            )

        self._protocol = protocol
        loop.add_reader(channel.fileno(), self._receive)

    def _receive(self) -> None:
        assert self.channel is not None
        loop = asyncio.get_running_loop()
        while True:
            try:
                message, fds, _, _ = socket.recv_fds(self.channel, 1, 1)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                message, fds = b"", []
            if not message:  # the broker is gone: no more connections will come
                for fd in fds:
                    os.close(fd)
                self._close_channel(loop)
                self.should_exit = True
                return
            for fd in fds:
                task = loop.create_task(self._take(loop, socket.socket(fileno=fd)))
                self._setting_up.add(task)  # the loop keeps only weak references to tasks
                task.add_done_callback(self._setting_up.discard)

    async def _take(self, loop: asyncio.AbstractEventLoop, connection: socket.socket) -> None:
        try:
            await loop.connect_accepted_socket(self._protocol, connection)
        except OSError:  # the client left before the connection was set up
            connection.close()
            self._report_closed()

    def _report_closed(self) -> None:
        self._unreported += 1
        if self.channel is None:
            return
        try:
            sent = self.channel.send(CLOSED * self._unreported)
        except (BlockingIOError, InterruptedError):
            return  # reported with the next one
        except OSError:
            return
        self._unreported -= sent

    def _close_channel(self, loop: asyncio.AbstractEventLoop) -> None:
        if self.channel is not None:
            with contextlib.suppress(ValueError, OSError):
                loop.remove_reader(self.channel.fileno())
            self.channel.close()
            self.channel = None

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # Leave the broker first (it hands out nothing more), then uvicorn's graceful shutdown
        # of the connections this worker holds.
        self._close_channel(asyncio.get_running_loop())
        await super().shutdown(sockets=[])


def _worker_main(address: str, config_options: dict[str, Any]) -> None:
    """A worker process: uvicorn's configuration, served from the broker at ``address``."""
    BrokeredServer(uvicorn.Config(**config_options), address).run()


def run_workers(listener: socket.socket, workers: int, config_options: dict[str, Any], *, grace_s: float) -> int:
    """Serve ``listener`` (bound, not yet listening) from ``workers`` processes, each running
    ``uvicorn.Config(**config_options)``, until SIGTERM or SIGINT.

    A worker that dies is replaced, unless it died before it took connections (a failed start:
    the others would fail too). SIGHUP replaces the workers one at a time, each new one taking
    connections before the old one is told to finish its requests and stop (a restart without
    refusing anyone, as uvicorn's and gunicorn's supervisors do on SIGHUP). Returns the exit
    status: 0 after a requested stop, 1 when a worker could not start."""
    listener.listen(2048)
    broker = ConnectionBroker(listener, first_accept_after=workers)
    started: set[int] = set()
    broker.on_register = started.add
    broker.start()
    context = multiprocessing.get_context("spawn")
    stop, restart = threading.Event(), threading.Event()
    handlers = {signal.SIGTERM: stop.set, signal.SIGINT: stop.set}
    if hasattr(signal, "SIGHUP"):
        handlers[signal.SIGHUP] = restart.set
    previous = {sig: signal.signal(sig, lambda *_, act=act: act()) for sig, act in handlers.items()}

    def spawn() -> multiprocessing.process.BaseProcess:
        process = context.Process(target=_worker_main, args=(broker.address, config_options), name="infragym-worker")
        process.start()
        log.info("started worker process [%d]", process.pid)
        return process

    def retire(process: multiprocessing.process.BaseProcess, deadline: float) -> None:
        """SIGTERM (uvicorn's graceful shutdown), then kill it if it outlives ``deadline``."""
        if process.is_alive():
            os.kill(process.pid, signal.SIGTERM)
        process.join(timeout=max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            log.error("worker process [%d] outlived the grace period; killed", process.pid)
            process.kill()
            process.join()

    def replace(index: int) -> None:
        old, new = processes[index], spawn()
        deadline = time.monotonic() + RESTART_TIMEOUT_S
        while new.pid not in started and new.is_alive() and not stop.is_set() and time.monotonic() < deadline:
            time.sleep(SUPERVISOR_TICK_S)
        if new.pid not in started:
            log.error("worker [%d] did not start; keeping worker [%d]", new.pid, old.pid)
            retire(new, time.monotonic())
            return
        processes[index] = new
        retire(old, time.monotonic() + grace_s + 5.0)

    processes = [spawn() for _ in range(workers)]
    status = 0
    try:
        while not stop.wait(SUPERVISOR_TICK_S):
            if restart.is_set():
                restart.clear()
                log.info("SIGHUP: replacing the workers one at a time")
                for index in range(len(processes)):
                    if not stop.is_set():
                        replace(index)
            for index, process in enumerate(processes):
                if process.is_alive():
                    continue
                process.join()
                if process.pid not in started:
                    log.error("worker [%d] failed to start (exit status %s); stopping", process.pid, process.exitcode)
                    status = 1
                    stop.set()
                    break
                log.warning("worker [%d] died (exit status %s); starting another", process.pid, process.exitcode)
                processes[index] = spawn()
    finally:
        broker.stop()  # no new connections; each worker sees the broker leave
        for process in processes:
            if process.is_alive():
                os.kill(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s + 5.0
        for process in processes:
            retire(process, deadline)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return status


__all__ = ["BrokeredServer", "ConnectionBroker", "run_workers", "supported"]
