"""The paper's protocol over executions: partitions of unseen applications, splits, normalisation,
and bucketed, padded batches of variable-length executions for Lightning.

Protocol (arXiv 2509.03394, Sec. 6): 7 applications train, the other 4 are *unseen* (2 static
and 2 dynamic applications, Table III's static share 100 % or not), over 6 random partitions
fixed in advance (drawn from ``partition_seed``, never from the run's seed). Within the training
applications, executions are split into train / val (early stopping, tuning) / test_seen.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from infragym.datasets.cloudperf import CloudPerfError, ExecutionSet, Normaliser
from infragym.envs.colocation.applications import STATIC_APPLICATIONS

PARTITION_SEED = 20250903  # the paper's arXiv date: partitions fixed before any run


def make_partitions(
    applications: Sequence[str], n_partitions: int = 6, n_unseen: int = 4, seed: int = PARTITION_SEED
) -> list[list[str]]:
    """``n_partitions`` distinct sets of unseen applications, half static and half dynamic ones
    when both kinds are present (the paper's 2 + 2), drawn from ``seed``. A data set of fewer
    applications than ``n_unseen + 1`` (a subset of CloudPerfTrace) keeps one for training: at
    most ``len(applications) - 1`` are unseen; fewer distinct sets may exist than asked for."""
    apps = sorted(set(applications))
    if len(apps) < 2:
        raise CloudPerfError(f"the unseen-application protocol needs at least 2 applications, the data has {apps}")
    if n_unseen < 1:
        raise CloudPerfError(f"dataset.n_unseen must be >= 1, got {n_unseen}")
    n_unseen = min(n_unseen, len(apps) - 1)
    static = [a for a in apps if a in STATIC_APPLICATIONS]
    dynamic = [a for a in apps if a not in STATIC_APPLICATIONS]
    rng = np.random.default_rng(seed)
    out: list[list[str]] = []
    for _ in range(200 * n_partitions):
        if len(out) == n_partitions:
            break
        n_static = min(len(static), max(n_unseen - len(dynamic), n_unseen // 2))
        pick = list(rng.choice(static, n_static, replace=False)) if n_static else []
        pick += list(rng.choice(dynamic, n_unseen - n_static, replace=False)) if n_unseen > n_static else []
        pick = sorted(str(p) for p in pick)
        if pick not in out:
            out.append(pick)
    return out


@dataclass
class Splits:
    """One partition's executions, normalised with the training executions' statistics."""

    train: ExecutionSet
    val: ExecutionSet
    test_seen: ExecutionSet
    test_unseen: ExecutionSet
    normaliser: Normaliser
    unseen: list[str]
    seen: list[str]

    @property
    def tests(self) -> dict[str, ExecutionSet]:
        return {"test_unseen": self.test_unseen, "test_seen": self.test_seen}


def split_executions(
    data: ExecutionSet, unseen: Sequence[str], val_fraction: float, seen_test_fraction: float, rng: np.random.Generator
) -> Splits:
    """Unseen applications -> test_unseen; each seen application's executions -> train / val / test_seen."""
    missing = sorted(set(unseen) - set(data.application.tolist()))
    if missing:
        raise CloudPerfError(
            f"unseen applications {missing} have no executions; present: {sorted(set(data.application))}"
        )
    is_unseen = np.isin(data.application, list(unseen))
    parts: dict[str, list[int]] = {"train": [], "val": [], "test_seen": []}
    for app in sorted(set(data.application[~is_unseen].tolist())):
        rows = rng.permutation(np.flatnonzero(data.application == app))
        n_val, n_test = round(val_fraction * len(rows)), round(seen_test_fraction * len(rows))
        if len(rows) >= 3:
            n_val, n_test = max(1, n_val), max(1, n_test)
        parts["val"] += rows[:n_val].tolist()
        parts["test_seen"] += rows[n_val : n_val + n_test].tolist()
        parts["train"] += rows[n_val + n_test :].tolist()
    if not parts["train"] or not parts["val"]:
        raise CloudPerfError("too few executions of the seen applications to train and validate")
    train = data.subset(sorted(parts["train"]))
    return Splits(
        train=train,
        val=data.subset(sorted(parts["val"])),
        test_seen=data.subset(sorted(parts["test_seen"])),
        test_unseen=data.subset(np.flatnonzero(is_unseen)),
        normaliser=Normaliser.fit(train.metrics),
        unseen=sorted(unseen),
        seen=sorted(set(train.application.tolist())),
    )


def crop(metrics: np.ndarray, max_seconds: int | None) -> np.ndarray:
    """At most ``max_seconds`` evenly spaced seconds of an execution (all of it when shorter)."""
    if max_seconds is None or len(metrics) <= max_seconds:
        return metrics
    return metrics[np.linspace(0, len(metrics) - 1, max_seconds).round().astype(int)]


def pad(sequences: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """``(batch, longest, n_metrics)`` zero-padded and the lengths ``(batch,)`` int64."""
    lengths = np.array([len(s) for s in sequences], dtype=np.int64)
    out = np.zeros((len(sequences), int(lengths.max()), sequences[0].shape[1]), dtype=np.float32)
    for i, s in enumerate(sequences):  # one copy per execution
        out[i, : len(s)] = s
    return out, lengths


class ExecutionDataset(Dataset):
    """Normalised executions and their P; ``__getitems__`` pads a whole batch at once."""

    def __init__(self, data: ExecutionSet, normaliser: Normaliser, max_seconds: int | None = None) -> None:
        self.x = [normaliser(crop(m, max_seconds)) for m in data.metrics]
        self.y = data.perf.astype(np.float32)
        self.lengths = np.array([len(x) for x in self.x])

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.__getitems__([index])

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x, lengths = pad([self.x[i] for i in indices])
        return torch.from_numpy(x), torch.from_numpy(lengths), torch.from_numpy(self.y[indices])


class BucketBatchSampler(Sampler[list[int]]):
    """Batches of executions of similar length (sorted by length, cut into batches, the batches
    shuffled per epoch when ``shuffle``): padding stays small, so CPU training stays fast."""

    def __init__(self, lengths: np.ndarray, batch_size: int, *, shuffle: bool, seed: int = 0) -> None:
        self.lengths, self.batch_size, self.shuffle, self.seed = np.asarray(lengths), batch_size, shuffle, seed
        self.epoch, self._epoch_set = 0, False
        # Lightning calls ``set_epoch`` on ``dataloader.batch_sampler.sampler`` each epoch
        # (lightning_fabric.utilities.data._set_sampler_epoch): point it at this sampler.
        self.sampler = self

    def set_epoch(self, epoch: int) -> None:
        """Lightning calls this each epoch (also after a resume, so the order is that of an
        uninterrupted run); without it, each pass over the sampler is the next epoch."""
        self.epoch, self._epoch_set = epoch, True

    def __len__(self) -> int:
        return int(np.ceil(len(self.lengths) / self.batch_size))

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng((self.seed, self.epoch))
        if not self._epoch_set:
            self.epoch += 1
        self._epoch_set = False
        # ties broken at random each epoch, so equal-length executions meet different neighbours
        jitter = rng.random(len(self.lengths)) if self.shuffle else np.zeros(len(self.lengths))
        order = np.lexsort((jitter, self.lengths))
        batches = [order[i : i + self.batch_size].tolist() for i in range(0, len(order), self.batch_size)]
        for b in rng.permutation(len(batches)) if self.shuffle else range(len(batches)):
            yield batches[b]


def _ready(batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    return batch  # ``__getitems__`` already returns padded tensors


class ExecutionDataModule(pl.LightningDataModule):
    """Train (bucketed, shuffled) and val (bucketed, in order) loaders of one partition."""

    def __init__(
        self, splits: Splits, *, batch_size: int, max_seconds: int | None, seed: int = 0, num_workers: int = 0
    ) -> None:
        super().__init__()
        self.splits, self.batch_size, self.max_seconds, self.seed = splits, batch_size, max_seconds, seed
        self.num_workers = num_workers
        self._train = ExecutionDataset(splits.train, splits.normaliser, max_seconds)
        self._val = ExecutionDataset(splits.val, splits.normaliser, max_seconds)

    def _loader(self, data: ExecutionDataset, shuffle: bool) -> DataLoader:
        sampler = BucketBatchSampler(data.lengths, self.batch_size, shuffle=shuffle, seed=self.seed)
        return DataLoader(data, batch_sampler=sampler, collate_fn=_ready, num_workers=self.num_workers)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self._train, True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self._val, False)


def summary_features(data: ExecutionSet, normaliser: Normaliser, *, tail: int | None = None) -> np.ndarray:
    """How the feature-based baselines see a variable-length execution: each metric's mean, std,
    min and max over the whole run (normalised metrics), and with ``tail`` also its mean over the
    last ``tail`` seconds: ``(n, 4 or 5 x n_metrics)``."""
    rows = []
    for m in data.metrics:  # one vectorised reduction per execution
        z = normaliser(m)
        stats = [z.mean(0), z.std(0), z.min(0), z.max(0)]
        if tail:
            stats.append(z[-tail:].mean(0))
        rows.append(np.concatenate(stats))
    return np.asarray(rows, dtype=np.float32)


class CloudPerfDataset:
    """Where the executions come from, the partitions and the batching (``conf/dataset/cloudperf.yaml``).

    Args:
        path: a folder holding CloudPerfTrace's ``parquet_ds/`` (or that folder); null simulates
            executions with the env and writes them to ``save_dir/parquet_ds`` in the same layout,
            then reads them back through the same validating loader.
        save_dir: where simulated executions are written.
        group_sizes: metrics per collector (``tr``/``lin``/``td``) when the files do not say.
        max_executions_per_application: cap per application when loading (null: all).
        partitions: explicit lists of unseen applications; null draws ``n_partitions`` of
            ``n_unseen`` from ``partition_seed`` (the paper: 6 of 4, 2 static + 2 dynamic).
        val_fraction / seen_test_fraction: share of each training application's executions held
            out for validation (early stopping, best checkpoint) and for the seen-application test.
        batch_size: executions per batch (bucketed by length).
        max_seconds: executions longer than this are read at that many evenly spaced seconds
            (null: whole executions, the paper's setting).
        serving_window: the fixed length of a ``windows`` request to the served model (s).
    """

    def __init__(
        self,
        *,
        path: str | None = None,
        save_dir: str | None = None,
        group_sizes: dict[str, int] | None = None,
        max_executions_per_application: int | None = None,
        partitions: list[list[str]] | None = None,
        n_partitions: int = 6,
        n_unseen: int = 4,
        partition_seed: int = PARTITION_SEED,
        val_fraction: float = 0.15,
        seen_test_fraction: float = 0.15,
        batch_size: int = 16,
        max_seconds: int | None = None,
        num_workers: int = 0,
        serving_window: int = 60,
    ) -> None:
        for key, value, least in (
            ("batch_size", batch_size, 1),
            ("n_partitions", n_partitions, 1),
            ("n_unseen", n_unseen, 1),
            ("num_workers", num_workers, 0),
            ("serving_window", serving_window, 1),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise CloudPerfError(f"dataset.{key} must be a whole number >= {least}, got {value!r}")
        if max_seconds is not None and (not isinstance(max_seconds, int) or max_seconds < 2):
            raise CloudPerfError(f"dataset.max_seconds must be null or a whole number >= 2, got {max_seconds!r}")
        for key, value in (("val_fraction", val_fraction), ("seen_test_fraction", seen_test_fraction)):
            if not 0.0 < value < 1.0:
                raise CloudPerfError(f"dataset.{key} must be in (0, 1), got {value}")
        if val_fraction + seen_test_fraction >= 0.9:
            raise CloudPerfError("dataset.val_fraction + dataset.seen_test_fraction must leave executions to train on")
        self.path, self.save_dir = path, save_dir
        self.group_sizes = dict(group_sizes) if group_sizes else None
        self.max_executions_per_application = max_executions_per_application
        self.explicit_partitions = [sorted(p) for p in partitions] if partitions else None
        self.n_partitions, self.n_unseen, self.partition_seed = n_partitions, n_unseen, partition_seed
        self.val_fraction, self.seen_test_fraction = val_fraction, seen_test_fraction
        self.batch_size, self.max_seconds, self.num_workers = batch_size, max_seconds, num_workers
        self.serving_window = serving_window

    def executions(self, simulator: object, rng: np.random.Generator, *, save: bool = True) -> ExecutionSet:
        """Load ``path``, or simulate (written in the real layout and read back; ``save=False``:
        the same executions in memory, as the loader would return them)."""
        from infragym.datasets.cloudperf import load_cloudperf, write_cloudperf
        from infragym.envs.colocation.applications import APPLICATIONS

        if self.path is not None:
            return load_cloudperf(
                self.path,
                group_sizes=self.group_sizes,
                max_executions_per_application=self.max_executions_per_application,
            )
        if simulator is None:
            raise CloudPerfError("dataset.path is null and no simulator was given to generate executions")
        sim = simulator.simulate(rng)  # type: ignore[attr-defined]
        task_ids = {a: APPLICATIONS[a].task_id for a in APPLICATIONS}
        if save:
            if self.save_dir is None:
                raise CloudPerfError("dataset.save_dir must be set to write simulated executions")
            root = write_cloudperf(
                Path(self.save_dir) / "parquet_ds",
                metrics=sim.metrics,
                timestamps=sim.timestamps,
                perf=sim.perf,
                application=sim.application,
                workload=sim.workload,
                group_sizes=sim.group_sizes,
                task_ids=task_ids,
                scenario=sim.scenario,
                metric_names=sim.metric_names,
            )
            return load_cloudperf(root)
        # the loader's order: by task id folder name, then row order within the application
        order = np.asarray(sorted(range(len(sim.perf)), key=lambda i: f"tasks={task_ids[sim.application[i]]}"))
        return ExecutionSet(
            metrics=[sim.metrics[i] for i in order],
            perf=sim.perf[order].astype(np.float32),
            application=sim.application[order],
            workload=np.asarray([str(w) for w in sim.workload[order]]),
            scenario=sim.scenario[order],
            start=np.array([sim.timestamps[i][0] for i in order]),
            group_sizes=dict(sim.group_sizes),
            metric_names=list(sim.metric_names),
        )

    def partitions(self, data: ExecutionSet) -> list[list[str]]:
        if self.explicit_partitions is not None:
            return self.explicit_partitions
        return make_partitions(data.application.tolist(), self.n_partitions, self.n_unseen, self.partition_seed)

    def split(self, data: ExecutionSet, unseen: Sequence[str], rng: np.random.Generator) -> Splits:
        return split_executions(data, unseen, self.val_fraction, self.seen_test_fraction, rng)
