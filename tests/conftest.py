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


# Small exports for the decision service's tests (test_serve*.py): each component's smoke preset,
# shrunk further where the run evaluates what serving never looks at (baselines, trade-off curves).
SERVED_RUN_OVERRIDES = {
    "deoxys": (
        "task.baselines=[]",
        "task.tradeoff_tolerances=[0.0]",
        "task.tradeoff_budgets=[0.0]",
        "dataset.n_events=1500",
        "dataset.n_test_events=500",
        "model.n_estimators=8",  # econml grows forests in sub-forests of 4 trees
        "model.nuisance_max_iter=10",
    ),
    "continuum": ("task.policies=[vllm,continuum]",),
    "cloudformer": ("task.baselines=[mean,ridge]", "trainer.max_epochs=1"),
}
SHIPPED_VM2RL = ROOT / "checkpoints" / "vm2rl"


@pytest.fixture(scope="session")
def served_exports(tmp_path_factory: pytest.TempPathFactory, _infragym_home: Path) -> dict[str, Path]:
    """One export of each served component: name -> folder (trained once per session, signed with
    the session's key; VM2RL is the shipped checkpoint)."""
    from infragym.runner import run_train

    exports: dict[str, Path] = {}
    for name, overrides in SERVED_RUN_OVERRIDES.items():
        run = tmp_path_factory.mktemp(f"served_{name}")
        run_train(compose_config("train", smoke(name, "logger=none", *overrides), run))
        exports[name] = run / "export"
    exports["vm2rl"] = SHIPPED_VM2RL
    return exports
