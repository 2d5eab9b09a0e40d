"""The serving kernel's policy interfaces: ``ReplicaScheduler`` and ``Router``, with registries.

Policies decide; entities (``simulator.Replica``, its ``kv.KVManager``, the ``RequestTable``,
the cost model) hold state and carry decisions out through public methods. A policy never
touches an entity's private state.

- ``ReplicaScheduler``: at each scheduling point of a replica, which waiting requests join the
  next iteration (any subset, in any order: ``replica.admit(rid)``), which running ones leave it
  (``replica.preempt(slot, mode)``: recompute or swap), then run the iteration
  (``replica.run_iteration()``). It also orders the queue (``enqueue``), frees memory when a
  decode step needs blocks (``make_room``) and sees each finished request (``on_finish``).
- ``Router``: which replica an arrival goes to.

Registries map config names to classes: ``SCHEDULERS``, ``ROUTERS`` (and ``kv.KV_MANAGERS``);
``register_scheduler`` / ``register_router`` add one; ``make_scheduler(name_or_instance)`` and
``make_router`` build them. The Hydra groups ``conf/scheduler``, ``conf/router`` and
``conf/kv_manager`` hold one YAML per implementation.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from infragym.envs.serving.simulator import Replica


class ReplicaScheduler(ABC):
    """The scheduling policy of one replica (instances may be shared by replicas; a stateful
    scheduler returns a fresh copy from ``bind``).

    Contract with the kernel:

    - ``schedule(replica)`` is called at a scheduling point (the replica's clock is the time
      the next iteration starts). It must make progress (run an iteration, admit, fail or
      time out a request, or free memory) and return True, or return False to pause the event
      loop (an external decision is pending: the gymnasium env's agent).
    - ``would_admit(replica)``: whether ``schedule`` would admit someone now. While it is
      False and nothing is swapped, the kernel fast-forwards decode-only iterations in closed
      form up to the next event (an arrival, a completion, a block running out, a timeout).
      A scheduler whose answer can change during a decode-only stretch for other reasons caps
      the stretch with ``decode_horizon``.
    """

    name: ClassVar[str] = ""

    def bind(self, replica: Replica) -> ReplicaScheduler:
        """The scheduler the replica will call (``self``; a stateful scheduler returns a copy)."""
        return self

    def enqueue(self, replica: Replica, rid: int) -> None:
        """A request joins the replica's waiting queue (default: at the back)."""
        replica.waiting.append(rid)

    def would_admit(self, replica: Replica) -> bool:
        """Whether ``schedule`` would admit a waiting request now (default: the queue's head fits)."""
        waiting = replica.waiting
        return bool(waiting) and replica.admissible(waiting[0])

    def decode_horizon(self, replica: Replica) -> int | None:
        """At most this many decode-only iterations may be fast-forwarded before the next
        scheduling point (None: until the next event)."""
        return None

    @abstractmethod
    def schedule(self, replica: Replica) -> bool:
        """Admit, preempt, run one iteration; False pauses the event loop."""

    def make_room(self, replica: Replica) -> float:
        """A decode step needs blocks and none are free: free memory kept outside the batch, or
        preempt (default: vLLM's newest running request). Returns the swap seconds spent."""
        if replica.kv.reclaim(replica.clock):
            return 0.0
        return replica.preempt()

    def on_finish(self, replica: Replica, rid: int) -> None:
        """A request finished on ``replica`` (called only if a subclass overrides it)."""
        return None


class Router(ABC):
    """Which replica gets an arrival.

    ``needs_load``: the kernel brings every replica up to the arrival time before ``route``
    (the router reads their queues); otherwise only the chosen replica is advanced (replicas
    interact only through events, so lazily advancing the others gives the same result).
    """

    name: ClassVar[str] = ""
    needs_load: ClassVar[bool] = False

    def bind(self) -> Router:
        """A fresh router for one run (routers may keep state, e.g. a round-robin cursor)."""
        return type(self)()

    @abstractmethod
    def route(self, replicas: Sequence[Replica], rid: int, now: float) -> Replica:
        """The replica (one of ``replicas``, the active ones) that serves request ``rid``."""


SCHEDULERS: dict[str, type[ReplicaScheduler]] = {}
ROUTERS: dict[str, type[Router]] = {}


def register_scheduler(cls: type[ReplicaScheduler]) -> type[ReplicaScheduler]:
    """Class decorator: make a scheduler available by its ``name``."""
    if not cls.name:
        raise ValueError(f"{cls.__qualname__}: a scheduler needs a non-empty name")
    SCHEDULERS[cls.name] = cls
    return cls


def register_router(cls: type[Router]) -> type[Router]:
    """Class decorator: make a router available by its ``name``."""
    if not cls.name:
        raise ValueError(f"{cls.__qualname__}: a router needs a non-empty name")
    ROUTERS[cls.name] = cls
    return cls


def make_scheduler(spec: str | ReplicaScheduler | None, **kwargs: Any) -> ReplicaScheduler:
    """A scheduler from its registry name (built with ``kwargs``) or an instance; None: FCFS."""
    import infragym.envs.serving.schedulers  # noqa: F401  (registers the built-in schedulers)

    if spec is None:
        spec = "fcfs"
    if isinstance(spec, ReplicaScheduler):
        return spec
    if spec not in SCHEDULERS:
        raise ValueError(f"scheduler: unknown {spec!r}; known: {sorted(SCHEDULERS)}")
    return SCHEDULERS[spec](**kwargs)


def make_router(spec: str | Router) -> Router:
    """A fresh router from its registry name or an instance."""
    import infragym.envs.serving.routers  # noqa: F401  (registers the built-in routers)

    if isinstance(spec, Router):
        return spec.bind()
    if spec not in ROUTERS:
        raise ValueError(f"router must be one of {tuple(ROUTERS)}, got {spec!r}")
    return ROUTERS[spec]()


__all__ = [
    "ROUTERS",
    "SCHEDULERS",
    "ReplicaScheduler",
    "Router",
    "make_router",
    "make_scheduler",
    "register_router",
    "register_scheduler",
]
