"""Evaluate an export against the baselines on fresh events:
``python evaluate.py checkpoint=outputs/deoxys/runs/<time>/export``.

With the default ``seed=null`` the training run's seed is reused, which reproduces the numbers
that run reported for the exported model.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

import infragym.config
import infragym.envs  # noqa: F401
from infragym.runner import run_evaluate


@hydra.main(version_base="1.3", config_path="conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    run_evaluate(cfg)


if __name__ == "__main__":
    main()
