"""How the CloudFormer studies train a network: the shipped LightningModule (the one
``experiment=cloudformer`` trains) and a ``pytorch_lightning.Trainer``, never a private loop.

``StudyRegressor`` subclasses ``InterferenceRegressor`` and adds only what a study varies and the
shipped recipe lacks: the squared-error loss, risk extrapolation across training applications
(V-REx), application-adversarial training (DANN), metric dropout, input noise, mixup, an
exponential moving average of the weights, a replacement network and a separate learning rate
for a skip path. With none of them set it trains exactly as the shipped module does (AdamW,
warm-up then cosine, L1 loss). Each epoch it records the training L1 and the MAE on every
validation set (in percentage points), the curve the studies store.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from _common import compose_train

from infragym.datasets.cloudperf import WindowDataset
from infragym.models.cloudformer.module import InterferenceRegressor, predict_windows
from infragym.models.cloudformer.networks import NetworkSpec

__all__ = ["StudyRegressor", "compose_train", "fit", "mae_pp", "runner"]


def runner() -> str:
    """What produced a study row: this Lightning runner at the checkout's commit."""
    import subprocess

    root = Path(__file__).resolve().parents[1]
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                             check=False).stdout.strip()  # fmt: skip
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "studies/*.py", "models", "infragym"], cwd=root,
                               capture_output=True, text=True, check=False).stdout.strip()  # fmt: skip
    except OSError:
        sha, dirty = "", ""
    return f"lightning (git {sha or 'unknown'}{'+dirty' if dirty else ''})"


def mae_pp(predictions: np.ndarray, windows: Any) -> float:
    """Mean absolute error of P in percentage points."""
    return 100.0 * float(np.abs(predictions - windows.labels).mean())


