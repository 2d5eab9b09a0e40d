"""What train.py and evaluate.py do, as functions that tests can call with a composed config."""

from __future__ import annotations

import inspect
import io
import logging
import time
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # plots are files; never open a window
import matplotlib.pyplot as plt
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf

from infragym.export import load
from infragym.io import atomic_write_bytes, atomic_write_json, atomic_write_text
from infragym.logging import RunLogger
from infragym.results import render_tables, write_metrics
from infragym.seeding import seed_everything
from infragym.task import EvaluationReport, ExportEvaluator

log = logging.getLogger("infragym")


def _resolved(cfg: DictConfig) -> dict[str, Any]:
    container = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    assert isinstance(container, dict)
    return container


def build_task(cfg: DictConfig) -> Any:
    """Instantiate env, dataset and model, then the Task that combines them."""
    env = instantiate(cfg.env)
    dataset = instantiate(cfg.dataset)
    model = instantiate(cfg.model)
    params = inspect.signature(get_class(cfg.task._target_)).parameters
    extra: dict[str, Any] = {}
    # Supervised tasks build their Lightning Trainer from these; other tasks do not take them.
    if "trainer" in params:
        extra["trainer"] = cfg.get("trainer")
    if "callbacks" in params:
        extra["callbacks"] = cfg.get("callbacks")
    return instantiate(cfg.task, env=env, dataset=dataset, model=model, seed=cfg.seed, **extra)


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
    run_dir = Path(cfg.paths.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    config = _resolved(cfg)
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
            export_dir = task.export(run_dir / "export", metrics=report.metrics, config=config)
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


def run_evaluate(cfg: DictConfig) -> dict[str, float]:
    """Load an export, rebuild its experiment from the manifest, evaluate against baselines."""
    predictor = load(cfg.checkpoint, trust=cfg.trust)
    train_cfg = OmegaConf.create(predictor.manifest["config"])
    seed = cfg.seed if cfg.seed is not None else train_cfg.seed
    train_cfg.seed = seed
    seed_everything(seed)
    run_dir = Path(cfg.paths.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    config = _resolved(cfg)
    logger: RunLogger = instantiate(cfg.logger)
    logger.start(run_dir, {"evaluate": config, "train": predictor.manifest["config"]}, f"evaluate-{run_dir.name}")
    try:
        task = build_task(train_cfg)
        if not isinstance(task, ExportEvaluator):
            raise TypeError(f"{type(task).__name__} cannot evaluate an export (it has no evaluate_export)")
        report = task.evaluate_export(predictor, **OmegaConf.to_container(cfg.evaluation))
        write_report(report, run_dir, logger)
    finally:
        logger.finish()
    atomic_write_json(run_dir / "checkpoint.json", {"checkpoint": str(cfg.checkpoint), "seed": seed})
    return report.metrics
