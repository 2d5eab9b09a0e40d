"""Adding a component takes a package and its configs, and no edit to InfraGym.

The toy component is the one of the tutorial (docs/write-a-component.md): its files are taken
from the tutorial's code blocks (each titled with its path), installed with pip into a temporary
folder, and driven through the public entry points (``infragym list/train/evaluate`` and
``infragym.load``) in fresh processes, as a user of a published component would.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT

TUTORIAL = ROOT / "docs" / "write-a-component.md"
BLOCK = re.compile(r'^```\w+ title="(?P<path>[^"]+)"\n(?P<body>.*?)^```$', re.MULTILINE | re.DOTALL)


def _tracked_state() -> str:
    """The project's working-tree status: the test must leave it as it found it."""
    result = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True)
    return result.stdout if result.returncode == 0 else ""


def _run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False
    )


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("toy")
    source = root / "toy-pkg"
    blocks = list(BLOCK.finditer(TUTORIAL.read_text()))
    assert len(blocks) >= 10, "the tutorial's code blocks name their files with title=..."
    for block in blocks:
        path = source / block["path"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(block["body"])
    (source / "toy_pkg" / "conf" / "__init__.py").write_text("")  # the tutorial: "an empty __init__.py"
    site = root / "site"
    install = _run(
        ["-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--target", str(site), str(source)],
        dict(os.environ),
        root,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        "WANDB_MODE": "disabled",
        "INFRAGYM_HOME": str(root / "home"),
    }
    work = root / "work"
    work.mkdir()
    return {"root": root, "env": env, "work": work}


def test_toy_component_trains_evaluates_exports_and_loads(toy: dict[str, object]) -> None:
    before = _tracked_state()
    root, env, work = Path(str(toy["root"])), dict(toy["env"]), Path(str(toy["work"]))  # type: ignore[call-overload]

    listed = _run(["-m", "infragym.cli", "list"], env, work)
    assert listed.returncode == 0, listed.stderr[-3000:]
    assert re.search(r"^  toy +Keep-alive time", listed.stdout, re.MULTILINE), listed.stdout
    assert re.search(r"^  toy +\[toy\] Keep-alive policy", listed.stdout, re.MULTILINE), listed.stdout
    assert "toy_pkg/KeepAlive-v0" in listed.stdout

    run = root / "run"
    train = _run(
        ["-m", "infragym.cli", "train", "experiment=toy", "debug=toy", "logger=none", f"hydra.run.dir={run}"],
        env,
        work,
    )
    assert train.returncode == 0, train.stderr[-3000:]
    metrics = json.loads((run / "metrics.json").read_text())
    # on fresh gaps the learned keep-alive beats the common 60 s default; the oracle beats everything
    learned = metrics["test/keep_alive/cost"]
    assert metrics["test/oracle/cost"] <= learned < metrics["test/fixed_60s/cost"]
    assert metrics["test/oracle/cost"] <= metrics["test/fixed_600s/cost"]
    manifest = json.loads((run / "export" / "manifest.json").read_text())
    assert manifest["component"] == "toy" and manifest["requires_trust"] is False
    assert str(root) not in json.dumps(manifest["config"]), "the manifest holds this machine's paths"
    assert manifest["config"]["experiment"] == "toy"
    assert "trainer" not in manifest["config"] and "callbacks" not in manifest["config"]

    evaluated = root / "evaluated"
    evaluate = _run(
        ["-m", "infragym.cli", "evaluate", f"checkpoint={run / 'export'}", "logger=none", f"hydra.run.dir={evaluated}"],
        env,
        work,
    )
    assert evaluate.returncode == 0, evaluate.stderr[-3000:]
    assert json.loads((evaluated / "metrics.json").read_text()) == pytest.approx(
        {k: v for k, v in metrics.items() if not k.startswith("time/")}
    )

    # the component's typed evaluation options: its own key works, another component's is refused
    wider = root / "wider"
    evaluate_wider = ["evaluate", f"checkpoint={run / 'export'}", "logger=none", "evaluation.n_test=500"]
    option = _run(["-m", "infragym.cli", *evaluate_wider, f"hydra.run.dir={wider}"], env, work)
    assert option.returncode == 0, option.stderr[-3000:]
    assert json.loads((wider / "metrics.json").read_text())["test/keep_alive/cost"] != metrics["test/keep_alive/cost"]
    refused = _run(
        ["-m", "infragym.cli", "evaluate", f"checkpoint={run / 'export'}", "logger=none", "evaluation.n_test_events=5"],
        env,
        work,
    )
    assert refused.returncode != 0 and "n_test_events" in refused.stderr

    loaded = _run(
        ["-c", f"import infragym; print(infragym.load({str(run / 'export')!r}).act())"],
        env,
        work,
    )
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    keep_alive = float(loaded.stdout.strip().splitlines()[-1])
    assert keep_alive == json.loads((run / "export" / "policy.json").read_text())["keep_alive_s"]

    assert _tracked_state() == before, "adding a component must not edit the project"
