"""Resume that cannot mix runs (CloudFormer / Lightning): a checkpoint carries its run's
fingerprint, a changed config or seed is refused naming the keys, and a resume after an
interruption continues exactly as the uninterrupted run (weights equal bit for bit)."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from infragym.models.cloudformer.resume import ResumeError, differences, flatten
from infragym.runner import build_task

from .conftest import compose_config, smoke

# One network, the smoke scale, two epochs.
RESUME_RUN = smoke("cloudformer", "logger=none", "task.baselines=[]", "task.blend_with=null", "trainer.max_epochs=2")


class StopAfterFirstEpoch(pl.Callback):
    """An interruption right after the first epoch's checkpoints (as a kill would leave them)."""

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        trainer.should_stop = True


def _task(run_dir: Path, *overrides: str):
    return build_task(compose_config("train", [*RESUME_RUN, *overrides], run_dir))


def _weights(task) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in task.nets["cloudformer"].state_dict().items()}


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory: pytest.TempPathFactory) -> dict:
    whole_dir, cut_dir = tmp_path_factory.mktemp("whole"), tmp_path_factory.mktemp("cut")
    whole = _task(whole_dir)
    whole.fit_network("cloudformer")
    cut = _task(cut_dir)
    build = cut.build_trainer

    def interrupted_trainer(*args, **kwargs) -> pl.Trainer:
        trainer = build(*args, **kwargs)
        trainer.callbacks.append(StopAfterFirstEpoch())
        return trainer

    cut.build_trainer = interrupted_trainer  # type: ignore[method-assign]
    cut.fit_network("cloudformer")
    assert cut.trainers["cloudformer"].current_epoch == 1  # stopped after one of two epochs
    return {"whole": whole, "cut_dir": cut_dir}


def test_resume_after_an_interruption_is_exact(interrupted: dict) -> None:
    resumed = _task(interrupted["cut_dir"])
    resumed.fit_network("cloudformer")
    assert resumed.trainers["cloudformer"].ckpt_path is not None  # it did resume
    expected, got = _weights(interrupted["whole"]), _weights(resumed)
    assert expected.keys() == got.keys()
    for key in expected:
        assert torch.equal(expected[key], got[key]), key


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("model.lr=0.05", r"network\.lr: 0\.002 -> 0\.05"),
        ("model.dropout=0.3", r"network\.dropout: 0\.1 -> 0\.3"),
        ("seed=7", r"network_seed: \d+ -> \d+"),
        ("dataset.batch_size=16", r"dataset\.batch_size: 64 -> 16"),
    ],
)
def test_a_changed_config_or_seed_is_refused_naming_the_keys(interrupted: dict, override: str, named: str) -> None:
    task = _task(interrupted["cut_dir"], override)
    with pytest.raises(ResumeError, match=rf"last\.ckpt belongs to another run: .*{named}"):
        task.fit_network("cloudformer")


def test_more_epochs_still_resume(interrupted: dict, tmp_path: Path) -> None:
    stored = torch.load(
        interrupted["whole"].checkpoint_dir("cloudformer") / "last.ckpt", map_location="cpu", weights_only=False
    )
    current = interrupted["whole"].run_fingerprint("cloudformer", interrupted["whole"]._net_seeds[0])
    assert differences(stored["infragym"]["fingerprint"], current) == []  # max_epochs is not in it
    assert "trainer.max_epochs" not in current and "network.lr" in current


def test_a_fresh_start_sets_old_checkpoints_aside(interrupted: dict, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    first = _task(run_dir, "trainer.max_epochs=1")
    first.fit_network("cloudformer")
    fresh = _task(run_dir, "trainer.max_epochs=1", "model.lr=0.01", "task.resume=false")
    fresh.fit_network("cloudformer")
    assert fresh.trainers["cloudformer"].ckpt_path is None
    aside = list((run_dir / "checkpoints").glob("cloudformer.previous-*"))
    assert len(aside) == 1 and (aside[0] / "last.ckpt").is_file()
    assert Path(fresh.best_checkpoints["cloudformer"]).parent == fresh.checkpoint_dir("cloudformer")


def test_a_checkpoint_without_fingerprint_is_refused(tmp_path: Path) -> None:
    task = _task(tmp_path, "trainer.max_epochs=1")
    folder = task.checkpoint_dir("cloudformer")
    folder.mkdir(parents=True)
    torch.save({"state_dict": {}, "epoch": 0}, folder / "last.ckpt")
    with pytest.raises(ResumeError, match="written without a run fingerprint"):
        task.fit_network("cloudformer")


def test_flatten_and_differences_name_nested_keys() -> None:
    assert flatten({"a": {"b": 1, "c": {"d": [1, 2]}}, "e": None}) == {"a.b": 1, "a.c.d": [1, 2], "e": None}
    assert differences({"a": 1, "b": 2}, {"a": 1, "b": 3, "c": 4}) == ["b: 2 -> 3", "c: (absent) -> 4"]
