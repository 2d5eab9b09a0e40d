"""The Deoxys task: simulate a confounded log, fit Deoxys and its baselines, evaluate, export."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from tqdm.auto import tqdm

from infragym.datasets.health_log import HealthLogDataset, LoggedEvents, check_trainable, simulate_events
from infragym.envs.health.env import UnhealthyNodeMitigationEnv
from infragym.envs.health.simulator import ACTIONS, OUTCOMES
from infragym.evaluation import method_metrics, relative_change, results_table
from infragym.export import write_export
from infragym.logging import RunLogger
from infragym.models.deoxys import export as deoxys_export
from infragym.models.deoxys.baselines import BASELINES, MitigationPolicy
from infragym.models.deoxys.evaluation import (
    PAPER_DOWNTIME_CHANGE_PCT,
    PAPER_INTERRUPTION_CHANGE_PCT,
    DoublyRobustEvaluator,
    gap_closed,
    policy_outcomes,
)
from infragym.models.deoxys.recommender import ActionOverride, Deoxys, action_indices
from infragym.results import ResultsTable
from infragym.seeding import child_seeds
from infragym.task import EvaluationReport

TEST_COLUMNS = [
    "downtime_min",
    "interruption_rate",
    "cost_node_hours",
    "objective",
    "downtime_vs_legacy_pct",
    "interruption_vs_legacy_pct",
    "downtime_gap_closed",
    "interruption_gap_closed",
]


class DeoxysTask:
    """Causal task: the env gives the simulator and the objective, the dataset the log.

    Args:
        env: the unhealthy-node env (its simulator generates events, its objective scores them).
        dataset: how the logged events are obtained and split.
        model: the Deoxys recommender (unfitted).
        seed: derives the seeds of the log, the split, the test events and the DR estimator.
        baselines: names from ``BASELINES`` besides "legacy" (always evaluated).
        baseline_kwargs: keyword arguments per baseline name (e.g. random_state).
        tradeoff_tolerances: downtime tolerances (minutes) swept for the trade-off curve.
        tradeoff_budgets: extra node-hour budgets per event (vs legacy) swept likewise.
    """

    def __init__(
        self,
        *,
        env: UnhealthyNodeMitigationEnv,
        dataset: HealthLogDataset,
        model: Deoxys,
        seed: int = 0,
        baselines: Sequence[str] = ("s_learner", "t_learner", "dr_policy_forest"),
        baseline_kwargs: Mapping[str, Mapping[str, Any]] | None = None,
        tradeoff_tolerances: Sequence[float] = (0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0),
        tradeoff_budgets: Sequence[float] = (4.0, 2.0, 1.0, 0.0, -1.0, -2.0),
    ) -> None:
        unknown = [b for b in baselines if b not in BASELINES or b == "legacy"]
        if unknown:
            raise ValueError(f"task.baselines: unknown {unknown}; choose from {sorted(set(BASELINES) - {'legacy'})}")
        self.env = env
        self.simulator = env.simulator
        self.objective = env.objective
        self.dataset = dataset
        self.model = model
        self.seed = seed
        kwargs = {k: dict(v) for k, v in (baseline_kwargs or {}).items()}
        self.baselines: dict[str, MitigationPolicy] = {
            "legacy": BASELINES["legacy"](),
            **{name: BASELINES[name](**kwargs.get(name, {})) for name in baselines},
        }
        self.tradeoff_tolerances = [float(t) for t in tradeoff_tolerances]
        self.tradeoff_budgets = [float(b) for b in tradeoff_budgets]
        self._log_seed, self._split_seed, self._test_seed, self._dr_seed = child_seeds(seed, 4)
        self.train_log: LoggedEvents | None = None
        self.holdout_log: LoggedEvents | None = None
        self.fit_seconds: dict[str, float] = {}

    def metric_patterns(self) -> list[str]:
        """The metrics ``evaluate`` produces (``fnmatch`` patterns), known before training."""
        policies = ["legacy", "deoxys", "deoxys_no_fallback", *self.baselines, "oracle", "hindsight"]
        return [pattern for p in dict.fromkeys(policies) for pattern in (f"test/{p}/*", f"val/{p}/*")] + ["time/*"]

    # ------------------------------------------------------------------ fit
    def fit(self, logger: RunLogger) -> None:
        self._fit_models(logger, include_deoxys=True)

    def _fit_models(self, logger: RunLogger, *, include_deoxys: bool) -> None:
        # Re-evaluating an export regenerates the same log without writing it again.
        logged = self.dataset.logged_events(self.simulator, np.random.default_rng(self._log_seed), save=include_deoxys)
        # A log too small to fit on fails here, naming its source, not deep inside econml.
        check_trainable(logged.log, self.dataset.path or "the generated log", cv=self.model.cv)
        self.train_log, self.holdout_log = self.dataset.split(logged, np.random.default_rng(self._split_seed))
        log = self.train_log.log
        actions = action_indices(log["action"])
        objective = self.objective(log)
        steps: list[tuple[str, Any]] = []
        if include_deoxys:
            steps.append(("deoxys", lambda: self.model.fit(log, actions, log, self.objective)))
        steps += [(name, lambda p=policy: p.fit(log, actions, objective)) for name, policy in self.baselines.items()]
        with tqdm(total=len(steps), desc="fitting", unit="model") as bar:
            for name, fit in steps:
                bar.set_postfix_str(name)
                started = time.perf_counter()
                fit()
                self.fit_seconds[name] = time.perf_counter() - started
                bar.update()
        logger.log_metrics({f"time/fit_{name}_s": s for name, s in self.fit_seconds.items()})

    # ------------------------------------------------------------------ evaluation
    def _test_events(self, n: int | None = None) -> tuple[Any, dict[str, np.ndarray], dict[str, np.ndarray]]:
        rng = np.random.default_rng(self._test_seed)
        return simulate_events(self.simulator, n or self.dataset.n_test_events, rng, desc="simulating test events")

    def _choices(
        self,
        features: Any,
        legacy: np.ndarray,
        deoxys: tuple[np.ndarray, np.ndarray],
        outcomes: tuple[Mapping[str, np.ndarray], Mapping[str, np.ndarray]],
        *,
        baselines: bool = True,
    ) -> dict[str, np.ndarray]:
        """The actions of every compared policy: legacy, Deoxys with and without its fallback,
        the baselines, the oracle (best expected outcome) and hindsight (best realised one)."""
        realised, expected = outcomes
        return {
            "legacy": legacy,
            "deoxys": deoxys[0],
            "deoxys_no_fallback": deoxys[1],
            **(
                {name: p.choose(features) for name, p in self.baselines.items() if name != "legacy"}
                if baselines
                else {}
            ),
            "oracle": self.objective(expected).argmin(axis=1),
            "hindsight": self.objective(realised).argmin(axis=1),
        }

    def _policy_table(
        self, stats: Mapping[str, Mapping[str, float]], n_events: int
    ) -> tuple[dict[str, float], ResultsTable]:
        """Each policy's outcomes, and its change and share of the legacy-to-oracle gap closed."""
        legacy, oracle = stats["legacy"], stats["oracle"]
        metrics: dict[str, float] = {}
        for name, s in stats.items():
            vs_legacy = {
                "downtime_vs_legacy_pct": 100.0 * relative_change(s["downtime_min"], legacy["downtime_min"]),
                "interruption_vs_legacy_pct": 100.0
                * relative_change(s["interruption_rate"], legacy["interruption_rate"]),
                "downtime_gap_closed": gap_closed(legacy["downtime_min"], s["downtime_min"], oracle["downtime_min"]),
                "interruption_gap_closed": gap_closed(
                    legacy["interruption_rate"], s["interruption_rate"], oracle["interruption_rate"]
                ),
            }
            metrics.update(method_metrics("test", name, {**s, **vs_legacy}))
        title = f"Test: {n_events} fresh simulated events (ground truth)"
        table = results_table(title, metrics, list(stats), TEST_COLUMNS, split="test")
        table.add_row(
            "paper: Deoxys deployed",
            {
                "downtime_vs_legacy_pct": PAPER_DOWNTIME_CHANGE_PCT,
                "interruption_vs_legacy_pct": PAPER_INTERRUPTION_CHANGE_PCT,
            },
        )
        table.notes.append(
            "oracle = best action by expected potential outcomes given everything the simulator knows; "
            "hindsight = best by realised outcomes (not achievable). Paper row: Deoxys, SoCC'24, vs its legacy."
        )
        return metrics, table

    def _tradeoff(
        self,
        features: Any,
        legacy: np.ndarray,
        effects: np.ndarray,
        intervals: Any,
        potential: Mapping[str, np.ndarray],
    ) -> tuple[ResultsTable, list[tuple[str, float, dict[str, float]]]]:
        points = []
        for tol in self.tradeoff_tolerances:
            decision = self.model.decide(
                features, legacy, override=ActionOverride(tol, None), effects=effects, intervals=intervals
            )
            points.append(("tolerance", tol, policy_outcomes(decision.action, potential, self.objective)))
        for budget in self.tradeoff_budgets:
            decision = self.model.decide(
                features, legacy, override=ActionOverride(0.0, budget), effects=effects, intervals=intervals
            )
            points.append(("budget", budget, policy_outcomes(decision.action, potential, self.objective)))
        table = ResultsTable(
            "Action overriding: downtime vs capacity out of service (test events)",
            ["downtime_min", "interruption_rate", "cost_node_hours", "objective"],
        )
        for knob, value, s in points:
            label = f"tolerance {value:g} min" if knob == "tolerance" else f"budget {value:+g} node-h/event"
            table.add_row(label, s)
        return table, points

    def _plots(
        self, stats: Mapping[str, Mapping[str, float]], points: list[tuple[str, float, dict[str, float]]]
    ) -> dict[str, Any]:
        fig, ax = plt.subplots(figsize=(6.5, 4.5))
        for knob, marker in (("tolerance", "o-"), ("budget", "s--")):
            xs = [p[2]["cost_node_hours"] for p in points if p[0] == knob]
            ys = [p[2]["downtime_min"] for p in points if p[0] == knob]
            ax.plot(xs, ys, marker, label=f"Deoxys, sweeping the {knob}")
        for name, color in (("legacy", "black"), ("oracle", "crimson"), ("deoxys", "forestgreen")):
            if name in stats:
                ax.scatter(
                    stats[name]["cost_node_hours"], stats[name]["downtime_min"], s=80, zorder=3, c=color, label=name
                )
        ax.set_xlabel("mean resource cost (node-hours out of service per event)")
        ax.set_ylabel("mean VM downtime (minutes)")
        ax.set_title("Action overriding trade-off")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)

        fig2, ax2 = plt.subplots(figsize=(7.5, 4.2))
        names = [n for n in stats if n != "legacy"]
        legacy = stats["legacy"]
        x = np.arange(len(names))
        dt = [100 * relative_change(stats[n]["downtime_min"], legacy["downtime_min"]) for n in names]
        ir = [100 * relative_change(stats[n]["interruption_rate"], legacy["interruption_rate"]) for n in names]
        ax2.bar(x - 0.2, dt, 0.4, label="downtime vs legacy (%)")
        ax2.bar(x + 0.2, ir, 0.4, label="interruption rate vs legacy (%)")
        ax2.axhline(PAPER_DOWNTIME_CHANGE_PCT, color="C0", ls=":", label="paper downtime (-53%)")
        ax2.axhline(PAPER_INTERRUPTION_CHANGE_PCT, color="C1", ls=":", label="paper interruption (-49.5%)")
        ax2.set_xticks(x, names, rotation=25, ha="right", fontsize=8)
        ax2.set_ylabel("% change vs legacy")
        ax2.legend(fontsize=7)
        ax2.grid(axis="y", alpha=0.3)
        return {"tradeoff": fig, "policies_vs_legacy": fig2}

    def _holdout_choices(self, log: Any) -> dict[str, np.ndarray]:
        legacy = self.baselines["legacy"].choose(log)
        decision = self.model.decide(log, legacy)
        no_fallback = self.model.decide(
            log,
            legacy,
            fallback=False,
            effects=decision.effects,
            intervals=(decision.objective_change_lower, decision.objective_change_upper),
        )
        return {
            "legacy": legacy,
            "deoxys": decision.action,
            "deoxys_no_fallback": no_fallback.action,
            **{name: p.choose(log) for name, p in self.baselines.items() if name != "legacy"},
        }

    def _off_policy(self) -> tuple[dict[str, float], ResultsTable]:
        """DR estimates from the held-out log only, next to the truth on the same events."""
        assert self.holdout_log is not None
        log = self.holdout_log.log
        observed = {
            "downtime_min": log["downtime_min"].to_numpy(np.float64),
            "interrupted": log["interrupted"].to_numpy(np.float64),
            "objective": self.objective(log),
        }
        dr = DoublyRobustEvaluator(random_state=self._dr_seed).fit(log, action_indices(log["action"]), observed)
        truth = self.holdout_log.potential_outcomes
        columns = ["dr_objective", "dr_objective_se", "dr_downtime_min", "dr_interruption_rate"]
        if truth is not None:
            columns += ["true_objective", "true_downtime_min", "true_interruption_rate"]
        metrics: dict[str, float] = {}
        choices = self._holdout_choices(log)
        for name, actions in choices.items():
            value, se = dr.value(actions, "objective")
            row = {
                "dr_objective": value,
                "dr_objective_se": se,
                "dr_downtime_min": dr.value(actions, "downtime_min")[0],
                "dr_interruption_rate": dr.value(actions, "interrupted")[0],
            }
            if truth is not None:
                s = policy_outcomes(actions, truth, self.objective)
                row |= {
                    "true_objective": s["objective"],
                    "true_downtime_min": s["downtime_min"],
                    "true_interruption_rate": s["interruption_rate"],
                }
            metrics.update(method_metrics("val", name, row))
        title = f"Off-policy (doubly robust) on the held-out log: {len(log)} events"
        table = results_table(title, metrics, list(choices), columns, split="val")
        table.notes.append(
            "dr_* use only the held-out log (cross-fitted nuisances); true_* use the simulator's ground truth."
        )
        return metrics, table

    def evaluate(self) -> EvaluationReport:
        with tqdm(total=5, desc="evaluating", unit="step") as bar:
            bar.set_postfix_str("simulating test events")
            events, realised, expected = self._test_events()
            features = events.features
            bar.update()
            bar.set_postfix_str("Deoxys effects and intervals")
            legacy = self.baselines["legacy"].choose(features)
            effects = self.model.predict_effects(features)
            intervals = self.model.objective_change_interval(features, legacy, effects[:, 0, :].argmin(axis=1))
            decision = self.model.decide(features, legacy, effects=effects, intervals=intervals)
            no_fallback = self.model.decide(features, legacy, fallback=False, effects=effects, intervals=intervals)
            bar.update()
            bar.set_postfix_str("baselines")
            choices = self._choices(features, legacy, (decision.action, no_fallback.action), (realised, expected))
            stats = {n: policy_outcomes(a, realised, self.objective) for n, a in choices.items()}
            metrics, table = self._policy_table(stats, len(features))
            metrics["test/deoxys/fallback_rate"] = float(decision.fallback.mean())
            metrics["test/deoxys/override_rate"] = float(decision.overridden.mean())
            for a, name in enumerate(ACTIONS):
                metrics[f"test/deoxys/share_{name}"] = float(np.mean(decision.action == a))
            bar.update()
            bar.set_postfix_str("off-policy estimates")
            val_metrics, val_table = self._off_policy()
            metrics.update(val_metrics)
            bar.update()
            bar.set_postfix_str("trade-off curve")
            tradeoff_table, points = self._tradeoff(features, legacy, effects, intervals, realised)
            bar.update()
        metrics.update({f"time/fit_{n}_s": s for n, s in self.fit_seconds.items()})
        return EvaluationReport(
            metrics=metrics,
            tables={"test": table, "off_policy": val_table, "tradeoff": tradeoff_table},
            figures=self._plots(stats, points),
        )

    def evaluate_export(
        self,
        predictor: deoxys_export.DeoxysPredictor,
        n_test_events: int | None = None,
        refit_baselines: bool = True,
    ) -> EvaluationReport:
        """Evaluate a loaded export on fresh test events against the baselines.

        With ``refit_baselines`` the training run's log is regenerated from its seed and the
        trained baselines are fitted on the same training split as in that run (Deoxys itself
        comes from the export); otherwise only legacy, oracle and hindsight are compared.
        """
        if refit_baselines:
            self._fit_models(RunLogger(), include_deoxys=False)
        events, realised, expected = self._test_events(n_test_events)
        features = events.features
        legacy = self.baselines["legacy"].choose(features)
        decision = predictor.decide(features, legacy)
        no_fallback = predictor.decide(features, legacy, fallback=False)
        deoxys = (decision.action, no_fallback.action)
        choices = self._choices(features, legacy, deoxys, (realised, expected), baselines=refit_baselines)
        stats = {n: policy_outcomes(a, realised, self.objective) for n, a in choices.items()}
        metrics, table = self._policy_table(stats, len(features))
        metrics["test/deoxys/fallback_rate"] = float(decision.fallback.mean())
        fig = self._plots(stats, [])["policies_vs_legacy"]
        return EvaluationReport(metrics=metrics, tables={"test": table}, figures={"policies_vs_legacy": fig})

    # ------------------------------------------------------------------ export
    def export(
        self, directory: str | os.PathLike[str], *, metrics: Mapping[str, float], config: Mapping[str, Any]
    ) -> Path:
        return write_export(
            directory,
            component="deoxys",
            files={deoxys_export.MODEL_FILE: lambda path: deoxys_export.save_model(self.model, path)},
            input_schema=deoxys_export.input_schema(),
            output_schema=deoxys_export.output_schema(),
            metrics=metrics,
            config=config,
            libraries=("econml", "scikit-learn", "joblib"),
            requires_trust=True,
        )


__all__ = ["OUTCOMES", "DeoxysTask"]
