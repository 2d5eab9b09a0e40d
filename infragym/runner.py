"""What ``infragym train`` and ``infragym evaluate`` do, as functions that tests can call with a
composed config. Components are found through the registry (``infragym.components``)."""

from __future__ import annotations

import io
import logging
import time
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # plots are files; never open a window
import matplotlib.pyplot as plt
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from infragym import components
from infragym.components import Component
from infragym.config import compose_run_config
from infragym.export import ExportError, load_export
from infragym.io import atomic_write_bytes, atomic_write_json, atomic_write_text
from infragym.logging import RunLogger
from infragym.portable import ExportConfigError, merge_plain_values, portable_config
from infragym.results import render_tables, write_metrics
from infragym.seeding import seed_everything
from infragym.task import EvaluationReport, ExportEvaluator

log = logging.getLogger("infragym")


# Lightning's parts of a config: only components that declare ``uses_trainer`` get them.
LIGHTNING_KEYS = ("trainer", "callbacks")
# Where a run writes and logs: the evaluating machine's own choice, never an export's.
RUN_LOCAL_KEYS = ("paths", "logger")


def _resolved(cfg: DictConfig) -> dict[str, Any]:
    container = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    assert isinstance(container, dict)
    return container


def component_of(cfg: DictConfig) -> Component:
    """The registered component whose Task the config's ``task._target_`` names."""
    target = OmegaConf.select(cfg, "task._target_")
    if not isinstance(target, str):
        raise components.ComponentError("the config has no task._target_: choose an experiment (experiment=<name>)")
    return components.for_task(target)


def run_config(cfg: DictConfig, component: Component) -> dict[str, Any]:
    """The resolved config a run logs and exports: without Lightning's keys for components that
    take no Trainer, so their W&B config and manifests carry only what they use."""
    config = _resolved(cfg)
    if not component.uses_trainer:
        for key in LIGHTNING_KEYS:
            if config.get(key) is None:
                config.pop(key, None)
    return config


# The parts an experiment may compose into its Task (each optional: only the groups it uses).
PART_KEYS = ("env", "dataset", "model")


def build_task(cfg: DictConfig) -> Any:
    """Instantiate the env, dataset and model the experiment composes, then the Task that
    combines them; the Lightning ``trainer`` and ``callbacks`` configs go to components that
    declare ``uses_trainer``."""
    component = component_of(cfg)
    parts = {key: instantiate(cfg[key]) for key in PART_KEYS if cfg.get(key) is not None}
    extra = {key: cfg.get(key) for key in LIGHTNING_KEYS} if component.uses_trainer else {}
    return instantiate(cfg.task, **parts, seed=cfg.seed, **extra)


def write_report(report: EvaluationReport, run_dir: Path, logger: RunLogger) -> None:
    """metrics.json, the printed results table and PNG plots in the run folder, and to the logger."""
    write_metrics(run_dir / "metrics.json", report.metrics)
    text = render_tables(list(report.tables.values()))
    atomic_write_text(run_dir / "results.txt", text)
    print(text, flush=True)
    logger.log_metrics(report.metrics)
    for key, table in report.tables.items():
        logger.log_table(key, table)
    plot_dir = run_dir / "plots"
    plot_dir.mkdir(parents=True, exist_ok=True)
    for name, figure in report.figures.items():
        path = plot_dir / f"{name}.png"
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
        plt.close(figure)
        atomic_write_bytes(path, buffer.getvalue())
        logger.log_image(f"plots/{name}", path)


