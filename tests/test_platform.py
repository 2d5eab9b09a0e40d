"""The platform's promises: the core names no component, evaluate never runs code an export
names, and shipped exports are portable."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from infragym import components
from infragym.export import ExportError, read_manifest
from infragym.runner import rebuild_train_config, run_evaluate

from .conftest import ROOT, compose_config

CHECKPOINT = ROOT / "checkpoints" / "vm2rl"


def test_the_core_names_no_component() -> None:
    names = sorted(components.registry())
    assert {"deoxys", "cloudformer", "vm2rl", "continuum", "llm_serving"} <= set(names)
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, names)) + r")\b", re.IGNORECASE)
    hits = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in sorted((ROOT / "infragym").rglob("*"))
        if path.is_file() and path.suffix in {".py", ".typed", ".txt", ".md", ".yaml", ".json"}
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert not hits, "\n".join(hits)


def test_every_component_declares_what_the_core_needs() -> None:
    for name, component in components.registry().items():
        assert component.name == name and component.summary
        for experiment in component.experiments:
            assert (ROOT / "conf" / "experiment" / f"{experiment}.yaml").is_file(), experiment
            assert (ROOT / "conf" / "debug" / f"{experiment}.yaml").is_file(), experiment
        if component.loader is not None:
            assert callable(component.resolve_loader())
    with pytest.raises(components.ComponentError, match=r"unknown component 'nope'.*deoxys"):
        components.get("nope")


def _tampered_copy(tmp_path: Path, edit) -> Path:
    export = tmp_path / "export"
    shutil.copytree(CHECKPOINT, export)
    manifest = json.loads((export / "manifest.json").read_text())
    edit(manifest["config"])
    (export / "manifest.json").write_text(json.dumps(manifest))  # ONNX: unsigned manifests load
    return export


def test_evaluate_never_instantiates_a_target_from_the_export(tmp_path: Path) -> None:
    """The attack: an unsigned ONNX export whose manifest points env at a file writer and dataset
    at joblib.load (write a pickle, then load it). Refused before anything is instantiated."""
    payload = tmp_path / "payload.pkl"

    def edit(config: dict) -> None:
        config["env"] = {"_target_": "infragym.io.atomic_write_text", "path": str(payload), "text": "pickle"}
        config["dataset"] = {"_target_": "joblib.load", "filename": str(payload)}

    export = _tampered_copy(tmp_path, edit)
    cfg = compose_config("evaluate", [f"checkpoint={export}", "logger=none"], tmp_path / "run")
    with pytest.raises(ExportError, match=r"env\._target_ is 'infragym\.io\.atomic_write_text'"):
        run_evaluate(cfg)
    assert not payload.exists()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda c: c["task"].update(ppo={"_target_": "os.system"}), r"task\.ppo\._target_"),
        (lambda c: c["model"].update(d_model="${oc.env:HOME}"), r"interpolation"),
        (lambda c: c["model"].update(n_trees=10), r"model\.n_trees is not in the component's config"),
        (lambda c: c.update(env=[{"_target_": "os.system"}]), r"env: list is not a plain value|env"),
        (lambda c: c["dataset"].update(test_paths=[{"_target_": "joblib.load"}]), r"dataset\.test_paths"),
    ],
)
def test_evaluate_refuses_anything_but_plain_values(tmp_path: Path, edit, message: str) -> None:
    export = _tampered_copy(tmp_path, edit)
    with pytest.raises(ExportError, match=message):
        rebuild_train_config(read_manifest(export), tmp_path / "run", source=str(export))


def test_evaluate_takes_plain_values_and_paths_from_the_export(tmp_path: Path) -> None:
    def edit(config: dict) -> None:
        config["task"]["k_samples"] = 3
        config["env"]["preset"] = "tiny"

    export = _tampered_copy(tmp_path, edit)
    cfg = rebuild_train_config(read_manifest(export), tmp_path / "run", source=str(export))
    assert cfg.task.k_samples == 3 and cfg.env.preset == "tiny"
    assert cfg.task._target_ == components.get("vm2rl").task  # from the registry's config
    # ${paths.data_dir} in the export resolves on this machine
    test_path = OmegaConf.to_container(cfg, resolve=True)["dataset"]["test_paths"][0]
    assert test_path == str(Path(cfg.paths.data_dir) / "vm_snapshots" / "vmr2l_c1_2022-03-28.json")
    assert "trainer" not in cfg or cfg.trainer is None


def test_shipped_exports_hold_no_machine_path() -> None:
    manifest = read_manifest(CHECKPOINT)
    text = json.dumps(manifest["config"])
    assert not re.search(r'"/(work|home|tmp|Users)/', text), text
    assert "paths" not in manifest["config"] and "logger" not in manifest["config"]


def test_a_run_exports_no_machine_path(tmp_path: Path) -> None:
    from infragym.runner import run_train

    run = tmp_path / "run"
    cfg = compose_config("train", ["experiment=deoxys", "debug=deoxys", "logger=none", "dataset.n_events=1000"], run)
    run_train(cfg)
    manifest = read_manifest(run / "export")
    text = json.dumps(manifest["config"])
    assert str(tmp_path) not in text and str(ROOT) not in text
    assert manifest["config"]["dataset"]["save_dir"] == "${paths.output_dir}/data"
    assert manifest["config"]["experiment"] == "deoxys"
    assert "trainer" not in manifest["config"] and "callbacks" not in manifest["config"]
