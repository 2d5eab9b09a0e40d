"""Replica schedulers: called at each scheduling point of a ``Replica``.

A scheduler decides which waiting requests join the next iteration (through
``Replica.admit``) and then runs it (``Replica.run_iteration``). FCFS with head-of-line
blocking is vLLM's request-level policy and the baseline of later scheduler work.
"""

from __future__ import annotations

from infragym.envs.serving.simulator import Replica


class FCFSScheduler:
    """Request-level first come, first served (vLLM)."""

    name = "fcfs"

    def __call__(self, replica: Replica) -> None:
        replica.step_fcfs()


SCHEDULERS = {cls.name: cls for cls in (FCFSScheduler,)}
