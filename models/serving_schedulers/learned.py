"""The learned admission scheduler: a policy over ``admission_features`` as a ``ReplicaScheduler``."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from infragym.envs.serving.simulator import Replica
from infragym.models.serving_schedulers.admission_features import WINDOW, AdmissionFeatures
from infragym.models.serving_schedulers.replay import ReplicaScheduler
from infragym.models.serving_schedulers.workloads import Workload

Act = Callable[[np.ndarray, np.ndarray], int]


class LearnedScheduler(ReplicaScheduler):
    """Admits what ``act(obs, mask)`` picks, one request at a time, until it chooses to run.

    ``act`` is an exported policy's ``act`` (``infragym.load(path).act``) or any callable with
    that signature."""

    name = "learned"

    def __init__(self, act: Act) -> None:
        self.act = act

    def reset(self, replica: Replica, workload: Workload, rng: np.random.Generator) -> None:
        super().reset(replica, workload, rng)
        self.features = AdmissionFeatures(replica, workload, rng)

    def on_finished(self, rids: np.ndarray) -> None:
        self.features.on_finished(rids)

    def schedule(self, replica: Replica) -> None:
        for _ in range(replica.config.max_running):
            if not self.features.any_fits():
                return
            obs, mask, cands = self.features.observe()
            if not mask[:WINDOW].any():
                return
            action = int(self.act(obs, mask))
            if action >= len(cands) or not mask[action]:
                return  # run (a masked choice also runs, as in the env)
            replica.admit(cands[action])
