"""The wheel works outside the checkout: built, installed into a fresh venv, run from elsewhere.

The fresh venv reuses this environment's installed dependencies through a ``.pth`` line (its
``.pth`` files, among them an editable install of InfraGym, are not processed that way), so only
the wheel supplies InfraGym itself.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

from .conftest import ROOT

BUILD_IGNORED = (".git", ".venv", "build", "dist", "outputs", "multirun", "wandb", "*.egg-info", "__pycache__", "local")


def _run(command: list[str], cwd: Path, env: dict[str, str], timeout: int = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("wheel")
    dist = root / "dist"
    env = {**os.environ}
    # Build from a copy of the sources: setuptools' build/ folder would otherwise keep stale files.
    source = root / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*BUILD_IGNORED))
    command = [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist), str(source)]
    built = _run(command, source, env)
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-3000:]
    (wheel,) = dist.glob("infragym-*.whl")
    prefix = root / "venv"
    venv.EnvBuilder(with_pip=False).create(prefix)
    site = Path(sysconfig.get_path("purelib", vars={"base": str(prefix), "platbase": str(prefix)}))
    (site / "_test_dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    python = prefix / "bin" / "python"
    installed = _run([str(python), "-m", "pip", "install", "--quiet", "--no-deps", str(wheel)], root, env)
    assert installed.returncode == 0, installed.stderr[-3000:]
    return prefix


def test_wheel_holds_the_configs_and_the_domain_packages(wheel_venv: Path) -> None:
    python = wheel_venv / "bin" / "python"
    code = (
        "import infragym, infragym.envs, infragym.models, infragym.datasets, infragym.conf\n"
        "from importlib import resources\n"
        "print(infragym.__file__)\n"
        "print(sorted(p.name for p in (resources.files('infragym.conf') / 'experiment').iterdir()))\n"
        "print((resources.files('infragym') / 'py.typed').is_file())\n"
    )
    result = _run([str(python), "-c", code], wheel_venv, {**os.environ})
    assert result.returncode == 0, result.stderr[-3000:]
    location, experiments, typed = result.stdout.strip().splitlines()
    assert location.startswith(str(wheel_venv)), location  # the wheel's copy, not the checkout
    assert "'deoxys.yaml'" in experiments and "'vm2rl.yaml'" in experiments
    assert typed == "True"


def test_console_script_lists_and_trains_from_another_folder(wheel_venv: Path, tmp_path: Path) -> None:
    cli = wheel_venv / "bin" / "infragym"
    env = {**os.environ, "WANDB_MODE": "disabled", "INFRAGYM_HOME": str(tmp_path / "home")}
    env.pop("PYTHONPATH", None)
    listed = _run([str(cli), "list"], tmp_path, env)
    assert listed.returncode == 0, listed.stderr[-3000:]
    for name in ("deoxys", "cloudformer", "vm2rl", "continuum", "llm_serving", "infragym/VMReschedule-v0"):
        assert name in listed.stdout
    trained = _run([str(cli), "train", "experiment=deoxys", "debug=deoxys", "logger=none"], tmp_path, env)
    assert trained.returncode == 0, trained.stderr[-3000:]
    (run,) = (tmp_path / "outputs" / "deoxys" / "runs").iterdir()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test/oracle/downtime_gap_closed"] == pytest.approx(1.0)
    manifest = json.loads((run / "export" / "manifest.json").read_text())
    assert manifest["libraries"]["infragym"] != "not installed"
    assert str(tmp_path) not in json.dumps(manifest["config"])


def test_checkout_scripts_run_against_an_installed_wheel(wheel_venv: Path, tmp_path: Path) -> None:
    """``python train.py`` in a checkout imports the checkout's package even when the installed
    InfraGym is a wheel (no editable install): the domain folders beside it are found."""
    env = {**os.environ, "WANDB_MODE": "disabled"}
    env.pop("PYTHONPATH", None)
    python = wheel_venv / "bin" / "python"
    result = _run([str(python), str(ROOT / "train.py"), "experiment=vm2rl", "--cfg", "job"], tmp_path, env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "infragym.models.vm2rl.task.VM2RLTask" in result.stdout
