"""Load test of the decision service: one ``infragym serve`` service serving four models at once
(Deoxys, Continuum, CloudFormer, VM2RL), loaded on loopback by closed-loop keep-alive clients
(``_loadgen``: asyncio on uvloop, answers parsed by httptools).

Per model and operation: single-item requests at each concurrency (1, 8, 32; 30 s each by
default), then a batch (32 items) at concurrency 8. Reported: req/s, p50/p99 latency (client
side) and the error rate of every level, and the load average of the machine before and after.

The exports are those of the README's own training runs: ``python train.py experiment=deoxys``
and ``experiment=continuum`` (``logger=none``); CloudFormer's is the paper-scale network on
30 s x 206-metric windows (``TRAINING_RUNS``); trained into
``outputs/bench_serve/<experiment>/`` when not given with ``--exports`` and reused while they
verify; VM2RL is the shipped checkpoint, ``checkpoints/vm2rl``. The request bodies are each
operation's own example, extended to the export's sizes: a CloudFormer window is the export's
window x metrics, VM2RL's is the real VMR2L medium snapshot with a budget of one migration.

    python bench/serve/load.py [--seconds 30] [--exports deoxys=PATH ...] [--models deoxys vm2rl]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

# Run as a script, this file's folder is on sys.path, not the checkout: put the checkout there
# so that the suite's shared helpers import as ``bench._common``.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench._common import ROOT, Benchmark, Check, data_dir, finish, load_result, write_result

# ~12 min of load; training the three exports first adds ~10 min on 2 idle cores.
BENCHMARKS = (Benchmark("serve_load", minutes=20),)

RESULT = "serve_load"
ISSUE = 13
# Issue 13, single-item requests at concurrency 8: p99 latency (ms) per model and operation.
P99_GOALS_MS = {
    ("deoxys", "predict"): 50.0,
    ("continuum", "predict"): 10.0,
    ("cloudformer", "predict"): 30.0,  # one 30 s x 206-metric window (TRAINING_RUNS)
    ("vm2rl", "act"): 100.0,  # one migration on the medium snapshot
}
GOAL_CONCURRENCY = 8
# Issue 13: the Continuum TTL endpoint answers at least this many single-item requests per second
# (the best of the concurrency levels), and nothing fails under load.
TTL_GOAL_REQUESTS_PER_S = 500.0
GOAL_ERROR_RATE = 0.0

MODELS = ("deoxys", "continuum", "cloudformer", "vm2rl")
# The training runs whose exports are served: the README's own, except CloudFormer, whose
# README run is scaled down for CPU training (68 metrics); the issue's request is one 30 s x
# 206-metric window, so its export is the paper-scale network (d 64, 4 heads, 4 blocks per
# branch, FFN 256) on all 206 metrics, trained on the smoke preset's small data (latency, not
# accuracy, is what is measured here).
TRAINING_RUNS = {
    "deoxys": ["experiment=deoxys"],
    "continuum": ["experiment=continuum"],
    "cloudformer": [
        "experiment=cloudformer_full",
        "debug=cloudformer_full",
        "trainer=cpu",
        "model.d_model=64",
        "model.ff=256",
        "env.group_sizes=null",
        "env.min_seconds=30",
        "env.max_seconds=40",
        "dataset.serving_window=30",
    ],
}
SHIPPED_VM2RL = ROOT / "checkpoints" / "vm2rl"
MEDIUM_SNAPSHOT = data_dir() / "vm_snapshots" / "vmr2l_c1_2022-03-28.json"
CACHE = ROOT / "outputs" / "bench_serve"
# VM2RL answers one snapshot per request: there is no batch form to load.
UNBATCHED = {("vm2rl", "act")}


def check(result: dict) -> list[Check]:
    levels = result["levels"]
    single = {(r["model"], r["operation"], r["concurrency"]): r for r in levels if r["items"] == 1}
    checks = []
    for (model, operation), goal_ms in P99_GOALS_MS.items():
        what = f"{model} {operation}, 1 item, concurrency {GOAL_CONCURRENCY}: p99"
        r = single.get((model, operation, GOAL_CONCURRENCY))
        if r is None:
            checks.append(Check(what, "not measured", f"<= {goal_ms:g} ms", None))
            continue
        checks.append(
            Check(
                what,
                f"{r['p99_ms']:.1f} ms (p50 {r['p50_ms']:.1f} ms, {r['requests_per_s']:.0f} req/s)",
                f"<= {goal_ms:g} ms",
                r["p99_ms"] <= goal_ms,
                open_issue=ISSUE,
            )
        )
    ttl = [r for (model, operation, _), r in single.items() if (model, operation) == ("continuum", "ttl")]
    what = "continuum ttl, 1 item: best req/s over the concurrency levels"
    if ttl:
        best = max(ttl, key=lambda r: r["requests_per_s"])
        checks.append(
            Check(
                what,
                f"{best['requests_per_s']:.0f} req/s (concurrency {best['concurrency']})",
                f">= {TTL_GOAL_REQUESTS_PER_S:g} req/s",
                best["requests_per_s"] >= TTL_GOAL_REQUESTS_PER_S,
                open_issue=ISSUE,
            )
        )
    else:
        checks.append(Check(what, "not measured", f">= {TTL_GOAL_REQUESTS_PER_S:g} req/s", None))
    requests = sum(r["requests"] for r in levels)
    errors = sum(r["errors"] for r in levels)
    checks.append(
        Check(
            "error rate under load, every level",
            f"{errors} of {requests:,} requests",
            "0",
            requests > 0 and errors / requests <= GOAL_ERROR_RATE,
            open_issue=ISSUE,
        )
    )
    return checks


# --------------------------------------------------------------------------- exports
def train_export(model: str, retrain: bool) -> Path:
    """The export of ``python train.py <TRAINING_RUNS[model]> logger=none`` in the cache, trained
    unless a previous one of the same run still verifies (checksums, and the signature with this
    machine's key)."""
    from infragym.export import ExportError, verify_export

    overrides = TRAINING_RUNS[model]
    experiment = model
    run_dir = CACHE / experiment
    stamp = run_dir / "load_test_run.json"
    # an export cached without a stamp came from ``experiment=<model>`` alone
    trained_with = json.loads(stamp.read_text()) if stamp.is_file() else [f"experiment={model}"]
    if trained_with != overrides:
        retrain = True
    export = run_dir / "export"
    if export.is_dir() and not retrain:
        try:
            verify_export(export)
            print(f"{experiment}: reusing {export.relative_to(ROOT)}", flush=True)
            return export
        except ExportError as err:
            print(f"{experiment}: retraining ({err})", flush=True)
    # a fresh run folder: a run reads back the data an earlier one simulated there
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        "train.py",
        *overrides,
        "logger=none",
        f"hydra.run.dir={run_dir}",
        f"paths.log_dir={CACHE / 'logs'}",
    ]
    print(f"{experiment}: {' '.join(command[1:])} (log: {run_dir}.log)", flush=True)
    started = time.perf_counter()
    with open(f"{run_dir}.log", "w") as log:
        subprocess.run(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, check=True)
    stamp.write_text(json.dumps(overrides))
    print(f"{experiment}: trained in {time.perf_counter() - started:.0f} s", flush=True)
    return export


