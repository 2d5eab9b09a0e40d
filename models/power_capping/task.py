"""POLCA's experiment: how many more servers fit in a row's power budget at a given loss.

``fit`` tunes the baselines' parameters (POLCA's thresholds and caps, the static caps) on the
training part of the traces, then trains PPO (SB3, ``MultiDiscrete`` caps per priority class,
vector envs, progress bar) on the same part with the oversubscription drawn per episode, and
exports it to ONNX. ``evaluate`` replays held-out windows of the traces (the last 40% of each)
at the training load and at held-out loads: for each policy and each oversubscription ``x`` of
the grid (``n_base x (1 + x)`` servers), the p99 end-to-end latency of each priority class is
compared with the same servers and requests run uncapped with unlimited power. A policy
"fits" ``x`` if on every test run there is no power-brake event and the p99 increase is at
most ``max_p99_increase`` for high priority (``max_p99_increase_low`` for low priority);
``extra_servers_frac`` is the largest ``x`` it fits, with every smaller ``x`` of the grid.
POLCA reports 30% more servers with minimal loss (arXiv 2308.12908).
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from infragym.envs.power.env import OBS_NAMES, PowerCappingEnv
from infragym.envs.power.policies import PolcaRule, StaticCaps, Uncapped
from infragym.envs.power.row import CLOCK_LEVELS
from infragym.evaluation import average_over_seeds, method_metrics, results_table
from infragym.export import write_export
from infragym.logging import RunLogger
from infragym.models.power_capping.export import DiscretePolicy, export_onnx, schemas
from infragym.ppo_config import ppo_keywords
from infragym.sb3_callbacks import episode_logger
from infragym.task import EvaluationReport

log = logging.getLogger(__name__)
COMPONENT = "power_capping"
POLICIES = ("no_oversubscription", "uncapped", "static", "polca", "learned")
TEST_SEED_BASE = 2**30  # held-out episodes draw their windows from seeds above it
TRAIN_SPLIT, TEST_SPLIT = (0.0, 0.6), (0.6, 1.0)


def env_like(env: PowerCappingEnv, **changes: Any) -> PowerCappingEnv:
    """A copy of ``env``'s configuration with ``changes``."""
    kwargs = {
        "n_base": env.n_base,
        "oversubscription": env.oversubscription,
        "low_priority_share": env.low_priority_share,
        "rates": env.rates,
        "horizon_s": env.horizon_s,
        "tick_s": env.tick_s,
        "decision_s": env.decision_s,
        "diurnal_amplitude": env.diurnal_amplitude,
        "split": env.split,
        "ttft_slo_s": env.ttft_slo_s,
        "tpot_slo_s": env.tpot_slo_s,
        "violation_weight": env.violation_weight,
        "brake_penalty": env.brake_penalty,
        "cap_penalty": env.cap_penalty,
        "unlimited_power": env.unlimited_power,
        "max_running": env.max_running,
        "data_dir": env.data_dir,
    }
    kwargs.update(changes)
    return PowerCappingEnv(**kwargs)


def run_episode(env: PowerCappingEnv, policy: Any, seed: int, x: float) -> dict[str, float]:
    """One episode at oversubscription ``x``; the row's metrics."""
    obs, _ = env.reset(seed=seed, options={"oversubscription": x})
    policy.reset()
    done = False
    total = 0.0
    while not done:
        obs, reward, terminated, truncated, _ = env.step(policy.act(obs))
        total += reward
        done = terminated or truncated
    out = env.row.metrics()
    out["return"] = total
    return out


@dataclasses.dataclass(frozen=True)
class Condition:
    """One test run's workload: a seed (trace windows) and a load factor."""

    seed: int
    load: float


