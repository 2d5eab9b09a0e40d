"""The Task protocol: the recipe for one kind of learner (supervised, causal, RL, ...).

``train.py`` drives every component the same way::

    task = instantiate(cfg.task, env=env, dataset=dataset, model=model, seed=cfg.seed)
    task.fit(logger)
    report = task.evaluate()            # metrics + tables + figures
    task.export(run_dir / "export", metrics=report.metrics, config=resolved_cfg)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from infragym.logging import RunLogger
from infragym.results import ResultsTable


@dataclass
class EvaluationReport:
    """What an evaluation produces: flat ``split/name`` metrics, tables and figures."""

    metrics: dict[str, float]
    tables: dict[str, ResultsTable] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)  # name -> matplotlib Figure


@runtime_checkable
class Task(Protocol):
    """What train.py needs from a learning component."""

    def fit(self, logger: RunLogger) -> None: ...

    def evaluate(self) -> EvaluationReport: ...

    def export(
        self, directory: str | os.PathLike[str], *, metrics: Mapping[str, float], config: Mapping[str, Any]
    ) -> Path: ...


@runtime_checkable
class ExportEvaluator(Protocol):
    """What evaluate.py needs: evaluate a loaded export against the baselines."""

    def evaluate_export(self, predictor: Any) -> EvaluationReport: ...
