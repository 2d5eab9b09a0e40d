"""CheckFree / CheckFree+ [CheckFree]: pipeline-stage failures recovered without checkpoints,
time to a target loss against checkpointing and redundant computation.

The paper's setting: a pipeline of S stages (3 nodes per stage in its fault-injection
schedules) trained for a fixed number of iterations to a target loss; a stage fails at the
iterations its schedule lists. Strategies:

- ``checkpointing``: roll back to the last checkpoint (every 20 iterations, as the paper's
  simulation) and go on;
- ``redundant``: every stage also holds its neighbour's layers (Bamboo-style): no rollback but
  every iteration is slower;
- ``checkfree``: a middle stage is rebuilt from its neighbours (no rollback, a convergence cost of
  a few extra iterations); the first and last stages need a checkpoint rollback;
- ``checkfree_plus``: every stage rebuilt (out-of-order pipelining, a copied embedding), at a
  small per-iteration overhead.

Failure schedules are the shipped JSON files (``{node_id: [iteration, ..., sentinel]}``) or
generated at the paper's per-iteration rates.
"""

from __future__ import annotations

import itertools
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from infragym.envs.training import calibration as cal

NODES_PER_STAGE = 3
# The paper's checkpointing baseline (its checkpoint_simulation.py): a checkpoint every 20
# iterations, a failure rolls back to the last one; saving and restarting cost nothing there.
CHECKPOINT_EVERY = 20
CHECKPOINT_COST_ITERATIONS = 0.0
RESTART_COST_ITERATIONS = 0.0


class ScheduleFormatError(ValueError):
    """A CheckFree failure schedule that does not follow the format."""


@dataclass(frozen=True)
class FailureSchedule:
    """Iterations at which each pipeline stage fails, up to ``end`` (the file's sentinel)."""

    stage_failures: tuple[np.ndarray, ...]
    end: int
    source: str

    @property
    def n_stages(self) -> int:
        return len(self.stage_failures)


