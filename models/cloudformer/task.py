"""The CloudFormer task: simulate (or load) telemetry, train CloudFormer and its baselines with
Lightning, evaluate on unseen and seen applications, export CloudFormer as ONNX."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from infragym.datasets.cloudperf import (
    CloudPerfDataModule,
    CloudPerfDataset,
    CloudPerfSplits,
    TraceSet,
    WindowSet,
    make_windows,
)
from infragym.envs.colocation.simulator import ColocationSimulator
from infragym.evaluation import margin_vs_best, method_metrics, results_table
from infragym.logging import RunLogger
from infragym.models.cloudformer import export as cf_export
from infragym.models.cloudformer.baselines import TABULAR_BASELINES, WindowRegressor
from infragym.models.cloudformer.module import InterferenceRegressor, predict_windows
from infragym.models.cloudformer.networks import NetworkSpec
from infragym.models.cloudformer.resume import (
    RESUMABLE_TRAINER_KEYS,
    RunState,
    check_resumable,
    data_digest,
    fingerprint,
    set_aside,
)
from infragym.results import ResultsTable
from infragym.seeding import child_seeds
from infragym.task import EvaluationReport

# CloudFormer paper (arXiv 2509.03394, abstract and Sec. 6): MAE 7.8 % on unseen applications,
# at least 28 % lower than the best baseline.
PAPER_UNSEEN_MAE_PCT = 7.8
PAPER_MARGIN_PCT = 28.0
MODEL_NAME = "cloudformer"
SPLITS = ("test_unseen", "test_seen")
SCENARIOS = ("static", "dynamic")
# results-table column -> (split, metric): |error| on unseen and seen applications, per scenario
TABLE_COLUMNS = {
    "unseen_mae": ("test_unseen", "mae"),
    "unseen_p95": ("test_unseen", "p95_abs_error"),
    "unseen_static_mae": ("test_unseen_static", "mae"),
    "unseen_dynamic_mae": ("test_unseen_dynamic", "mae"),
    "seen_mae": ("test_seen", "mae"),
    "seen_p95": ("test_seen", "p95_abs_error"),
    "seen_static_mae": ("test_seen_static", "mae"),
    "seen_dynamic_mae": ("test_seen_dynamic", "mae"),
}
EXPORT_TABLE_COLUMNS = {c: TABLE_COLUMNS[c] for c in ("unseen_mae", "unseen_p95", "seen_mae", "seen_p95")}


def _plain(cfg: Any) -> Any:
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg


def error_stats(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """MAE and 95th percentile of |error|, in percentage points of P."""
    err = np.abs(np.asarray(pred, np.float64) - np.asarray(true, np.float64))
    if not len(err):
        return {"mae": float("nan"), "p95_abs_error": float("nan")}
    return {"mae": 100.0 * float(err.mean()), "p95_abs_error": 100.0 * float(np.percentile(err, 95))}


def split_metrics(name: str, split: str, pred: np.ndarray, windows: WindowSet) -> dict[str, float]:
    """``<split>/<name>/{mae,p95_abs_error}`` and, for test splits, per scenario."""
    true = windows.labels
    out = method_metrics(split, name, error_stats(pred, true))
    if split != "val":
        for scenario in SCENARIOS:
            mask = windows.scenario == scenario
            if mask.any():
                out.update(method_metrics(f"{split}_{scenario}", name, error_stats(pred[mask], true[mask])))
    return out


class UntrainedModelError(RuntimeError):
    """A network that took no optimiser step: its weights are the initial ones, never exported."""


def _check_training_budget(trainer: Mapping[str, Any]) -> None:
    """Refuse at start a Trainer config that trains nothing (the export would hold initial
    weights): ``trainer.max_epochs`` < 1 (-1 means unlimited in Lightning, allowed only with
    ``max_steps``), ``max_steps`` 0, ``limit_train_batches`` 0."""
    epochs, steps = trainer.get("max_epochs"), trainer.get("max_steps", -1)
    if epochs is not None and (isinstance(epochs, bool) or not isinstance(epochs, int)):
        raise ValueError(f"trainer.max_epochs must be a whole number, got {epochs!r}")
    if epochs is not None and epochs < 1 and not (epochs == -1 and isinstance(steps, int) and steps > 0):
        raise ValueError(f"trainer.max_epochs must be >= 1, got {epochs} (the networks would not train)")
    if steps == 0:
        raise ValueError("trainer.max_steps is 0: the networks would not train (-1: no step limit)")
    if trainer.get("limit_train_batches") in (0, 0.0):
        raise ValueError("trainer.limit_train_batches is 0: the networks would not train")


class CloudFormerTask:
    """Supervised task (Lightning) for interference prediction.

    Args:
        env: the co-location simulator (used when ``dataset.path`` is null).
        dataset: telemetry source, windows and splits.
        model: CloudFormer's ``NetworkSpec``.
        seed: derives the data, split, baseline and per-network seeds.
        trainer: Lightning ``Trainer`` config (``conf/trainer``), one Trainer per network; the
            same budget (epochs, batch size) for CloudFormer and every neural baseline.
        callbacks: Lightning callbacks config (``conf/callbacks``); a ``ModelCheckpoint`` gets
            ``<dirpath>/<network>/`` so each network keeps its own best and ``last.ckpt``.
        baselines: names from ``TABULAR_BASELINES`` and keys of ``neural_baselines``.
        neural_baselines: name -> ``NetworkSpec`` fields of each neural baseline.
        baseline_kwargs: keyword arguments per tabular baseline.
        resume: continue a network from its ``last.ckpt`` when the run folder has one.
        blend_with: a tabular baseline (e.g. ``ridge``) to blend each network with: the metrics
            then also hold ``<split>/<network>+<blend_with>/*`` for the equal-weight mean of the
            two models' predictions (weights fixed, not tuned). Blends are reported only; they
            are not baselines in the margin and not exported. None: no blends.
    """

    def __init__(
        self,
        *,
        env: ColocationSimulator,
        dataset: CloudPerfDataset,
        model: NetworkSpec,
        seed: int = 0,
        trainer: Mapping[str, Any] | None = None,
        callbacks: Mapping[str, Any] | None = None,
        baselines: Sequence[str] = ("mean", "persistence", "ridge", "hist_gradient_boosting"),
        neural_baselines: Mapping[str, Mapping[str, Any]] | None = None,
        baseline_kwargs: Mapping[str, Mapping[str, Any]] | None = None,
        resume: bool = True,
        blend_with: str | None = None,
    ) -> None:
        # Hydra hands a dataclass over as a structured DictConfig: make it a NetworkSpec again.
        model = model if isinstance(model, NetworkSpec) else NetworkSpec(**_plain(model))
        self.env, self.dataset, self.spec, self.seed = env, dataset, model, seed
        self.trainer_cfg = dict(_plain(trainer) or {})
        _check_training_budget(self.trainer_cfg)
        self.callbacks_cfg = dict(_plain(callbacks) or {})
        self.neural_specs: dict[str, NetworkSpec] = {MODEL_NAME: model}
        neural = {k: dict(_plain(v)) for k, v in (_plain(neural_baselines) or {}).items()}
        kwargs = {k: dict(_plain(v)) for k, v in (_plain(baseline_kwargs) or {}).items()}
        unknown = [b for b in baselines if b not in TABULAR_BASELINES and b not in neural]
        if unknown:
            raise ValueError(
                f"task.baselines: unknown {unknown}; tabular: {sorted(TABULAR_BASELINES)}, "
                f"neural (task.neural_baselines): {sorted(neural)}"
            )
        self.tabular: dict[str, WindowRegressor] = {}
        for name in baselines:
            if name in neural:
                self.neural_specs[name] = NetworkSpec(**neural[name])
            else:
                self.tabular[name] = TABULAR_BASELINES[name](**kwargs.get(name, {}))
        if blend_with is not None and blend_with not in self.tabular:
            raise ValueError(
                f"task.blend_with: {blend_with!r} is not a tabular baseline of this run: {sorted(self.tabular)}"
            )
        self.resume, self.blend_with = resume, blend_with
        self._data_seed, self._split_seed, self._baseline_seed, *self._net_seeds = child_seeds(
            seed, 3 + len(self.neural_specs)
        )
        self.splits: CloudPerfSplits | None = None
        self.traces: TraceSet | None = None
        self.nets: dict[str, torch.nn.Module] = {}
        self.fit_seconds: dict[str, float] = {}
        self.throughput: dict[str, float] = {}
        self.best_checkpoints: dict[str, str] = {}
        self.trainers: dict[str, pl.Trainer] = {}

    # ------------------------------------------------------------------ data
    def prepare_data(self, *, save: bool = True) -> CloudPerfSplits:
        """Traces (simulated from the seed, or loaded) and their windowed, normalised splits."""
        if self.splits is None:
            self.traces = self.dataset.traces(self.env, np.random.default_rng(self._data_seed), save=save)
            self.splits = self.dataset.splits(self.traces, np.random.default_rng(self._split_seed))
        return self.splits

    def datamodule(self) -> CloudPerfDataModule:
        return CloudPerfDataModule(
            self.prepare_data(), batch_size=self.dataset.batch_size, num_workers=self.dataset.num_workers
        )

    # ------------------------------------------------------------------ Lightning
    def _root(self) -> Path:
        return Path(self.trainer_cfg.get("default_root_dir") or self.dataset.save_dir or ".")

    def checkpoint_dir(self, name: str) -> Path:
        base = (self.callbacks_cfg.get("model_checkpoint") or {}).get("dirpath") or self._root() / "checkpoints"
        return Path(base) / name

    def build_trainer(
        self, name: str, logger: RunLogger | None = None, run_state: RunState | None = None
    ) -> pl.Trainer:
        callbacks: list[Any] = [] if run_state is None else [run_state]
        for key, cfg in self.callbacks_cfg.items():
            if cfg is None:  # a callback removed on the command line (callbacks.<name>=null)
                continue
            cfg = dict(cfg)
            if cfg.get("_target_", "").endswith("ModelCheckpoint"):
                cfg["dirpath"] = str(self.checkpoint_dir(name))
            callbacks.append(instantiate(cfg) if "_target_" in cfg else None)
            if callbacks[-1] is None:
                raise ValueError(f"callbacks.{key} has no _target_")
        cfg = dict(self.trainer_cfg) or {"_target_": "pytorch_lightning.Trainer", "max_epochs": 10}
        cfg.setdefault("_target_", "pytorch_lightning.Trainer")
        cfg["default_root_dir"] = str(self._root() / "lightning" / name)
        if not any(isinstance(c, pl.callbacks.ProgressBar) for c in callbacks) and "enable_progress_bar" in cfg:
            cfg["enable_progress_bar"] = False
        lightning_logger = logger.lightning_logger() if logger is not None else False
        return instantiate(cfg, callbacks=callbacks, logger=lightning_logger, enable_checkpointing=True)

    def run_fingerprint(self, name: str, seed: int) -> dict[str, Any]:
        """What network ``name``'s weights depend on: stored with its checkpoints, compared
        before resuming from them (``resume.check_resumable``)."""
        splits = self.prepare_data()
        trainer = {k: v for k, v in self.trainer_cfg.items() if k not in RESUMABLE_TRAINER_KEYS}
        return fingerprint(
            {
                "network": asdict(self.neural_specs[name]),
                "network_seed": seed,
                "dataset": {
                    "window": self.dataset.window,
                    "horizon": self.dataset.horizon,
                    "stride": self.dataset.stride,
                    "batch_size": self.dataset.batch_size,
                },
                # the training and validation windows themselves: any change of the simulator,
                # the data file, the split or the normalisation changes them
                "data": {
                    "train": data_digest(splits.train.metrics, splits.train.perf, splits.train.starts),
                    "val": data_digest(splits.val.metrics, splits.val.perf, splits.val.starts),
                },
                "trainer": trainer,
            }
        )

    @staticmethod
    def _optimiser_steps(trainer: pl.Trainer, last: Path) -> int | None:
        """Optimiser steps the network took; None when this process cannot tell (spawned DDP
        workers trained it, and no checkpoint records their step count)."""
        if trainer.global_step:
            return trainer.global_step
        if last.is_file():  # spawned workers (ddp_spawn) leave the main process's count at 0
            return int(torch.load(last, map_location="cpu", weights_only=True).get("global_step", 0))
        return None if hasattr(getattr(trainer.strategy, "launcher", None), "_start_method") else 0

    def fit_network(self, name: str, logger: RunLogger | None = None) -> torch.nn.Module:
        """Train one network through Lightning; keep the best checkpoint's weights."""
        splits = self.prepare_data()
        seed = self._net_seeds[list(self.neural_specs).index(name)]
        pl.seed_everything(seed % 2**31, workers=True, verbose=False)
        module = InterferenceRegressor(
            spec=self.neural_specs[name],
            group_sizes=list(splits.group_sizes.values()),
            window=self.dataset.window,
            name=name,
        )
        current = self.run_fingerprint(name, seed)
        last = self.checkpoint_dir(name) / "last.ckpt"
        ckpt_path = None
        if self.resume and last.is_file():
            check_resumable(last, current)  # another run's weights are never continued
            ckpt_path = str(last)
        elif not self.resume:
            set_aside(self.checkpoint_dir(name))  # a fresh start never picks an old run's best file
        trainer = self.trainers[name] = self.build_trainer(name, logger, RunState(current))
        started = time.perf_counter()
        trainer.fit(module, datamodule=self.datamodule(), ckpt_path=ckpt_path)
        self.fit_seconds[name] = time.perf_counter() - started
        if self._optimiser_steps(trainer, last) == 0:
            raise UntrainedModelError(
                f"network {name!r} took no optimiser step (no training batches?); its initial weights are not a "
                "trained model and are not evaluated or exported"
            )
        epochs = max(1, trainer.current_epoch)  # epochs run (validation time included in the rate)
        self.throughput[name] = epochs * len(splits.train) / max(self.fit_seconds[name], 1e-9)
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        if best and Path(best).is_file():
            state = torch.load(best, map_location="cpu", weights_only=False)["state_dict"]
            module.load_state_dict(state)
            self.best_checkpoints[name] = best
        self.nets[name] = module.net.cpu().eval()
        return self.nets[name]

    # ------------------------------------------------------------------ fit
    def fit(self, logger: RunLogger) -> None:
        splits = self.prepare_data()
        rng = np.random.default_rng(self._baseline_seed)
        for name, model in self.tabular.items():
            started = time.perf_counter()
            model.fit(splits.train, splits.val, rng)
            self.fit_seconds[name] = time.perf_counter() - started
        for name in self.neural_specs:
            self.fit_network(name, logger)
        logger.log_metrics({f"time/fit_{k}_s": v for k, v in self.fit_seconds.items()})

    # ------------------------------------------------------------------ evaluation
    def predict(self, name: str, windows: WindowSet) -> np.ndarray:
        if name in self.nets:
            return predict_windows(self.nets[name], windows)
        return self.tabular[name].predict(windows)

    @property
    def model_names(self) -> list[str]:
        return list(self.neural_specs) + list(self.tabular)

    def metric_patterns(self) -> list[str]:
        """The metrics ``evaluate`` produces (``fnmatch`` patterns), known before training."""
        names = self.model_names
        if self.blend_with is not None:
            names += [f"{n}+{self.blend_with}" for n in self.neural_specs]
        splits = ["val", *SPLITS, *(f"{s}_{scenario}" for s in SPLITS for scenario in SCENARIOS)]
        out = [f"{split}/{name}/{m}" for split in splits for name in names for m in ("mae", "p95_abs_error")]
        return [*out, "test_unseen/cloudformer/margin_vs_best_baseline_pct", "chosen/*", "time/*"]

    def evaluate(self) -> EvaluationReport:
        splits = self.prepare_data()
        metrics: dict[str, float] = {}
        predictions: dict[str, dict[str, np.ndarray]] = {}
        evaluated = {"val": splits.val, **splits.tests}
        for name in self.model_names:
            predictions[name] = {split: self.predict(name, w) for split, w in evaluated.items()}
            for split, windows in evaluated.items():
                metrics.update(split_metrics(name, split, predictions[name][split], windows))
        if self.blend_with is not None:
            for name in self.neural_specs:
                for split, windows in evaluated.items():
                    mean = 0.5 * (predictions[name][split] + predictions[self.blend_with][split])
                    metrics.update(split_metrics(f"{name}+{self.blend_with}", split, mean, windows))
        black_box = [n for n in self.model_names if n != MODEL_NAME and getattr(self.tabular.get(n), "black_box", True)]
        best = None
        if black_box:
            best, margin = margin_vs_best(metrics, "test_unseen", MODEL_NAME, black_box, "mae")
            metrics["test_unseen/cloudformer/margin_vs_best_baseline_pct"] = 100.0 * margin
        for name, model in self.tabular.items():
            # what each tabular baseline chose on the validation split (span None = the window)
            for key, value in (getattr(model, "chosen", None) or {}).items():
                value = self.dataset.window if key == "tail_s" and value is None else value
                metrics[f"chosen/{name}/{key}"] = float(value)
        for name, seconds in self.fit_seconds.items():
            metrics[f"time/fit_{name}_s"] = seconds
        for name, rate in self.throughput.items():
            metrics[f"time/train_{name}_windows_per_s"] = rate
        table = self._table(metrics, best)
        figures = {f"pred_vs_actual_{n}": self._scatter(n, predictions[n], splits) for n in self.model_names}
        return EvaluationReport(metrics=metrics, tables={"cloudformer": table}, figures=figures)

    def _table(self, metrics: Mapping[str, float], best: str | None) -> ResultsTable:
        splits = self.prepare_data()
        title = (
            f"Interference prediction: |error| of P in percentage points ({len(splits.test_unseen)} unseen-application "
            f"windows of {splits.unseen_workloads}, {len(splits.test_seen)} seen-application windows)"
        )
        table = results_table(title, metrics, self.model_names, TABLE_COLUMNS)
        table.add_row("paper: CloudFormer (CloudPerfTrace)", {"unseen_mae": PAPER_UNSEEN_MAE_PCT})
        if best is not None:
            table.notes.append(
                f"CloudFormer vs the best black-box baseline ({best}) on unseen applications: "
                f"{metrics['test_unseen/cloudformer/margin_vs_best_baseline_pct']:.1f}% lower MAE "
                f"(paper: >= {PAPER_MARGIN_PCT:.0f}%). persistence reads the VM's own delayed P (not black-box)."
            )
        return table

    def _scatter(self, name: str, predictions: Mapping[str, np.ndarray], splits: CloudPerfSplits) -> Any:
        fig, axes = plt.subplots(1, 2, figsize=(9, 4.2), sharey=True)
        rng = np.random.default_rng(0)
        for ax, split in zip(axes, SPLITS, strict=True):
            true, pred = splits.tests[split].labels, predictions[split]
            rows = rng.choice(len(true), size=min(3000, len(true)), replace=False)
            ax.scatter(true[rows], pred[rows], s=4, alpha=0.35)
            ax.plot([0, 1], [0, 1], "k--", lw=1)
            stats = error_stats(pred, true)
            ax.set_title(f"{split}: MAE {stats['mae']:.1f} pp, p95 {stats['p95_abs_error']:.1f} pp", fontsize=9)
            ax.set_xlabel("actual P")
            ax.set_xlim(0, 1.02)
            ax.set_ylim(0, 1.02)
            ax.grid(alpha=0.3)
        axes[0].set_ylabel(f"predicted P ({name})")
        fig.tight_layout()
        return fig

    def evaluate_export(self, predictor: Any, *, refit_baselines: bool = True) -> EvaluationReport:
        """Evaluate a loaded export (``python evaluate.py checkpoint=...``) on the run's test
        splits, regenerated from its seed in memory, with raw telemetry through the export; next
        to the tabular baselines refitted on the run's training split (the neural baselines are
        not retrained here: their numbers are in the training run's metrics.json)."""
        splits = self.prepare_data(save=False)
        assert self.traces is not None
        names = ["cloudformer_export"]
        if refit_baselines:
            rng = np.random.default_rng(self._baseline_seed)
            for name, model in self.tabular.items():
                model.fit(splits.train, splits.val, rng)
                names.append(name)
        metrics: dict[str, float] = {}
        for split, windows in splits.tests.items():
            raw = make_windows(
                self.traces,
                splits.tasks[split],
                window=self.dataset.window,
                horizon=self.dataset.horizon,
                stride=self.dataset.eval_stride,
                normaliser=None,
            )
            chunks = [
                predictor.predict(raw.gather(np.arange(lo, min(lo + 1024, len(raw))))[0])
                for lo in range(0, len(raw), 1024)
            ]
            metrics.update(split_metrics("cloudformer_export", split, np.concatenate(chunks), windows))
            for name in names[1:]:
                metrics.update(split_metrics(name, split, self.tabular[name].predict(windows), windows))
        title = "Exported CloudFormer (onnxruntime, raw telemetry) vs refitted baselines: |error| of P in pp"
        table = results_table(title, metrics, names, EXPORT_TABLE_COLUMNS)
        return EvaluationReport(metrics=metrics, tables={"cloudformer_export": table})

    # ------------------------------------------------------------------ export
    def export(
        self, directory: str | os.PathLike[str], *, metrics: Mapping[str, float], config: Mapping[str, Any]
    ) -> Path:
        if MODEL_NAME not in self.nets:
            raise RuntimeError("fit the task before exporting")
        return cf_export.export_cloudformer(
            directory,
            net=self.nets[MODEL_NAME],
            splits=self.prepare_data(),
            metrics={k: v for k, v in metrics.items() if "/cloudformer/" in k},
            config=config,
        )
