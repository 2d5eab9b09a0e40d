"""Run loggers: W&B (offline by default), CSV files, or nothing.

All three take the same calls, so a Task never checks which one it has. W&B goes through its
own library: config, metrics, results tables as ``wandb.Table``, plots as ``wandb.Image`` and
the export as a model Artifact. The mode is fixed before ``wandb.init`` (an online init with no
reachable server blocks for a long time), and online runs fail fast with a clear message.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from infragym.io import atomic_write_text
from infragym.results import ResultsTable

WANDB_MODES = ("offline", "online", "disabled")


class RunLogger:
    """The no-op logger (``logger=none``); the base of the others."""

    name = "none"

    def __init__(self, *, save_dir: str | os.PathLike[str] | None = None) -> None:
        self.save_dir = Path(save_dir) if save_dir is not None else None

    def start(self, run_dir: str | os.PathLike[str], config: Mapping[str, Any], run_name: str) -> None:
        if self.save_dir is None:
            self.save_dir = Path(run_dir)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        pass

    def log_table(self, key: str, table: ResultsTable) -> None:
        pass

    def log_image(self, key: str, path: str | os.PathLike[str]) -> None:
        pass

    def log_artifact(self, path: str | os.PathLike[str], name: str, type: str = "model") -> None:
        pass

    def lightning_logger(self) -> Any:
        """The matching Lightning logger, for supervised Tasks (``False`` disables it)."""
        return False

    def finish(self) -> None:
        pass


class CSVRunLogger(RunLogger):
    """Writes ``metrics.csv`` (step, name, value), one CSV per table and ``config.json``."""

    name = "csv"

    def __init__(self, *, save_dir: str | os.PathLike[str] | None = None, subdir: str = "csv") -> None:
        super().__init__(save_dir=save_dir)
        self.subdir = subdir
        self._dir: Path | None = None

    def start(self, run_dir: str | os.PathLike[str], config: Mapping[str, Any], run_name: str) -> None:
        super().start(run_dir, config, run_name)
        assert self.save_dir is not None
        self._dir = self.save_dir / self.subdir
        self._dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self._dir / "config.json", json.dumps(dict(config), indent=2, default=str))

    def _require_dir(self) -> Path:
        if self._dir is None:
            raise RuntimeError("CSVRunLogger.start() must be called before logging")
        return self._dir

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        path = self._require_dir() / "metrics.csv"
        new = not path.exists()
        with path.open("a", newline="") as handle:
            writer = csv.writer(handle)
            if new:
                writer.writerow(["step", "name", "value"])
            for name, value in metrics.items():
                writer.writerow([step if step is not None else "", name, value])

    def log_table(self, key: str, table: ResultsTable) -> None:
        columns, data = table.as_records()
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(columns)
        writer.writerows(data)
        atomic_write_text(self._require_dir() / f"{key.replace('/', '_')}.csv", buffer.getvalue())

    def lightning_logger(self) -> Any:
        from pytorch_lightning.loggers import CSVLogger

        return CSVLogger(save_dir=str(self._require_dir()), name="lightning")


class WandbRunLogger(RunLogger):
    """Weights & Biases through its library; ``mode="offline"`` needs no account or network."""

    name = "wandb"

    def __init__(
        self,
        *,
        project: str = "infragym",
        entity: str | None = None,
        mode: str = "offline",
        group: str | None = None,
        tags: list[str] | None = None,
        save_dir: str | os.PathLike[str] | None = None,
        log_artifacts: bool = True,
        init_timeout_s: float = 30.0,
    ) -> None:
        super().__init__(save_dir=save_dir)
        if mode not in WANDB_MODES:
            raise ValueError(f"logger.mode must be one of {WANDB_MODES}, got {mode!r}")
        self.project = project
        self.entity = entity
        # An explicit WANDB_MODE in the environment wins (tests set it to "disabled").
        self.mode = os.environ.get("WANDB_MODE", mode)
        self.group = group
        self.tags = list(tags or [])
        self.log_artifacts = log_artifacts
        self.init_timeout_s = init_timeout_s
        self.run: Any = None

    def start(self, run_dir: str | os.PathLike[str], config: Mapping[str, Any], run_name: str) -> None:
        super().start(run_dir, config, run_name)
        import wandb

        assert self.save_dir is not None
        self.save_dir.mkdir(parents=True, exist_ok=True)
        settings = wandb.Settings(init_timeout=self.init_timeout_s, silent=True, console="off")
        try:
            self.run = wandb.init(
                project=self.project,
                entity=self.entity,
                mode=self.mode,
                group=self.group,
                tags=self.tags,
                name=run_name,
                dir=str(self.save_dir),
                config=dict(config),
                settings=settings,
                reinit="finish_previous",
            )
        except Exception as err:  # wandb raises its own error types for network/auth problems
            raise RuntimeError(
                f"wandb.init failed in mode {self.mode!r}: {err}. Use logger.mode=offline "
                "(and `wandb sync` later), logger=csv or logger=none."
            ) from err

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        if self.run is not None:
            self.run.log(dict(metrics), step=step)

    def log_table(self, key: str, table: ResultsTable) -> None:
        if self.run is None:
            return
        import wandb

        columns, data = table.as_records()
        self.run.log({key: wandb.Table(columns=columns, data=data)})

    def log_image(self, key: str, path: str | os.PathLike[str]) -> None:
        if self.run is None:
            return
        import wandb

        self.run.log({key: wandb.Image(str(path))})

    def log_artifact(self, path: str | os.PathLike[str], name: str, type: str = "model") -> None:
        if self.run is None or not self.log_artifacts:
            return
        import wandb

        artifact = wandb.Artifact(name=name, type=type)
        artifact.add_dir(str(path))
        self.run.log_artifact(artifact)

    def lightning_logger(self) -> Any:
        if self.run is None:
            return False
        from pytorch_lightning.loggers import WandbLogger

        return WandbLogger(experiment=self.run)

    def finish(self) -> None:
        if self.run is not None:
            self.run.finish()
            self.run = None
