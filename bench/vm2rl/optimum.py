"""VM2RL against a true optimum on held-out resets of the real medium cluster (issue 19, part 3).

Per test snapshot (the held-out resets of the c1 snapshot that ``experiment=vm2rl_real``
tests on: odd reset seeds from the run seed), at MNL 50:

- every method's FR: greedy, VM2RL (most likely actions, and best of K sampled trajectories) from
  an export, and the fast restricted MIP under a time limit (the "MIP under a time limit" of the
  paper's decay figures: 8 candidate destinations per VM, 10 s);
- the best FR a long CP-SAT run finds (``--time-limit`` seconds, ``--workers`` workers, each VM
  allowed its ``--candidates`` best destinations plus those of the warm starts, warm-started from
  the better of greedy's and VM2RL's plans). The exact model (about a million binaries) does not
  fit 2 cores; the long run's model is the restricted one with three times the candidates;
- a proven lower bound on the FR any method can reach (``models/vm2rl/lower_bound.py``: the
  exact model relaxed by VM size class, solved by CP-SAT), at every MNL of 10-50;
- each method's gap to both.

The long solve is cached in ``bench/results/vm2rl_optimum.json`` per snapshot (rerun with
``--force``). Paper (VM2RL, EuroSys'25, medium cluster, MNL 50): MIP 0.287 after ~2,900 s,
VM2RL 0.296 in ~3 s.

    python bench/vm2rl/optimum.py [--checkpoint checkpoints/vm2rl] [--time-limit 900] [--resets 3]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench._common import ROOT, Benchmark, Check, data_dir, finish, load_result, write_result

BENCHMARKS = (Benchmark("vm2rl_optimum", minutes=50),)
RESULT = "vm2rl_optimum"
MNL_GRID = (10, 20, 30, 40, 50)
# Issue 19: on held-out resets of the medium cluster at MNL 50, best of 8 in <= 3 s: FR <= 0.30.
GOAL_FR = 0.30
GOAL_LATENCY_S = 3.0
ISSUE = 19  # the goal's issue, open while a goal is missed


def check(result: dict) -> list[Check]:
    s = result["summary"]
    return [
        Check(
            f"VM2RL best of {s['k']}, held-out resets of the medium cluster, MNL {s['mnl']}: FR",
            f"{s['vm2rl_best_of_k']:.3f}",
            f"<= {GOAL_FR}",
            s["vm2rl_best_of_k"] <= GOAL_FR,
            open_issue=ISSUE,
        ),
        Check(
            f"VM2RL best of {s['k']}, MNL {s['mnl']}: whole trajectory (machine load {result['loadavg'][0]:.1f})",
            f"{s['vm2rl_best_of_k_latency_s']:.2f} s",
            f"<= {GOAL_LATENCY_S:g} s on 2 cores",
            s["vm2rl_best_of_k_latency_s"] <= GOAL_LATENCY_S,
            open_issue=ISSUE,
        ),
        Check(
            "gap of VM2RL best of K to the proven lower bound (FR points)",
            f"{s['vm2rl_best_of_k'] - s['lower_bound']:+.3f} (bound {s['lower_bound']:.3f})",
            "reported",
            None,
        ),
        Check(
            "gap of VM2RL best of K to the long CP-SAT run's best FR",
            f"{s['vm2rl_best_of_k'] - s['long_cpsat']:+.3f} (long CP-SAT {s['long_cpsat']:.3f})",
            "reported",
            None,
        ),
    ]


def main() -> int:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import numpy as np

    import infragym
    from infragym.envs.cluster.reset import reset_seeds, reset_snapshot
    from infragym.envs.cluster.snapshot import load_vmr2l_snapshot
    from infragym.envs.cluster.state import ClusterState
    from infragym.models.vm2rl.baselines import MIPRescheduler, greedy_policy, sequence_moves
    from infragym.models.vm2rl.lower_bound import fragment_rate_lower_bound
    from infragym.models.vm2rl.policy import OnnxPolicyNet, rollout

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", default=str(ROOT / "checkpoints" / "vm2rl"))
    parser.add_argument("--snapshot", default=str(data_dir() / "vm_snapshots" / "vmr2l_c1_2022-03-28.json"))
    parser.add_argument("--resets", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0, help="run seed of the test resets (odd reset seeds)")
    parser.add_argument("--mnl", type=int, default=50)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--time-limit", type=float, default=900.0, help="long CP-SAT run, seconds per snapshot")
    parser.add_argument("--candidates", type=int, default=24, help="destinations per VM of the long run")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--bound-time-limit", type=float, default=60.0)
    parser.add_argument("--force", action="store_true", help="redo cached long solves")
    args = parser.parse_args()

    predictor = infragym.load(args.checkpoint)
    net = OnnxPolicyNet(*predictor.onnx, threads=2)
    digest = hashlib.sha256(b"".join(predictor.onnx)).hexdigest()[:16]
    base = load_vmr2l_snapshot(args.snapshot)
    cached = (load_result(RESULT) or {}).get("snapshots", {})
    out: dict[str, dict] = {}
    seeds = reset_seeds(args.seed, args.resets, split="test")
    for i, seed in enumerate(seeds):
        name = f"{Path(args.snapshot).stem}_reset{i}"
        snap = reset_snapshot(base, np.random.default_rng(seed), name=name)
        state = ClusterState(snap)
        row: dict = {"reset_seed": seed, "initial": state.fragment_rate(), "fragment_rate": {}, "latency_s": {}}
        t0 = time.perf_counter()
        greedy_plan = greedy_policy(state, args.mnl)
        row["fragment_rate"]["greedy"], row["latency_s"]["greedy"] = state.fragment_rate(), time.perf_counter() - t0
        one = rollout(net, snap, args.mnl, k=1, seed=seed)
        best = rollout(net, snap, args.mnl, k=args.k, seed=seed)
        row["fragment_rate"]["vm2rl"], row["latency_s"]["vm2rl"] = one.fragment_rate, one.wall_s
        row["fragment_rate"]["vm2rl_best_of_k"], row["latency_s"]["vm2rl_best_of_k"] = best.fragment_rate, best.wall_s
        row["vm2rl_checkpoint_sha"] = digest
        # FR vs MNL beside the paper's curve: greedy's plan replayed, VM2RL rerun per budget (its
        # observation holds the budget left).
        state.reset()
        curve = [state.fragment_rate()]
        for move in greedy_plan:
            state.migrate(*move)
            curve.append(state.fragment_rate())
        row["greedy_by_mnl"] = {str(m): curve[min(m, len(curve) - 1)] for m in MNL_GRID}
        row["vm2rl_best_of_k_by_mnl"] = {
            str(m): (best if m == args.mnl else rollout(net, snap, m, k=args.k, seed=seed)).fragment_rate
            for m in MNL_GRID
        }
        # The fast restricted MIP under a time limit (the task's baseline).
        state.reset()
        fast = MIPRescheduler(time_limit_s=10.0, max_candidates=8, workers=args.workers)
        t0 = time.perf_counter()
        fast.build(state, args.mnl, extra_candidates=greedy_plan)
        res = fast.solve(state, args.mnl, hint=greedy_plan)
        row["fragment_rate"]["mip_10s"], row["latency_s"]["mip_10s"] = res.fragment_rate, time.perf_counter() - t0
        # The long run (cached).
        key = {"time_limit_s": args.time_limit, "candidates": args.candidates, "workers": args.workers}
        old = cached.get(name, {}).get("long_cpsat")
        if old and not args.force and old.get("config") == key and old.get("reset_seed") == seed:
            row["long_cpsat"] = old
        else:
            state.reset()
            warm = best.moves if best.fragment_rate <= row["fragment_rate"]["greedy"] else greedy_plan
            long = MIPRescheduler(
                time_limit_s=args.time_limit,
                restrict_destinations=True,
                max_candidates=args.candidates,
                workers=args.workers,
            )
            t0 = time.perf_counter()
            long.build(state, args.mnl, extra_candidates=[*greedy_plan, *best.moves])
            res = long.solve(state, args.mnl, hint=warm)
            wall = time.perf_counter() - t0
            state.reset()
            _applied, stuck = sequence_moves(state, res.moves)
            row["long_cpsat"] = {
                "config": key,
                "reset_seed": seed,
                "fragment_rate": res.fragment_rate,
                "sequenced_fragment_rate": state.fragment_rate(),
                "unsequenced_moves": stuck,
                "moves": len(res.moves),
                "status": res.status,
                "variables": long.n_variables,
                "wall_s": wall,
                "warm_start": "vm2rl" if warm is best.moves else "greedy",
                "warm_start_fragment_rate": min(best.fragment_rate, row["fragment_rate"]["greedy"]),
            }
        row["fragment_rate"]["long_cpsat"] = row["long_cpsat"]["fragment_rate"]
        state.reset()
        bounds = cached.get(name, {}).get("lower_bound", {})
        reuse = not args.force and cached.get(name, {}).get("reset_seed") == seed
        if not (reuse and all(str(m) in bounds for m in MNL_GRID)):  # the bounds need no policy: cached too
            bounds = {}
            for mnl in MNL_GRID:
                lb = fragment_rate_lower_bound(state, mnl, time_limit_s=args.bound_time_limit, workers=args.workers)
                bounds[str(mnl)] = {"fragment_rate": lb.fragment_rate, "status": lb.status, "wall_s": lb.wall_s}
        row["lower_bound"] = bounds
        lower = bounds[str(args.mnl)]["fragment_rate"]
        row["gap_to_lower_bound"] = {m: fr - lower for m, fr in row["fragment_rate"].items()}
        row["gap_to_long_cpsat"] = {
            m: fr - row["long_cpsat"]["fragment_rate"] for m, fr in row["fragment_rate"].items()
        }
        out[name] = row
        print(name, {m: round(v, 4) for m, v in row["fragment_rate"].items()}, "bound", round(lower, 4), flush=True)
        _write(out, args)
    return finish(RESULT, check(load_result(RESULT)))


def _write(out: dict, args: argparse.Namespace) -> None:
    import numpy as np

    rows = list(out.values())

    def mean(f) -> float:
        return float(np.mean([f(r) for r in rows]))

    summary = {
        "mnl": args.mnl,
        "k": args.k,
        "snapshots": len(rows),
        "initial": mean(lambda r: r["initial"]),
        **{m: mean(lambda r, m=m: r["fragment_rate"][m]) for m in rows[0]["fragment_rate"]},
        "vm2rl_best_of_k_latency_s": mean(lambda r: r["latency_s"]["vm2rl_best_of_k"]),
        "lower_bound": mean(lambda r: r["lower_bound"][str(args.mnl)]["fragment_rate"]),
        "lower_bound_by_mnl": {m: mean(lambda r, m=m: r["lower_bound"][str(m)]["fragment_rate"]) for m in MNL_GRID},
        "greedy_by_mnl": {m: mean(lambda r, m=m: r["greedy_by_mnl"][str(m)]) for m in MNL_GRID},
        "vm2rl_best_of_k_by_mnl": {m: mean(lambda r, m=m: r["vm2rl_best_of_k_by_mnl"][str(m)]) for m in MNL_GRID},
        # VM2RL, EuroSys'25, FR vs MNL on the medium cluster (initial 0.555; read off its figure)
        "paper_vm2rl_by_mnl": {10: 0.483, 20: 0.42, 30: 0.36, 40: 0.322, 50: 0.296},
    }
    write_result(
        RESULT,
        {
            "checkpoint": os.path.relpath(args.checkpoint, ROOT),
            "summary": summary,
            "snapshots": out,
            "loadavg": list(os.getloadavg()),
            "note": "CP-SAT time limits are wall-clock on a 2-core machine shared with other jobs",
        },
    )


if __name__ == "__main__":
    sys.exit(main())