def resolve_exports(given: list[str], models: list[str], retrain: bool) -> dict[str, Path]:
    """Model name -> export folder: ``--exports NAME=PATH`` first, else trained or shipped."""
    exports: dict[str, Path] = {}
    for spec in given:
        name, sep, path = spec.partition("=")
        if not sep or name not in MODELS:
            raise SystemExit(f"--exports takes NAME=PATH with NAME one of {', '.join(MODELS)}; got {spec!r}")
        exports[name] = Path(path)
    for name in models:
        if name not in exports:
            exports[name] = SHIPPED_VM2RL if name == "vm2rl" else train_export(name, retrain)
    return {name: exports[name] for name in models}


# --------------------------------------------------------------------------- request bodies
def request_bodies(exports: dict[str, Path], batch: int, trust: bool) -> dict[tuple[str, str], dict[int, bytes]]:
    """(model, operation) -> items -> encoded body: each operation's example, at 1 and ``batch``
    items, with the export's own shapes (the models are loaded here only to build them)."""
    from infragym.serve import load_models

    bodies: dict[tuple[str, str], dict[int, bytes]] = {}
    for model in load_models([f"{name}={path}" for name, path in exports.items()], trust=trust):
        for operation in model.operations.values():
            example = operation.example()
            key = (model.name, operation.name)
            if key == ("vm2rl", "act"):
                if not MEDIUM_SNAPSHOT.is_file():
                    raise SystemExit(f"VM2RL's request is the VMR2L medium snapshot, {MEDIUM_SNAPSHOT}: not found")
                # The real medium snapshot, as a cluster manager would send it, with a budget of one.
                snapshot = json.loads(MEDIUM_SNAPSHOT.read_text())
                bodies[key] = {1: json.dumps({"snapshot": snapshot, "max_migrations": 1}).encode()}
                continue
            # Every batched operation takes one list of items (events, windows, tool calls).
            [(field, items)] = [(k, v) for k, v in example.items() if isinstance(v, list)]
            sizes = {1} if key in UNBATCHED else {1, batch}
            bodies[key] = {n: json.dumps({**example, field: (items * n)[:n]}).encode() for n in sorted(sizes)}
    return bodies


