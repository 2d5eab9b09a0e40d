"""Baselines of VM rescheduling: random feasible, greedy, and the MIP optimum (OR-Tools CP-SAT).

Each returns the list of migrations ``(vm, destination)`` it applies to a ``ClusterState``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np

from infragym.envs.cluster.snapshot import GRANULARITY_HOST, N_PLACEMENTS, PLACE_BOTH
from infragym.envs.cluster.state import FRAGMENT_UNIT, ClusterState

log = logging.getLogger(__name__)
Migration = tuple[int, int]


def random_policy(state: ClusterState, max_migrations: int, rng: np.random.Generator) -> list[Migration]:
    """Uniformly random feasible migrations (a VM, then one of its destinations)."""
    moves: list[Migration] = []
    for _ in range(max_migrations):
        vms = np.flatnonzero(state.vm_mask())
        if vms.size == 0:
            break
        vm = int(vms[rng.integers(vms.size)])
        dests = np.flatnonzero(state.placement_mask(vm))
        dest = int(dests[rng.integers(dests.size)])
        state.migrate(vm, dest)
        moves.append((vm, dest))
    return moves


def greedy_policy(state: ClusterState, max_migrations: int, rng: np.random.Generator | None = None) -> list[Migration]:
    """Move the VM whose migration removes the most fragments to its best destination (the
    heuristic of the VM2RL repository); stop when no migration removes any fragment.
    All (VM, destination) pairs are scored at once, vectorised by VM type."""
    moves: list[Migration] = []
    for _ in range(max_migrations):
        delta = state.fragment_delta_all()
        best = int(np.argmin(delta))
        if not np.isfinite(delta.flat[best]) or delta.flat[best] >= 0:
            break
        vm, dest = divmod(best, delta.shape[1])
        state.migrate(vm, dest)
        moves.append((vm, dest))
    return moves


@dataclass
class MIPResult:
    moves: list[Migration]
    fragment_rate: float  # of the solver's final placement
    status: str
    wall_s: float
    optimal: bool
    n_variables: int
    unsequenced: int = 0  # moves that could not be ordered into feasible single migrations
    notes: list[str] = field(default_factory=list)


class MIPRescheduler:
    """The rescheduling MIP, solved by OR-Tools CP-SAT.

    One binary per (movable VM, candidate destination) plus "stay"; per NUMA node
    free = 16 q + r with integer q >= 0 and 0 <= r <= 15, minimise sum r (the free CPU sum is
    constant, so this minimises FR); at most MNL VMs move; anti-affinity per host (rack) and
    group. Exact when ``restrict_destinations=False``. With it (for large snapshots, where CP-SAT
    finds no solution to the full model of ~250k binaries within minutes on 2 cores), each VM
    may only go to its ``max_candidates`` best destinations by fragment change at the start
    (feasible then), plus the destinations of the warm-start plan: a restricted MIP, reported as
    such. The model is built once; each MNL is a re-solve with the budget changed and a
    warm-start plan (greedy's or the previous budget's solution) as a complete hint.

    Args:
        time_limit_s: CP-SAT time limit per solve.
        restrict_destinations: see above; ``None`` restricts when the snapshot has > 60 PMs.
        max_candidates: destinations per VM of the restricted model.
        workers: CP-SAT search workers.
    """

    def __init__(
        self,
        *,
        time_limit_s: float = 60.0,
        restrict_destinations: bool | None = None,
        max_candidates: int = 8,
        workers: int = 2,
    ) -> None:
        self.time_limit_s = float(time_limit_s)
        self.max_candidates = int(max_candidates)
        self.restrict_destinations = restrict_destinations
        self.workers = int(workers)

    def build(
        self, state: ClusterState, max_budget: int, extra_candidates: list[tuple[int, int]] | None = None
    ) -> None:
        """Build the model on ``state`` (at its start). ``extra_candidates``: (VM, destination)
        pairs always modelled, e.g. a heuristic's plan, so that its hint is a feasible solution."""
        from ortools.sat.python import cp_model

        started = time.perf_counter()
        s = state
        restrict = self.restrict_destinations if self.restrict_destinations is not None else s.n_pms > 60
        model = cp_model.CpModel()
        P = s.n_pms
        movable = np.flatnonzero(s.vm_movable)
        # usage terms per (pm, node): lists of (var, cores) and (var, mem)
        cpu_terms: list[list[tuple]] = [[] for _ in range(P * 2)]
        mem_terms: list[list[tuple]] = [[] for _ in range(P * 2)]
        on_pm: dict[int, dict[int, list]] = {}  # vm -> pm -> vars placing the VM on that PM
        fixed_cpu = np.zeros((P, 2), dtype=np.int64)
        fixed_mem = np.zeros((P, 2))
        stay_vars = []
        self.vars: dict[int, list[tuple[int, object]]] = {}
        is_movable = np.zeros(s.n_vms, dtype=bool)
        is_movable[movable] = True
        for v in np.flatnonzero(~is_movable):
            p, pl = s.vm_pm[v], s.vm_placement[v]
            for n in (0, 1):
                if pl == PLACE_BOTH or pl == n:
                    fixed_cpu[p, n] += s.vm_cpu[v]
                    fixed_mem[p, n] += s.vm_mem[v]
        delta_start = s.fragment_delta_all() if restrict else None  # (V, 3P) at the start
        extra: dict[int, set[int]] = {}
        for v, d in extra_candidates or []:
            extra.setdefault(int(v), set()).add(int(d))
        for v in movable:
            c, m = int(s.vm_cpu[v]), float(s.vm_mem[v])
            home = int(s.vm_pm[v]) * N_PLACEMENTS + int(s.vm_placement[v])
            if restrict:
                finite = np.flatnonzero(np.isfinite(delta_start[v]))
                keep = finite[np.argsort(delta_start[v, finite], kind="stable")[: self.max_candidates]]
                cand = keep
            else:
                allowed = np.zeros((P, N_PLACEMENTS), dtype=bool)
                allowed[:, PLACE_BOTH] = s.vm_double[v]
                allowed[:, :2] = not s.vm_double[v]
                allowed &= s.pm_active[:, None] & (s.pm_cpu_total >= c).all(1, keepdims=True)
                cand = np.flatnonzero(allowed.ravel())
            cand = set(cand.tolist()) | extra.get(int(v), set())
            cand = sorted(int(d) for d in cand if d // N_PLACEMENTS != s.vm_pm[v])
            options = []
            for d in [home, *cand]:
                x = model.NewBoolVar("")
                options.append((d, x))
                p, pl = divmod(d, N_PLACEMENTS)
                for n in (0, 1):
                    if pl == PLACE_BOTH or pl == n:
                        cpu_terms[p * 2 + n].append((x, c))
                        mem_terms[p * 2 + n].append((x, m))
                on_pm.setdefault(int(v), {}).setdefault(p, []).append(x)
            model.AddExactlyOne(x for _, x in options)
            stay_vars.append(options[0][1])
            self.vars[int(v)] = options
        objective = []
        for p in np.flatnonzero(s.pm_active):
            for n in (0, 1):
                total = int(s.pm_cpu_total[p, n])
                terms = cpu_terms[p * 2 + n]
                used = sum(x * c for x, c in terms) + int(fixed_cpu[p, n])
                mem_used = sum(x * int(np.ceil(mm)) for x, mm in mem_terms[p * 2 + n])
                if mem_terms[p * 2 + n]:
                    model.Add(mem_used <= int(np.floor(s.pm_mem_total[p, n] - fixed_mem[p, n])))
                q = model.NewIntVar(0, total // FRAGMENT_UNIT, "")
                r = model.NewIntVar(0, FRAGMENT_UNIT - 1, "")
                model.Add(total - used == FRAGMENT_UNIT * q + r)
                objective.append(r)
        # Anti-affinity: members of a group never share a host (rack).
        for g, members in enumerate(s.snapshot.group_members):
            domain_of = (
                (lambda p: p) if s.snapshot.group_granularity[g] == GRANULARITY_HOST else (lambda p: s.pm_rack[p])
            )
            by_domain: dict[int, list] = {}
            fixed_in: dict[int, int] = {}
            for v in members:
                v = int(v)
                if v in self.vars:
                    for p, xs in on_pm[v].items():
                        by_domain.setdefault(int(domain_of(p)), []).extend(xs)
                else:
                    dom = int(domain_of(s.vm_pm[v]))
                    fixed_in[dom] = fixed_in.get(dom, 0) + 1
            for dom, xs in by_domain.items():
                if len(xs) + fixed_in.get(dom, 0) > 1:
                    model.Add(sum(xs) + fixed_in.get(dom, 0) <= 1)
        self.budget = model.NewIntVar(0, max_budget, "budget")
        model.Add(len(stay_vars) - sum(stay_vars) <= self.budget)
        total_fragments = sum(objective)
        # Upper bound on the objective, set per solve to the warm start's value (a MIP start).
        self.max_fragments = FRAGMENT_UNIT * 2 * P
        self.cutoff = model.NewIntVar(0, self.max_fragments, "cutoff")
        model.Add(total_fragments <= self.cutoff)
        model.Minimize(total_fragments)
        self.model = model
        self.free_sum = s.free_sum
        self.restricted = restrict
        self.build_s = time.perf_counter() - started
        self.n_variables = len(model.Proto().variables)

    def solve(self, state: ClusterState, max_migrations: int, hint: list[Migration] | None = None) -> MIPResult:
        """Solve for ``max_migrations`` on the state the model was built from (call ``build``
        first); the state is left at its start."""

        started = time.perf_counter()
        proto = self.model.Proto()
        budget = proto.variables[self.budget.Index()]
        budget.domain[0], budget.domain[1] = 0, int(max_migrations)
        cutoff = proto.variables[self.cutoff.Index()]
        cutoff.domain[0], cutoff.domain[1] = 0, self.max_fragments
        self.model.ClearHints()
        start: tuple[list[Migration], float, int] | None = None
        if hint:
            target = dict(hint)
            for v, options in self.vars.items():
                want = target.get(v, options[0][0])
                for d, x in options:
                    self.model.AddHint(x, d == want)
            # Phase 1, the MIP start: the warm-start plan completed into a solution (all other
            # variables follow); phase 2 searches only for better solutions than it.
            _, first = self._run(fixed_hint=True, time_limit_s=self.time_limit_s)
            if first is not None:
                start = first
                cutoff.domain[1] = first[2]
        remaining = max(1.0, self.time_limit_s - (time.perf_counter() - started))
        status, result = self._run(fixed_hint=False, time_limit_s=remaining)
        wall = time.perf_counter() - started
        if result is None and start is None:
            # No solution within the limit: no number to report (not the start's FR).
            return MIPResult([], float("nan"), status, wall, False, self.n_variables)
        moves, fr, _ = result if result is not None else start
        optimal = result is not None and status == "OPTIMAL"
        status = status if result is not None else "FEASIBLE (warm start)"
        return MIPResult(moves, fr, status, wall, optimal, self.n_variables)

    def _run(self, *, fixed_hint: bool, time_limit_s: float) -> tuple[str, tuple[list[Migration], float, int] | None]:
        """The solver's status name and, if it found a solution, (moves, FR, objective)."""
        from ortools.sat.python import cp_model

        solver = cp_model.CpSolver()
        solver.parameters.max_time_in_seconds = time_limit_s
        solver.parameters.num_search_workers = self.workers
        solver.parameters.fix_variables_to_their_hinted_value = fixed_hint
        status = solver.Solve(self.model)
        name = solver.StatusName(status)
        if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            return name, None
        final = {v: next(d for d, x in options if solver.Value(x)) for v, options in self.vars.items()}
        moves = [(v, d) for v, d in final.items() if d != options_home(self.vars[v])]
        objective = round(solver.ObjectiveValue())
        return name, (moves, objective / self.free_sum if self.free_sum else 0.0, objective)


def options_home(options: list[tuple[int, object]]) -> int:
    """The "stay" destination is always the first option of a VM."""
    return options[0][0]


def sequence_moves(state: ClusterState, moves: list[Migration]) -> tuple[list[Migration], int]:
    """Apply a set of target placements one feasible migration at a time (a move waits until
    the capacity it needs has been freed). Returns the applied order and how many could not be
    applied (a cycle needing a temporary host)."""
    pending = list(moves)
    applied: list[Migration] = []
    progress = True
    while pending and progress:
        progress = False
        for move in list(pending):
            if state.is_feasible(*move):
                state.migrate(*move)
                applied.append(move)
                pending.remove(move)
                progress = True
    return applied, len(pending)
