"""A proven lower bound on the fragment rate any rescheduler can reach with MNL migrations.

The exact rescheduling model (one binary per VM and destination: about a million on the medium
cluster) is beyond CP-SAT on 2 cores. Its relaxation by VM size is small and CP-SAT solves it
to optimality in seconds, so its optimum bounds every method from below, the exact MIP's
included:

- per ACTIVE NUMA node and per size class of the movable single-NUMA VMs on it: how many leave
  (at most the number there) and how many arrive; per host and size class, the same for the
  double-NUMA VMs (a split VM leaves and arrives on both nodes of a host at once);
- per size class, as many arrive as leave (VMs are moved, never created or lost);
- every node's free CPU after the moves within [0, its total]; at most MNL VMs leave;
- minimise the sum over nodes of (free CPU mod 16), as the fragment rate's numerator (its
  denominator, the total free CPU, is fixed).

Dropped from the exact model (so the bound is valid but may be below the true optimum): which
VM of a size class moves (memory: the real PMs' nodes hold 44 cores x 4 GB of their 184,388 MB,
so CPU binds first), anti-affinity, "not to its own host", and the order of the migrations.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from infragym.envs.cluster.snapshot import PLACE_BOTH
from infragym.envs.cluster.state import FRAGMENT_UNIT, ClusterState


@dataclass
class LowerBound:
    fragment_rate: float  # the proven bound (the relaxation's best bound, its optimum if optimal)
    relaxed_optimum: float  # the relaxation's best solution found (== bound when optimal)
    status: str
    wall_s: float


def fragment_rate_lower_bound(
    state: ClusterState, max_migrations: int, *, time_limit_s: float = 60.0, workers: int = 1
) -> LowerBound:
    """The relaxation's bound on the FR reachable from ``state`` (at its start) with at most
    ``max_migrations`` migrations."""
    from ortools.sat.python import cp_model

    started = time.perf_counter()
    s = state
    model = cp_model.CpModel()
    active = np.flatnonzero(s.pm_active)
    movable = s.vm_movable
    single = movable & (s.vm_placement != PLACE_BOTH)
    double = movable & (s.vm_placement == PLACE_BOTH)
    single_sizes = sorted(set(s.vm_cpu[single].tolist()))
    double_sizes = sorted(set(s.vm_cpu[double].tolist()))
    change: dict[tuple[int, int], list] = {(int(p), n): [] for p in active for n in (0, 1)}
    out_by_size: dict[tuple[str, int], list] = {}
    in_by_size: dict[tuple[str, int], list] = {}
    leaving = []
    for c in single_sizes:
        on = single & (s.vm_cpu == c)
        for p in active:
            for n in (0, 1):
                total = int(s.pm_cpu_total[p, n])
                count = int((on & (s.vm_pm == p) & (s.vm_placement == n)).sum())
                arrive = model.NewIntVar(0, total // c, "")
                in_by_size.setdefault(("single", c), []).append(arrive)
                change[(int(p), n)].append(-c * arrive)
                if count:
                    leave = model.NewIntVar(0, count, "")
                    out_by_size.setdefault(("single", c), []).append(leave)
                    change[(int(p), n)].append(c * leave)
                    leaving.append(leave)
    for c in double_sizes:
        on = double & (s.vm_cpu == c)
        for p in active:
            total = int(s.pm_cpu_total[p].min())
            count = int((on & (s.vm_pm == p)).sum())
            arrive = model.NewIntVar(0, total // c, "")
            in_by_size.setdefault(("double", c), []).append(arrive)
            leave = model.NewIntVar(0, count, "") if count else None
            if leave is not None:
                out_by_size.setdefault(("double", c), []).append(leave)
                leaving.append(leave)
            for n in (0, 1):
                change[(int(p), n)].append(-c * arrive)
                if leave is not None:
                    change[(int(p), n)].append(c * leave)
    for key, arrivals in in_by_size.items():
        model.Add(sum(arrivals) == sum(out_by_size.get(key, [])))
    model.Add(sum(leaving) <= int(max_migrations))
    remainders = []
    for (p, n), terms in change.items():
        total = int(s.pm_cpu_total[p, n])
        free = int(s.free_cpu[p, n]) + sum(terms)
        q = model.NewIntVar(0, total // FRAGMENT_UNIT, "")
        r = model.NewIntVar(0, FRAGMENT_UNIT - 1, "")
        model.Add(free == FRAGMENT_UNIT * q + r)  # 0 <= free <= total follows from q, r's domains
        model.Add(free <= total)
        remainders.append(r)
    model.Minimize(sum(remainders))
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = float(time_limit_s)
    solver.parameters.num_search_workers = int(workers)
    status = solver.Solve(model)
    name = solver.StatusName(status)
    denominator = s.free_sum if s.free_sum > 0 else 1
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return LowerBound(0.0, float("nan"), name, time.perf_counter() - started)
    bound = max(0.0, float(np.ceil(solver.BestObjectiveBound() - 1e-9)))
    return LowerBound(bound / denominator, solver.ObjectiveValue() / denominator, name, time.perf_counter() - started)
