"""Helpers shared by the benchmark scripts and the results pages: compose the real configs,
write and load results, check goals, format intervals.

Every benchmark script (``bench/<component>/<script>.py``) states its goals once, at its top, with
the issue they come from; declares its suite entries (``BENCHMARKS``, a tuple of ``Benchmark``);
and has ``check(result) -> list[Check]``, which judges a stored result against its goals. Its
``main`` writes the result, prints any missed goal and returns the exit status (``finish``). The
scripts import their heavy dependencies inside ``main`` so that the suite and the report can
import ``BENCHMARKS`` and ``check`` cheaply and without side effects (thread settings,
environment variables).
"""

from __future__ import annotations

import datetime
import os
import platform
import statistics
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
STUDIES = ROOT / "studies" / "results"
sys.path.insert(0, str(ROOT))
os.environ.setdefault("WANDB_MODE", "disabled")


@dataclass(frozen=True)
class Benchmark:
    """One entry of the suite, declared by its script: ``python <script> <args>`` writes
    ``bench/results/<result>.json``, which the script's ``check`` judges."""

    name: str
    args: tuple[str, ...] = ()
    result: str = ""  # result file under bench/results/ (without .json); default: the name
    minutes: float = 1.0  # rough duration on 2 cores, for --quick and --list
    # Filled in by the suite from where the declaration was found.
    component: str = ""
    module: str = ""  # bench.<component>.<script>, what ``check`` is imported from
    script: Path | None = None

    @property
    def result_name(self) -> str:
        return self.result or self.name


def data_dir() -> Path:
    """Where the shared data sets live: ``INFRAGYM_DATA`` (as the configs' ``paths.data_dir``),
    else the checkout's default, ``../shared/data``."""
    return Path(os.environ.get("INFRAGYM_DATA") or ROOT.parent / "shared" / "data")


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
    date = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    atomic_write_json(path, {"machine": machine(), "date": date, **payload})
    print(f"wrote {path}")
    return path


def load_result(name: str) -> dict[str, Any] | None:
    import json

    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def ci(values: Sequence[float], fmt: str) -> str:
    """Mean and 95% bootstrap interval over seeds (the framework's ``bootstrap_ci``)."""
    from infragym.evaluation import bootstrap_ci

    s = bootstrap_ci(list(values))
    return f"{s.mean:{fmt}} [{s.low:{fmt}}, {s.high:{fmt}}]"


def mean_range(values: Sequence[float], fmt: str) -> str:
    """Mean and [min, max] over runs."""
    return f"{statistics.fmean(values):{fmt}} [{min(values):{fmt}}, {max(values):{fmt}}]"


def seed_summary(per_seed: Mapping[Any, Mapping[str, float]]) -> dict[str, dict[str, float]]:
    """Mean and 95% bootstrap interval over seeds of every numeric metric the seeds share, as
    stored in a result's ``over_seeds`` field."""
    from infragym.evaluation import summarize_over_seeds

    numeric = {
        seed: {k: v for k, v in row.items() if isinstance(v, int | float) and not isinstance(v, bool)}
        for seed, row in per_seed.items()
    }
    return {key: s.as_dict() for key, s in summarize_over_seeds(numeric).items()}


@dataclass(frozen=True)
class Check:
    """One goal (or one reported measurement) judged on one result.

    ``met`` is None for a measurement without a goal. ``open_issue`` names the issue whose goal
    has never been met: missing it is reported (the issue, or its closing note, says why), but it
    is not a regression. The label does not claim the issue is still open: issues are closed
    with their misses reported.
    """

    what: str
    measured: str
    goal: str
    met: bool | None
    open_issue: int | None = None

    @property
    def status(self) -> str:
        if self.met is None:
            return "reported"
        if self.met:
            return "met"
        return f"not met (issue {self.open_issue})" if self.open_issue else "REGRESSED"

    @property
    def regressed(self) -> bool:
        return self.met is False and self.open_issue is None


def finish(name: str, checks: Sequence[Check]) -> int:
    """Print every goal that is not met, measured against the goal; 1 if any regressed."""
    for c in checks:
        if c.met is False:
            print(f"{name}: {c.status}: {c.what}: measured {c.measured}, goal {c.goal}", file=sys.stderr)
    return 1 if any(c.regressed for c in checks) else 0
