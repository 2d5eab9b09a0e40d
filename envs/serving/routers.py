"""Routers: round-robin and least outstanding requests (the serving baselines' two routers)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from infragym.envs.serving.policies import Router, register_router

if TYPE_CHECKING:
    from infragym.envs.serving.simulator import Replica


@register_router
class RoundRobinRouter(Router):
    """Each arrival to the next replica in turn (reads no load)."""

    name = "round_robin"
    needs_load = False

    def __init__(self) -> None:
        self._next = 0

    def route(self, replicas: Sequence[Replica], rid: int, now: float) -> Replica:
        i = self._next % len(replicas)
        self._next = i + 1
        return replicas[i]


@register_router
class LeastOutstandingRouter(Router):
    """The replica with the fewest queued + running + swapped requests (the first on ties)."""

    name = "least_outstanding"
    needs_load = True

    def route(self, replicas: Sequence[Replica], rid: int, now: float) -> Replica:
        best = replicas[0]
        fewest = best.outstanding
        for replica in replicas[1:]:
            load = replica.outstanding
            if load < fewest:
                best, fewest = replica, load
        return best


__all__ = ["LeastOutstandingRouter", "RoundRobinRouter"]
