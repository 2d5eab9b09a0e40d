"""Replica schedulers: vLLM's request-level FCFS and Continuum's program-level FCFS.

Both admit the queue's head while it fits (head-of-line blocking, as vLLM), after bringing
swapped requests back (vLLM serves them first), then run the iteration. They differ only in the
queue's order: arrival order, or (Continuum) the arrival time of the request's program, so
turns of programs already under way go before new programs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from infragym.envs.serving.policies import ReplicaScheduler, register_scheduler

if TYPE_CHECKING:
    from infragym.envs.serving.simulator import Replica


@register_scheduler
class FCFSScheduler(ReplicaScheduler):
    """Request-level first come, first served (vLLM)."""

    name = "fcfs"

    def schedule(self, replica: Replica) -> bool:
        replica.drop_timed_out()
        replica.swap_in()
        waiting = replica.waiting
        while waiting and replica.admissible(waiting[0]):
            replica.admit_head()
        if waiting and not replica.n and not replica.swapped:
            # The head cannot run even on an idle replica: free memory kept for others (pinned
            # caches), else it can never run and fails instead of blocking the queue forever.
            head = waiting[0]
            if not replica.kv.reclaim_for(head, replica.clock):
                replica.fail(head)
            return True
        replica.run_iteration()
        return True


@register_scheduler
class ProgramFCFSScheduler(FCFSScheduler):
    """Program-level FCFS (Continuum): a request queues by its program's arrival time.

    Args:
        priority: per request, the sort key of its program (its arrival time); a preempted,
            already started request at the queue's front is never overtaken.
    """

    name = "program_fcfs"

    def __init__(self, priority: np.ndarray) -> None:
        self.priority = np.asarray(priority, dtype=np.float64)

    def enqueue(self, replica: Replica, rid: int) -> None:
        waiting = replica.waiting
        key = self.priority
        generated = replica.table.generated
        # Move it forward past later programs' requests (never past a started one).
        j = len(waiting)
        while j > 0 and key[waiting[j - 1]] > key[rid] and generated[waiting[j - 1]] == 0:
            j -= 1
        if j == len(waiting):
            waiting.append(rid)
        else:
            waiting.insert(j, rid)


__all__ = ["FCFSScheduler", "ProgramFCFSScheduler"]
