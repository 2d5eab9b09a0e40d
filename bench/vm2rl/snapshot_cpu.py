"""CPU of answering one VM2RL snapshot request (``infragym serve``'s ``vm2rl act`` with a whole
VMR2L snapshot in the body), piece by piece, on the medium snapshot (280 PMs, 2,089 VMs, 288
anti-affinity groups; the request body is 587 KB).

Pieces: the typed decode of the body (msgspec), the snapshot from the decoded structs
(``snapshot_from_struct``: columns, groups, validation, free-field report), ``ClusterState``
(the simulator state the policy runs on), one call of the policy's ONNX encoder, and the whole
server-side answer (``OperationAnswer``: bytes in, bytes out; one migration). Process CPU time
per call, the median of 7 rounds that alternate the pieces, in one process pinned to one core,
with the loaded objects frozen out of the garbage collector's reach as the service freezes them.

    taskset -c 1 python bench/vm2rl/snapshot_cpu.py [--snapshot PATH] [--rounds 7]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

# Run as a script, this file's folder is on sys.path, not the checkout: put the checkout there
# so that the suite's shared helpers import as ``bench._common``.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench._common import ROOT, Benchmark, Check, data_dir, finish, write_result

BENCHMARKS = (Benchmark("vm2rl_snapshot_cpu", minutes=1.0),)

RESULT = "vm2rl_snapshot_cpu"
# Diagnostic for issue 13's VM2RL latency goal (measured end to end by bench/serve/load.py):
# where a snapshot request's CPU goes. Reading the snapshot into the simulator state
# (snapshot_from_struct + ClusterState) took 3.8-4.4 ms on the medium snapshot with the code
# before the compiled kernels (paired pinned runs, load 0.4-0.7), shown for reference.
READ_BEFORE_MS = "3.8-4.4"
DEFAULT_SNAPSHOT = data_dir() / "vm_snapshots" / "vmr2l_c1_2022-03-28.json"
CHECKPOINT = ROOT / "checkpoints" / "vm2rl"


def check(result: dict) -> list[Check]:
    ms = result["cpu_ms"]
    read = ms["snapshot_from_struct"] + ms["cluster_state"]
    checks = [
        Check(
            f"snapshot_from_struct + ClusterState, medium snapshot, CPU per request (before: {READ_BEFORE_MS} ms)",
            f"{read:.2f} ms",
            "-",
            None,
        )
    ]
    for name in ("decode", "encoder", "answer"):
        if name in ms:
            checks.append(Check(f"{name}, medium snapshot, CPU per call", f"{ms[name]:.2f} ms", "-", None))
    return checks


def _per_call_ms(fn: Callable[[], object], calls: int) -> float:
    started = time.process_time()
    for _ in range(calls):
        fn()
    return (time.process_time() - started) / calls * 1e3


def main() -> int:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import numpy as np

    from infragym.envs.cluster.state import ClusterState
    from infragym.envs.cluster.vmr2l_typed import snapshot_from_struct
    from infragym.models.vm2rl.policy import ENCODER_INPUTS, observe
    from infragym.models.vm2rl.serving import _REQUEST_DECODER
    from infragym.serve import load_models
    from infragym.serve.dispatch import OperationAnswer

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--snapshot", default=str(DEFAULT_SNAPSHOT))
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    if not os.path.isfile(args.snapshot):
        print(f"{args.snapshot}: not found (set INFRAGYM_DATA to the shared data folder)", file=sys.stderr)
        return 1
    raw = json.dumps({"snapshot": json.loads(Path(args.snapshot).read_text()), "max_migrations": 1}).encode()
    body = _REQUEST_DECODER.decode(raw)
    snapshot = snapshot_from_struct(body.snapshot)
    if snapshot is None:
        print(f"{args.snapshot}: not in the usual form the service reads directly", file=sys.stderr)
        return 1
    [model] = load_models([f"vm2rl={CHECKPOINT}"])
    answer = OperationAnswer("vm2rl act", model.operations["act"])
    net = model.predictor.net
    obs = observe(ClusterState(snapshot), 1)
    feed = {k: np.asarray(obs[k])[None] for k in ENCODER_INPUTS}
    pieces: dict[str, tuple[Callable[[], object], int]] = {
        "decode": (lambda: _REQUEST_DECODER.decode(raw), 100),
        "snapshot_from_struct": (lambda: snapshot_from_struct(body.snapshot), 100),
        "cluster_state": (lambda: ClusterState(snapshot), 200),
        "encoder": (lambda: net.encode(feed), 30),
        "answer": (lambda: answer(raw), 20),
    }
    for fn, _ in pieces.values():  # warm-up: compiled kernels, caches
        for _ in range(3):
            fn()
    gc.freeze()  # as `infragym serve` does once its models are loaded
    rounds: dict[str, list[float]] = {name: [] for name in pieces}
    load_before = os.getloadavg()
    for _ in range(args.rounds):
        for name, (fn, calls) in pieces.items():
            rounds[name].append(_per_call_ms(fn, calls))
    cpu_ms = {name: statistics.median(values) for name, values in rounds.items()}
    for name, value in cpu_ms.items():
        print(f"{name:22s} {value:7.3f} ms  (rounds: {', '.join(f'{v:.2f}' for v in rounds[name])})")
    result = {
        "snapshot": Path(args.snapshot).name,
        "pms": snapshot.n_pms,
        "vms": snapshot.n_vms,
        "groups": len(snapshot.group_members),
        "body_bytes": len(raw),
        "cpu_ms": cpu_ms,
        "rounds_ms": rounds,
        "loadavg_before": list(load_before),
        "loadavg": list(os.getloadavg()),
        "cpu_affinity": sorted(os.sched_getaffinity(0)),
        "note": "process CPU time per call, median of rounds; timed on a machine shared with other jobs "
        "unless stated otherwise",
    }
    write_result(RESULT, result)
    return finish(RESULT, check(result))


if __name__ == "__main__":
    sys.exit(main())