def load_failure_schedule(path: str | os.PathLike[str], *, nodes_per_stage: int = NODES_PER_STAGE) -> FailureSchedule:
    """Read a CheckFree schedule: a JSON object ``{"<node id>": [iteration, ..., sentinel]}`` with
    node ids 0..n-1 (n a multiple of ``nodes_per_stage``; node i is in stage i // nodes_per_stage),
    non-negative strictly increasing integer iterations, and the same last value (the end
    sentinel) in every list. A stage fails at an iteration when any of its nodes does."""
    path = Path(path)
    where = str(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ScheduleFormatError(f"{where}: not a readable JSON file ({err})") from err
    if not isinstance(data, dict) or not data:
        raise ScheduleFormatError(f"{where}: expected a non-empty JSON object {{node_id: [iterations]}}")
    nodes: dict[int, list[int]] = {}
    for key, value in data.items():
        if not (isinstance(key, str) and key.isdigit()):
            raise ScheduleFormatError(f"{where}: key {key!r}: node ids must be non-negative integers")
        if not isinstance(value, list) or not value:
            raise ScheduleFormatError(f"{where}: node {key}: expected a non-empty list of iterations")
        for i, it in enumerate(value):
            if isinstance(it, bool) or not isinstance(it, int) or it < 0:
                raise ScheduleFormatError(f"{where}: node {key}, position {i}: {it!r} is not a non-negative integer")
        if any(b <= a for a, b in itertools.pairwise(value)):
            raise ScheduleFormatError(f"{where}: node {key}: iterations must be strictly increasing, got {value}")
        nodes[int(key)] = value
    n = len(nodes)
    if sorted(nodes) != list(range(n)):
        missing = sorted(set(range(n)) - set(nodes))
        raise ScheduleFormatError(f"{where}: node ids must be 0..{n - 1}; missing {missing}")
    if n % nodes_per_stage:
        raise ScheduleFormatError(f"{where}: {n} nodes is not a multiple of {nodes_per_stage} nodes per stage")
    ends = {v[-1] for v in nodes.values()}
    if len(ends) != 1:
        raise ScheduleFormatError(f"{where}: every list must end with the same sentinel, got {sorted(ends)}")
    end = ends.pop()
    stages = []
    for s in range(n // nodes_per_stage):
        its = sorted({it for node in range(s * nodes_per_stage, (s + 1) * nodes_per_stage) for it in nodes[node][:-1]})
        stages.append(np.asarray(its, dtype=np.int64))
    return FailureSchedule(tuple(stages), int(end), where)


def generate_schedule(
    n_stages: int, per_iteration: float, end: int, rng: np.random.Generator, *, horizon_factor: int = 3
) -> FailureSchedule:
    """A schedule drawn as the paper's generator draws its shipped ones: at each iteration the
    pipeline loses a stage with probability ``per_iteration`` (never at iterations 1, 101, 201, ...,
    as there), the stage uniform among all but the first (stage 0 holds the data loader and never
    fails there); iterations run ``horizon_factor`` times past ``end`` for slowed strategies."""
    iterations = np.arange(end * horizon_factor)
    fails = (rng.random(iterations.size) < per_iteration) & (iterations % 100 != 1)
    stages = rng.integers(1, n_stages, size=iterations.size)
    return FailureSchedule(
        tuple(iterations[fails & (stages == s)] for s in range(n_stages)), end, f"generated@{per_iteration}"
    )


def time_to_target(
    schedule: FailureSchedule,
    strategy: str,
    *,
    target_iterations: int | None = None,
    checkpoint_every: int = 20,
) -> float:
    """Wall-clock time, in iterations of a failure-free step, to reach the target loss (the
    loss of ``target_iterations`` failure-free iterations; default: the schedule's end)."""
    target = float(schedule.end if target_iterations is None else target_iterations)
    if strategy not in ("checkpointing", "redundant", "checkfree", "checkfree_plus"):
        raise ValueError(f"unknown strategy {strategy!r}")
    step = {
        "redundant": 1 + cal.REDUNDANT_COMPUTE_OVERHEAD,
        "checkfree_plus": 1 + cal.CHECKFREE_PLUS_OVERHEAD,
    }.get(strategy, 1.0)
    if strategy in ("checkpointing", "checkfree"):
        step += CHECKPOINT_COST_ITERATIONS / checkpoint_every
    events: list[tuple[int, int]] = sorted((int(it), s) for s, its in enumerate(schedule.stage_failures) for it in its)
    progress, iteration, wall, last_ckpt = 0.0, 0, 0.0, 0.0
    edge = {0, schedule.n_stages - 1}
    for it, stage in events:
        # The schedule counts executed iterations: run up to the failing one (or to the target).
        run = it - iteration
        if progress + run >= target:
            break
        progress += run
        wall += run * step
        iteration = it
        if strategy in ("checkpointing", "checkfree"):
            last_ckpt = np.floor(progress / checkpoint_every) * checkpoint_every
        if strategy == "redundant":
            continue  # the neighbour's copy takes over
        if strategy == "checkfree_plus" or (strategy == "checkfree" and stage not in edge):
            penalty = cal.CHECKFREE_PLUS_EDGE_PENALTY_ITERATIONS if stage in edge else cal.CHECKFREE_PENALTY_ITERATIONS
            progress = max(progress - penalty, 0.0)
        else:
            progress = last_ckpt
            wall += RESTART_COST_ITERATIONS
    wall += (target - progress) * step
    return wall


def compare_strategies(
    schedules: list[FailureSchedule], *, checkpoint_every: int = CHECKPOINT_EVERY
) -> dict[str, list[float]]:
    """Time to target of each strategy on each schedule (checkpointing every ``checkpoint_every``
    iterations, as the paper's simulation)."""
    return {
        strategy: [time_to_target(s, strategy, checkpoint_every=checkpoint_every) for s in schedules]
        for strategy in ("checkpointing", "redundant", "checkfree", "checkfree_plus")
    }
