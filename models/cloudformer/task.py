"""The CloudFormer task on the paper's terms (arXiv 2509.03394, Sec. 6): one P per execution,
7 training and 4 unseen applications over 6 partitions fixed in advance, MAE and MSE in
percentage points, mean +- std over the partitions; CloudFormer, its two single-branch
ablations, the LSTM (Lightning) and the feature baselines (Optuna-tuned), all on the same data."""

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

from infragym.datasets.cloudperf import ExecutionSet
from infragym.envs.colocation.simulator import ColocationSimulator
from infragym.evaluation import margin_vs_best, results_table
from infragym.logging import RunLogger
from infragym.models.cloudformer import export as cf_export
from infragym.models.cloudformer.baselines import TABULAR_BASELINES, FeatureBaseline
from infragym.models.cloudformer.data import (
    CloudPerfDataset,
    ExecutionDataModule,
    ExecutionDataset,
    Splits,
    summary_features,
)
from infragym.models.cloudformer.module import InterferenceRegressor, predict_executions
from infragym.models.cloudformer.networks import NetworkSpec, count_parameters
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

MODEL_NAME = "cloudformer"
# Paper, Table IV (unseen applications, MAE in pp, mean +- std over 6 partitions) and Table V.
PAPER_TABLE_IV = {
    "linear_regression": (49.09, 12.45),
    "gamma_glm": (477.0, None),
    "decision_tree": (15.03, 3.96),
    "random_forest": (10.78, 3.29),
    "lstm": (15.42, 4.17),
    "cloudformer": (7.80, 1.55),
}
PAPER_TABLE_V = {"cloudformer_temporal": 8.47, "cloudformer_system": 8.65, "cloudformer": 7.80}
SPLITS = ("val", "test_unseen", "test_seen")
METRICS = ("mae", "mse", "p95_abs_error")
ABLATIONS = ("cloudformer_temporal", "cloudformer_system")


def _plain(cfg: Any) -> Any:
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg


