"""Shared fixtures: no W&B network, a private signing key, composed configs at smoke scale."""

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


def smoke(experiment: str, *overrides: str) -> list[str]:
    """``experiment`` at the scale of its smoke preset (conf/debug/<experiment>.yaml), then ``overrides``."""
    return [f"experiment={experiment}", f"debug={experiment}", *overrides]


@pytest.fixture(autouse=True, scope="session")
def _infragym_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("infragym_home")
    os.environ["INFRAGYM_HOME"] = str(home)
    os.environ.pop("INFRAGYM_SIGNING_KEY", None)
    return home


def compose_config(config_name: str, overrides: Sequence[str] = (), output_dir: Path | None = None) -> DictConfig:
    """Compose like ``@hydra.main`` does, with the run folder redirected to ``output_dir``."""
    return compose_run_config(config_name, overrides, output_dir, CONF)
