"""Does the number of training *applications* decide who generalises? (never reads a test split)

The leave-applications-out study (``studies/cloudformer_appval.py``) trains on 7 named
applications and validates on 3 held-out ones; ridge beats CloudFormer there. This study asks
whether that is because 7 applications are too few to learn what transfers. With the same
simulator, the same number of training tasks (42 of 300 s, windows every 2 s) and the same
held-out named applications, it trains every model on either

- ``named``: the fold's 7 named training applications, 6 tasks each (the appval set-up), or
- ``random``: 42 *random* application families, one task each: demand, sensitivity, phases,
  phase multipliers and burstiness drawn uniformly over the ranges the 13 named families span
  (``random_families``). Their neighbours are named families, as for every target.

and evaluates on the fold's 3 held-out named applications (10 tasks each, windows every 10 s;
the same traces for both arms). The default experiment's unseen test applications are never
simulated. Ridge chooses its alpha and span on held-out tasks of its own arm's families (14
tasks). The networks train through the shipped LightningModule and a Lightning Trainer with
the shipped recipe (``cloudformer_appval.train``). One torch thread.

    OMP_NUM_THREADS=1 python studies/cloudformer_diversity.py --seed 0 --fold 0 \
        --out studies/results/cloudformer_diversity.jsonl

This is a study of the simulator's data, not a training option: a user of the real
CloudPerfTrace has its 11 applications and no way to draw more.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch
from _lightning import compose_train

from infragym.datasets.cloudperf import TraceSet
from infragym.envs.colocation.simulator import ColocationSimulator

TRAIN_TASKS, VAL_TASKS, EVAL_TASKS_PER_APP = 42, 14, 10


def random_families(simulator: ColocationSimulator, n: int, rng: np.random.Generator) -> np.ndarray:
    """Append ``n`` random families to ``simulator``'s family tables; return their indices.

    Each parameter is drawn uniformly over the range the named families span (demand 0.05-0.60
    and sensitivity 0.1-1.6 per resource, 2-4 phases of 35-120 s mean, burstiness 0.05-0.25,
    phase multipliers 0.5-1.5 as for the named ones)."""
    first = len(simulator._demand)
    simulator._demand = np.vstack([simulator._demand, rng.uniform(0.05, 0.60, (n, 6))])
    simulator._sens = np.vstack([simulator._sens, rng.uniform(0.1, 1.6, (n, 6))])
    simulator._phases = np.concatenate([simulator._phases, rng.integers(2, 5, n)])
    simulator._phase_s = np.concatenate([simulator._phase_s, rng.uniform(35.0, 120.0, n)])
    simulator._burst = np.concatenate([simulator._burst, rng.uniform(0.05, 0.25, n)])
    simulator._phase_mult = np.concatenate([simulator._phase_mult, rng.uniform(0.5, 1.5, (n, 4, 6))])
    return np.arange(first, first + n)


def simulate(
    simulator: ColocationSimulator, family_ids: np.ndarray, names: list[str], rng: np.random.Generator
) -> TraceSet:
    """One task per entry of ``family_ids`` (indices into the simulator's family tables)."""
    from infragym.datasets.cloudperf import trace_set
    from infragym.envs.colocation.simulator import GROUPS, Traces

    dynamic = rng.random(len(family_ids)) < simulator.dynamic_fraction
    lat, perf, active = simulator.latents(rng, family_ids, dynamic)
    own, others = lat[:, 0], lat[:, 1:].sum(axis=1)
    metrics = {g: simulator._observe(g, own if g.endswith("_self") else others, rng) for g in GROUPS}
    traces = Traces(metrics, perf[:, 0].astype(np.float32), np.array(names), np.where(dynamic, "dynamic", "static"),
                    active[:, 1:].sum(axis=1), simulator.catalogue.names)  # fmt: skip
    return trace_set(traces)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fold", type=int, default=0, help="which 3 training applications are held out (as appval)")
    parser.add_argument("--variants", nargs="+", default=["ridge_span", "base", "arch=temporal"])
    parser.add_argument("--arms", nargs="+", default=["named", "random"])
    parser.add_argument("--out", type=Path, default=None, help="append one JSON line per arm and variant")
    args = parser.parse_args()
    torch.set_num_threads(1)
    import cloudformer_appval as appval
    from hydra.utils import instantiate

    from infragym.datasets.cloudperf import Normaliser, make_windows
    from infragym.envs.colocation.simulator import WORKLOADS

    with tempfile.TemporaryDirectory() as tmp:
        cfg = compose_train(["experiment=cloudformer", f"seed={args.seed}", "logger=none"], Path(tmp))
    simulator = instantiate(cfg.env)
    window, unseen = int(cfg.dataset.window), list(cfg.dataset.unseen_workloads)
    # The appval fold's held-out applications (the same draw as studies/cloudformer_appval.py).
    apps = sorted(set(WORKLOADS) - set(unseen))
    held = [str(a) for a in np.random.default_rng(1000 * args.seed + args.fold).choice(apps, size=3, replace=False)]
    named = [a for a in apps if a not in held]
    rng = np.random.default_rng(10_000 + 100 * args.seed + args.fold)
    families = random_families(simulator, TRAIN_TASKS + VAL_TASKS, rng)
    held_ids = np.repeat([WORKLOADS.index(a) for a in held], EVAL_TASKS_PER_APP)
    evaluation = simulate(simulator, held_ids, [WORKLOADS[i] for i in held_ids], rng)
    per_app = TRAIN_TASKS // len(named)
    named_ids = np.repeat([WORKLOADS.index(a) for a in named], per_app + VAL_TASKS // len(named))
    arms = {
        "named": (named_ids, [WORKLOADS[i] for i in named_ids]),
        "random": (families, [f"random_{i:03d}" for i in range(len(families))]),
    }
    print(f"held-out applications {held}", flush=True)
    for arm in args.arms:
        ids, names = arms[arm]
        traces = simulate(simulator, ids, names, rng)
        if arm == "named":  # per application: the first `per_app` tasks train, the rest validate
            rank = np.concatenate([np.arange(per_app + VAL_TASKS // len(named))] * len(named))
            train_tasks, val_tasks = np.flatnonzero(rank < per_app), np.flatnonzero(rank >= per_app)
        else:
            train_tasks, val_tasks = np.arange(TRAIN_TASKS), np.arange(TRAIN_TASKS, TRAIN_TASKS + VAL_TASKS)
        normaliser = Normaliser.fit(np.concatenate([traces.metrics[i] for i in train_tasks]))
        kw = {"window": window, "horizon": 0, "normaliser": normaliser}
        train_w = make_windows(traces, train_tasks, stride=2, **kw)
        vals = {
            "val_apps": make_windows(evaluation, np.arange(len(held_ids)), stride=10, **kw),
            "val_tasks": make_windows(traces, val_tasks, stride=10, **kw),
        }
        print(f"arm {arm}: {len(train_w)} training windows from {len(set(names))} families", flush=True)
        group_sizes = list(traces.group_sizes.values())
        for variant in args.variants:
            result = appval.run_variant(variant, train_w, vals, group_sizes, window, args.seed)
            appval.emit({"arm": arm, "variant": variant, "seed": args.seed, "fold": args.fold, "held_out": held,
                         **result}, args.out)  # fmt: skip


if __name__ == "__main__":
    main()