class GradientReversal(torch.autograd.Function):
    """Identity forward; backward multiplies the gradient by ``-weight`` (the adversary learns
    to name the application, the network learns to hide it)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: float) -> torch.Tensor:
        ctx.weight = weight
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.weight * grad, None


class _WindowsWithApplication(Dataset):
    """Training windows with the index of their application (what V-REx and DANN group by)."""

    def __init__(self, windows: Any, application: np.ndarray) -> None:
        self.windows, self.application = windows, torch.from_numpy(application.astype(np.int64))

    def __len__(self) -> int:
        return len(self.windows)

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x, y = self.windows.gather(indices)
        return torch.from_numpy(x), torch.from_numpy(y), self.application[indices]


def _stacked(batch: Any) -> Any:
    return batch  # ``__getitems__`` already returns stacked tensors


class StudyRegressor(InterferenceRegressor):
    """The shipped module plus a study's training-time options (all off by default).

    Args:
        n_applications: distinct training applications (V-REx's groups, DANN's classes).
        mse: train on the squared error instead of L1.
        vrex: V-REx (Krueger et al., ICML'21): the loss is the mean of the batch's
            per-application losses plus this times their variance.
        dann: DANN (Ganin et al., JMLR'16): an MLP names the application from the head's input
            through a gradient-reversal layer, with this weight on its cross-entropy.
        metric_dropout: each metric's whole window zeroed (its training mean after
            normalisation) with this probability, per window.
        noise: std of Gaussian noise added to the normalised training windows.
        mixup: Beta(a, a) parameter of mixup (windows and labels interpolated in pairs).
        ema: validate (and predict with) an exponential moving average of the weights.
        net: a network to train instead of the one ``spec`` builds.
        skip_lr: the network's ``skip`` path gets its own AdamW group with this learning rate
            and no weight decay.
    """

    def __init__(
        self,
        *,
        spec: NetworkSpec,
        group_sizes: list[int],
        window: int,
        n_applications: int = 1,
        mse: bool = False,
        vrex: float = 0.0,
        dann: float = 0.0,
        metric_dropout: float = 0.0,
        noise: float = 0.0,
        mixup: float = 0.0,
        ema: float = 0.0,
        net: nn.Module | None = None,
        skip_lr: float | None = None,
        val_names: tuple[str, ...] = ("val",),
    ) -> None:
        super().__init__(spec=spec, group_sizes=group_sizes, window=window, name="study")
        if net is not None:
            self.net = net
        self.mse, self.vrex, self.dann = mse, vrex, dann
        self.metric_dropout, self.noise, self.mixup = metric_dropout, noise, mixup
        self.skip_lr, self.val_names = skip_lr, val_names
        self.adversary: nn.Module | None = None
        self._head_input: dict[str, torch.Tensor] = {}
        if dann:
            width = self.net.head.mlp[0].in_features
            self.adversary = nn.Sequential(nn.Linear(width, 64), nn.GELU(), nn.Linear(64, n_applications))
            self.net.head.register_forward_pre_hook(lambda _m, args: self._head_input.__setitem__("h", args[0]))
        # Kept out of the module's parameters so that the optimiser never sees the average.
        self._ema = [torch.optim.swa_utils.AveragedModel(
            self.net, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(ema))] if ema else []  # fmt: skip
        self.n_applications = n_applications
        self.curve: list[dict[str, float]] = []
        self._train_l1: list[float] = []
        self._val_sums = np.zeros((len(val_names), 2))

    @property
    def judged(self) -> nn.Module:
        """The network a study evaluates: the moving average where there is one."""
        return self._ema[0].module if self._ema else self.net

    def _augment(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.metric_dropout:
            keep = torch.rand(len(x), 1, x.shape[2], device=x.device) >= self.metric_dropout
            x = x * keep.to(x.dtype)
        if self.noise:
            x = x + self.noise * torch.randn_like(x)
        if self.mixup:
            lam = torch.distributions.Beta(self.mixup, self.mixup).sample((len(x),)).to(x)
            pair = torch.randperm(len(x), device=x.device)
            x = lam[:, None, None] * x + (1 - lam[:, None, None]) * x[pair]
            y = lam * y + (1 - lam) * y[pair]
        return x, y

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        x, y, application = batch
        x, y = self._augment(x, y)
        diff = self(x) - y.float()
        err = diff.square() if self.mse else diff.abs()
        if self.vrex:
            counts = torch.bincount(application, minlength=self.n_applications).to(err.dtype)
            sums = torch.zeros(self.n_applications, dtype=err.dtype, device=err.device).index_add(0, application, err)
            risks = sums[counts > 0] / counts[counts > 0]
            loss = risks.mean() + self.vrex * risks.var(unbiased=False)
        else:
            loss = err.mean()
        if self.adversary is not None:
            logits = self.adversary(GradientReversal.apply(self._head_input["h"], self.dann))
            loss = loss + nn.functional.cross_entropy(logits, application)
        self._train_l1.append(float(diff.detach().abs().mean()))
        return loss

    def on_validation_epoch_start(self) -> None:
        if self._ema:
            self._ema[0].eval()  # not a submodule: Lightning's eval() does not reach it

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self._ema:
            self._ema[0].update_parameters(self.net)

    def validation_step(
        self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        x, y = batch
        self._val_sums[dataloader_idx] += (float((self.judged(x) - y).abs().sum()), len(y))

    def on_validation_epoch_end(self) -> None:
        errors = {name: 100.0 * s / max(n, 1) for name, (s, n) in zip(self.val_names, self._val_sums, strict=True)}
        self.curve.append({"train_l1": 100.0 * float(np.mean(self._train_l1)) if self._train_l1 else 0.0, **errors})
        self._train_l1, self._val_sums = [], np.zeros_like(self._val_sums)

    def configure_optimizers(self) -> dict[str, Any]:
        config = super().configure_optimizers()
        if self.skip_lr is None:
            return config
        skip = {id(p) for p in self.net.skip.parameters()}
        groups = [
            {"params": [p for p in self.parameters() if id(p) not in skip]},
            {"params": list(self.net.skip.parameters()), "lr": self.skip_lr, "weight_decay": 0.0},
        ]
        optimiser = torch.optim.AdamW(groups, lr=self.spec.lr, weight_decay=self.spec.weight_decay)
        config["lr_scheduler"]["scheduler"] = torch.optim.lr_scheduler.LambdaLR(
            optimiser, config["lr_scheduler"]["scheduler"].lr_lambdas[0]
        )
        return {**config, "optimizer": optimiser}


def fit(
    build: Callable[[], StudyRegressor],
    train_windows: Any,
    vals: Mapping[str, Any],
    *,
    epochs: int,
    batch_size: int,
    seed: int,
) -> dict[str, Any]:
    """Seed, build the module (``build()``: its initialisation follows the seed), train it with a
    Lightning Trainer (one CPU device, validation on every set of ``vals`` after each epoch, no
    checkpoints or logger) and return its curve, the last epoch's errors (``final``), the
    predictions of the network it judges, and the seconds."""
    pl.seed_everything(seed % 2**31, verbose=False)
    module = build()
    assert tuple(vals) == module.val_names, (tuple(vals), module.val_names)
    _, application = np.unique(train_windows.workload, return_inverse=True)
    train = DataLoader(
        _WindowsWithApplication(train_windows, application), batch_size=batch_size, shuffle=True, collate_fn=_stacked
    )
    loaders = [DataLoader(WindowDataset(w), batch_size=1024, collate_fn=_stacked) for w in vals.values()]
    with tempfile.TemporaryDirectory() as tmp:
        trainer = pl.Trainer(
            max_epochs=epochs,
            accelerator="cpu",
            devices=1,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            default_root_dir=tmp,
        )
        started = time.perf_counter()
        trainer.fit(module, train_dataloaders=train, val_dataloaders=loaders)
        seconds = time.perf_counter() - started
    predictions = {k: predict_windows(module.judged, w) for k, w in vals.items()}
    return {"final": module.curve[-1], "curve": module.curve, "seconds": seconds, "predictions": predictions}
