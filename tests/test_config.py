"""Every option of every config group composes and instantiates; the schema catches mistakes."""

from __future__ import annotations

import inspect
import shutil
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import ConfigCompositionException
from hydra.utils import get_class, instantiate
from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError, MissingMandatoryValue, ValidationError

from infragym import components
from infragym.config import compose_run_config
from infragym.logging import RunLogger
from infragym.runner import build_task, component_of, run_config, run_train
from infragym.task import ExportEvaluator, Task

from .conftest import CONF, ROOT, SHARED_DATA, compose_config, smoke


def _or_skip_without_shared_data(build):  # type: ignore[no-untyped-def]
    """``build()``; skipped, with the reason, when it reads a file of ../shared/data and that
    folder is absent (an experiment whose env reads a real trace when it is built)."""
    try:
        return build()
    except Exception as err:
        text = f"{err} {err.__cause__}"
        if not SHARED_DATA.is_dir() and str(SHARED_DATA.parent) in text:
            pytest.skip(f"needs the shared data, absent: {SHARED_DATA}")
        raise


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def _choices(overrides: list[str]) -> dict[str, str | None]:
    """The option Hydra chose in each config group (``hydra.runtime.choices``)."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    GlobalHydra.instance().clear()
    return dict(cfg.hydra.runtime.choices)


def test_every_group_has_options() -> None:
    groups = ("experiment", "task", "debug", "env", "dataset", "model", "logger", "trainer", "callbacks")
    for group in (*groups, "hparams_search"):
        assert _options(group), f"conf/{group} is empty"
    assert {"wandb", "csv", "none"} <= set(_options("logger"))
    assert {"cpu", "gpu", "ddp"} <= set(_options("trainer"))
    assert {"local", "slurm"} <= set(_options("launcher"))


@pytest.mark.parametrize("experiment", _options("experiment"))
def test_experiment_builds_its_task(experiment: str, tmp_path: Path) -> None:
    """Every experiment belongs to exactly one registered component and builds that component's
    Task; only components that declare a Trainer get the Lightning configs."""
    cfg = compose_config("train", [f"experiment={experiment}", "logger=none"], tmp_path)
    owners = [c for c in components.registry().values() if experiment in c.experiments]
    assert len(owners) == 1, f"experiment {experiment!r} is declared by {[c.name for c in owners]}"
    (component,) = owners
    assert component_of(cfg) == component
    task = _or_skip_without_shared_data(lambda: build_task(cfg))
    assert isinstance(task, Task) and isinstance(task, get_class(component.task))
    if component.evaluation is not None or component.loader is not None:
        assert isinstance(task, ExportEvaluator)
    assert (cfg.trainer is not None) == component.uses_trainer
    if component.uses_trainer:
        # the trainer and callbacks stay configs: the task builds one Trainer per network
        assert task.trainer_cfg["_target_"].endswith("Trainer")
    if cfg.get("env") is not None:
        assert isinstance(task.env, get_class(cfg.env._target_))


@pytest.mark.parametrize("experiment", _options("experiment"))
def test_experiment_selects_its_task_from_the_task_group(experiment: str) -> None:
    raw = OmegaConf.load(CONF / "experiment" / f"{experiment}.yaml")
    # the Task and its options live in conf/task; an experiment lists only what differs
    assert "_target_" not in (raw.get("task") or {}), f"experiment/{experiment}.yaml defines its task's _target_"
    chosen = _choices([f"experiment={experiment}"])["task"]
    assert chosen in _options("task")


def test_task_group_has_an_option_per_component_and_each_is_used() -> None:
    used = {_choices([f"experiment={e}"])["task"] for e in _options("experiment")}
    assert used == set(_options("task"))
    for name in _options("task"):
        assert OmegaConf.load(CONF / "task" / f"{name}.yaml")["_target_"]


@pytest.mark.parametrize("experiment", _options("experiment"))
def test_every_experiment_has_a_debug_preset_that_composes(experiment: str, tmp_path: Path) -> None:
    assert experiment in _options("debug"), f"no conf/debug/{experiment}.yaml"
    full = compose_config("train", [f"experiment={experiment}", "logger=none"], tmp_path)
    cfg = compose_config("train", smoke(experiment, "logger=none"), tmp_path)
    assert cfg != full  # the preset shrinks something
    assert cfg.task._target_ == full.task._target_ and cfg.task_name == full.task_name
    assert isinstance(_or_skip_without_shared_data(lambda: build_task(cfg)), Task)


@pytest.mark.parametrize("experiment", _options("experiment"))
def test_only_lightning_experiments_carry_trainer_and_callbacks(experiment: str, tmp_path: Path) -> None:
    cfg = compose_config("train", [f"experiment={experiment}"], tmp_path)
    component = component_of(cfg)
    # what the run logger (and W&B's run config) receives
    logged = run_config(cfg, component)
    if component.uses_trainer:
        assert logged["trainer"]["_target_"].endswith("Trainer") and logged["callbacks"]
        assert "trainer" in inspect.signature(get_class(component.task)).parameters
    else:
        assert "trainer" not in logged and "callbacks" not in logged


def test_vm2rl_continuum_deoxys_runs_have_no_trainer_but_cloudformer_has(tmp_path: Path) -> None:
    for experiment in ("vm2rl", "continuum", "deoxys"):
        cfg = compose_config("train", [f"experiment={experiment}"], tmp_path)
        assert cfg.trainer is None and cfg.callbacks is None, experiment
    cfg = compose_config("train", ["experiment=cloudformer"], tmp_path)
    assert cfg.trainer.accelerator == "cpu" and "model_checkpoint" in cfg.callbacks


def test_command_line_trainer_wins_over_the_experiments_choice(tmp_path: Path) -> None:
    cfg = compose_config("train", ["experiment=cloudformer", "trainer=gpu"], tmp_path)
    assert cfg.trainer.accelerator == "gpu" and cfg.trainer.max_epochs == 12  # the experiment's epochs stay
    cfg = compose_config("train", ["experiment=cloudformer_full", "trainer=cpu"], tmp_path)
    assert cfg.trainer.accelerator == "cpu" and cfg.trainer.precision == "32-true"


def test_default_experiment_and_a_missing_one(tmp_path: Path) -> None:
    assert _choices([])["experiment"] == "deoxys"  # python train.py
    cfg = compose_config("train", ["~experiment"], tmp_path)
    # nothing selects a task: the run stops naming the missing key and what to do
    with pytest.raises(MissingMandatoryValue, match="task"):
        OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    with pytest.raises(components.ComponentError, match="choose an experiment"):
        run_train(cfg)


def test_local_group_is_git_ignored_and_optional(tmp_path: Path) -> None:
    assert "conf/local/" in (ROOT / ".gitignore").read_text().splitlines()
    conf = tmp_path / "conf"
    shutil.copytree(CONF, conf, ignore=shutil.ignore_patterns("local"))
    cfg = compose_run_config("train", [], tmp_path / "run", conf)
    assert cfg.task._target_.endswith("DeoxysTask")
    (conf / "local").mkdir()
    (conf / "local" / "default.yaml").write_text("# @package _global_\nlogger:\n  entity: my-team\n")
    assert compose_run_config("train", [], tmp_path / "run", conf).logger.entity == "my-team"


@pytest.mark.parametrize("name", _options("logger"))
def test_logger_options_instantiate(name: str, tmp_path: Path) -> None:
    cfg = compose_config("train", [f"logger={name}"], tmp_path)
    logger = instantiate(cfg.logger)
    assert isinstance(logger, RunLogger)
    assert str(logger.save_dir) == str(tmp_path)
    if name == "wandb":
        assert cfg.logger.mode == "offline"  # the default for users: no account, no network


@pytest.mark.parametrize("name", _options("trainer"))
def test_trainer_options_instantiate(name: str, tmp_path: Path) -> None:
    import pytorch_lightning as pl

    overrides = [f"trainer={name}"]
    if name == "gpu" and not torch.cuda.is_available():
        # Lightning refuses accelerator=gpu without a GPU; check everything else of the preset.
        overrides += ["trainer.accelerator=cpu", "trainer.precision=32-true"]
    if name == "ddp":
        overrides += ["trainer.strategy=ddp_spawn", "trainer.accelerator=cpu"]
    cfg = compose_config("train", overrides, tmp_path)
    trainer = instantiate(cfg.trainer)
    assert isinstance(trainer, pl.Trainer)
    if name == "ddp":
        assert trainer.world_size == 2


@pytest.mark.parametrize("name", _options("callbacks"))
def test_callback_options_instantiate(name: str, tmp_path: Path) -> None:
    import pytorch_lightning as pl

    cfg = compose_config("train", [f"callbacks={name}"], tmp_path)
    callbacks = [instantiate(c) for c in (cfg.callbacks or {}).values()]
    assert all(isinstance(c, pl.Callback) for c in callbacks)
    if name == "default":
        assert {type(c).__name__ for c in callbacks} == {"ModelCheckpoint", "EarlyStopping", "RichProgressBar"}


@pytest.mark.parametrize("group", ["env", "dataset", "model"])
def test_component_options_instantiate(group: str, tmp_path: Path) -> None:
    for name in _options(group):
        cfg = compose_config("train", [f"{group}={name}"], tmp_path)
        if not SHARED_DATA.is_dir() and str(SHARED_DATA) in str(OmegaConf.to_container(cfg[group], resolve=True)):
            continue  # reads a file of the absent ../shared/data when built
        obj = instantiate(cfg[group])
        assert type(obj).__name__ == cfg[group]._target_.rsplit(".", 1)[1]


@pytest.mark.parametrize("name", _options("hparams_search"))
def test_hparams_search_composes(name: str, tmp_path: Path) -> None:
    cfg = compose_config("train", [f"hparams_search={name}"], tmp_path)
    # The search selects on the off-policy estimate from the held-out log, never on test truth.
    assert cfg.optimized_metric.startswith("val/")


@pytest.mark.parametrize("name", _options("launcher"))
def test_launcher_presets_compose(name: str, tmp_path: Path) -> None:
    cfg = compose_config("train", [f"launcher={name}"], tmp_path)
    assert OmegaConf.select(cfg, "task._target_")


def test_evaluate_config_composes(tmp_path: Path) -> None:
    cfg = compose_config("evaluate", ["checkpoint=/some/export"], tmp_path)
    assert cfg.checkpoint == "/some/export"
    assert cfg.seed is None
    # The README's command line; the option group is the export's component's (read from its
    # manifest by `infragym evaluate`, chosen explicitly here).
    cfg = compose_config(
        "evaluate", ["checkpoint=/e", "evaluation=deoxys", "seed=123", "evaluation.n_test_events=50000"], tmp_path
    )
    assert cfg.evaluation.n_test_events == 50000 and cfg.evaluation.refit_baselines
    with pytest.raises((ConfigCompositionException, ValidationError), match="n_test_events"):
        compose_config("evaluate", ["checkpoint=/e", "evaluation=deoxys", "evaluation.n_test_events=many"], tmp_path)
    # Options are per component: VM2RL takes none, CloudFormer has no n_test_events.
    with pytest.raises(ConfigCompositionException, match="n_test_events"):
        compose_config("evaluate", ["checkpoint=/e", "evaluation=vm2rl", "evaluation.n_test_events=5"], tmp_path)
    with pytest.raises(ConfigCompositionException, match="n_test_events"):
        compose_config("evaluate", ["checkpoint=/e", "evaluation=cloudformer", "evaluation.n_test_events=5"], tmp_path)


def test_misspelt_top_level_key_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigCompositionException, match="sed"):
        compose_config("train", ["sed=3"], tmp_path)
    # A misspelt key inside an experiment file is refused too (the schema is closed).
    extra = tmp_path / "conf" / "experiment"
    extra.mkdir(parents=True)
    (extra / "typo.yaml").write_text("# @package _global_\nsede: 3\n")
    with pytest.raises((ConfigCompositionException, ConfigKeyError), match="sede"):
        compose_config("train", [f"hydra.searchpath=[file://{tmp_path / 'conf'}]", "experiment=typo"], tmp_path)


def test_wrong_type_is_refused(tmp_path: Path) -> None:
    with pytest.raises((ConfigCompositionException, ValidationError), match="seed"):
        compose_config("train", ["seed=abc"], tmp_path)
    with pytest.raises((ConfigCompositionException, ValidationError), match="export"):
        compose_config("train", ["export=maybe"], tmp_path)


def test_wrong_component_key_names_the_key(tmp_path: Path) -> None:
    cfg = compose_config("train", ["+model.n_trees=10"], tmp_path)
    with pytest.raises(Exception, match="n_trees"):
        instantiate(cfg.model)
