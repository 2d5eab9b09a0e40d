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
    "serverless": (),
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


def vmr2l_snapshot_json() -> dict:
    """A medium cluster in the VMR2L JSON format: the real shared snapshot when it is there, else a
    generated medium one written in the same format (so the tests run without ../shared)."""
    import json

    import numpy as np

    from infragym.config import default_data_dir
    from infragym.envs.cluster.generator import generate_snapshot
    from infragym.envs.cluster.snapshot import PLACE_BOTH

    real = Path(default_data_dir()) / "vm_snapshots" / "vmr2l_c1_2022-03-28.json"
    if real.is_file():
        return json.loads(real.read_text())
    snap = generate_snapshot("medium", np.random.default_rng(0), name="generated_medium")
    used_cpu, used_mem = snap.usage()
    hosts = [
        {
            "node_id": str(snap.pm_ids[p]),
            "status": "ACTIVE" if snap.pm_active[p] else "OUTAGE",
            "rack_id": f"rack{int(snap.pm_rack[p])}",
            "numa": [
                {
                    "node": n,
                    "total_cpu": int(snap.pm_cpu_total[p, n]),
                    "free_cpu": int(snap.pm_cpu_total[p, n] - used_cpu[p, n]),
                    "memory_huge_total_mb": float(snap.pm_mem_total[p, n]),
                    "memory_huge_free_mb": float(snap.pm_mem_total[p, n] - used_mem[p, n]),
                }
                for n in (0, 1)
            ],
        }
        for p in range(snap.n_pms)
    ]
    vms = []
    for v in range(snap.n_vms):
        nodes = (0, 1) if snap.vm_placement[v] == PLACE_BOTH else (int(snap.vm_placement[v]),)
        vms.append(
            {
                "instance_id": str(snap.vm_ids[v]),
                "host_id": str(snap.pm_ids[snap.vm_pm[v]]),
                "allow_migration": bool(snap.vm_migratable[v]),
                "numa": [{"node": n, "cpu": int(snap.vm_cpu[v]), "mem_mb": float(snap.vm_mem[v])} for n in nodes],
            }
        )
    groups = [
        {"granularity": "host" if g == 0 else "rack", "data": [str(snap.vm_ids[i]) for i in members]}
        for g, members in zip(snap.group_granularity, snap.group_members, strict=True)
    ]
    return {"cluster_list": [{"host_info": hosts, "vm_instance": vms, "other_requirement": {"deployment_set": groups}}]}
