"""The LightningModule that trains any of the window networks on P (L1 loss, torchmetrics)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import torchmetrics
from torch import nn

from infragym.models.cloudformer.networks import NetworkSpec, build_network


def warmup_cosine(total_steps: int) -> Any:
    """The learning-rate factor of step ``k``: linear warm-up over 5 % of ``total_steps``, then
    cosine decay to 5 % of the peak."""
    warmup = max(1, total_steps // 20)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return 0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


class InterferenceRegressor(pl.LightningModule):
    """Predicts P of the target VM from a normalised telemetry window.

    ``val/loss`` is the validation MAE (fraction of P); the default callbacks monitor it. The
    logger gets the curves under the network's name (``train/<name>/loss``, ``val/<name>/loss``)
    so that the networks of one run do not overwrite each other's curves.

    Args:
        spec: the network and optimiser hyper-parameters (a ``NetworkSpec`` or its dict).
        group_sizes: metrics per group, in group order (the system branch embeds the group).
        window: seconds per window.
        name: the network's name in the logged curves.
    """

    def __init__(
        self, *, spec: NetworkSpec | dict[str, Any], group_sizes: Sequence[int], window: int, name: str = "net"
    ) -> None:
        super().__init__()
        spec = spec if isinstance(spec, NetworkSpec) else NetworkSpec(**spec)
        self.save_hyperparameters(
            {"spec": asdict(spec), "group_sizes": list(group_sizes), "window": window, "name": name}
        )
        self.spec, self.name = spec, name
        self.net = build_network(spec, list(group_sizes), window)
        self.loss = nn.L1Loss()
        self.train_mae = torchmetrics.MeanAbsoluteError()
        self.val_mae = torchmetrics.MeanAbsoluteError()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        pred = self(x)
        loss = self.loss(pred, y)
        self.train_mae(pred, y)
        self.log(f"train/{self.name}/loss", loss, prog_bar=True, batch_size=len(y))
        self.log(f"train/{self.name}/mae", self.train_mae, on_step=False, on_epoch=True, batch_size=len(y))
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        self.val_mae.update(self(x), y)

    def on_validation_epoch_end(self) -> None:
        mae = self.val_mae.compute()  # torchmetrics syncs across DDP processes itself
        self.val_mae.reset()
        self.log("val/loss", mae, prog_bar=True, logger=False)  # what the callbacks monitor
        self.log(f"val/{self.name}/loss", mae)

    def configure_optimizers(self) -> dict[str, Any]:
        optimiser = torch.optim.AdamW(self.parameters(), lr=self.spec.lr, weight_decay=self.spec.weight_decay)
        # Linear warm-up over 5 % of the steps, then cosine decay to 5 % of the peak. A function
        # of the step (not a stateful schedule) so that a run resumed from last.ckpt with more
        # epochs follows the new length.
        total = max(1, int(self.trainer.estimated_stepping_batches))
        schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, warmup_cosine(total))
        return {"optimizer": optimiser, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


@torch.no_grad()
def predict_windows(net: nn.Module, windows: Any, batch_size: int = 1024) -> np.ndarray:
    """P for every window of a ``WindowSet`` (eval mode, no autograd, batched)."""
    was_training = net.training
    net.eval()
    out = []
    for lo in range(0, len(windows), batch_size):
        x, _ = windows.gather(np.arange(lo, min(lo + batch_size, len(windows))))
        out.append(net(torch.from_numpy(x)).float().cpu().numpy())
    net.train(was_training)
    return np.concatenate(out) if out else np.empty(0, np.float32)
