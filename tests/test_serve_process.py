"""``infragym serve`` as a real process on loopback: start-up refusals (a tampered export, an
unsigned pickle export, a short token), no training stack in the serving process, a client that
disconnects mid-request, SIGTERM during load, and several workers. Every wait is bounded."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from .conftest import vmr2l_snapshot_json

HOST = "127.0.0.1"
TOKEN = "process-tests-" + "p" * 24
AUTH = {"Authorization": f"Bearer {TOKEN}"}
GRACE_S = 5.0
START_TIMEOUT_S = 120.0
TRAINING_STACK = ("torch", "pytorch_lightning", "lightning", "hydra", "omegaconf", "wandb")
# Runs `infragym serve` (the console script's main) and, however it ends, prints which modules
# of the training stack the serving process imported: serving must import none of them.
SERVE_AND_REPORT = (
    "import json, sys\n"
    "from infragym.cli import main\n"
    "try:\n"
    "    sys.exit(main(sys.argv[1:]))\n"
    "finally:\n"
    f"    heavy = sorted(m for m in {TRAINING_STACK!r} if m in sys.modules)\n"
    "    print('TRAINING_STACK_LOADED=' + json.dumps(heavy), flush=True)\n"
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _serve_command(exports: Sequence[str], *options: str) -> list[str]:
    return [sys.executable, "-c", SERVE_AND_REPORT, "serve", *exports, "--host", HOST, *options]


def _refused(exports: Sequence[str], *options: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``infragym serve`` expecting it to stop before serving."""
    command = _serve_command(exports, "--port", str(_free_port()), *options)
    return subprocess.run(command, capture_output=True, text=True, timeout=START_TIMEOUT_S, env=env)


@dataclass
class Server:
    process: subprocess.Popen
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, timeout_s: float) -> int:
        """SIGTERM, then the exit status (killed if it outlives ``timeout_s``)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
            raise


def _start(exports: Sequence[str], log: Path, *options: str) -> Server:
    port = _free_port()
    with log.open("w") as out:  # a file, not a pipe: a full pipe would block the server
        process = subprocess.Popen(
            _serve_command(exports, "--port", str(port), "--grace-s", str(GRACE_S), *options),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = Server(process, port, log)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"infragym serve exited with {process.returncode}:\n{server.output()[-3000:]}")
        try:
            if httpx.get(f"{server.url}/readyz", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    server.stop(10)
    pytest.fail(f"infragym serve did not get ready in {START_TIMEOUT_S} s:\n{server.output()[-3000:]}")


# --------------------------------------------------------------------------- refusals
def test_a_tampered_export_stops_the_start_up(served_exports: dict[str, Path], tmp_path: Path) -> None:
    tampered = tmp_path / "continuum"
    shutil.copytree(served_exports["continuum"], tampered)
    model_file = next(tampered.glob("quantile_gbm__*.txt"))
    model_file.write_text(model_file.read_text() + "\n")
    result = _refused([str(served_exports["cloudformer"]), str(tampered)])
    assert result.returncode == 1, result.stderr[-2000:]
    assert f"infragym serve: cannot serve {tampered}" in result.stderr
    assert model_file.name in result.stderr and "Traceback" not in result.stderr


def test_an_unsigned_pickle_export_needs_trust(served_exports: dict[str, Path], tmp_path: Path) -> None:
    # Another machine: another signing key, so the Deoxys export's signature does not verify.
    env = {**os.environ, "INFRAGYM_HOME": str(tmp_path / "other_machine")}
    deoxys = str(served_exports["deoxys"])
    result = _refused([deoxys], env=env)
    assert result.returncode == 1, result.stderr[-2000:]
    assert f"infragym serve: cannot serve {deoxys}" in result.stderr and "signature" in result.stderr
    assert "Traceback" not in result.stderr
    # With --trust it loads, and gets as far as binding (a port already taken, to stop there).
    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen()
        command = _serve_command([deoxys], "--trust", "--port", str(taken.getsockname()[1]))
        trusted = subprocess.run(command, capture_output=True, text=True, timeout=START_TIMEOUT_S, env=env)
    assert trusted.returncode != 0 and "address already in use" in trusted.stderr.lower(), trusted.stderr[-2000:]
    assert "cannot serve" not in trusted.stderr


def test_a_short_token_is_refused(served_exports: dict[str, Path], tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("short\n")
    result = _refused([str(served_exports["continuum"])], "--token-file", str(token_file))
    assert result.returncode == 1 and f"the bearer token in the token file {token_file}" in result.stderr
    empty = _refused([str(served_exports["continuum"])], env={**os.environ, "INFRAGYM_SERVE_TOKEN": ""})
    assert empty.returncode == 1 and "INFRAGYM_SERVE_TOKEN is empty" in empty.stderr


# --------------------------------------------------------------------------- a running service
@pytest.fixture(scope="module")
def server(served_exports: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The ONNX and JSON exports behind one process (loopback, a token, two inference threads)."""
    folder = tmp_path_factory.mktemp("server")
    token_file = folder / "token"
    token_file.write_text(TOKEN + "\n")
    exports = [str(served_exports[name]) for name in ("continuum", "cloudformer", "vm2rl")]
    running = _start(exports, folder / "server.log", "--token-file", str(token_file), "--threads", "2")
    yield running
    if running.process.poll() is None:
        running.stop(GRACE_S + 10)


