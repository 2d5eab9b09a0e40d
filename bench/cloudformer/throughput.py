"""Training throughput (windows/s) of CloudFormer and the neural baselines on CPU, and where a
training epoch's time goes (Lightning's SimpleProfiler): fetching batches vs the training step.

    python bench/cloudformer/throughput.py                 # the default experiment's data and sizes
    python bench/cloudformer/throughput.py --epochs 3
    python bench/cloudformer/throughput.py --threads 1     # one torch thread (a shared machine)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

# Run as a script, this file's folder is on sys.path, not the checkout: put the checkout there
# so that the suite's shared helpers import as ``bench._common``.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench._common import Benchmark, Check, compose_train, finish, write_result

BENCHMARKS = (
    Benchmark("cloudformer_throughput", minutes=2),
    Benchmark("cloudformer_throughput_1thread", ("--threads", "1"), result="cloudformer_throughput_1thread", minutes=2),
)

# Issue 3: throughput reported; data loading never the bottleneck, read as: fetching batches takes
# less than half of the training loop for every network.
GOAL_MAX_FETCH_SHARE = 0.5
FETCH = "[_TrainingEpochLoop].train_dataloader_next"
STEP = "[Strategy]SingleDeviceStrategy.training_step"
BATCH = "run_training_batch"


def check(result: dict) -> list[Check]:
    models = result["models"]
    worst = max(models, key=lambda n: models[n]["fetch_share"])
    share = models[worst]["fetch_share"]
    rates = ", ".join(f"{n} {r['windows_per_s']:,.0f}" for n, r in models.items())
    return [
        Check(f"training windows/s, {result['torch_threads']} torch threads", rates, "reported", None),
        Check(
            f"batch fetching share of the loop, worst network ({worst})",
            f"{100 * share:.1f}%",
            f"< {100 * GOAL_MAX_FETCH_SHARE:.0f}%",
            share < GOAL_MAX_FETCH_SHARE,
        ),
    ]


def main() -> int:
    import numpy as np
    import pytorch_lightning as pl
    import torch
    from pytorch_lightning.profilers import SimpleProfiler

    from infragym.models.cloudformer.module import InterferenceRegressor
    from infragym.runner import build_task

    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = compose_train(["experiment=cloudformer", "logger=none", "callbacks=none", *args.overrides], Path(tmp))
        task = build_task(cfg)
        splits = task.prepare_data()
        datamodule = task.datamodule()
        # The data pipeline alone: one pass over the shuffled training batches.
        started = time.perf_counter()
        n = sum(len(y) for _, y in datamodule.train_dataloader())
        loader_rate = n / (time.perf_counter() - started)
        results = {}
        for name, spec in task.neural_specs.items():
            pl.seed_everything(0, verbose=False)
            sizes = list(splits.group_sizes.values())
            module = InterferenceRegressor(spec=spec, group_sizes=sizes, window=cfg.dataset.window)
            profiler = SimpleProfiler()
            trainer = pl.Trainer(
                max_epochs=args.epochs,
                accelerator="cpu",
                devices=1,
                limit_val_batches=0,
                logger=False,
                enable_checkpointing=False,
                enable_progress_bar=False,
                enable_model_summary=False,
                profiler=profiler,
                default_root_dir=tmp,
            )
            started = time.perf_counter()
            trainer.fit(module, datamodule=datamodule)
            seconds = time.perf_counter() - started
            durations = {k: float(np.sum(v)) for k, v in profiler.recorded_durations.items()}
            fetch = durations.get(FETCH, float("nan"))
            batch = durations.get(BATCH, float("nan"))
            results[name] = {
                "windows_per_s": args.epochs * len(splits.train) / seconds,
                "fit_s": seconds,
                "fetch_s": fetch,
                "training_batch_s": batch,
                "fetch_share": fetch / (fetch + batch),
                "parameters": sum(p.numel() for p in module.parameters()),
            }
            print(
                f"{name}: {results[name]['windows_per_s']:.0f} windows/s, batch fetching "
                f"{100 * results[name]['fetch_share']:.1f}% of the loop ({fetch:.2f} s vs {batch:.2f} s)"
            )
    name = "cloudformer_throughput" + (f"_{args.threads}thread" if args.threads is not None else "")
    result = {
        "command": "python bench/cloudformer/throughput.py " + " ".join(args.overrides),
        "torch_threads": torch.get_num_threads(),
        "train_windows": len(splits.train),
        "window": cfg.dataset.window,
        "n_metrics": splits.n_metrics,
        "batch_size": cfg.dataset.batch_size,
        "epochs": args.epochs,
        "loader_windows_per_s": loader_rate,
        "models": results,
    }
    write_result(name, result)
    print(f"data pipeline alone: {loader_rate:,.0f} windows/s")
    return finish(name, check(result))


if __name__ == "__main__":
    sys.exit(main())
