"""CloudFormer variants on the VALIDATION split of one seed: the ablation behind the docs'
"why CloudFormer loses" notes. Each variant trains through the shipped LightningModule and a
Lightning Trainer (``_lightning.py``, with the variant's network) with the task's recipe (AdamW,
lr 2e-3, weight decay 0.01, batches of ``--batch``, 5 % linear warm-up then cosine to 5 %, L1
loss, best epoch on validation MAE) on the default experiment's data (windows every 2 s), one
torch thread. Never reads a test split; prints its results (no result file).

    OMP_NUM_THREADS=1 python studies/cloudformer_variants.py --seed 1 --variants base statsys skip
    OMP_NUM_THREADS=1 python studies/cloudformer_variants.py --variants base --epochs 10

Variants (all d_model 32, 2 heads, 2 layers, dropout 0.1, like the default):
- base: CloudFormer as shipped (``models/cloudformer/networks.py``).
- statsys: the system branch's metric tokens also get that metric's window mean, std, min,
  max, last value and slope (6 features next to its 30-s series).
- skip / skipbn / skipslow_<lr>: the shipped branches, plus a linear map of all 206 x 6 window
  statistics added to the head's logit (random init; batch-normalised and zero init; zero
  init with its own Adam learning rate <lr> and no weight decay).
- both / bothbn: statsys and skip / skipbn together.
- ridge: the ridge baseline (train and validation MAE) for reference.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch
from _lightning import StudyRegressor, compose_train, fit
from torch import nn


def window_stats(x: torch.Tensor) -> torch.Tensor:
    """(batch, window, metrics) -> (batch, metrics, 6): mean, std, min, max, last, slope."""
    t = torch.linspace(-1, 1, x.shape[1], device=x.device)
    slope = (x * t[None, :, None]).mean(1) / (t * t).mean()
    return torch.stack([x.mean(1), x.std(1), x.amin(1), x.amax(1), x[:, -1], slope], -1)


def build(variant: str, group_sizes: list[int], window: int) -> nn.Module:
    from infragym.models.cloudformer import networks as nets

    class StatSystem(nn.Module):
        def __init__(self, d: int, heads: int, layers: int, p: float) -> None:
            super().__init__()
            self.embed = nn.Linear(window + 6, d)
            self.metric = nn.Parameter(torch.randn(1, sum(group_sizes), d) * 0.02)
            ids = torch.repeat_interleave(torch.arange(len(group_sizes)), torch.as_tensor(group_sizes))
            self.register_buffer("gid", ids)
            self.group = nn.Embedding(len(group_sizes), d)
            self.drop, self.enc, self.norm = nn.Dropout(p), nets._encoder(d, heads, layers), nn.LayerNorm(d)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            tokens = self.embed(torch.cat([x.transpose(1, 2), window_stats(x)], -1))
            return self.norm(self.enc(self.drop(tokens + self.metric + self.group(self.gid))).mean(1))

    class Variant(nn.Module):
        def __init__(self, statsys: bool, skip: str | None, d: int = 32, heads: int = 2, layers: int = 2) -> None:
            super().__init__()
            m, p = sum(group_sizes), 0.1
            self.temporal = nets.TemporalBranch(m, window, d, heads, layers, p)
            self.system = (
                StatSystem(d, heads, layers, p)
                if statsys
                else nets.SystemBranch(group_sizes, window, d, heads, layers, p)
            )
            self.skip: nn.Module | None = None
            if skip == "random":
                self.skip = nn.Linear(6 * m, 1)
            elif skip == "zero_bn":
                self.skip = nn.Sequential(nn.BatchNorm1d(6 * m, affine=False), nn.Linear(6 * m, 1))
                nn.init.zeros_(self.skip[1].weight)
                nn.init.zeros_(self.skip[1].bias)
            self.gate = nn.Sequential(nn.Linear(2 * d, 2 * d), nn.Sigmoid())
            self.head = nets.RegressionHead(2 * d, d, p)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = torch.cat([self.temporal(x), self.system(x)], -1)
            logit = self.head.mlp(h * self.gate(h)).squeeze(-1)
            if self.skip is not None:
                logit = logit + self.skip(window_stats(x).flatten(1)).squeeze(-1)
            return torch.sigmoid(logit)

    if variant == "base":
        spec = nets.NetworkSpec(arch="cloudformer", d_model=32, n_heads=2, n_layers=2, dropout=0.1)
        return nets.build_network(spec, group_sizes, window)
    table = {
        "statsys": (True, None),
        "skip": (False, "random"),
        "both": (True, "random"),
        "skipbn": (False, "zero_bn"),
        "bothbn": (True, "zero_bn"),
    }
    if variant.startswith("skipslow_"):
        return Variant(False, "zero_bn")
    return Variant(*table[variant])


def train(variant: str, splits, window: int, epochs: int, lr: float, batch: int) -> tuple[float, int, float]:
    """Train one variant through the shipped LightningModule (``StudyRegressor`` with the
    variant's network) and a Trainer; the best epoch's validation MAE, that epoch, seconds."""
    from infragym.models.cloudformer.networks import NetworkSpec

    group_sizes = list(splits.group_sizes.values())
    spec = NetworkSpec(arch="cloudformer", d_model=32, n_heads=2, n_layers=2, dropout=0.1, lr=lr, weight_decay=0.01)

    def build() -> StudyRegressor:
        return StudyRegressor(
            spec=spec,
            group_sizes=group_sizes,
            window=window,
            net=build(variant, group_sizes, window),
            skip_lr=float(variant.split("_")[1]) if variant.startswith("skipslow_") else None,
        )

    result = fit(build, splits.train, {"val": splits.val}, epochs=epochs, batch_size=batch, seed=0)
    for epoch, entry in enumerate(result["curve"]):
        print(
            f"{variant} epoch {epoch}: train L1 {entry['train_l1']:.2f} pp, val MAE {entry['val']:.2f} pp", flush=True
        )
    val, epoch = min((entry["val"], epoch) for epoch, entry in enumerate(result["curve"]))
    return val, epoch, result["seconds"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--batch", type=int, default=32, help="the default experiment's batch size")
    parser.add_argument("--variants", nargs="+", default=["ridge", "base", "statsys", "skip", "skipbn"])
    args = parser.parse_args()
    torch.set_num_threads(1)
    from infragym.models.cloudformer.baselines import RidgeBaseline
    from infragym.runner import build_task

    with tempfile.TemporaryDirectory() as tmp:
        cfg = compose_train(["experiment=cloudformer", f"seed={args.seed}", "logger=none"], Path(tmp))
        task = build_task(cfg)
        dataset = task.dataset
        splits = task.prepare_data(save=False)
    for variant in args.variants:
        if variant == "ridge":
            ridge = RidgeBaseline().fit(splits.train, splits.val, np.random.default_rng(0))
            train_mae, val_mae = (
                100.0 * float(np.abs(ridge.predict(w) - w.labels).mean()) for w in (splits.train, splits.val)
            )
            print(f"RESULT ridge seed {args.seed}: train MAE {train_mae:.2f} pp, val MAE {val_mae:.3f} pp")
            continue
        val, epoch, seconds = train(variant, splits, dataset.window, args.epochs, args.lr, args.batch)
        print(
            f"RESULT {variant} seed {args.seed}, {args.epochs} epochs, lr {args.lr:g}, batch {args.batch}: "
            f"best val MAE {val:.3f} pp (epoch {epoch}), {seconds:.0f} s"
        )


if __name__ == "__main__":
    main()