class Evaluator:
    """Runs policies against the uncapped, unlimited-power reference of the same workload."""

    def __init__(self, env: PowerCappingEnv, split: tuple[float, float], max_high: float, max_low: float) -> None:
        self.env, self.split = env, split
        self.max_high, self.max_low = max_high, max_low
        self._envs: dict[float, tuple[PowerCappingEnv, PowerCappingEnv]] = {}
        self._refs: dict[tuple[Condition, float], dict[str, float]] = {}
        self._runs: dict[tuple[int, Condition, float], dict[str, float]] = {}
        self._keep: list[Any] = []

    def _pair(self, load: float) -> tuple[PowerCappingEnv, PowerCappingEnv]:
        if load not in self._envs:
            rates = tuple(r * load for r in self.env.rates)
            self._envs[load] = (
                env_like(self.env, rates=rates, split=self.split),
                env_like(self.env, rates=rates, split=self.split, unlimited_power=True),
            )
        return self._envs[load]

    def run(self, policy: Any, cond: Condition, x: float) -> dict[str, float]:
        """One run of ``policy`` (cached per policy object, condition and ``x``)."""
        cached = self._runs.get((id(policy), cond, x))
        if cached is not None:
            return cached
        capped, free = self._pair(cond.load)
        key = (cond, x)
        if key not in self._refs:
            self._refs[key] = run_episode(free, Uncapped(), cond.seed, x)
        ref = self._refs[key]
        got = run_episode(capped, policy, cond.seed, x)
        got["p99_increase_high"] = got["high/p99_e2e_s"] / ref["high/p99_e2e_s"] - 1.0
        got["p99_increase_low"] = got["low/p99_e2e_s"] / ref["low/p99_e2e_s"] - 1.0
        got["fits"] = float(
            got["brake_events"] == 0
            and got["p99_increase_high"] <= self.max_high
            and got["p99_increase_low"] <= self.max_low
        )
        self._runs[(id(policy), cond, x)] = got
        self._keep.append(policy)  # keeps the id() of a cached policy from being reused
        return got

    def extra_servers(self, policy: Any, conditions: Sequence[Condition], grid: Sequence[float]) -> float:
        """The largest ``x`` of ``grid`` (ascending) that the policy fits on every condition."""
        best = 0.0
        for x in grid:
            if x == 0.0:
                continue
            if not all(self.run(policy, c, x)["fits"] for c in conditions):
                break
            best = x
        return best


class PowerCappingTask:
    """Reinforcement-learning Task for power oversubscription (see the module docstring).

    Args:
        env: the training env (its row, loads, control period, reward weights).
        seed: the run seed.
        ppo: SB3 PPO settings (``total_steps, n_envs, n_steps, batch_size, n_epochs,
            learning_rate, gamma, ent_coef, net_arch``).
        oversubscription_grid: the ``x`` values searched (ascending, from 0).
        headline_x: the oversubscription at which per-policy latencies are reported (POLCA: 0.3).
        max_p99_increase, max_p99_increase_low: the allowed p99 latency increase per class.
        eval_seeds: held-out trace windows; ``test_loads``: load factors (1.0: the training load).
        tune_seeds: training windows the baselines' parameters are chosen on.
        policies: which of ``POLICIES`` to evaluate.
    """

    def __init__(
        self,
        *,
        env: PowerCappingEnv,
        seed: int = 0,
        ppo: Mapping[str, Any] | None = None,
        oversubscription_grid: Sequence[float] = tuple(np.round(np.arange(0.0, 0.55, 0.05), 2)),
        headline_x: float = 0.3,
        max_p99_increase: float = 0.05,
        max_p99_increase_low: float = 0.25,
        eval_seeds: int = 3,
        test_loads: Sequence[float] = (1.0, 1.15),
        tune_seeds: int = 2,
        policies: Sequence[str] = POLICIES,
        torch_threads: int = 1,
        progress_bar: bool = True,
    ) -> None:
        unknown = set(policies) - set(POLICIES)
        if unknown:
            raise ValueError(f"task.policies: unknown {sorted(unknown)}; choose from {list(POLICIES)}")
        grid = [float(x) for x in oversubscription_grid]
        if not grid or grid[0] != 0.0 or grid != sorted(grid):
            raise ValueError("task.oversubscription_grid must be ascending and start at 0")
        if eval_seeds < 1 or tune_seeds < 1 or not test_loads:
            raise ValueError("task.eval_seeds, task.tune_seeds and task.test_loads must be non-empty")
        self.env = env
        self.seed = int(seed)
        self.ppo = {
            "total_steps": 40_000,
            "n_envs": 4,
            "n_steps": 256,
            "batch_size": 256,
            "n_epochs": 5,
            "learning_rate": 3e-4,
            "gamma": 0.98,
            "ent_coef": 0.01,
            "net_arch": [64, 64],
            "uncapped_prior": 2.0,
            **dict(ppo or {}),
        }
        self.grid = grid
        self.headline_x = float(headline_x)
        self.max_high, self.max_low = float(max_p99_increase), float(max_p99_increase_low)
        self.eval_seeds, self.test_loads, self.tune_seeds = int(eval_seeds), list(test_loads), int(tune_seeds)
        self.policies = list(policies)
        self.torch_threads, self.progress_bar = torch_threads, progress_bar
        self.polca = PolcaRule()
        self.static = StaticCaps()
        self.onnx: bytes | None = None
        self.fit_metrics: dict[str, float] = {}
        self.history: list[tuple[int, float]] = []
        self._tuned = False

    # ------------------------------------------------------------------ fit
    def fit(self, logger: RunLogger) -> None:
        self.tune_baselines()
        if "learned" in self.policies:
            self._train_ppo(logger)
        logger.log_metrics(self.fit_metrics)

    def tune_baselines(self) -> None:
        """Choose POLCA's and the static caps' parameters on training traces (deterministic
        given the seed: an export's evaluation repeats it)."""
        self._tuned = True
        train = Evaluator(self.env, TRAIN_SPLIT, self.max_high, self.max_low)
        conditions = [Condition(self.seed * 1000 + i, 1.0) for i in range(self.tune_seeds)]
        if "polca" in self.policies:
            self.polca, extra = self._tune(train, conditions, polca_candidates())
            self.fit_metrics["train/polca/extra_servers_frac"] = extra
            log.info("POLCA rule chosen on training traces: %s (extra servers %.2f)", self.polca, extra)
        if "static" in self.policies:
            self.static, extra = self._tune(train, conditions, static_candidates())
            self.fit_metrics["train/static/extra_servers_frac"] = extra

    def _tune(self, evaluator: Evaluator, conditions: list[Condition], candidates: list[Any]) -> tuple[Any, float]:
        """The candidate fitting the most extra servers on training traces (ties: the one
        with the lower mean high-priority p99 increase at the headline x)."""
        scored = []
        for cand in candidates:
            extra = evaluator.extra_servers(cand, conditions, self.grid)
            at = np.mean([evaluator.run(cand, c, self.headline_x)["p99_increase_high"] for c in conditions])
            scored.append((extra, -at, cand))
        best = max(scored, key=lambda s: (s[0], s[1]))
        return best[2], best[0]

    def _train_ppo(self, logger: RunLogger) -> None:
        import torch
        from stable_baselines3 import PPO
        from stable_baselines3.common.env_util import make_vec_env

        torch.set_num_threads(self.torch_threads)
        args = self.ppo
        vec = make_vec_env(lambda: env_like(self.env, split=TRAIN_SPLIT), n_envs=int(args["n_envs"]), seed=self.seed)
        history = self.history

        model = PPO(
            "MlpPolicy",
            vec,
            **ppo_keywords(args, self.seed),
        )
        # Prior: start from mostly uncapped servers (a logit bonus on clock level 0 of each class),
        # as an operator would, instead of the uniform policy that caps three times in four.
        prior = float(args.get("uncapped_prior", 0.0))
        if prior:
            with torch.no_grad():
                for start in range(0, 2 * len(CLOCK_LEVELS), len(CLOCK_LEVELS)):
                    model.policy.action_net.bias[start] += prior
        log.info("training PPO for %d steps on %d envs", args["total_steps"], args["n_envs"])
        model.learn(
            total_timesteps=int(args["total_steps"]),
            progress_bar=self.progress_bar,
            callback=episode_logger(history, logger),
        )
        vec.close()
        self.onnx = export_onnx(model.policy, len(OBS_NAMES))

    # ------------------------------------------------------------------ evaluate
    def _policy(self, name: str, learned: DiscretePolicy | None) -> Any:
        if name in ("no_oversubscription", "uncapped"):
            return Uncapped()
        if name == "static":
            return self.static
        if name == "polca":
            return self.polca
        if learned is None:
            raise RuntimeError("fit() first: there is no learned policy")
        return learned

    def evaluate(self) -> EvaluationReport:
        learned = DiscretePolicy(self.onnx, [len(CLOCK_LEVELS)] * 2, len(OBS_NAMES)) if self.onnx else None
        return self._evaluate(learned)

    def evaluate_export(self, predictor: DiscretePolicy) -> EvaluationReport:
        """Evaluate a loaded export on the run's held-out windows and loads (the baselines
        are tuned again on the training traces: same seed, same parameters)."""
        if not self._tuned:
            self.tune_baselines()
        return self._evaluate(predictor)

    def test_conditions(self) -> list[Condition]:
        return [
            Condition(TEST_SEED_BASE + self.seed * 1000 + i, float(load))
            for load in self.test_loads
            for i in range(self.eval_seeds)
        ]

    def _evaluate(self, learned: DiscretePolicy | None) -> EvaluationReport:
        test = Evaluator(self.env, TEST_SPLIT, self.max_high, self.max_low)
        conditions = self.test_conditions()
        metrics: dict[str, float] = dict(self.fit_metrics)
        curves: dict[str, list[tuple[float, float]]] = {}
        for name in self.policies:
            if name == "learned" and learned is None:
                continue
            policy = self._policy(name, learned)
            x_at = 0.0 if name == "no_oversubscription" else self.headline_x
            runs = [test.run(policy, c, x_at) for c in conditions]
            keep = (
                "p99_increase_high",
                "p99_increase_low",
                "brake_events",
                "all/slo_attainment",
                "high/p99_e2e_s",
                "low/p99_e2e_s",
                "row_power_mean_frac",
                "row_power_max_frac",
            )
            summary = average_over_seeds([{k: r[k] for k in keep} for r in runs], ci_for=keep)
            summary = {k.replace("all/", ""): v for k, v in summary.items()}
            summary["oversubscription"] = x_at
            extra = 0.0 if name == "no_oversubscription" else test.extra_servers(policy, conditions, self.grid)
            summary["extra_servers_frac"] = extra
            metrics.update(method_metrics("test", name, summary))
            for load in self.test_loads:
                sub = [c for c in conditions if c.load == load]
                if name != "no_oversubscription":
                    value = test.extra_servers(policy, sub, self.grid)
                    metrics[f"test/{name}/load{load:g}/extra_servers_frac"] = value
            if name != "no_oversubscription":
                curves[name] = [
                    (x, float(np.mean([test.run(policy, c, x)["p99_increase_high"] for c in conditions])))
                    for x in self.grid
                    if x <= extra + 0.1 + 1e-9
                ]
            log.info("%s: extra servers %.2f", name, extra)
        metrics["test/paper/extra_servers_frac"] = 0.30
        methods = [p for p in self.policies if p != "learned" or learned is not None]
        table = results_table(
            f"Row of {self.env.n_base} servers' budget; {len(conditions)} held-out runs "
            f"(loads {self.test_loads}); latency at x={self.headline_x:g}",
            metrics,
            methods,
            [
                "extra_servers_frac",
                "p99_increase_high",
                "p99_increase_low",
                "brake_events",
                "slo_attainment",
                "row_power_max_frac",
            ],
            split="test",
        )
        fig, ax = plt.subplots(figsize=(5.5, 3.8))
        for name, points in curves.items():
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, np.asarray(ys) * 100, marker="o", label=name)
        ax.axhline(self.max_high * 100, color="grey", ls="--", lw=1)
        ax.set_xlabel("extra servers (fraction of the row's provisioned count)")
        ax.set_ylabel("high-priority p99 latency increase (%)")
        ax.set_yscale("symlog", linthresh=1)
        ax.legend(fontsize=7)
        return EvaluationReport(metrics=metrics, tables={"power_capping": table}, figures={"p99_vs_extra": fig})

    # ------------------------------------------------------------------ export
    def export(
        self, directory: str | os.PathLike[str], *, metrics: Mapping[str, float], config: Mapping[str, Any]
    ) -> Path:
        if self.onnx is None:
            raise RuntimeError("fit() first: there is no trained policy to export")
        inp, out = schemas(
            OBS_NAMES,
            [len(CLOCK_LEVELS)] * 2,
            {"sub_actions": ["low_clock", "high_clock"], "clock_levels": list(CLOCK_LEVELS)},
        )
        return write_export(
            directory,
            component=COMPONENT,
            files={"policy.onnx": self.onnx},
            input_schema=inp,
            output_schema=out,
            metrics=metrics,
            config=config,
            libraries=("onnx", "onnxruntime", "torch", "stable-baselines3"),
        )


def polca_candidates() -> list[PolcaRule]:
    """POLCA's thresholds and caps searched on training traces (up to thresholds that almost
    never cap, so the tuned rule is never worse than no capping on its training traces)."""
    return [
        PolcaRule(t1=t1, t2=t2, margin=0.05, low_clock=low, all_clock=high)
        for t1, t2 in ((0.8, 0.9), (0.85, 0.93), (0.9, 0.96), (0.93, 0.98), (0.96, 0.99))
        for low, high in ((0.5, 0.7), (0.6, 0.8), (0.7, 0.9), (0.8, 0.9))
    ]


def static_candidates() -> list[StaticCaps]:
    return [
        StaticCaps(low, high)
        for low, high in itertools.product((0.5, 0.6, 0.7, 0.8, 0.9), (0.8, 0.9, 1.0))
        if low <= high
    ]


__all__ = ["POLICIES", "PowerCappingTask", "env_like", "polca_candidates", "run_episode", "static_candidates"]
