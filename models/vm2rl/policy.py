"""Running a VM2RL policy on a cluster: best-of-K rollouts shared by training-time evaluation,
``evaluate.py`` and deployment. numpy + onnxruntime only (no torch).

The network is two ONNX graphs: ``encoder`` (observation -> VM logits, VM and PM embeddings,
value, source gains) and ``destination`` (the chosen VM -> destination logits). Masks and
sampling happen here, in numpy, with a seeded Generator, so the same export and seed give the
same migrations everywhere.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from infragym.envs.cluster.snapshot import ClusterSnapshot
from infragym.envs.cluster.state import ClusterState

ENCODER_INPUTS = ("vm", "pm", "vm_host", "budget")
ENCODER_OUTPUTS = ("vm_logits", "vm_emb", "pm_emb", "value", "source_gain")
DESTINATION_INPUTS = ("vm_emb", "vm_feat", "source_gain", "pm_emb", "pm")


class OnnxPolicyNet:
    """The two ONNX graphs in onnxruntime sessions (single-threaded by default: a scheduler
    shares its machine)."""

    def __init__(self, encoder: bytes, destination: bytes, *, threads: int = 1) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # Basic graph optimisations only: the extended level's fusions (SkipLayerNormalization
        # among them) are slower for these shapes. Encoder on the medium snapshot (2,089 VMs,
        # 280 PMs), one thread, onnxruntime 1.32, levels alternated 10 x 40 runs (process time,
        # medians): 4.99 ms basic, 5.51 ms extended, 5.59 ms all (the default); outputs within
        # 5e-6 of the default's, the destination graph's identical (0.06 ms at every level).
        # Plans: the same fragment-rate curve on the two VMR2L samples and four generated
        # clusters (50 greedy / 4 x 20 sampled moves), but where two VMs of one type tie, the
        # 5e-6 can pick the other twin (3 of 12 plans named another VM of the same type).
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        providers = ["CPUExecutionProvider"]
        self.encoder = ort.InferenceSession(encoder, options, providers=providers)
        self.destination = ort.InferenceSession(destination, options, providers=providers)

    def encode(self, obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        feed = {k: obs[k] for k in ENCODER_INPUTS}
        return dict(zip(ENCODER_OUTPUTS, self.encoder.run(None, feed), strict=True))

    def destination_logits(self, enc: dict[str, np.ndarray], obs: dict[str, np.ndarray], vm: np.ndarray) -> np.ndarray:
        rows = np.arange(len(vm))
        feed = {
            "vm_emb": enc["vm_emb"][rows, vm],
            "vm_feat": obs["vm"][rows, vm],
            "source_gain": enc["source_gain"][rows, vm],
            "pm_emb": enc["pm_emb"],
            "pm": obs["pm"],
        }
        return self.destination.run(None, feed)[0]


class MaskSource(Protocol):
    def vm_mask(self) -> np.ndarray: ...

    def placement_mask(self, vm: int) -> np.ndarray: ...


def _choose(logits: np.ndarray, mask: np.ndarray, rng: np.random.Generator | None) -> int:
    """Argmax (rng None) or a sample of the masked softmax."""
    z = np.where(mask, logits.astype(np.float64), -np.inf)
    if rng is None:
        return int(np.argmax(z))
    z = z - z.max()
    p = np.exp(z)
    p /= p.sum()
    return int(rng.choice(len(p), p=p))


def observe(state: ClusterState, max_migrations: int) -> dict[str, np.ndarray]:
    obs: dict[str, Any] = state.observation()
    left = 1.0 - state.n_migrations / max_migrations
    obs["budget"] = np.array([left, state.fragment_rate()], dtype=np.float32)
    return obs


@dataclass
class RolloutResult:
    fragment_rate: float  # of the best trajectory
    curve: list[float]  # FR after each migration of the best trajectory (index 0 = start)
    moves: list[tuple[int, int]]
    wall_s: float
    k: int


def rollout(
    net: OnnxPolicyNet,
    snapshot: ClusterSnapshot,
    max_migrations: int,
    *,
    k: int = 1,
    seed: int = 0,
) -> RolloutResult:
    """Risk-seeking evaluation (VM2RL Sec. 5): trajectory 0 takes the most likely actions,
    trajectories 1..k-1 sample; the K run as one batch; the best final FR is kept. The wall
    time covers everything (state copies, inference, masks, migrations)."""
    started = time.perf_counter()
    states = [ClusterState(snapshot) for _ in range(k)]
    rngs: list[np.random.Generator | None] = [None, *np.random.default_rng(seed).spawn(k - 1)]
    curves = [[s.fragment_rate()] for s in states]
    moves: list[list[tuple[int, int]]] = [[] for _ in states]
    live = list(range(k))
    for _ in range(max_migrations):
        masks = {i: states[i].vm_mask() for i in live}
        live = [i for i in live if masks[i].any()]
        if not live:
            break
        obs_list = [observe(states[i], max_migrations) for i in live]
        obs = {key: np.stack([o[key] for o in obs_list]) for key in ENCODER_INPUTS}
        enc = net.encode(obs)
        vms = np.array([_choose(enc["vm_logits"][j], masks[i], rngs[i]) for j, i in enumerate(live)])
        dest_logits = net.destination_logits(enc, obs, vms)
        for j, i in enumerate(live):
            vm = int(vms[j])
            dest = _choose(dest_logits[j], states[i].placement_mask(vm), rngs[i])
            states[i].migrate(vm, dest)
            moves[i].append((vm, dest))
            curves[i].append(states[i].fragment_rate())
    best = int(np.argmin([c[-1] for c in curves]))
    return RolloutResult(curves[best][-1], curves[best], moves[best], time.perf_counter() - started, k)


def act(
    net: OnnxPolicyNet,
    obs: dict[str, np.ndarray],
    mask: MaskSource | np.ndarray,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """One migration ``[vm, destination]`` for one (unbatched) observation.

    ``mask`` is either an object with ``vm_mask()`` and ``placement_mask(vm)`` (the env, or a
    ``ClusterState``), or the full boolean mask of shape (V, 3P) (or flattened)."""
    batch = {k: np.asarray(obs[k])[None] for k in ENCODER_INPUTS}
    for key in ("vm", "pm", "budget"):
        if not np.isfinite(batch[key]).all():
            raise ValueError(f"observation {key!r} holds NaN or infinite values: no action for it")
    n_vms, n_pms = batch["vm"].shape[1], batch["pm"].shape[1]
    host = batch["vm_host"]
    if host.shape != (1, n_vms) or not np.issubdtype(host.dtype, np.integer) or ((host < 0) | (host >= n_pms)).any():
        raise ValueError(f"observation 'vm_host' must hold {n_vms} host indices in [0, {n_pms})")
    enc = net.encode(batch)
    if isinstance(mask, np.ndarray):
        full = mask.reshape(n_vms, -1).astype(bool)
        vm_mask, placement = full.any(1), (lambda vm: full[vm])
    else:
        vm_mask, placement = mask.vm_mask(), mask.placement_mask
    if not vm_mask.any():
        raise ValueError("no VM can move: the mask is empty")
    vm = _choose(enc["vm_logits"][0], vm_mask, rng)
    logits = net.destination_logits(enc, batch, np.array([vm]))[0]
    return np.array([vm, _choose(logits, placement(vm), rng)], dtype=np.int64)
