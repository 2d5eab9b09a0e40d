"""Structured-config schemas for the top-level keys of ``train.yaml`` and ``evaluate.yaml``, and
composing run configs outside ``@hydra.main``.

Registered in Hydra's ConfigStore as ``train_schema`` and ``evaluate_schema`` and listed first
in the defaults of the primary configs, so a misspelt top-level key or a value of the wrong
type stops the run at once with Hydra's message naming the key. Component groups (env,
dataset, model, task, logger, ...) are ``_target_`` nodes: their keys are checked by the
constructors' keyword-only signatures when they are instantiated. ``evaluation.<key>`` options
are validated per component against the component's own dataclass (``infragym.components``).

The configs ship inside the package (``pkg://infragym.conf``, the repository's ``conf/`` folder),
so the same composition works in a checkout and from an installed wheel.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir, initialize_config_module
from hydra.core.config_store import ConfigStore
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import MISSING, DictConfig, OmegaConf, open_dict

from infragym import components

# The configs as a package: the repository's conf/ folder, mapped to infragym.conf (setup.py).
CONF_MODULE = "infragym.conf"
CONF_SOURCE = f"pkg://{CONF_MODULE}"
# The environment variable that points every data location at a folder of the user's.
DATA_ENV = "INFRAGYM_DATA"


def default_data_dir() -> str:
    """Where data sets are read from: ``$INFRAGYM_DATA``; in a checkout, ``../shared/data`` beside
    it (the project's shared samples); otherwise ``./data`` in the working folder."""
    configured = os.environ.get(DATA_ENV)
    if configured:
        return str(Path(configured).expanduser().resolve())
    checkout = Path(__file__).resolve().parents[1]
    if (checkout / "pyproject.toml").is_file() and (checkout / "conf").is_dir():
        return str((checkout.parent / "shared" / "data").resolve())
    return str(Path.cwd().resolve() / "data")


if not OmegaConf.has_resolver("infragym_data_dir"):
    OmegaConf.register_new_resolver("infragym_data_dir", default_data_dir)


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
    # The metric that train.py returns to a sweeper (a "split/method/metric" key of metrics.json).
    optimized_metric: str | None = None
    export: bool = True
    paths: PathsConfig = field(default_factory=PathsConfig)
    logger: Any = MISSING
    # An experiment composes only the groups it uses; the others stay null.
    trainer: Any = None
    callbacks: Any = None
    env: Any = None
    dataset: Any = None
    model: Any = None
    task: Any = MISSING


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
    # The component's evaluation options (``evaluation.<key>=...``): the config group
    # ``evaluation`` has one option per component, its own dataclass, chosen from the export's
    # manifest (``evaluation_overrides``), so each key is typed and validated at composition.
    evaluation: Any = None


@dataclass
class NoEvaluationOptions:
    """The ``evaluation`` option of components that take no evaluation options."""


def register_configs() -> None:
    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=TrainConfig)
    cs.store(name="evaluate_schema", node=EvaluateConfig)
    cs.store(group="evaluation", name="none", node=NoEvaluationOptions)
    for name, component in components.registry().items():
        cs.store(group="evaluation", name=name, node=component.evaluation or NoEvaluationOptions)


def evaluation_overrides(overrides: Sequence[str]) -> list[str]:
    """``overrides`` of ``evaluate`` plus ``evaluation=<component>``, read from the manifest of
    the ``checkpoint=`` export (unless the user chose an ``evaluation`` option). The manifest is
    only read here; ``load`` verifies it before anything is used."""
    from infragym.export import ExportError, read_manifest

    keys = {item.partition("=")[0].lstrip("+~") for item in overrides}
    if "evaluation" in keys:
        return list(overrides)
    checkpoints = [item.partition("=")[2] for item in overrides if item.partition("=")[0].lstrip("+") == "checkpoint"]
    if not checkpoints:
        return list(overrides)
    try:
        name = read_manifest(checkpoints[-1])["component"]
    except ExportError:
        return list(overrides)  # the run itself reports the unreadable export, naming it
    option = name if isinstance(name, str) and name in components.registry() else "none"
    return [f"evaluation={option}", *overrides]


register_configs()


def with_component_search_path(overrides: Sequence[str]) -> list[str]:
    """The config folders of components that ship their own configs, on Hydra's search path
    (after any the user listed in ``hydra.searchpath``), then ``overrides``. Added overrides come
    first: Hydra's command line takes flags (``--cfg job``) after them."""
    extra = components.config_search_path()
    if not extra:
        return list(overrides)
    kept: list[str] = []
    user: list[str] = []
    for item in overrides:
        key, sep, value = item.partition("=")
        if sep and key.lstrip("+") == "hydra.searchpath":
            user = [v.strip() for v in value.strip().strip("[]").split(",") if v.strip()]
        else:
            kept.append(item)
    paths = list(dict.fromkeys([*user, *extra]))
    return [f"hydra.searchpath=[{','.join(paths)}]", *kept]


def compose_run_config(
    config_name: str = "train",
    overrides: Sequence[str] = (),
    output_dir: str | Path | None = None,
    config_dir: str | Path | None = None,
) -> DictConfig:
    """Compose a run config as ``@hydra.main`` would, outside of it (tests, benchmarks,
    notebooks), with the run folder set to ``output_dir``.

    ``config_dir``: a conf folder to compose from instead of the package's configs.
    """
    GlobalHydra.instance().clear()
    overrides = with_component_search_path(overrides)
    if config_name == "evaluate":
        overrides = evaluation_overrides(overrides)
    if config_dir is None:
        context = initialize_config_module(config_module=CONF_MODULE, version_base="1.3")
    else:
        context = initialize_config_dir(config_dir=str(Path(config_dir).resolve()), version_base="1.3")
    with context:
        cfg = compose(config_name, overrides=overrides, return_hydra_config=True)
    if output_dir is not None:
        with open_dict(cfg):
            cfg.hydra.runtime.output_dir = str(output_dir)
            cfg.hydra.runtime.cwd = os.getcwd()
    HydraConfig.instance().set_config(cfg)  # for the ${hydra:...} interpolations
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg
