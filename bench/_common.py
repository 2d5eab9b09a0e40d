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


def machine() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}


def write_result(name: str, payload: dict[str, Any]) -> Path:
    from infragym.io import atomic_write_json

    path = RESULTS / f"{name}.json"
    atomic_write_json(path, {"machine": machine(), **payload})
    print(f"wrote {path}")
    return path