# --------------------------------------------------------------------------- the server
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(
    exports: dict[str, Path], port: int, *, workers: int, threads: int, trust: bool, log: Path
) -> subprocess.Popen:
    """``infragym serve`` as a user starts it, on loopback; returns once it is ready."""
    import httpx

    command = [
        sys.executable,
        "-m",
        "infragym.cli",
        "serve",
        *(f"{name}={path}" for name, path in exports.items()),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--threads",
        str(threads),
        "--log-level",
        "warning",
        *(["--trust"] if trust else []),
    ]
    print("server:", " ".join(command[1:]), flush=True)
    with open(log, "w") as handle:
        server = subprocess.Popen(command, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited with status {server.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    stop_server(server)
    raise SystemExit(f"the server was not ready within 600 s; its log: {log}")


def server_latency(base_url: str, model: str, operation: str) -> tuple[float, float]:
    """Seconds spent and requests answered so far by the service for one operation (its
    Prometheus latency histogram): the server's share of the latency the clients see."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    totals = {"sum": 0.0, "count": 0.0}
    for family in text_string_to_metric_families(httpx.get(f"{base_url}/metrics", timeout=30).text):
        if family.name != "infragym_request_latency_seconds":
            continue
        for sample in family.samples:
            if sample.labels.get("model") == model and sample.labels.get("operation") == operation:
                for kind in totals:
                    if sample.name.endswith(f"_{kind}"):
                        totals[kind] += sample.value
    return totals["sum"], totals["count"]


def connections_per_worker(server: subprocess.Popen, port: int) -> list[int] | None:
    """Established connections on ``port`` held by each of the server's processes, largest
    first (Linux /proc; None elsewhere): how the load was spread over the workers."""
    tables = [Path(t) for t in ("/proc/net/tcp", "/proc/net/tcp6") if Path(t).is_file()]
    if not tables:
        return None
    established = set()
    for table in tables:
        for line in table.read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01":  # 01: ESTABLISHED
                established.add(fields[9])  # the socket's inode
    children = Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()
    held = []
    for pid in [server.pid, *map(int, children)]:
        count = 0
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            count += target.startswith("socket:[") and target[8:-1] in established
        if count:
            held.append(count)
    return sorted(held, reverse=True)


def stop_server(server: subprocess.Popen) -> None:
    if server.poll() is None:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


# --------------------------------------------------------------------------- main
def main() -> int:
    from bench.serve._loadgen import run_load

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="duration of each load level")
    parser.add_argument("--max-requests", type=int, default=200_000, help="request bound of each load level")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--batch", type=int, default=32, help="items per request of the batch level")
    parser.add_argument("--batch-concurrency", type=int, default=8)
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--exports", nargs="+", default=[], metavar="NAME=PATH", help="exports to serve")
    parser.add_argument("--retrain", action="store_true", help="train the exports again, ignoring the cache")
    parser.add_argument("--trust", action="store_true", help="serve unsigned code-bearing exports (--trust)")
    parser.add_argument("--workers", type=int, default=2, help="server worker processes (one per core here)")
    # One inference thread per worker, one worker per core: each worker answers its requests in
    # order. Two threads per worker measured p99 29-32 ms against 23-27 ms for CloudFormer at
    # concurrency 8 (two ONNX runs at once in each process, four on two cores).
    parser.add_argument("--threads", type=int, default=1, help="inference threads per worker")
    args = parser.parse_args()

    exports = resolve_exports(args.exports, args.models, args.retrain)
    bodies = request_bodies(exports, args.batch, args.trust)
    port = free_port()
    CACHE.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    server = start_server(
        exports, port, workers=args.workers, threads=args.threads, trust=args.trust, log=CACHE / "server.log"
    )
    base_url = f"http://127.0.0.1:{port}"
    levels: list[dict[str, Any]] = []
    try:
        for (model, operation), sized in bodies.items():
            plan = [(1, c) for c in args.concurrency]
            plan += [(n, args.batch_concurrency) for n in sized if n != 1]
            for items, concurrency in plan:
                served_before = server_latency(base_url, model, operation)
                # the spread of the clients' connections over the workers, half-way through
                spread: dict[str, Any] = {}
                probe = threading.Timer(
                    args.seconds / 2, lambda into=spread: into.update(c=connections_per_worker(server, port))
                )
                probe.start()
                measured = run_load(
                    base_url,
                    f"/v1/models/{model}/{operation}",
                    sized[items],
                    concurrency=concurrency,
                    seconds=args.seconds,
                    max_requests=args.max_requests,
                )
                probe.join()
                served_after = server_latency(base_url, model, operation)
                handled = served_after[1] - served_before[1]
                row = {
                    "measured_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                    "load_average_before": list(os.getloadavg()),
                    "model": model,
                    "operation": operation,
                    "items": items,
                    "body_bytes": len(sized[items]),
                    **measured.as_dict(),
                    "connections_per_worker": spread.get("c"),
                    # the service's own mean time per request (its histogram; warm-up included)
                    "server_mean_ms": 1000 * (served_after[0] - served_before[0]) / handled if handled else None,
                }
                levels.append(row)
                print(
                    f"{model:12s} {operation:8s} items {items:3d} c {concurrency:3d}: "
                    f"{measured.requests_per_s:8.1f} req/s  p50 {measured.p50_ms:7.1f} ms  "
                    f"p99 {measured.p99_ms:7.1f} ms  client CPU {measured.client_cpu_ms or float('nan'):5.2f} ms  "
                    f"server {row['server_mean_ms'] or float('nan'):6.1f} ms  "
                    f"errors {measured.errors}/{measured.requests}  connections {spread.get('c')}"
                    + (f"  first: {measured.first_error}" if measured.first_error else ""),
                    flush=True,
                )
    finally:
        stop_server(server)
    load_after = os.getloadavg()
    from infragym.export import verify_export

    exports_info = {
        name: {
            "path": str(path.resolve().relative_to(ROOT) if path.resolve().is_relative_to(ROOT) else path),
            "input_schema": _shape_of(verify_export(path, trust=True)["input_schema"]),
        }
        for name, path in exports.items()
    }
    kept = _earlier_levels(set(args.models))
    if kept:
        # a run of some models keeps the other models' levels from the last run, each row with
        # its own time and load
        levels = kept["levels"] + levels
        exports_info = {**kept["exports"], **exports_info}

    result = {
        "goals": {
            "p99_ms_at_concurrency_8": {f"{m}/{o}": g for (m, o), g in P99_GOALS_MS.items()},
            "continuum_ttl_requests_per_s": TTL_GOAL_REQUESTS_PER_S,
            "error_rate": GOAL_ERROR_RATE,
        },
        "seconds_per_level": args.seconds,
        "max_requests_per_level": args.max_requests,
        "server": {"workers": args.workers, "threads": args.threads, "command": "infragym serve"},
        "exports": exports_info,
        "vm2rl_snapshot": MEDIUM_SNAPSHOT.name,
        "load_average_before": list(load_before),
        "load_average_after": list(load_after),
        "levels": levels,
        "note": "client-side latency; load generator and server share the machine's cores with other jobs",
    }
    write_result(RESULT, result)
    return finish(RESULT, check(result))


def _earlier_levels(models: set[str]) -> dict[str, Any] | None:
    """The last result's levels and exports of the models not in ``models`` (None if none)."""
    earlier = load_result(RESULT)
    if not earlier or models >= set(MODELS):
        return None
    rows = [
        {"measured_at": earlier.get("date"), "load_average_before": earlier.get("load_average_before"), **row}
        for row in earlier.get("levels", [])
        if row.get("model") not in models
    ]
    exports = {k: v for k, v in earlier.get("exports", {}).items() if k not in models}
    return {"levels": rows, "exports": exports} if rows else None


def _shape_of(input_schema: dict[str, Any]) -> dict[str, Any]:
    """The sizes that set a request's cost (CloudFormer's window and metrics), not whole schemas."""
    return {k: v for k, v in input_schema.items() if k in ("window", "n_metrics", "type")}


if __name__ == "__main__":
    sys.exit(main())
