"""sb3-contrib MaskablePPO on the flat masked action vs VM2RL, greedy and random, on held-out
small snapshots (40 PMs / 300 VMs; the flat space has V x 3P = 36,000 actions there).

MaskablePPO's MLP sees one cluster size only, so it is trained and tested on small snapshots
(fresh generated ones each episode, as VM2RL); the medium cluster's flat space (1.75M actions)
is out of its reach. VM2RL is the shipped checkpoint (trained on small snapshots too).

    python bench/vm2rl/maskable_ppo.py [--steps 60000] [--checkpoint checkpoints/vm2rl]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

# Run as a script, this file's folder is on sys.path, not the checkout: put the checkout there
# so that the suite's shared helpers import as ``bench._common``.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench._common import ROOT, Benchmark, Check, finish, write_result

BENCHMARKS = (Benchmark("vm2rl_maskable_ppo", minutes=20),)

RESULT = "vm2rl_maskable_ppo"  # a comparison the issue asked to report; no goal


def check(result: dict) -> list[Check]:
    fr = result["mean_fragment_rate"]
    return [
        Check(
            f"mean FR at MNL {result['mnl']} on {result['n_test']} small snapshots",
            ", ".join(f"{k} {v:.3f}" for k, v in fr.items()),
            "reported",
            None,
        )
    ]


def main() -> int:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import numpy as np
    import torch
    from sb3_contrib import MaskablePPO

    import infragym
    from infragym.envs.cluster import ClusterState, VMRescheduleEnv, generate_snapshot
    from infragym.models.vm2rl.baselines import greedy_policy, random_policy
    from infragym.seeding import child_seeds

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=60_000)
    parser.add_argument("--mnl", type=int, default=20)
    parser.add_argument("--n-test", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoint", default=str(ROOT / "checkpoints" / "vm2rl"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    env = VMRescheduleEnv(preset="small", resample_on_reset=True, max_migrations=args.mnl, action_mode="flat")
    model = MaskablePPO("MultiInputPolicy", env, n_steps=256, batch_size=64, seed=args.seed, verbose=0)
    started = time.perf_counter()
    model.learn(args.steps)
    train_s = time.perf_counter() - started
    predictor = infragym.load(args.checkpoint) if os.path.isdir(args.checkpoint) else None
    fr: dict[str, list[float]] = {"initial": [], "random": [], "greedy": [], "maskable_ppo": []}
    if predictor is not None:
        fr["vm2rl"] = []
    for i, seed in enumerate(child_seeds(args.seed + 31_337, args.n_test)):
        snapshot = generate_snapshot("small", np.random.default_rng(seed), name=f"small_test_{i}")
        state = ClusterState(snapshot)
        fr["initial"].append(state.fragment_rate())
        random_policy(state, args.mnl, np.random.default_rng(seed))
        fr["random"].append(state.fragment_rate())
        state.reset()
        greedy_policy(state, args.mnl)
        fr["greedy"].append(state.fragment_rate())
        test_env = VMRescheduleEnv(snapshot=snapshot, max_migrations=args.mnl, action_mode="flat")
        obs, info = test_env.reset(seed=seed)
        done = False
        while not done:
            action, _ = model.predict(obs, action_masks=test_env.action_masks(), deterministic=True)
            obs, _, done, _, info = test_env.step(action)
        fr["maskable_ppo"].append(info["fragment_rate"])
        if predictor is not None:
            fr["vm2rl"].append(predictor.plan(snapshot, args.mnl, k=1).fragment_rate)
    summary = {k: float(np.mean(v)) for k, v in fr.items()}
    print(f"MaskablePPO: {args.steps} steps in {train_s:.0f} s; mean FR at MNL {args.mnl}: {summary}")
    result = {
        "steps": args.steps,
        "train_s": train_s,
        "mnl": args.mnl,
        "seed": args.seed,
        "n_test": args.n_test,
        "mean_fragment_rate": summary,
        "per_snapshot": fr,
        "note": "timed on a machine shared with other jobs unless stated otherwise",
    }
    write_result(RESULT, result)
    return finish(RESULT, check(result))


if __name__ == "__main__":
    sys.exit(main())
