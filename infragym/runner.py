"""What ``infragym train`` and ``infragym evaluate`` do, as functions that tests can call with a
composed config. Components are found through the registry (``infragym.components``)."""

from __future__ import annotations

import contextlib
import difflib
import fnmatch
import io
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # plots are files; never open a window
import matplotlib.pyplot as plt
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

try:
    import fcntl
except ImportError:  # Windows: no flock; runs there are not locked
    fcntl = None  # type: ignore[assignment]

from infragym import components
from infragym.components import Component
from infragym.config import compose_run_config
from infragym.export import RUN_RECORD, ExportError, export_run, export_run_mismatch, load_export
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


class RunConfigError(ValueError):
    """A run config that cannot produce what it asks for, refused before any training."""


# Metrics every run adds besides its task's own.
RUNNER_METRICS = ("time/fit_s",)


def check_optimized_metric(cfg: DictConfig, task: Any) -> None:
    """Refuse, before training, an ``optimized_metric`` the task will not produce. A task that
    lists its metrics (``metric_patterns()``: names or ``fnmatch`` patterns) is checked; one
    that does not is checked after its evaluation, as before."""
    metric = cfg.get("optimized_metric")
    patterns = getattr(task, "metric_patterns", None)
    if not metric or patterns is None:
        return
    known = [*patterns(), *RUNNER_METRICS]
    if not any(fnmatch.fnmatchcase(str(metric), pattern) for pattern in known):
        close = difflib.get_close_matches(str(metric), known, n=3, cutoff=0.5)
        raise RunConfigError(
            f"optimized_metric {metric!r} is not a metric this experiment produces"
            + (f" (did you mean {' or '.join(map(repr, close))}?)" if close else "")
            + f"; it produces: {', '.join(known[:30])}{' ...' if len(known) > 30 else ''}"
        )


@contextlib.contextmanager
def run_folder_lock(run_dir: Path) -> Iterator[None]:
    """Hold ``run_dir/.lock`` for the run: a second run started in the same folder is refused
    (two runs would interleave checkpoints, metrics and exports). The lock is the OS's
    (``flock``), released when the process ends, killed or not. Lightning's DDP workers
    (``LOCAL_RANK``/``RANK`` > 0) re-enter the same folder and share rank 0's lock."""
    if fcntl is None or int(os.environ.get("LOCAL_RANK", "0") or 0) > 0 or int(os.environ.get("RANK", "0") or 0) > 0:
        yield
        return
    path = run_dir / ".lock"
    handle = open(path, "a+")  # held for the whole run
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise RunConfigError(
                f"{run_dir} is in use by a running experiment ({holder}); wait for it or choose another "
                "folder (hydra.run.dir=...)"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        handle.flush()
        yield
    finally:
        handle.close()  # closing releases the lock


def _write_run_record(run_dir: Path, record: dict[str, Any], **changes: Any) -> None:
    record.update(changes)
    atomic_write_json(run_dir / RUN_RECORD, record)


def run_train(cfg: DictConfig) -> float | None:
    """Fit, evaluate and export one experiment; return ``cfg.optimized_metric`` for sweepers.

    The run folder is locked for the run (``run_folder_lock``) and gets ``run.json``: the run's
    id and how far it got. The export records the same id, so an export that a later run's
    metrics sit next to (that run's export failed) says so (``export_run_mismatch``)."""
    seed_everything(cfg.seed)
    component = component_of(cfg)
    run_dir = Path(cfg.paths.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    with run_folder_lock(run_dir):
        return _run_train_locked(cfg, component, run_dir)


def _run_train_locked(cfg: DictConfig, component: Component, run_dir: Path) -> float | None:
    config = run_config(cfg, component)
    run_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
    record: dict[str, Any] = {"run_id": run_id, "seed": cfg.seed, "status": "running"}
    previous = export_run_mismatch_before(run_dir / "export", run_id)
    if previous:
        log.warning("%s", previous)
    _write_run_record(run_dir, record)
    logger: RunLogger = instantiate(cfg.logger)
    logger.start(run_dir, config, run_name=f"{cfg.task_name}-{run_dir.name}")
    try:
        task = build_task(cfg)
        check_optimized_metric(cfg, task)
        started = time.perf_counter()
        task.fit(logger)
        fit_seconds = time.perf_counter() - started
        report = task.evaluate()
        report.metrics["time/fit_s"] = fit_seconds
        write_report(report, run_dir, logger)
        _write_run_record(run_dir, record, status="evaluated")
        if cfg.export:
            exported = portable_config({k: v for k, v in config.items() if k not in RUN_LOCAL_KEYS}, config["paths"])
            exported["experiment"] = _experiment_choice(component)
            try:
                with export_run(run_id):
                    export_dir = task.export(run_dir / "export", metrics=report.metrics, config=exported)
            except BaseException as err:
                _write_run_record(run_dir, record, status="export_failed", error=f"{type(err).__name__}: {err}")
                stale = export_run_mismatch(run_dir / "export")
                if stale:
                    log.error("the export failed; %s", stale)
                raise
            _write_run_record(run_dir, record, status="exported")
            logger.log_artifact(export_dir, name=f"{cfg.task_name}-model", type="model")
            log.info("export written to %s", export_dir)
    except BaseException as err:
        if record["status"] in ("running", "evaluated"):
            _write_run_record(run_dir, record, status="failed", error=f"{type(err).__name__}: {err}"[:2000])
        raise
    finally:
        logger.finish()
    if cfg.optimized_metric:
        if cfg.optimized_metric not in report.metrics:
            raise KeyError(
                f"optimized_metric {cfg.optimized_metric!r} is not among the metrics: {sorted(report.metrics)}"
            )
        return report.metrics[cfg.optimized_metric]
    return None


def export_run_mismatch_before(export_dir: Path, run_id: str) -> str | None:
    """At the start of run ``run_id``: a note that ``export_dir`` holds an earlier run's export
    until this run writes its own."""
    try:
        manifest = json.loads((export_dir / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    owner = manifest.get("run_id") if isinstance(manifest, dict) else None
    return (
        f"{export_dir} holds the export of an earlier run ({owner or 'unrecorded'}); run {run_id} replaces it "
        "when it exports. Until then the folder's metrics and its export differ."
    )


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
    mismatch = export_run_mismatch(cfg.checkpoint)
    if mismatch:
        log.warning("%s", mismatch)
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