def run_train(cfg: DictConfig) -> float | None:
    """Fit, evaluate and export one experiment; return ``cfg.optimized_metric`` for sweepers."""
    seed_everything(cfg.seed)
    component = component_of(cfg)
    run_dir = Path(cfg.paths.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    config = run_config(cfg, component)
    logger: RunLogger = instantiate(cfg.logger)
    logger.start(run_dir, config, run_name=f"{cfg.task_name}-{run_dir.name}")
    try:
        task = build_task(cfg)
        started = time.perf_counter()
        task.fit(logger)
        fit_seconds = time.perf_counter() - started
        report = task.evaluate()
        report.metrics["time/fit_s"] = fit_seconds
        write_report(report, run_dir, logger)
        if cfg.export:
            exported = portable_config({k: v for k, v in config.items() if k not in RUN_LOCAL_KEYS}, config["paths"])
            exported["experiment"] = _experiment_choice(component)
            export_dir = task.export(run_dir / "export", metrics=report.metrics, config=exported)
            logger.log_artifact(export_dir, name=f"{cfg.task_name}-model", type="model")
            log.info("export written to %s", export_dir)
    finally:
        logger.finish()
    if cfg.optimized_metric:
        if cfg.optimized_metric not in report.metrics:
            raise KeyError(
                f"optimized_metric {cfg.optimized_metric!r} is not among the metrics: {sorted(report.metrics)}"
            )
        return report.metrics[cfg.optimized_metric]
    return None


def _experiment_choice(component: Component) -> str:
    """The experiment config the run was composed from (Hydra's choice), else the component's first."""
    if HydraConfig.initialized():
        choice = HydraConfig.get().runtime.choices.get("experiment")
        if choice in component.experiments:
            return str(choice)
    return component.experiments[0]


def rebuild_train_config(manifest: dict[str, Any], run_dir: Path, *, source: str) -> DictConfig:
    """The export's experiment, composed from its registered component's own config; the
    manifest contributes only plain values at keys that config has (``infragym.portable``)."""
    component = components.get(manifest["component"])
    exported = manifest.get("config")
    if not isinstance(exported, dict):
        raise ExportError(f"{source}: the manifest's 'config' must be a mapping")
    exported = dict(exported)
    experiment = exported.pop("experiment", None)
    if experiment not in component.experiments:
        experiment = component.experiments[0]
    if not component.uses_trainer:
        for key in LIGHTNING_KEYS:
            exported.pop(key, None)
    for key in RUN_LOCAL_KEYS:
        exported.pop(key, None)
    train_cfg = compose_run_config("train", [f"experiment={experiment}"], output_dir=run_dir)
    try:
        merge_plain_values(train_cfg, exported, source=source)
    except ExportConfigError as err:
        raise ExportError(str(err)) from err
    if component_of(train_cfg) != component:
        raise ExportError(f"{source}: experiment {experiment!r} does not build component {component.name!r}")
    return train_cfg


def evaluation_options(component: Component, options: Any) -> dict[str, Any]:
    """The validated ``evaluation.<key>`` options for ``component`` (its own dataclass)."""
    given = OmegaConf.to_container(options, resolve=True) if isinstance(options, DictConfig) else (options or {})
    if component.evaluation is None:
        if given:
            raise components.ComponentError(
                f"component {component.name!r} takes no evaluation options, got evaluation.{sorted(given)[0]}"
            )
        return {}
    schema = OmegaConf.structured(component.evaluation)
    merged = OmegaConf.merge(schema, given)  # unknown keys and wrong types raise, naming the key
    return dict(OmegaConf.to_container(merged))


def run_evaluate(cfg: DictConfig) -> dict[str, float]:
    """Load an export, rebuild its experiment from its registered component, evaluate it
    against the baselines. Nothing in the manifest chooses code: see ``rebuild_train_config``."""
    predictor, manifest = load_export(cfg.checkpoint, trust=cfg.trust)
    component = components.get(manifest["component"])
    run_dir = Path(cfg.paths.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    config = _resolved(cfg)
    options = evaluation_options(component, cfg.get("evaluation"))
    train_cfg = rebuild_train_config(manifest, run_dir, source=f"{cfg.checkpoint}/manifest.json")
    with open_dict(train_cfg):
        if cfg.seed is not None:
            train_cfg.seed = cfg.seed
    seed = int(train_cfg.seed)
    seed_everything(seed)
    logger: RunLogger = instantiate(cfg.logger)
    logger.start(run_dir, {"evaluate": config, "train": _resolved(train_cfg)}, f"evaluate-{run_dir.name}")
    try:
        task = build_task(train_cfg)
        if not isinstance(task, ExportEvaluator):
            raise TypeError(f"{type(task).__name__} cannot evaluate an export (it has no evaluate_export)")
        report = task.evaluate_export(predictor, **options)
        write_report(report, run_dir, logger)
    finally:
        logger.finish()
    atomic_write_json(run_dir / "checkpoint.json", {"checkpoint": str(cfg.checkpoint), "seed": seed})
    return report.metrics
