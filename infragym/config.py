"""Structured-config schemas for the top-level keys of ``train.yaml`` and ``evaluate.yaml``.

Registered in Hydra's ConfigStore as ``train_schema`` and ``evaluate_schema`` and listed first
in the defaults of the primary configs, so a misspelt top-level key or a value of the wrong
type stops the run at once with Hydra's message naming the key. Component groups (env,
dataset, model, task, logger, ...) are ``_target_`` nodes: their keys are checked by the
constructors' keyword-only signatures when they are instantiated.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import MISSING, DictConfig, open_dict

# The repository's conf/ folder (an editable install keeps it next to the package).
CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


@dataclass
class PathsConfig:
    root_dir: str = MISSING
    data_dir: str = MISSING
    log_dir: str = MISSING
    output_dir: str = MISSING
    work_dir: str = MISSING


@dataclass
class TrainConfig:
    seed: int = 0
    task_name: str = "train"
    tags: list[str] = field(default_factory=list)
    # The metric that train.py returns to a sweeper (e.g. "val/deoxys/dr_objective").
    optimized_metric: str | None = None
    export: bool = True
    paths: PathsConfig = field(default_factory=PathsConfig)
    logger: Any = MISSING
    trainer: Any = None
    callbacks: Any = None
    env: Any = MISSING
    dataset: Any = MISSING
    model: Any = MISSING
    task: Any = MISSING


@dataclass
class EvaluationOverrides:
    """Changes to the exported run's evaluation (``evaluation.<key>=...`` on the command line)."""

    # Fresh test events (null: as many as the training run used).
    n_test_events: int | None = None
    # Refit the baselines that need training (S/T-learner, DR policy forest) on the training
    # run's log, regenerated from its seed, to compare the export with them.
    refit_baselines: bool = True


@dataclass
class EvaluateConfig:
    # Seed of the fresh evaluation events; null reuses the training run's seed, which
    # reproduces the numbers that run reported.
    seed: int | None = None
    task_name: str = "evaluate"
    tags: list[str] = field(default_factory=list)
    # The export folder to evaluate (outputs/<run>/export).
    checkpoint: str = MISSING
    # Load pickled estimators even when the export was not signed with this machine's key.
    trust: bool = False
    paths: PathsConfig = field(default_factory=PathsConfig)
    logger: Any = MISSING
    evaluation: EvaluationOverrides = field(default_factory=EvaluationOverrides)


def register_configs() -> None:
    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=TrainConfig)
    cs.store(name="evaluate_schema", node=EvaluateConfig)


register_configs()


def compose_run_config(
    config_name: str = "train",
    overrides: Sequence[str] = (),
    output_dir: str | Path | None = None,
    config_dir: str | Path = CONF_DIR,
) -> DictConfig:
    """Compose a run config as ``@hydra.main`` would, outside of it (tests, benchmarks,
    notebooks), with the run folder set to ``output_dir``."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
        cfg = compose(config_name, overrides=list(overrides), return_hydra_config=True)
    if output_dir is not None:
        with open_dict(cfg):
            cfg.hydra.runtime.output_dir = str(output_dir)
            cfg.hydra.runtime.cwd = str(Path(config_dir).resolve().parent)
    HydraConfig.instance().set_config(cfg)  # for the ${hydra:...} interpolations
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg
