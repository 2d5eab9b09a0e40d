"""``python train.py experiment=elastic_moe`` end to end, timed, and the SLO-attainment vs
device-hours frontier on held-out Azure code windows: static levels (every pool size), the
reactive autoscaler's and the predictive autoscaler's parameter grids, and the learned policy
(its export, loaded as a production service would), and PPO retrained with pricier devices
(``LEARNED_COSTS``) for more learned points.

    python bench/elastic_moe/experiment.py
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench._common import Benchmark, Check, finish, timed_train, write_result

BENCHMARKS = (Benchmark("elastic_moe_experiment", minutes=10),)
RESULT = "elastic_moe_experiment"
GOAL_WALL_S = 600.0  # issue 16: each experiment end to end in <= 10 minutes on 2 cores
LEARNED_COSTS = (0.06, 0.15)  # more PPO runs with pricier devices trace the learned frontier
POLICIES = ("static_peak", "reactive", "predictive", "learned", "reactive_restart", "reactive_replica")


def check(result: dict) -> list[Check]:
    wall = result["wall_s"]
    m = result["metrics"]
    checks = [
        Check(
            "python train.py experiment=elastic_moe",
            f"{wall:.0f} s (load {result['loadavg'][0]:.1f})",
            f"<= {GOAL_WALL_S:.0f} s",
            wall <= GOAL_WALL_S,
            open_issue=16,
        ),
    ]
    for policy in POLICIES:
        if f"test/{policy}/slo_attainment" in m:
            checks.append(
                Check(
                    f"{policy}: SLO attainment / device-hours",
                    f"{m[f'test/{policy}/slo_attainment']:.3f} / {m[f'test/{policy}/device_hours']:.3f}",
                    "",
                    None,
                )
            )
    return checks


def frontier(export: Path, seeds: int) -> dict[str, list[dict[str, float]]]:
    import numpy as np

    from infragym import load
    from infragym.envs.elastic.env import TEST_SEED_BASE, ElasticServingEnv
    from infragym.envs.elastic.policies import PredictiveMA, ReactiveThreshold, StaticPeak
    from infragym.models.elastic_moe.task import TEST_SPLIT, env_like, run_episode

    base = ElasticServingEnv(split=TEST_SPLIT, code_speedup=2.0)

    def point(env, policy, **params) -> dict[str, float]:
        runs = [run_episode(env, policy, TEST_SEED_BASE + i) for i in range(seeds)]
        return {**params, **{k: float(np.mean([r[k] for r in runs])) for k in ("slo_attainment", "device_hours")}}

    out: dict[str, list[dict[str, float]]] = {"static": [], "reactive": [], "predictive": [], "learned": []}
    for level in base.levels:
        out["static"].append(point(env_like(base, initial_devices=level), StaticPeak(level), devices=level))
    for up in (0.6, 0.7, 0.85, 0.95):
        for down in (0.2, 0.3, 0.5):
            out["reactive"].append(
                point(
                    base,
                    ReactiveThreshold(up_busy=up, up_queue=0.5, down_busy=down, patience=6),
                    up_busy=up,
                    down_busy=down,
                )
            )
    for util in (0.15, 0.3, 0.45, 0.6, 0.8):
        policy = PredictiveMA(base.capacity_tokens_s, base.pool, target_utilisation=util, window=6)
        out["predictive"].append(point(base, policy, target_utilisation=util))
    out["learned"].append(point(base, load(export)))
    return out


def learned_point(device_cost: float, seeds: int) -> dict[str, float]:
    """PPO trained with another device cost (the reward's price of a device), on the frontier."""
    import numpy as np

    from infragym import load
    from infragym.envs.elastic.env import TEST_SEED_BASE, ElasticServingEnv
    from infragym.models.elastic_moe.task import TEST_SPLIT, run_episode

    overrides = [
        "experiment=elastic_moe",
        f"env.device_cost={device_cost}",
        "task.policies=[static_peak,learned]",
        "task.workloads=[azure_code]",
        "task.progress_bar=false",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        timed_train(overrides, Path(tmp))
        policy = load(Path(tmp) / "run" / "export")
        env = ElasticServingEnv(split=TEST_SPLIT, code_speedup=2.0)
        runs = [run_episode(env, policy, TEST_SEED_BASE + i) for i in range(seeds)]
    return {
        "device_cost": device_cost,
        **{k: float(np.mean([r[k] for r in runs])) for k in ("slo_attainment", "device_hours")},
    }


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        seconds, metrics = timed_train(["experiment=elastic_moe", "task.progress_bar=false"], Path(tmp))
        points = frontier(Path(tmp) / "run" / "export", seeds=4)
    points["learned"][0]["device_cost"] = 0.02
    points["learned"] += [learned_point(cost, seeds=4) for cost in LEARNED_COSTS]
    headline = {k: v for k, v in metrics.items() if k.startswith(("test", "train/"))}
    print(f"python train.py experiment=elastic_moe: {seconds:.0f} s")
    result = {"wall_s": seconds, "metrics": headline, "frontier": points, "loadavg": os.getloadavg()}
    write_result(RESULT, result)
    return finish(RESULT, check(result))


if __name__ == "__main__":
    sys.exit(main())
