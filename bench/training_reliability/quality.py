"""Training-cluster reliability benchmarks (issue 17): the simulator's calibration and each
paper's direction with its mechanism, over held-out failure seeds (95% bootstrap CIs).

1. ETTR at Llama 3's rates (16,384 GPUs, 54 days) with synchronous checkpoints every 100
   iterations and the 10-minute NCCL watchdog: the paper reports ~90%.
2. Young/Daly vs the simulated optimum: a sweep of fixed synchronous intervals on the
   exponential scenario (Young/Daly's assumptions hold), and the same on ``weibull_hetero``.
3. Mechanisms, each against the same infrastructure without it (common random numbers):
   C4's collective-timing detection (failure-induced overhead, paper ~30% less); DataStates'
   lazy copy (stall per checkpoint, paper up to 48x faster; end to end); in-memory EC (saving
   speed, paper > 14x; survival of m node losses and loss beyond m); MegaScale's communicator
   init (1,047 s -> 5 s at 2,048 GPUs) and diagnosis; CheckFree's time to target loss at
   5-10%/h stage failures (paper > 12% faster) on generated schedules and the shipped ones.
4. AcmeTrace cross-check of the per-GPU failure rate.

    python bench/training_reliability/quality.py [--seeds 5]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench._common import Benchmark, Check, data_dir, finish, write_result

BENCHMARKS = (Benchmark("training_reliability_quality", minutes=6),)
RESULT = "training_reliability_quality"
ISSUE = 17
# Issue 17 goals:
GOAL_ETTR = (0.85, 0.95)  # "ETTR near the reported ~90%"
GOAL_YOUNG_DALY_GAP = 0.005  # Young/Daly's ETTR within 0.5 points of the sweep's best (assumptions hold)
SWEEP_S = (60, 120, 180, 270, 400, 600, 900, 1350, 2000)


def _ci(values: list[float]) -> dict[str, float]:
    from infragym.evaluation import bootstrap_ci

    return bootstrap_ci(values).as_dict()


def check(result: dict) -> list[Check]:
    ettr = result["ettr_llama3"]["sync_watchdog"]["mean"]
    sweep = result["young_daly_vs_optimum"]["llama3"]
    gap = sweep["best_ettr"] - sweep["daly_ettr"]
    mech = result["mechanisms"]
    cf = result["checkfree"]
    checks = [
        Check(
            "ETTR, Llama 3 rates, sync checkpoints + 10-min watchdog",
            f"{ettr:.3f}",
            f"{GOAL_ETTR[0]}-{GOAL_ETTR[1]} (paper ~0.90)",
            GOAL_ETTR[0] <= ettr <= GOAL_ETTR[1],
        ),
        Check(
            "Daly interval vs simulated optimum (exponential)",
            f"{sweep['daly_interval_s']:.0f} s vs best {sweep['best_interval_s']:.0f} s, ETTR gap {gap:.4f}",
            f"gap <= {GOAL_YOUNG_DALY_GAP}",
            gap <= GOAL_YOUNG_DALY_GAP,
        ),
        Check(
            "C4 detection: failure-induced overhead vs watchdog",
            f"{100 * mech['c4']['overhead_cut']:.0f}% less",
            "less (paper ~30%)",
            mech["c4"]["overhead_cut"] > 0,
        ),
        Check(
            "DataStates lazy copy: stall per checkpoint vs sync",
            f"{mech['datastates']['stall_speedup']:.0f}x faster",
            "faster (paper up to 48x)",
            mech["datastates"]["stall_speedup"] > 1,
        ),
        Check(
            "In-memory EC: saving vs remote storage",
            f"{mech['inmemory_ec']['save_speedup']:.0f}x faster",
            "> 14x (paper)",
            mech["inmemory_ec"]["save_speedup"] > 14,
        ),
        Check(
            "In-memory EC: survives m losses, not m+1",
            f"{mech['inmemory_ec']['peer_restores_m']:.0f} peer restores at m, "
            f"{mech['inmemory_ec']['peer_restores_beyond_m']:.0f} beyond m",
            "restores at m, none beyond",
            mech["inmemory_ec"]["peer_restores_m"] > 0 and mech["inmemory_ec"]["peer_restores_beyond_m"] == 0,
        ),
    ]
    for rate, r in cf["generated"].items():
        checks.append(
            Check(
                f"CheckFree+ time to target at {rate}/h vs best baseline",
                f"{100 * r['gain_vs_best_baseline']['mean']:.1f}% faster",
                "> 12% (paper)",
                r["gain_vs_best_baseline"]["mean"] > 0.12,
                open_issue=ISSUE,
            )
        )
    return checks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    import numpy as np

    from infragym.envs.training import calibration as cal
    from infragym.envs.training.acmetrace import cross_check, load_cluster_summary
    from infragym.envs.training.checkfree import compare_strategies, generate_schedule, load_failure_schedule
    from infragym.envs.training.failures import SCENARIOS, FailureSpec
    from infragym.envs.training.simulator import LOSSES
    from infragym.envs.training.strategies import (
        POLICIES,
        fixed_interval_strategy,
        make_simulator,
        run_rule,
        strategies,
        young_daly_interval,
    )
    from infragym.envs.training.tiers import INMEMORY_EC, LAZY, SYNC, build_tiers
    from infragym.models.training_reliability.task import TEST_SEED_BASE

    job = cal.JobSpec()
    horizon = cal.LLAMA3_DAYS * cal.DAY
    seeds = [TEST_SEED_BASE + 500_000 + i for i in range(args.seeds)]
    named = strategies(job)

    def runs(strategy, spec):  # type: ignore[no-untyped-def]
        out = []
        for seed in seeds:
            sim = make_simulator(job, spec, strategy, horizon_s=horizon, seed=seed)
            out.append((run_rule(sim, strategy.rule), sim))
        return out

    result: dict = {"seeds": seeds, "job": {"gpus": job.n_gpus, "step_s": job.step_s, "mtbi_h": job.mtbi_s / 3600}}
    # 1 + per-policy table on both scenarios
    table: dict = {}
    for scenario in ("llama3", "weibull_hetero"):
        table[scenario] = {}
        for name in (*POLICIES, "checkfree_plus", "sync_watchdog_slow_init"):
            rs = [r for r, _ in runs(named[name], SCENARIOS[scenario])]
            table[scenario][name] = {
                "ettr": _ci([r["ettr"] for r in rs]),
                **{f"lost_hours_{k}": float(np.mean([r[f"lost_hours_{k}"] for r in rs])) for k in LOSSES},
                "failures": float(np.mean([r["failures"] for r in rs])),
                "checkpoints": float(np.mean([r["checkpoints"] for r in rs])),
            }
            print(scenario, name, f"{table[scenario][name]['ettr']['mean']:.4f}", flush=True)
    result["ettr_llama3"] = {k: v["ettr"] for k, v in table["llama3"].items()}
    result["policies"] = table
    # 2 Young/Daly vs sweep
    sweeps: dict = {}
    for scenario in ("llama3", "weibull_hetero"):
        curve = {}
        for interval in SWEEP_S:
            rs = [r for r, _ in runs(fixed_interval_strategy(job, float(interval), SYNC), SCENARIOS[scenario])]
            curve[str(interval)] = float(np.mean([r["ettr"] for r in rs]))
        daly_i = young_daly_interval(job, SYNC)
        young_i = young_daly_interval(job, SYNC, daly=False)
        daly_e = float(
            np.mean([r["ettr"] for r, _ in runs(fixed_interval_strategy(job, daly_i, SYNC), SCENARIOS[scenario])])
        )
        young_e = float(
            np.mean([r["ettr"] for r, _ in runs(fixed_interval_strategy(job, young_i, SYNC), SCENARIOS[scenario])])
        )
        best = max(curve, key=curve.__getitem__)
        sweeps[scenario] = {
            "curve": curve,
            "daly_interval_s": daly_i,
            "young_interval_s": young_i,
            "daly_ettr": daly_e,
            "young_ettr": young_e,
            "best_interval_s": float(best),
            "best_ettr": max(curve[best], daly_e, young_e),
        }
        print(scenario, "sweep", sweeps[scenario], flush=True)
    result["young_daly_vs_optimum"] = sweeps
    # 3 mechanisms
    tiers = build_tiers(job)
    pol = table["llama3"]

    def failure_overhead(p: dict) -> float:
        return sum(p[f"lost_hours_{k}"] for k in ("detection", "diagnosis", "restart", "rollback"))

    mech = {
        "c4": {
            "overhead_hours_watchdog": failure_overhead(pol["young_daly"]),
            "overhead_hours_c4": failure_overhead(pol["c4"]),
            "overhead_cut": 1 - failure_overhead(pol["c4"]) / failure_overhead(pol["young_daly"]),
            "detection_s": cal.C4_DETECT_ITERATIONS * job.step_s,
            "watchdog_s": cal.WATCHDOG_S,
            "false_alarm_hours": pol["c4"]["lost_hours_false_alarm"],
        },
        "datastates": {
            "stall_sync_s": tiers[SYNC].stall_s,
            "stall_lazy_s": tiers[LAZY].stall_s,
            "stall_speedup": tiers[SYNC].stall_s / tiers[LAZY].stall_s,
            "checkpoint_and_rollback_hours_sync": pol["young_daly"]["lost_hours_checkpoint_stall"]
            + pol["young_daly"]["lost_hours_rollback"],
            "checkpoint_and_rollback_hours_lazy": pol["datastates"]["lost_hours_checkpoint_stall"]
            + pol["datastates"]["lost_hours_rollback"],
            "ettr_sync": pol["young_daly"]["ettr"]["mean"],
            "ettr_lazy": pol["datastates"]["ettr"]["mean"],
        },
        "megascale": {
            "restart_hours_slow_init": pol["sync_watchdog_slow_init"]["lost_hours_restart"],
            "restart_hours_fast_init": pol["sync_watchdog"]["lost_hours_restart"],
            "comm_init_slow_s": job.comm_init_s(fast=False),
            "comm_init_fast_s": job.comm_init_s(fast=True),
            "straggler_hours_sync": pol["sync_watchdog"]["lost_hours_straggler"],
            "straggler_hours_megascale": pol["megascale"]["lost_hours_straggler"],
        },
    }
    # In-memory EC: saving speed and survival (every node-losing failure takes m or m + 1 nodes).
    ec = named["inmemory_ec"]
    restores = {}
    for label, multi in (("peer_restores_m", 0.0), ("peer_restores_beyond_m", 1.0)):
        spec = FailureSpec(multi_node_fraction=multi)
        count, rollback = 0, []
        for seed in seeds[:2]:
            sim = make_simulator(job, spec, ec, horizon_s=horizon, seed=seed)
            run_rule(sim, ec.rule)
            count += sim.log.restores.get("peer", 0)
            rollback.append(sim.lost["rollback"] / 3600)
        restores[label] = float(count)
        restores[label.replace("peer_restores", "rollback_hours")] = float(np.mean(rollback))
    mech["inmemory_ec"] = {
        "save_remote_s": tiers[SYNC].stall_s,
        "save_inmemory_s": tiers[INMEMORY_EC].stall_s,
        "save_speedup": tiers[SYNC].stall_s / tiers[INMEMORY_EC].stall_s,
        "ec": f"k={cal.EC_DATA_SHARDS}, m={cal.EC_PARITY_SHARDS}",
        **restores,
    }
    result["mechanisms"] = mech
    print("mechanisms", mech, flush=True)
    # CheckFree
    rng = np.random.default_rng(17)
    cf: dict = {"generated": {}, "shipped": {}}
    for hourly in (0.05, 0.10):
        per_it = cal.CHECKFREE_HOURLY_TO_ITERATION[hourly]
        schedules = [generate_schedule(7, per_it, 500, rng) for _ in range(50)]
        times = compare_strategies(schedules)
        best_base = np.minimum(times["checkpointing"], times["redundant"])
        gain = 1 - np.asarray(times["checkfree_plus"]) / best_base
        gain_cf = 1 - np.asarray(times["checkfree"]) / best_base
        cf["generated"][f"{int(hourly * 100)}%"] = {
            "per_iteration": per_it,
            "mean_iterations": {k: float(np.mean(v)) for k, v in times.items()},
            "gain_vs_best_baseline": _ci(gain.tolist()),
            "gain_checkfree_vs_best_baseline": _ci(gain_cf.tolist()),
        }
    folder = data_dir() / "training_clusters" / "checkfree_failure_schedules"
    if folder.is_dir():
        for path in sorted(folder.glob("*.json")):
            times = compare_strategies([load_failure_schedule(path)])
            cf["shipped"][path.name] = {k: float(v[0]) for k, v in times.items()}
    result["checkfree"] = cf
    print("checkfree", cf, flush=True)
    summary = data_dir() / "training_clusters" / "acmetrace_cluster_summary.csv"
    if summary.is_file():
        result["acmetrace"] = cross_check(load_cluster_summary(summary))
    result["loadavg"] = os.getloadavg()
    write_result(RESULT, result)
    return finish(RESULT, check(result))


if __name__ == "__main__":
    sys.exit(main())
