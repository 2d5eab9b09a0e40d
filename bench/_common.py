"""Helpers shared by the benchmark scripts: compose the real configs, write results."""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
sys.path.insert(0, str(ROOT))
os.environ.setdefault("WANDB_MODE", "disabled")


def compose_train(overrides: Sequence[str], output_dir: Path) -> Any:
    import infragym.envs  # noqa: F401  (registers the envs)
    from infragym.config import compose_run_config

    return compose_run_config("train", overrides, output_dir, ROOT / "conf")


def timed_train(overrides: Sequence[str], home: Path) -> tuple[float, dict[str, float]]:
    """Run ``python train.py <overrides>`` as a user does (W&B offline, a private signing key
    under ``home``, the run folder in ``home``); return its wall-clock seconds and metrics."""
    import json
    import subprocess
    import time

    run_dir = home / "run"
    env = {**os.environ, "WANDB_MODE": "offline", "INFRAGYM_HOME": str(home)}
    command = [sys.executable, "train.py", *overrides, f"hydra.run.dir={run_dir}", f"paths.log_dir={home}/outputs"]
    started = time.perf_counter()
    subprocess.run(command, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    return seconds, json.loads((run_dir / "metrics.json").read_text())


def machine() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}


def write_result(name: str, payload: dict[str, Any]) -> Path:
    from infragym.io import atomic_write_json

    path = RESULTS / f"{name}.json"
    atomic_write_json(path, {"machine": machine(), **payload})
    print(f"wrote {path}")
    return path
