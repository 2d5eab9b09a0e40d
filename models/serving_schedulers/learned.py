"""The learned admission scheduler: a policy over ``admission_features`` as a kernel scheduler."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from infragym.envs.serving.simulator import Replica
from infragym.models.serving_schedulers.admission_features import WINDOW, AdmissionFeatures
from infragym.models.serving_schedulers.replay import AdmissionScheduler

Act = Callable[[np.ndarray, np.ndarray], int]


class LearnedScheduler(AdmissionScheduler):
    """Admits what ``act(obs, mask)`` picks, one request at a time, until it chooses to run.

    ``act`` is an exported policy's ``act`` (``infragym.load(path).act``) or any callable with
    that signature."""

    name = "learned"

    def __init__(self, act: Act, *, seed: int = 0) -> None:
        super().__init__(seed=seed)
        self.act = act

    def setup(self, replica: Replica) -> None:
        self.features = AdmissionFeatures(replica, self.rng)

    def on_finish(self, replica: Replica, rid: int) -> None:
        self.features.on_finish(rid)

    def admit(self, replica: Replica) -> bool:
        for _ in range(replica.config.max_running):
            if not self.features.any_fits():
                break
            obs, mask, cands = self.features.observe()
            action = int(self.act(obs, mask))
            if action >= len(cands) or not mask[action]:
                break  # run (a masked choice also runs, as in the env)
            replica.admit(cands[action])
        return True


class AgentScheduler(AdmissionScheduler):
    """The admission env's agent as a scheduler: at a scheduling point where a candidate fits,
    pause the event loop for the agent (``admit`` returns False) unless it chose to run."""

    name = "agent"

    def setup(self, replica: Replica) -> None:
        self.features = AdmissionFeatures(replica, self.rng)
        self.run_next = False

    def on_finish(self, replica: Replica, rid: int) -> None:
        self.features.on_finish(rid)

    def admit(self, replica: Replica) -> bool:
        if self.run_next:
            self.run_next = False
            return True
        return not self.features.any_fits()


__all__ = ["WINDOW", "AgentScheduler", "LearnedScheduler"]
