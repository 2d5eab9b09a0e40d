"""The connection broker of ``infragym serve --workers N`` (``infragym.serve.workers``), with
stand-in workers: connections go to the worker holding the fewest, closed ones are counted back,
a worker that leaves gets nothing more, and nothing is accepted before the first workers
registered. Every wait is bounded."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator

import pytest

from infragym.serve import workers

pytestmark = pytest.mark.skipif(not workers.supported(), reason="passing connections needs POSIX (socket.send_fds)")

HOST = "127.0.0.1"
WAIT_S = 10.0


class StandInWorker:
    """Registers with the broker like a worker and keeps the connections it is handed."""

    def __init__(self, address: str, pid: int) -> None:
        self.pid = pid
        self.channel = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.channel.connect(address)
        self.channel.sendall(f"{pid}\n".encode())
        self.channel.settimeout(0.05)
        self.connections: list[socket.socket] = []

    def take(self) -> None:
        """Everything handed out so far (each connection a descriptor on one byte)."""
        while True:
            try:
                message, fds, _, _ = socket.recv_fds(self.channel, 1, 1)
            except TimeoutError:
                return
            assert message == workers.CONNECTION and len(fds) == 1
            self.connections.append(socket.socket(fileno=fds[0]))

    def close_connections(self, n: int) -> None:
        for _ in range(n):
            self.connections.pop().close()
        self.channel.sendall(workers.CLOSED * n)

    def leave(self) -> None:
        for connection in self.connections:
            connection.close()
        self.channel.close()


@pytest.fixture
def broker() -> Iterator[workers.ConnectionBroker]:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind((HOST, 0))
    listener.listen(64)
    running = workers.ConnectionBroker(listener, first_accept_after=2)
    running.start()
    yield running
    running.stop()


def _connect(broker: workers.ConnectionBroker, n: int) -> list[socket.socket]:
    port = broker.listener.getsockname()[1]
    return [socket.create_connection((HOST, port), timeout=WAIT_S) for _ in range(n)]


def _until(condition, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.01)
    pytest.fail(f"not within {WAIT_S} s: {what}")


def _registered(broker: workers.ConnectionBroker, *stand_ins: StandInWorker) -> None:
    _until(lambda: set(broker.connections()) == {w.pid for w in stand_ins}, "the workers registered")


def test_connections_go_to_the_worker_holding_the_fewest(broker: workers.ConnectionBroker) -> None:
    a, b = StandInWorker(broker.address, 101), StandInWorker(broker.address, 102)
    _registered(broker, a, b)
    clients = _connect(broker, 8)
    _until(lambda: sum(broker.connections().values()) == 8, "8 connections handed out")
    a.take(), b.take()
    assert len(a.connections) == len(b.connections) == 4
    # each handed-out descriptor is the client's connection: bytes go through
    for client in clients:
        client.sendall(b"ping")
    for connection in a.connections + b.connections:
        connection.settimeout(WAIT_S)
        assert connection.recv(4) == b"ping"

    # a closes three: the next three new connections go to a
    a.close_connections(3)
    _until(lambda: broker.connections() == {101: 1, 102: 4}, "closes counted")
    clients += _connect(broker, 3)
    _until(lambda: broker.connections() == {101: 4, 102: 4}, "the new connections to the emptier worker")
    a.take()
    assert len(a.connections) == 4

    # a worker that leaves gets nothing more
    a.leave()
    _until(lambda: set(broker.connections()) == {102}, "the worker that left forgotten")
    clients += _connect(broker, 2)
    _until(lambda: broker.connections() == {102: 6}, "new connections to the remaining worker")
    b.take()
    assert len(b.connections) == 6
    b.leave()
    for client in clients:
        client.close()


def test_nothing_is_accepted_before_the_first_workers_registered(broker: workers.ConnectionBroker) -> None:
    a = StandInWorker(broker.address, 201)
    _registered(broker, a)
    clients = _connect(broker, 4)  # they wait in the listen backlog
    time.sleep(0.3)
    a.take()
    assert a.connections == [] and broker.connections() == {201: 0}
    b = StandInWorker(broker.address, 202)
    _until(lambda: sum(broker.connections().values()) == 4, "the waiting connections handed out")
    a.take(), b.take()
    assert len(a.connections) == len(b.connections) == 2
    for stand_in in (a, b):
        stand_in.leave()
    for client in clients:
        client.close()


def test_a_channel_that_does_not_register_properly_is_dropped(broker: workers.ConnectionBroker) -> None:
    bad = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    bad.connect(broker.address)
    bad.sendall(b"not a pid\n")
    bad.settimeout(WAIT_S)
    assert bad.recv(1) == b""  # the broker closed it
    bad.close()
    assert broker.connections() == {}


def test_the_broker_socket_is_private_to_this_user(broker: workers.ConnectionBroker) -> None:
    folder = os.path.dirname(broker.address)
    assert os.stat(folder).st_mode & 0o077 == 0
    broker.stop()
    assert not os.path.exists(broker.address)
