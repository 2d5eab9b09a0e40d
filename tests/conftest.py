"""Shared fixtures: no W&B network, a private signing key, small composed configs."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

os.environ["WANDB_MODE"] = "disabled"  # before anything imports wandb
os.environ.setdefault("WANDB_SILENT", "true")

import pytest
from omegaconf import DictConfig

import infragym.envs  # noqa: F401
from infragym.config import compose_run_config

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
SHARED_DATA = ROOT.parent / "shared" / "data"

# A Deoxys experiment small enough for a unit test (seconds, not minutes).
SMALL_DEOXYS = [
    "dataset.n_events=3000",
    "dataset.n_test_events=2000",
    "model.n_estimators=20",
    "model.nuisance_max_iter=30",
    "task.baseline_kwargs.dr_policy_forest.n_estimators=20",
    "task.tradeoff_tolerances=[0.0,4.0]",
    "task.tradeoff_budgets=[0.0]",
]


@pytest.fixture(autouse=True, scope="session")
def _infragym_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("infragym_home")
    os.environ["INFRAGYM_HOME"] = str(home)
    os.environ.pop("INFRAGYM_SIGNING_KEY", None)
    return home


def compose_config(config_name: str, overrides: Sequence[str] = (), output_dir: Path | None = None) -> DictConfig:
    """Compose like ``@hydra.main`` does, with the run folder redirected to ``output_dir``."""
    return compose_run_config(config_name, overrides, output_dir, CONF)
