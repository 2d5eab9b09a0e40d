"""Train, evaluate and export one experiment: ``python train.py experiment=deoxys``.

Writes metrics.json, results.txt, plots/ and export/ in the Hydra run folder and returns the
``optimized_metric`` for sweepers (``-m``).
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

import infragym.config
import infragym.envs  # noqa: F401  (registers the gymnasium envs)
from infragym.runner import run_train


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    return run_train(cfg)


if __name__ == "__main__":
    main()