def error_stats(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """MAE, MSE (pp^2) and the 95th percentile of |error|, with P in percentage points."""
    err = 100.0 * (np.asarray(pred, np.float64) - np.asarray(true, np.float64))
    if not len(err):
        return {m: float("nan") for m in METRICS}
    return {
        "mae": float(np.abs(err).mean()),
        "mse": float((err**2).mean()),
        "p95_abs_error": float(np.percentile(np.abs(err), 95)),
    }


class UntrainedModelError(RuntimeError):
    """A network that took no optimiser step: its weights are the initial ones, never exported."""


def _check_training_budget(trainer: Mapping[str, Any]) -> None:
    """Refuse a Trainer config that trains nothing (the export would hold initial weights)."""
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
    """Per-execution interference prediction over the paper's partitions.

    Args:
        env: the execution simulator (used when ``dataset.path`` is null).
        dataset: where the executions come from, the partitions and the batching.
        model: CloudFormer's ``NetworkSpec``.
        seed: derives the data, split, baseline and network seeds (never the partitions).
        trainer / callbacks: Lightning configs; one Trainer per network and partition, the same
            budget for CloudFormer, its ablations and the LSTM.
        baselines: names from ``TABULAR_BASELINES`` and keys of ``neural_baselines``.
        neural_baselines: name -> ``NetworkSpec`` fields.
        baseline_kwargs: keyword arguments per tabular baseline (Optuna trials, CV folds).
        resume: continue a network from its ``last.ckpt`` when the run folder has one.
        blend_with: a tabular baseline to report each network's equal-weight blend with
            (``<split>/<network>+<baseline>/*``; reported only, never a baseline). None: none.
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
        baselines: Sequence[str] = ("linear_regression", "gamma_glm", "decision_tree", "random_forest", "ridge"),
        neural_baselines: Mapping[str, Mapping[str, Any]] | None = None,
        baseline_kwargs: Mapping[str, Mapping[str, Any]] | None = None,
        resume: bool = True,
        blend_with: str | None = None,
    ) -> None:
        model = model if isinstance(model, NetworkSpec) else NetworkSpec(**_plain(model))
        self.env, self.dataset, self.spec, self.seed = env, dataset, model, seed
        self.trainer_cfg = dict(_plain(trainer) or {})
        _check_training_budget(self.trainer_cfg)
        self.callbacks_cfg = dict(_plain(callbacks) or {})
        self.neural_specs: dict[str, NetworkSpec] = {MODEL_NAME: model}
        neural = {k: dict(_plain(v)) for k, v in (_plain(neural_baselines) or {}).items()}
        self.baseline_kwargs = {k: dict(_plain(v)) for k, v in (_plain(baseline_kwargs) or {}).items()}
        unknown = [b for b in baselines if b not in TABULAR_BASELINES and b not in neural]
        if unknown:
            raise ValueError(
                f"task.baselines: unknown {unknown}; tabular: {sorted(TABULAR_BASELINES)}, "
                f"neural (task.neural_baselines): {sorted(neural)}"
            )
        self.tabular_names = [b for b in baselines if b not in neural]
        for name in baselines:
            if name in neural:
                self.neural_specs[name] = NetworkSpec(**neural[name])
        if blend_with is not None and blend_with not in self.tabular_names:
            raise ValueError(
                f"task.blend_with: {blend_with!r} is not a tabular baseline of this run: {self.tabular_names}"
            )
        self.resume, self.blend_with = resume, blend_with
        self._data_seed, self._split_seed, self._baseline_seed, *self._net_seeds = child_seeds(
            seed, 3 + len(self.neural_specs)
        )
        self.data: ExecutionSet | None = None
        self.partitions: list[list[str]] = []
        self._splits: dict[int, Splits] = {}
        self._features: dict[tuple[int, str, int | None], np.ndarray] = {}
        self._datasets: dict[tuple[int, str], ExecutionDataset] = {}
        self.nets: dict[str, torch.nn.Module] = {}  # partition 0's (the exported CloudFormer's partition)
        self.partition_nets: dict[int, dict[str, torch.nn.Module]] = {}
        self.tabular: dict[int, dict[str, FeatureBaseline]] = {}
        self.fit_seconds: dict[str, float] = {}
        self.best_checkpoints: dict[str, str] = {}
        self.trainers: dict[str, pl.Trainer] = {}

    # ------------------------------------------------------------------ data
    def prepare_data(self, *, save: bool = True) -> ExecutionSet:
        """The executions (simulated from the seed, or loaded) and the partitions."""
        if self.data is None:
            self.data = self.dataset.executions(self.env, np.random.default_rng(self._data_seed), save=save)
            self.partitions = self.dataset.partitions(self.data)
        return self.data

    def splits(self, partition: int = 0) -> Splits:
        if partition not in self._splits:
            data = self.prepare_data()
            rng = np.random.default_rng((self._split_seed, partition))
            self._splits[partition] = self.dataset.split(data, self.partitions[partition], rng)
        return self._splits[partition]

    def executions(self, partition: int, split: str) -> ExecutionDataset:
        key = (partition, split)
        if key not in self._datasets:
            splits = self.splits(partition)
            self._datasets[key] = ExecutionDataset(getattr(splits, split), splits.normaliser, self.dataset.max_seconds)
        return self._datasets[key]

    def features(self, partition: int, split: str, tail: int | None) -> np.ndarray:
        key = (partition, split, tail)
        if key not in self._features:
            splits = self.splits(partition)
            self._features[key] = summary_features(getattr(splits, split), splits.normaliser, tail=tail)
        return self._features[key]

    # ------------------------------------------------------------------ Lightning
    def _root(self) -> Path:
        return Path(self.trainer_cfg.get("default_root_dir") or self.dataset.save_dir or ".")

    def checkpoint_dir(self, name: str, partition: int = 0) -> Path:
        base = (self.callbacks_cfg.get("model_checkpoint") or {}).get("dirpath") or self._root() / "checkpoints"
        return Path(base) / (name if partition == 0 else f"{name}_partition{partition}")

    def build_trainer(
        self, name: str, logger: RunLogger | None = None, run_state: RunState | None = None, partition: int = 0
    ) -> pl.Trainer:
        callbacks: list[Any] = [] if run_state is None else [run_state]
        for key, cfg in self.callbacks_cfg.items():
            if cfg is None:
                continue
            cfg = dict(cfg)
            if "_target_" not in cfg:
                raise ValueError(f"callbacks.{key} has no _target_")
            if cfg["_target_"].endswith("ModelCheckpoint"):
                cfg["dirpath"] = str(self.checkpoint_dir(name, partition))
            callbacks.append(instantiate(cfg))
        cfg = dict(self.trainer_cfg) or {"_target_": "pytorch_lightning.Trainer", "max_epochs": 10}
        cfg.setdefault("_target_", "pytorch_lightning.Trainer")
        cfg["default_root_dir"] = str(self._root() / "lightning" / self.checkpoint_dir(name, partition).name)
        if not any(isinstance(c, pl.callbacks.ProgressBar) for c in callbacks) and "enable_progress_bar" in cfg:
            cfg["enable_progress_bar"] = False
        lightning_logger = logger.lightning_logger() if logger is not None else False
        return instantiate(cfg, callbacks=callbacks, logger=lightning_logger, enable_checkpointing=True)

    def network_seed(self, name: str, partition: int = 0) -> int:
        return self._net_seeds[list(self.neural_specs).index(name)] + 1000 * partition

    def run_fingerprint(self, name: str, seed: int, partition: int = 0) -> dict[str, Any]:
        """What network ``name``'s weights depend on (compared before resuming)."""
        splits = self.splits(partition)
        trainer = {k: v for k, v in self.trainer_cfg.items() if k not in RESUMABLE_TRAINER_KEYS}
        return fingerprint(
            {
                "network": asdict(self.neural_specs[name]),
                "network_seed": seed,
                "dataset": {
                    "batch_size": self.dataset.batch_size,
                    "max_seconds": self.dataset.max_seconds,
                    "unseen": splits.unseen,
                },
                "data": {
                    "train": data_digest(splits.train.perf, splits.train.lengths, *splits.train.metrics),
                    "val": data_digest(splits.val.perf, splits.val.lengths, *splits.val.metrics),
                },
                "trainer": trainer,
            }
        )

    def fit_network(self, name: str, logger: RunLogger | None = None, partition: int = 0) -> torch.nn.Module:
        """Train one network on one partition through Lightning; keep its best checkpoint's weights."""
        splits = self.splits(partition)
        seed = self.network_seed(name, partition)
        pl.seed_everything(seed % 2**31, workers=True, verbose=False)
        module = InterferenceRegressor(spec=self.neural_specs[name], n_metrics=splits.train.n_metrics, name=name)
        current = self.run_fingerprint(name, seed, partition)
        folder = self.checkpoint_dir(name, partition)
        last = folder / "last.ckpt"
        ckpt_path = None
        if self.resume and last.is_file():
            check_resumable(last, current)
            ckpt_path = str(last)
        elif not self.resume:
            set_aside(folder)
        trainer = self.trainers[name] = self.build_trainer(name, logger, RunState(current), partition)
        started = time.perf_counter()
        datamodule = ExecutionDataModule(
            splits,
            batch_size=self.dataset.batch_size,
            max_seconds=self.dataset.max_seconds,
            seed=seed,
            num_workers=self.dataset.num_workers,
        )
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
        self.fit_seconds[f"{name}@{partition}"] = time.perf_counter() - started
        steps = trainer.global_step or (
            int(torch.load(last, map_location="cpu", weights_only=True).get("global_step", 0)) if last.is_file() else 0
        )
        if steps == 0:
            raise UntrainedModelError(f"network {name!r} took no optimiser step (no training batches?)")
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        if best and Path(best).is_file():
            module.load_state_dict(torch.load(best, map_location="cpu", weights_only=False)["state_dict"])
            if partition == 0:
                self.best_checkpoints[name] = best
        net = module.net.cpu().eval()
        self.partition_nets.setdefault(partition, {})[name] = net
        if partition == 0:
            self.nets[name] = net
        return net

    def fit_tabular(self, partition: int) -> None:
        splits = self.splits(partition)
        fitted = self.tabular.setdefault(partition, {})
        for name in self.tabular_names:
            cls = TABULAR_BASELINES[name]
            kwargs = {"random_state": self._baseline_seed % 2**31 + partition, **self.baseline_kwargs.get(name, {})}
            started = time.perf_counter()
            fitted[name] = cls(**kwargs).fit(
                self.features(partition, "train", cls.tail), splits.train.perf, splits.train.application
            )
            self.fit_seconds[f"{name}@{partition}"] = time.perf_counter() - started

    # ------------------------------------------------------------------ fit
    def fit(self, logger: RunLogger) -> None:
        self.prepare_data()
        for partition in range(len(self.partitions)):
            self.fit_tabular(partition)
            for name in self.neural_specs:
                self.fit_network(name, logger, partition)
        logger.log_metrics({f"time/fit_{k.replace('@', '_p')}_s": v for k, v in self.fit_seconds.items()})

    # ------------------------------------------------------------------ evaluation
    @property
    def model_names(self) -> list[str]:
        return list(self.neural_specs) + list(self.tabular_names)

    def predict(self, name: str, partition: int, split: str) -> np.ndarray:
        if name in self.neural_specs:
            return predict_executions(self.partition_nets[partition][name], self.executions(partition, split))
        model = self.tabular[partition][name]
        return model.predict(self.features(partition, split, type(model).tail))

    def metric_patterns(self) -> list[str]:
        """The metrics ``evaluate`` produces (``fnmatch`` patterns), known before training."""
        names = self.model_names + ([f"{n}+{self.blend_with}" for n in self.neural_specs] if self.blend_with else [])
        splits = [*SPLITS, "test_unseen_static", "test_unseen_dynamic", "test_seen_static", "test_seen_dynamic"]
        out = [f"{s}/{n}/{m}{sfx}" for s in splits for n in names for m in METRICS for sfx in ("", "_std")]
        return [
            *out,
            "partition*/*",
            "test_unseen/cloudformer/margin_vs_best_baseline_pct",
            "chosen/*",
            "time/*",
            "params/*",
        ]

    def evaluate(self) -> EvaluationReport:
        self.prepare_data()
        per_partition: list[dict[str, float]] = []
        pooled: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {n: [] for n in self.model_names}
        metrics: dict[str, float] = {}
        for k in range(len(self.partitions)):
            splits = self.splits(k)
            values: dict[str, float] = {}
            predictions = {n: {s: self.predict(n, k, s) for s in SPLITS} for n in self.model_names}
            blends = {}
            if self.blend_with:
                for n in self.neural_specs:
                    blends[f"{n}+{self.blend_with}"] = {
                        s: 0.5 * (predictions[n][s] + predictions[self.blend_with][s]) for s in SPLITS
                    }
            for name, by_split in {**predictions, **blends}.items():
                for split in SPLITS:
                    data: ExecutionSet = getattr(splits, split)
                    values.update(
                        {f"{split}/{name}/{m}": v for m, v in error_stats(by_split[split], data.perf).items()}
                    )
                    if split == "val":
                        continue
                    static = data.scenario == "static"
                    for label, mask in (("static", static), ("dynamic", ~static & (data.scenario != "unknown"))):
                        if mask.any():
                            stats = error_stats(by_split[split][mask], data.perf[mask])
                            values.update({f"{split}_{label}/{name}/{m}": v for m, v in stats.items()})
                if name in pooled:
                    pooled[name].append((by_split["test_unseen"], splits.test_unseen.perf))
            for name, model in self.tabular.get(k, {}).items():
                for key, value in model.chosen.items():
                    metrics[f"chosen/{name}/partition{k}/{key}"] = value
            per_partition.append(values)
            metrics.update({f"partition{k}/{key}": v for key, v in values.items()})
        for key in sorted(set().union(*per_partition)):
            series = np.array([p[key] for p in per_partition if key in p])
            metrics[key] = float(series.mean())
            metrics[f"{key}_std"] = float(series.std(ddof=1)) if len(series) > 1 else 0.0
        black_box = [n for n in self.model_names if n not in (MODEL_NAME, *ABLATIONS, "mean")]
        best = None
        if black_box:
            best, margin = margin_vs_best(metrics, "test_unseen", MODEL_NAME, black_box, "mae")
            metrics["test_unseen/cloudformer/margin_vs_best_baseline_pct"] = 100.0 * margin
        for name, seconds in self.fit_seconds.items():
            metrics[f"time/fit_{name.replace('@', '_p')}_s"] = seconds
        for name, net in self.nets.items():
            metrics[f"params/{name}"] = float(count_parameters(net))
        tables = {"cloudformer": self._table(metrics, best), "cloudformer_ablation": self._ablation(metrics)}
        figures = {f"pred_vs_actual_{n}": self._scatter(n, pooled[n]) for n in self.neural_specs}
        return EvaluationReport(metrics=metrics, tables=tables, figures=figures)

    def _table(self, metrics: Mapping[str, float], best: str | None) -> ResultsTable:
        columns = {
            "unseen_mae": ("test_unseen", "mae"),
            "unseen_mae_std": ("test_unseen", "mae_std"),
            "unseen_mse": ("test_unseen", "mse"),
            "unseen_mse_std": ("test_unseen", "mse_std"),
            "seen_mae": ("test_seen", "mae"),
            "val_mae": ("val", "mae"),
        }
        title = (
            f"Interference prediction per execution, unseen applications: MAE (pp) and MSE (pp^2) of P, mean and std "
            f"over {len(self.partitions)} partitions of 4 unseen applications (paper: Table IV)"
        )
        table = results_table(title, metrics, self.model_names, columns)
        for name, (mae, std) in PAPER_TABLE_IV.items():
            row: dict[str, float | str] = {"unseen_mae": mae}
            if std is not None:
                row["unseen_mae_std"] = std
            table.add_row(f"paper: {name}", row)
        if best is not None:
            table.notes.append(
                f"CloudFormer vs the best feature/LSTM baseline ({best}) on unseen applications: "
                f"{metrics['test_unseen/cloudformer/margin_vs_best_baseline_pct']:.1f}% lower MAE (paper: 28% vs the "
                "random forest)."
            )
        return table

    def _ablation(self, metrics: Mapping[str, float]) -> ResultsTable:
        names = [n for n in (MODEL_NAME, *ABLATIONS) if n in self.neural_specs]
        table = results_table(
            "Ablation (paper: Table V): unseen-application MAE (pp), mean over partitions",
            metrics,
            names,
            {"unseen_mae": ("test_unseen", "mae"), "unseen_mae_std": ("test_unseen", "mae_std")},
        )
        for name, value in PAPER_TABLE_V.items():
            table.add_row(f"paper: {name}", {"unseen_mae": value})
        return table

    def _scatter(self, name: str, pooled: list[tuple[np.ndarray, np.ndarray]]) -> Any:
        fig, ax = plt.subplots(figsize=(4.6, 4.2))
        pred = np.concatenate([p for p, _ in pooled])
        true = np.concatenate([t for _, t in pooled])
        ax.scatter(true, pred, s=5, alpha=0.4)
        ax.plot([0, 1], [0, 1], "k--", lw=1)
        stats = error_stats(pred, true)
        ax.set_title(f"{name}, unseen (all partitions): MAE {stats['mae']:.1f} pp", fontsize=9)
        ax.set_xlabel("actual P")
        ax.set_ylabel("predicted P")
        ax.set_xlim(0, 1.02)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        return fig

    def evaluate_export(self, predictor: Any, *, refit_baselines: bool = True) -> EvaluationReport:
        """A loaded export (``python evaluate.py checkpoint=...``) on partition 0's tests, raw
        executions through the export, beside the feature baselines refitted on its training split."""
        self.prepare_data(save=False)
        splits = self.splits(0)
        names = ["cloudformer_export"]
        if refit_baselines:
            self.fit_tabular(0)
            names += self.tabular_names
        metrics: dict[str, float] = {}
        for split in ("test_unseen", "test_seen"):
            data: ExecutionSet = getattr(splits, split)
            raw = [m for m in data.metrics]
            if self.dataset.max_seconds:
                from infragym.models.cloudformer.data import crop

                raw = [crop(m, self.dataset.max_seconds) for m in raw]
            pred = np.concatenate([predictor.predict(raw[i : i + 64]) for i in range(0, len(raw), 64)])
            metrics.update({f"{split}/cloudformer_export/{m}": v for m, v in error_stats(pred, data.perf).items()})
            for name in names[1:]:
                values = error_stats(self.predict(name, 0, split), data.perf)
                metrics.update({f"{split}/{name}/{m}": v for m, v in values.items()})
        title = (
            "Exported CloudFormer (onnxruntime, raw executions) vs refitted baselines, partition 0: error of P in pp"
        )
        table = results_table(
            title, metrics, names, {"unseen_mae": ("test_unseen", "mae"), "seen_mae": ("test_seen", "mae")}
        )
        return EvaluationReport(metrics=metrics, tables={"cloudformer_export": table})

    # ------------------------------------------------------------------ export
    def export(
        self, directory: str | os.PathLike[str], *, metrics: Mapping[str, float], config: Mapping[str, Any]
    ) -> Path:
        if MODEL_NAME not in self.nets:
            raise RuntimeError("fit the task before exporting")
        splits = self.splits(0)
        return cf_export.export_cloudformer(
            directory,
            net=self.nets[MODEL_NAME],
            splits=splits,
            window=self.dataset.serving_window,
            max_seconds=self.dataset.max_seconds,
            metrics={k: v for k, v in metrics.items() if "/cloudformer/" in k and not k.startswith("partition")},
            config=config,
        )