def _plan_body(max_migrations: int) -> dict:
    return {"snapshot": vmr2l_snapshot_json(), "max_migrations": max_migrations}


def test_the_process_serves_every_model(server: Server) -> None:
    with httpx.Client(base_url=server.url, headers=AUTH, timeout=30) as client:
        listed = client.get("/v1/models").json()["models"]
        assert sorted(m["name"] for m in listed) == ["cloudformer", "continuum", "vm2rl"]
        ttl = client.post("/v1/models/continuum/ttl", json={"tool_calls": [{"tool": "bash", "reload_s": 2.0}]})
        assert ttl.status_code == 200 and len(ttl.json()["ttl_s"]) == 1
        plan = client.post("/v1/models/vm2rl/act", json=_plan_body(3))
        assert plan.status_code == 200 and len(plan.json()["migrations"]) <= 3
        assert httpx.get(f"{server.url}/v1/models", timeout=5).status_code == 401


def test_a_client_that_disconnects_mid_request_leaves_the_service_healthy(server: Server) -> None:
    def request(calls: int) -> tuple[bytes, bytes]:
        body = json.dumps({"tool_calls": [{"tool": "bash", "arguments": "x" * 1000}] * calls}).encode()
        head = (
            f"POST /v1/models/continuum/predict HTTP/1.1\r\nHost: {HOST}\r\nAuthorization: Bearer {TOKEN}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        return head, body

    large_head, large_body = request(3000)  # 3 MB
    small_head, small_body = request(20)
    # headers only; half of a large body; a whole small one and no wait for the answer
    for sent in (large_head, large_head + large_body[: len(large_body) // 2], small_head + small_body):
        with socket.create_connection((HOST, server.port), timeout=10) as sock:
            sock.sendall(sent)
        # (closed here: mid-request, or before the answer)
    with httpx.Client(base_url=server.url, headers=AUTH, timeout=30) as client:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and client.get("/healthz").status_code != 200:
            time.sleep(0.1)
        assert client.get("/healthz").status_code == 200
        again = client.post("/v1/models/continuum/predict", json={"tool_calls": [{"tool": "bash"}]})
        assert again.status_code == 200
    assert server.process.poll() is None
    assert "Traceback" not in server.output()


def test_sigterm_during_load_finishes_in_flight_requests_within_the_grace_period(server: Server) -> None:
    # Plans of about a second each (4 sampled trajectories), six at once on two inference
    # threads: at SIGTERM two are computing and four are queued, all within the grace period.
    body = json.dumps({**_plan_body(20), "samples": 4}).encode()
    outcomes: list[tuple[object, float]] = []  # (status or the transport error, when it ended)
    lock = threading.Lock()

    def call() -> None:
        try:
            response = httpx.post(
                f"{server.url}/v1/models/vm2rl/act",
                content=body,
                headers={**AUTH, "Content-Type": "application/json"},
                timeout=GRACE_S + 20,
            )
            outcome: object = response.status_code
        except httpx.TransportError as err:  # the connection closed: allowed, never a 5xx
            outcome = type(err).__name__
        with lock:
            outcomes.append((outcome, time.monotonic()))

    callers = [threading.Thread(target=call) for _ in range(6)]
    for caller in callers:
        caller.start()
    time.sleep(0.7)  # all six sent, none finished
    signalled = time.monotonic()
    returncode = server.stop(GRACE_S + 10)
    elapsed = time.monotonic() - signalled
    for caller in callers:
        caller.join(timeout=GRACE_S + 25)
    assert returncode == 0, server.output()[-3000:]
    assert elapsed < GRACE_S + 5, elapsed
    assert len(outcomes) == len(callers)
    # 200, or the connection closed; a request still computing when the grace period ran out
    # (a slow machine) is told 503, never 500
    cut = signalled + GRACE_S
    assert all(
        status == 200 or isinstance(status, str) or (status == 503 and ended > cut) for status, ended in outcomes
    ), (signalled, outcomes)
    # requests in flight at SIGTERM were finished, not dropped
    assert any(status == 200 and ended > signalled for status, ended in outcomes), (signalled, outcomes)
    assert "Traceback" not in server.output()


def test_the_serving_process_imported_no_training_stack(server: Server) -> None:
    if server.process.poll() is None:  # (run alone: stop it here)
        assert server.stop(GRACE_S + 10) == 0
    report = [line for line in server.output().splitlines() if line.startswith("TRAINING_STACK_LOADED=")]
    assert report, server.output()[-3000:]
    assert json.loads(report[-1].partition("=")[2]) == []


# --------------------------------------------------------------------------- workers
def test_two_workers_serve_requests(served_exports: dict[str, Path], tmp_path: Path) -> None:
    server = _start([str(served_exports["continuum"])], tmp_path / "workers.log", "--workers", "2")
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            for _ in range(20):
                response = client.post("/v1/models/continuum/predict", json={"tool_calls": [{"tool": "bash"}]})
                assert response.status_code == 200, response.text
        deadline = time.monotonic() + START_TIMEOUT_S  # each worker loads the export itself
        while time.monotonic() < deadline and server.output().count("Application startup complete") < 2:
            time.sleep(0.2)
        assert server.output().count("Application startup complete") == 2, server.output()[-3000:]
        # a new connection per request, so both workers answer some; every scrape of /metrics,
        # whichever worker answers it, counts all of them
        for _ in range(20):
            response = httpx.post(f"{server.url}/v1/models/continuum/predict", json={"tool_calls": [{"tool": "bash"}]})
            assert response.status_code == 200, response.text
        if Path("/proc/net/tcp").is_file():
            # 16 keep-alive connections opened together: the supervisor hands each to the worker
            # holding the fewest, 8 and 8 (one shared socket gave one worker all of them, and
            # SO_REUSEPORT's hash anything from 16/0 to 8/8)
            clients = [httpx.Client(base_url=server.url, timeout=30) for _ in range(16)]
            try:
                for c in clients:
                    assert c.get("/healthz").status_code == 200
                held = _connections_per_worker(server)
                assert sorted(held.values()) == [8, 8], held
            finally:
                for c in clients:
                    c.close()
        for _ in range(4):
            text = httpx.get(f"{server.url}/metrics", timeout=10).text
            counted = sum(
                sample.value
                for family in text_string_to_metric_families(text)
                if family.name == "infragym_requests"
                for sample in family.samples
                if sample.name == "infragym_requests_total" and sample.labels.get("model") == "continuum"
            )
            assert counted == 40, text
    finally:
        returncode = server.stop(GRACE_S + 15)
    assert returncode == 0, server.output()[-3000:]


def _connections_per_worker(server: Server) -> dict[int, int]:
    """Established TCP connections on the server's port held by each of its child processes
    (Linux /proc)."""
    established = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not Path(table).is_file():
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == server.port and fields[3] == "01":  # 01: ESTABLISHED
                established.add(fields[9])  # the socket's inode
    held: dict[int, int] = {}
    children = Path(f"/proc/{server.process.pid}/task/{server.process.pid}/children").read_text().split()
    for pid in map(int, children):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:[") and target[8:-1] in established:
                held[pid] = held.get(pid, 0) + 1
    return held


@pytest.mark.skipif(not Path("/proc/net/tcp").is_file(), reason="reads the processes from /proc (Linux)")
def test_a_dead_worker_is_replaced_sighup_replaces_all_and_sigterm_stops_them(
    served_exports: dict[str, Path], tmp_path: Path
) -> None:
    server = _start([str(served_exports["continuum"])], tmp_path / "respawn.log", "--workers", "2")
    body = {"tool_calls": [{"tool": "bash"}]}

    def registered() -> list[int]:  # the workers, in the order they took connections (log)
        return [int(pid) for pid in re.findall(r"worker \[(\d+)\] takes connections", server.output())]

    try:
        first = registered()
        assert len(first) == 2, server.output()[-3000:]
        os.kill(first[0], signal.SIGKILL)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline and len(registered()) < 3:
            time.sleep(0.2)
        assert len(registered()) == 3, server.output()[-3000:]
        children = _children(server)
        assert first[0] not in children and {first[1], registered()[2]} <= children, (first, registered(), children)
        # new connections are served, by the survivor and the replacement alike
        clients = [httpx.Client(base_url=server.url, timeout=30) for _ in range(4)]
        try:
            for c in clients:
                assert c.post("/v1/models/continuum/predict", json=body).status_code == 200
            assert sorted(_connections_per_worker(server).values()) == [2, 2]
            # SIGHUP: both workers replaced one at a time; a client holding a connection to an
            # old worker is answered until that worker closes it, then a new one answers
            os.kill(server.process.pid, signal.SIGHUP)
            deadline = time.monotonic() + START_TIMEOUT_S
            while time.monotonic() < deadline and (len(registered()) < 5 or len(_children(server)) > 3):
                assert clients[0].post("/v1/models/continuum/predict", json=body).status_code == 200
                time.sleep(0.2)
            assert len(registered()) == 5, server.output()[-3000:]
            assert set(registered()[3:]) <= _children(server) and not set(registered()[:3]) & _children(server)
            with httpx.Client(base_url=server.url, timeout=30) as fresh:
                assert fresh.post("/v1/models/continuum/predict", json=body).status_code == 200
        finally:
            for c in clients:
                c.close()
    finally:
        returncode = server.stop(GRACE_S + 15)
    assert returncode == 0, server.output()[-3000:]
    assert "Traceback" not in server.output()


def _children(server: Server) -> set[int]:
    return set(map(int, Path(f"/proc/{server.process.pid}/task/{server.process.pid}/children").read_text().split()))
