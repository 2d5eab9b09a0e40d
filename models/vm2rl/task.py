"""The VM2RL Task: train the two-stage PPO agent on generated snapshots, evaluate it with
best-of-K rollouts against random, greedy and the CP-SAT MIP on held-out snapshots at each
migration budget, export it to ONNX.

The learned policy is always evaluated through its ONNX export (the same code path as
``evaluate.py`` and deployment), so ``evaluate.py`` reproduces the reported numbers.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch

from infragym.datasets.vm_snapshots import VMSnapshots
from infragym.envs.cluster.env import VMRescheduleEnv
from infragym.envs.cluster.reset import reset_seeds, reset_snapshot
from infragym.envs.cluster.snapshot import ClusterSnapshot, load_vmr2l_snapshot
from infragym.envs.cluster.state import ClusterState
from infragym.evaluation import metric_key, plot_curves
from infragym.export import write_export
from infragym.logging import RunLogger
from infragym.models.vm2rl import export as vm2rl_export
from infragym.models.vm2rl.agent import VM2RLAgent
from infragym.models.vm2rl.baselines import MIPRescheduler, greedy_policy, random_policy
from infragym.models.vm2rl.policy import ENCODER_OUTPUTS, OnnxPolicyNet, rollout
from infragym.models.vm2rl.ppo import PPOArgs, train_ppo
from infragym.models.vm2rl.warm_start import agent_from_onnx
from infragym.results import ResultsTable
from infragym.seeding import child_seeds
from infragym.task import EvaluationReport

log = logging.getLogger(__name__)
COMPONENT = "vm2rl"
# Validation resets: odd (held-out) seeds from a base far from the test resets' (the run seed).
VALIDATION_SEED_BASE = 1_000_000_000


class TorchPolicyNet:
    """The torch agent behind ``OnnxPolicyNet``'s interface (for ``rollout`` during training,
    without an ONNX export per validation)."""

    def __init__(self, agent: VM2RLAgent) -> None:
        self.agent = agent

    def encode(self, obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with torch.no_grad():
            out = self.agent.encode(*(torch.as_tensor(obs[k]) for k in ("vm", "pm", "vm_host", "budget")))
        return {k: v.numpy() for k, v in zip(ENCODER_OUTPUTS, out, strict=True)}

    def destination_logits(self, enc: dict[str, np.ndarray], obs: dict[str, np.ndarray], vm: np.ndarray) -> np.ndarray:
        rows = np.arange(len(vm))
        with torch.no_grad():
            out = self.agent.destination_logits(
                torch.as_tensor(enc["vm_emb"][rows, vm]),
                torch.as_tensor(obs["vm"][rows, vm]),
                torch.as_tensor(enc["source_gain"][rows, vm]),
                torch.as_tensor(enc["pm_emb"]),
                torch.as_tensor(obs["pm"]),
            )
        return out.numpy()


class VM2RLTask:
    """Reinforcement-learning Task for VM rescheduling.

    Args:
        env: the env config (its ``preset`` is the training preset, ``max_migrations`` the
            default MNL of the evaluation and of ``metrics.json``).
        dataset: the test snapshots.
        model: the (untrained) agent.
        seed: the run seed.
        ppo: PPO arguments (``PPOArgs`` fields).
        train_max_migrations: MNL of the training episodes (null: the env's).
        train_time_limit_s: stop training after this many seconds (null: no limit).
        mnl_grid: budgets of the evaluation table and plot.
        k_samples: trajectories of the risk-seeking evaluation (best of K).
        mip_time_limit_s: CP-SAT time limit per solve.
        methods: which baselines to run (``random``, ``greedy``, ``mip``).
        torch_threads: threads for training (the machine may be shared).
        inference_threads: onnxruntime threads for the learned policy's rollouts.
        train_snapshot_path: a VMR2L snapshot whose *resets* the agent trains on (VMR2L's
            protocol: its hosts and VMs placed anew every episode, even reset seeds; the test
            resets are odd); null: fresh generated snapshots of the env's preset.
        asynchronous: ``AsyncVectorEnv`` rollouts (one process per env).
        checkpoint_dir: training checkpoints (``last.pt`` every update, ``best.pt`` by the
            validation FR); a run started again with the same folder resumes from ``last.pt``.
        eval_every: updates between validation rollouts (greedy, on ``n_validation`` held-out
            resets of the training snapshot at the env's MNL; needs ``train_snapshot_path``).
        n_validation: validation resets (odd seeds from a base far from the test resets').
        progress: a tqdm progress bar.
        init_from: a VM2RL export folder to start training from (its graphs' weights are read
            back into the agent, ``warm_start.agent_from_onnx``; the model config must match).
    """

    def __init__(
        self,
        *,
        env: VMRescheduleEnv,
        dataset: VMSnapshots,
        model: VM2RLAgent,
        seed: int = 0,
        ppo: Mapping[str, Any] | None = None,
        train_max_migrations: int | None = None,
        train_time_limit_s: float | None = None,
        mnl_grid: Sequence[int] = (10, 20, 30, 40, 50),
        k_samples: int = 8,
        mip_time_limit_s: float = 30.0,
        methods: Sequence[str] = ("random", "greedy", "mip"),
        torch_threads: int = 1,
        inference_threads: int = 2,
        train_snapshot_path: str | None = None,
        asynchronous: bool = True,
        checkpoint_dir: str | None = None,
        eval_every: int = 10,
        n_validation: int = 2,
        progress: bool = False,
        init_from: str | None = None,
    ) -> None:
        unknown = set(methods) - {"random", "greedy", "mip"}
        if unknown:
            raise ValueError(f"task.methods: unknown {sorted(unknown)}; choose from random, greedy, mip")
        if int(k_samples) != k_samples or k_samples < 1:
            raise ValueError(f"task.k_samples must be a whole number of trajectories >= 1, got {k_samples!r}")
        if not mnl_grid or any(int(m) != m or m < 1 for m in mnl_grid):
            raise ValueError(f"task.mnl_grid must list migration budgets >= 1, got {list(mnl_grid)}")
        self.env = env
        self.dataset = dataset
        self.model = model
        self.seed = seed
        self.ppo_args = PPOArgs(**{**dict(ppo or {}), "seed": seed})
        if self.ppo_args.total_steps < 1:
            steps = self.ppo_args.total_steps
            raise ValueError(f"task.ppo.total_steps must be at least 1, got {steps}: nothing would be trained")
        self.train_max_migrations = int(train_max_migrations or env.max_migrations)
        self.train_time_limit_s = train_time_limit_s
        self.mnl_grid = sorted({int(m) for m in mnl_grid} | {env.max_migrations})
        self.default_mnl = env.max_migrations
        self.k_samples = int(k_samples)
        self.mip_time_limit_s = float(mip_time_limit_s)
        self.methods = list(methods)
        self.torch_threads = torch_threads
        self.inference_threads = inference_threads
        self.train_snapshot_path = os.path.normpath(train_snapshot_path) if train_snapshot_path else None
        self.asynchronous = bool(asynchronous)
        self.checkpoint_dir = checkpoint_dir
        self.eval_every = int(eval_every)
        self.n_validation = int(n_validation)
        self.progress = bool(progress)
        self.init_from = os.path.normpath(init_from) if init_from else None
        self.onnx: tuple[bytes, bytes] | None = None
        self.history: list[dict[str, float]] = []

    def metric_patterns(self) -> list[str]:
        """The metrics ``evaluate`` produces (``fnmatch`` patterns), known before training."""
        methods = ["vm2rl", "vm2rl_best_of_k", *self.methods]
        return ["train/*", "val/*", "test/initial/fragment_rate", *(f"test/{m}/*" for m in methods)]

    # ------------------------------------------------------------------ training
    def env_fns(self) -> list[Any]:
        preset, mnl, path = self.env.preset, self.train_max_migrations, self.train_snapshot_path
        return [
            partial(VMRescheduleEnv, snapshot_path=path, preset=preset, resample_on_reset=True, max_migrations=mnl)
            for _ in range(self.ppo_args.n_envs)
        ]

    def validation_score(self) -> Any:
        """The validation callback of training: mean FR of greedy rollouts on held-out resets of
        the training snapshot at the env's MNL (None without a training snapshot)."""
        if self.train_snapshot_path is None or self.n_validation <= 0:
            return None
        base = load_vmr2l_snapshot(self.train_snapshot_path)
        seeds = reset_seeds(VALIDATION_SEED_BASE + self.seed, self.n_validation, split="test")
        resets = [reset_snapshot(base, np.random.default_rng(s)) for s in seeds]
        mnl = self.default_mnl

        def score(agent: VM2RLAgent) -> float:
            net = TorchPolicyNet(agent)
            return float(np.mean([rollout(net, r, mnl, k=1).fragment_rate for r in resets]))

        return score

    def fit(self, logger: RunLogger) -> None:
        torch.set_num_threads(self.torch_threads)
        torch.manual_seed(self.seed)
        source = (
            f"resets of {self.train_snapshot_path}"
            if self.train_snapshot_path
            else f"generated {self.env.preset!r} snapshots"
        )
        log.info("training VM2RL on %s (MNL %d)", source, self.train_max_migrations)
        if self.init_from is not None:
            import infragym

            predictor = infragym.load(self.init_from)
            start = agent_from_onnx(*predictor.onnx, **asdict(self.model.config))
            self.model.load_state_dict(start.state_dict())
            log.info("starting from the weights of the export %s", self.init_from)
        self.history = train_ppo(
            self.model,
            self.env_fns(),
            self.ppo_args,
            logger=logger,
            time_limit_s=self.train_time_limit_s,
            asynchronous=self.asynchronous,
            checkpoint_dir=self.checkpoint_dir,
            evaluate=self.validation_score(),
            eval_every=self.eval_every,
            progress=self.progress,
        )
        self.onnx = vm2rl_export.export_onnx(self.model)

    def policy_net(self) -> OnnxPolicyNet:
        if self.onnx is None:
            raise RuntimeError("fit() first: there is no trained policy to evaluate")
        return OnnxPolicyNet(*self.onnx, threads=self.inference_threads)

    # ------------------------------------------------------------------ evaluation
    def evaluate(self) -> EvaluationReport:
        return self._evaluate(self.policy_net())

    def evaluate_export(self, predictor: vm2rl_export.VM2RLPredictor) -> EvaluationReport:
        """Evaluate a loaded export on the run's test snapshots (same seeds: same numbers); the
        baselines (random, greedy, CP-SAT) need no fitting, so there are no options."""
        # Same graphs, same onnxruntime thread count as the training run's evaluation.
        return self._evaluate(OnnxPolicyNet(*predictor.onnx, threads=self.inference_threads))

    def _evaluate(self, net: OnnxPolicyNet) -> EvaluationReport:
        snapshots = self.dataset.test_snapshots(self.seed)
        results: dict[str, dict[str, dict[int, tuple[float, float]]]] = {}  # method -> snap -> mnl -> (fr, s)
        initial: dict[str, float] = {}
        notes: list[str] = []
        seeds = child_seeds(self.seed + 104_729, len(snapshots))
        for (name, snapshot), seed in zip(snapshots.items(), seeds, strict=True):
            state = ClusterState(snapshot)
            initial[name] = state.fragment_rate()
            log.info("evaluating on %s (%d PMs, %d VMs, FR %.4f)", name, snapshot.n_pms, snapshot.n_vms, initial[name])
            per = self._evaluate_snapshot(net, snapshot, seed, notes)
            for method, curve in per.items():
                results.setdefault(method, {})[name] = curve
        return self._report(results, initial, snapshots, notes)

    def _evaluate_snapshot(
        self, net: OnnxPolicyNet, snapshot: ClusterSnapshot, seed: int, notes: list[str]
    ) -> dict[str, dict[int, tuple[float, float]]]:
        out: dict[str, dict[int, tuple[float, float]]] = {}
        state = ClusterState(snapshot)
        greedy_plans: dict[int, list[tuple[int, int]]] = {}
        for mnl in self.mnl_grid:
            if "random" in self.methods:
                state.reset()
                t0 = time.perf_counter()
                random_policy(state, mnl, np.random.default_rng(seed))
                out.setdefault("random", {})[mnl] = (state.fragment_rate(), time.perf_counter() - t0)
            if "greedy" in self.methods or "mip" in self.methods:
                state.reset()
                t0 = time.perf_counter()
                greedy_plans[mnl] = greedy_policy(state, mnl)
                out.setdefault("greedy", {})[mnl] = (state.fragment_rate(), time.perf_counter() - t0)
            result = rollout(net, snapshot, mnl, k=1, seed=seed)
            out.setdefault("vm2rl", {})[mnl] = (result.fragment_rate, result.wall_s)
            if self.k_samples > 1:
                result = rollout(net, snapshot, mnl, k=self.k_samples, seed=seed)
                out.setdefault("vm2rl_best_of_k", {})[mnl] = (result.fragment_rate, result.wall_s)
        if "greedy" not in self.methods:
            out.pop("greedy", None)
        if "mip" in self.methods:
            state.reset()
            mip = MIPRescheduler(time_limit_s=self.mip_time_limit_s)
            t0 = time.perf_counter()
            all_greedy = [move for plan in greedy_plans.values() for move in plan]
            mip.build(state, max(self.mnl_grid), extra_candidates=all_greedy)
            build_s = time.perf_counter() - t0
            hint: list[tuple[int, int]] = []
            hint_fr = float("inf")
            statuses = []
            for mnl in self.mnl_grid:
                # Warm start: the better of the greedy plan and the previous (smaller) budget's solution.
                g_fr = out["greedy"][mnl][0] if "greedy" in out else float("inf")
                use = greedy_plans[mnl] if g_fr <= hint_fr else hint
                res = mip.solve(state, mnl, hint=use)
                if res.status in ("OPTIMAL", "FEASIBLE") and res.fragment_rate < hint_fr:
                    hint, hint_fr = res.moves, res.fragment_rate
                out.setdefault("mip", {})[mnl] = (res.fragment_rate, res.wall_s + build_s)
                statuses.append(f"{mnl}:{res.status}")
            notes.append(
                f"MIP on {snapshot.name}: {mip.n_variables} variables, built in {build_s:.1f} s, "
                f"CP-SAT limit {self.mip_time_limit_s:.0f} s per budget, "
                f"{'candidate destinations restricted' if mip.restricted else 'exact model'}; "
                f"status {' '.join(statuses)}"
            )
        return out

    def _report(
        self,
        results: dict[str, dict[str, dict[int, tuple[float, float]]]],
        initial: Mapping[str, float],
        snapshots: Mapping[str, ClusterSnapshot],
        notes: list[str],
    ) -> EvaluationReport:
        metrics: dict[str, float] = {}
        columns = [f"fr@{m}" for m in self.mnl_grid] + [f"latency_s@{self.default_mnl}"]
        table = ResultsTable(
            f"VM rescheduling: fragment rate after MNL migrations (lower is better), seed {self.seed}", columns
        )
        for name, fr in initial.items():
            table.add_row(f"initial [{name}]", {c: fr for c in columns[:-1]})
        for method, per_snap in results.items():
            for snap, curve in per_snap.items():
                row: dict[str, float | str] = {f"fr@{m}": curve[m][0] for m in self.mnl_grid}
                row[f"latency_s@{self.default_mnl}"] = curve[self.default_mnl][1]
                table.add_row(f"{method} [{snap}]", row)
                for m in self.mnl_grid:
                    if np.isfinite(curve[m][0]):  # a MIP without a solution in its time has no FR
                        metrics[metric_key("test", method, f"fragment_rate@{m}", condition=snap)] = curve[m][0]
                    metrics[metric_key("test", method, f"latency_s@{m}", condition=snap)] = curve[m][1]
            solved = [c[self.default_mnl][0] for c in per_snap.values() if np.isfinite(c[self.default_mnl][0])]
            if solved:
                metrics[f"test/{method}/fragment_rate"] = float(np.mean(solved))
            metrics[f"test/{method}/latency_s"] = float(np.mean([c[self.default_mnl][1] for c in per_snap.values()]))
        metrics["test/initial/fragment_rate"] = float(np.mean(list(initial.values())))
        table.notes.extend(
            [
                f"Test snapshots: {', '.join(f'{n} ({s.n_pms} PMs, {s.n_vms} VMs)' for n, s in snapshots.items())}.",
                f"vm2rl: most likely actions; vm2rl_best_of_k: best of K = {self.k_samples} "
                "trajectories (one greedy-decoded, the rest sampled), latency = whole trajectory.",
                *notes,
            ]
        )
        curves = {
            snap: {
                method: [(0, initial[snap]), *((m, per_snap[snap][m][0]) for m in self.mnl_grid)]
                for method, per_snap in results.items()
            }
            for snap in initial
        }
        fig = plot_curves(curves, xlabel="migration budget (MNL)", ylabel="fragment rate")
        figures: dict[str, Any] = {"fr_vs_mnl": fig}
        if self.history:
            fig2, ax2 = plt.subplots(figsize=(5.5, 3.5))
            steps = [h["train/step"] for h in self.history]
            ax2.plot(steps, [h["train/episode_fr_decrease"] for h in self.history])
            ax2.set_xlabel("environment steps")
            ax2.set_ylabel("episode FR decrease (training)")
            ax2.grid(alpha=0.3)
            figures["training_curve"] = fig2
        return EvaluationReport(metrics=metrics, tables={"vm2rl": table}, figures=figures)

    # ------------------------------------------------------------------ export
    def export(
        self, directory: str | os.PathLike[str], *, metrics: Mapping[str, float], config: Mapping[str, Any]
    ) -> Path:
        if self.onnx is None:
            raise RuntimeError("fit() first: there is no trained policy to export")
        encoder, destination = self.onnx
        return write_export(
            directory,
            component=COMPONENT,
            files={vm2rl_export.ENCODER_FILE: encoder, vm2rl_export.DESTINATION_FILE: destination},
            input_schema=vm2rl_export.input_schema(),
            output_schema=vm2rl_export.output_schema(),
            metrics=metrics,
            config=config,
            libraries=("onnx", "onnxruntime", "torch"),
        )
