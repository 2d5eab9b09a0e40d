"""The LightningModule that trains any of the execution networks on P (log-cosh loss, Adam with
warm-up and cosine decay, as the paper; validation MAE monitored)."""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import torchmetrics
from torch import nn

from infragym.models.cloudformer.data import ExecutionDataset, pad
from infragym.models.cloudformer.networks import NetworkSpec, build_network


def log_cosh(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """mean log(cosh(pred - target)), computed stably: x + softplus(-2x) - log 2."""
    x = pred - target
    return (x + nn.functional.softplus(-2.0 * x) - math.log(2.0)).mean()


def warmup_cosine(total_steps: int, warmup_fraction: float) -> Any:
    """Learning-rate factor of step k: linear warm-up, then cosine decay to 0."""
    warmup = max(1, round(warmup_fraction * total_steps))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


class InterferenceRegressor(pl.LightningModule):
    """Predicts an execution's P from its normalised, padded metrics.

    ``val/loss`` is the validation MAE (fraction of P), what the callbacks monitor; the curves are
    logged under the network's name (``train/<name>/loss``, ``val/<name>/loss``)."""

    def __init__(self, *, spec: NetworkSpec | dict[str, Any], n_metrics: int, name: str = "net") -> None:
        super().__init__()
        spec = spec if isinstance(spec, NetworkSpec) else NetworkSpec(**spec)
        self.save_hyperparameters({"spec": asdict(spec), "n_metrics": n_metrics, "name": name})
        self.spec, self.name = spec, name
        self.net = build_network(spec, n_metrics)
        self.val_mae = torchmetrics.MeanAbsoluteError()

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.net(x, lengths)

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        x, lengths, y = batch
        loss = log_cosh(self(x, lengths), y)
        self.log(f"train/{self.name}/loss", loss, prog_bar=True, batch_size=len(y))
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> None:
        x, lengths, y = batch
        self.val_mae.update(self(x, lengths), y)

    def on_validation_epoch_end(self) -> None:
        mae = self.val_mae.compute()
        self.val_mae.reset()
        self.log("val/loss", mae, prog_bar=True, logger=False)
        self.log(f"val/{self.name}/loss", mae)

    def configure_optimizers(self) -> dict[str, Any]:
        optimiser = torch.optim.Adam(self.parameters(), lr=self.spec.lr, weight_decay=self.spec.weight_decay)
        # a function of the step, so a run resumed with more epochs follows the new length
        total = max(1, int(self.trainer.estimated_stepping_batches))
        schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, warmup_cosine(total, self.spec.warmup_fraction))
        return {"optimizer": optimiser, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


@torch.no_grad()
def predict_executions(net: nn.Module, data: ExecutionDataset, batch_size: int = 64) -> np.ndarray:
    """P for every execution of ``data`` (eval mode, batches of similar length, original order)."""
    was_training = net.training
    net.eval()
    out = np.empty(len(data), dtype=np.float32)
    order = np.argsort(data.lengths, kind="stable")
    for lo in range(0, len(order), batch_size):
        rows = order[lo : lo + batch_size]
        x, lengths = pad([data.x[i] for i in rows])
        out[rows] = net(torch.from_numpy(x), torch.from_numpy(lengths)).float().numpy()
    net.train(was_training)
    return out
