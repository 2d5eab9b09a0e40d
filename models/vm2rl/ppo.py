"""PPO for the two-stage agent, CleanRL style: one readable loop (``train_ppo``) built from
importable, tested pieces (``make_vector_env``, ``compute_gae``, ``act``, ``evaluate_actions``,
``ppo_loss``).

The joint action is (VM, destination): log pi(a) = log pi(vm) + log pi(dest | vm), the entropy
the sum of both stages' entropies. Hyper-parameters default to VM2RL's (Sec. 6: lr 2.5e-4
annealed, gamma 0.99, GAE 0.95, clip 0.1, entropy 0.005, target KL 0.15), at a smaller scale.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor
from torch.distributions import Categorical

from infragym.envs.cluster.env import VMRescheduleEnv
from infragym.logging import RunLogger
from infragym.models.vm2rl.agent import VM2RLAgent, masked, select_rows

log = logging.getLogger(__name__)
OBS_KEYS = ("vm", "pm", "vm_host", "budget")


@dataclass
class PPOArgs:
    """Training arguments (CleanRL's typed dataclass of arguments)."""

    total_steps: int = 20_000
    n_envs: int = 8
    n_steps: int = 64
    gamma: float = 0.99
    gae_lambda: float = 0.95
    n_epochs: int = 4
    n_minibatches: int = 4
    learning_rate: float = 2.5e-4
    anneal_lr: bool = True
    clip_coef: float = 0.1
    ent_coef: float = 0.005
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    target_kl: float | None = 0.15
    # FR decreases are ~1e-3 per step; scaled for the value regression (rewards only).
    reward_scale: float = 100.0
    seed: int = 0
    device: str = "cpu"  # "cuda" for full-scale training (experiment=vm2rl_full)


def make_vector_env(env_fns: Sequence[Callable[[], gym.Env]], *, asynchronous: bool = True) -> gym.vector.VectorEnv:
    """The training vector env: ``AsyncVectorEnv`` (one process per env; the simulator and the
    reset generator run beside the learner) or ``SyncVectorEnv``, wrapped in
    ``RecordEpisodeStatistics``. Finished envs reset within the same step (so a rollout never
    holds a transition from a finished episode into the next)."""
    mode = gym.vector.AutoresetMode.SAME_STEP
    if asynchronous:
        envs: gym.vector.VectorEnv = gym.vector.AsyncVectorEnv(list(env_fns), autoreset_mode=mode, context="spawn")
    else:
        envs = gym.vector.SyncVectorEnv(list(env_fns), autoreset_mode=mode)
    return gym.wrappers.vector.RecordEpisodeStatistics(envs)


def placement_masks(envs: gym.vector.VectorEnv, vms: np.ndarray) -> np.ndarray:
    """(N, 3P) destination masks of the chosen VM of every sub-env, asked of the sub-envs
    themselves (works for Sync and Async vector envs alike)."""
    inner = envs.unwrapped  # vector wrappers forward call() but not set_attr()
    inner.set_attr("pending_vm", [int(v) for v in vms])
    return np.stack(inner.call("pending_placement_mask"))


def explained_variance(values: np.ndarray, returns: np.ndarray) -> float:
    """1 - Var(returns - values) / Var(returns) (NaN when the returns do not vary)."""
    var = float(np.var(returns))
    return float("nan") if var == 0 else 1.0 - float(np.var(returns - values)) / var


def obs_to_tensors(obs: dict[str, np.ndarray], device: str | torch.device = "cpu") -> dict[str, Tensor]:
    return {k: torch.as_tensor(obs[k], device=device) for k in OBS_KEYS}


def compute_gae(
    rewards: Tensor, values: Tensor, dones: Tensor, last_value: Tensor, gamma: float, lam: float
) -> tuple[Tensor, Tensor]:
    """Generalised advantage estimation over a (T, N) rollout.

    ``dones[t]`` marks that the episode ended with step t (terminal: no bootstrap)."""
    T = rewards.shape[0]
    advantages = torch.zeros_like(rewards)
    gae = torch.zeros_like(last_value)
    for t in reversed(range(T)):
        next_value = last_value if t == T - 1 else values[t + 1]
        not_done = 1.0 - dones[t]
        delta = rewards[t] + gamma * next_value * not_done - values[t]
        gae = delta + gamma * lam * not_done * gae
        advantages[t] = gae
    return advantages, advantages + values


def act(
    agent: VM2RLAgent,
    obs: dict[str, Tensor],
    vm_mask: Tensor,
    placement_masks: Callable[[np.ndarray], np.ndarray],
    *,
    greedy: bool = False,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Sample (or argmax) a VM, ask for its destination mask, sample a destination.

    Returns vm, dest, dest_mask, log-prob of the pair, value."""
    vm_logits, vm_emb, pm_emb, value, source_gain = agent.encode(obs["vm"], obs["pm"], obs["vm_host"], obs["budget"])
    vm_dist = Categorical(logits=masked(vm_logits, vm_mask))
    vm = vm_dist.probs.argmax(-1) if greedy else vm_dist.sample()
    dest_mask = torch.as_tensor(placement_masks(vm.cpu().numpy()), device=vm_logits.device)
    dest_logits = agent.destination_logits(
        select_rows(vm_emb, vm), select_rows(obs["vm"], vm), select_rows(source_gain, vm), pm_emb, obs["pm"]
    )
    dest_dist = Categorical(logits=masked(dest_logits, dest_mask))
    dest = dest_dist.probs.argmax(-1) if greedy else dest_dist.sample()
    return vm, dest, dest_mask, vm_dist.log_prob(vm) + dest_dist.log_prob(dest), value


def evaluate_actions(
    agent: VM2RLAgent,
    obs: dict[str, Tensor],
    vm_mask: Tensor,
    dest_mask: Tensor,
    vm: Tensor,
    dest: Tensor,
) -> tuple[Tensor, Tensor, Tensor]:
    """Log-prob, entropy (both stages) and value of stored actions under the current policy."""
    vm_logits, vm_emb, pm_emb, value, source_gain = agent.encode(obs["vm"], obs["pm"], obs["vm_host"], obs["budget"])
    vm_dist = Categorical(logits=masked(vm_logits, vm_mask))
    dest_logits = agent.destination_logits(
        select_rows(vm_emb, vm), select_rows(obs["vm"], vm), select_rows(source_gain, vm), pm_emb, obs["pm"]
    )
    dest_dist = Categorical(logits=masked(dest_logits, dest_mask))
    logp = vm_dist.log_prob(vm) + dest_dist.log_prob(dest)
    return logp, vm_dist.entropy() + dest_dist.entropy(), value


def ppo_loss(
    new_logp: Tensor,
    old_logp: Tensor,
    advantages: Tensor,
    new_value: Tensor,
    returns: Tensor,
    entropy: Tensor,
    args: PPOArgs,
) -> tuple[Tensor, dict[str, float]]:
    """Clipped surrogate + value + entropy loss; also the approximate KL and clip fraction."""
    log_ratio = new_logp - old_logp
    ratio = log_ratio.exp()
    adv = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    policy_loss = torch.max(-adv * ratio, -adv * ratio.clamp(1 - args.clip_coef, 1 + args.clip_coef)).mean()
    value_loss = 0.5 * (new_value - returns).pow(2).mean()
    loss = policy_loss + args.vf_coef * value_loss - args.ent_coef * entropy.mean()
    with torch.no_grad():
        stats = {
            "policy_loss": float(policy_loss),
            "value_loss": float(value_loss),
            "entropy": float(entropy.mean()),
            "approx_kl": float(((ratio - 1) - log_ratio).mean()),
            "clip_fraction": float(((ratio - 1).abs() > args.clip_coef).float().mean()),
        }
    return loss, stats


def train_ppo(
    agent: VM2RLAgent,
    env_fns: Sequence[Callable[[], VMRescheduleEnv]],
    args: PPOArgs,
    logger: RunLogger | None = None,
    time_limit_s: float | None = None,
    *,
    asynchronous: bool = False,
    checkpoint_dir: str | Path | None = None,
    evaluate: Callable[[VM2RLAgent], float] | None = None,
    eval_every: int = 10,
    progress: bool = False,
) -> list[dict[str, float]]:
    """Train ``agent`` in place; returns one stats record per update.

    Args:
        asynchronous: ``AsyncVectorEnv`` rollouts (else ``SyncVectorEnv``).
        checkpoint_dir: write ``last.pt`` (agent, optimizer, update, step, history, RNG states)
            after every update and ``best.pt`` (the agent of the best evaluation); if
            ``last.pt`` exists there, training resumes from it.
        evaluate: a score of the current agent (lower is better, e.g. the FR of held-out
            resets), run every ``eval_every`` updates and at the end; the agent is left with the
            weights of the best score when given.
        progress: a tqdm progress bar over environment steps.
    """
    envs = make_vector_env(env_fns, asynchronous=asynchronous)
    device = torch.device(args.device)
    agent.to(device)
    n_envs, T = envs.num_envs, args.n_steps
    optimizer = torch.optim.Adam(agent.parameters(), lr=args.learning_rate, eps=1e-5)
    n_updates = max(1, args.total_steps // (n_envs * T))
    history: list[dict[str, float]] = []
    first_update, global_step, best_score = 0, 0, float("inf")
    ckpt_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
    if ckpt_dir is not None and (ckpt_dir / "last.pt").is_file():
        state = torch.load(ckpt_dir / "last.pt", map_location=device, weights_only=False)
        agent.load_state_dict(state["agent"])
        optimizer.load_state_dict(state["optimizer"])
        first_update, global_step = int(state["update"]), int(state["global_step"])
        history, best_score = list(state["history"]), float(state["best_score"])
        torch.set_rng_state(state["torch_rng"])
        log.info("resumed from %s at update %d (step %d)", ckpt_dir / "last.pt", first_update, global_step)
    # a resumed run reseeds its envs with the update index: new resets, never the first ones again
    obs, info = envs.reset(seed=args.seed + 1_000_003 * first_update)
    started = time.perf_counter() - (history[-1]["train/elapsed_s"] if history else 0.0)
    episode_returns: list[float] = []
    episode_lengths: list[float] = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n_updates * n_envs * T, initial=global_step, unit="step", mininterval=5.0)

    for update in range(first_update, n_updates):
        if args.anneal_lr:
            optimizer.param_groups[0]["lr"] = args.learning_rate * (1.0 - update / n_updates)
        update_started = time.perf_counter()
        buf: dict[str, list[Tensor]] = {
            k: [] for k in (*OBS_KEYS, "vm_mask", "dest_mask", "action_vm", "action_dest", "logp")
        }
        rewards, dones, values = [], [], []
        for _ in range(T):
            obs_t = obs_to_tensors(obs, device)
            vm_mask = torch.as_tensor(np.asarray(info["action_mask"], dtype=bool), device=device)
            with torch.no_grad():
                vm, dest, dest_mask, logp, value = act(agent, obs_t, vm_mask, lambda vms: placement_masks(envs, vms))
            for k in OBS_KEYS:
                buf[k].append(obs_t[k])
            for k, v in (
                ("vm_mask", vm_mask),
                ("dest_mask", dest_mask),
                ("action_vm", vm),
                ("action_dest", dest),
                ("logp", logp),
            ):
                buf[k].append(v)
            values.append(value)
            obs, reward, terminated, _truncated, info = envs.step(np.stack([vm.cpu().numpy(), dest.cpu().numpy()], 1))
            if "episode" in info:  # RecordEpisodeStatistics: the finished envs' return and length
                ended = info["_episode"]
                episode_returns.extend(info["episode"]["r"][ended].tolist())
                episode_lengths.extend(info["episode"]["l"][ended].tolist())
            rewards.append(torch.as_tensor(reward * args.reward_scale, dtype=torch.float32, device=device))
            dones.append(torch.as_tensor(terminated, dtype=torch.float32, device=device))
            global_step += n_envs
        rollout_s = time.perf_counter() - update_started
        with torch.no_grad():
            obs_t = obs_to_tensors(obs, device)
            last_value = agent.encode(obs_t["vm"], obs_t["pm"], obs_t["vm_host"], obs_t["budget"])[3]
        advantages, returns = compute_gae(
            torch.stack(rewards), torch.stack(values), torch.stack(dones), last_value, args.gamma, args.gae_lambda
        )
        flat = {k: torch.stack(v).flatten(0, 1) for k, v in buf.items()}
        flat_adv, flat_ret = advantages.flatten(), returns.flatten()
        flat_val = torch.stack(values).flatten()
        batch = n_envs * T
        mb = max(1, batch // args.n_minibatches)
        stats: dict[str, float] = {}
        for _epoch in range(args.n_epochs):
            perm = torch.randperm(batch, device=device)
            for start in range(0, batch, mb):
                idx = perm[start : start + mb]
                new_logp, entropy, new_value = evaluate_actions(
                    agent,
                    {k: flat[k][idx] for k in OBS_KEYS},
                    flat["vm_mask"][idx],
                    flat["dest_mask"][idx],
                    flat["action_vm"][idx],
                    flat["action_dest"][idx],
                )
                loss, stats = ppo_loss(
                    new_logp, flat["logp"][idx], flat_adv[idx], new_value, flat_ret[idx], entropy, args
                )
                optimizer.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(agent.parameters(), args.max_grad_norm)
                optimizer.step()
            if args.target_kl is not None and stats["approx_kl"] > args.target_kl:
                break
        update_s = time.perf_counter() - update_started
        recent = episode_returns[-20:]
        record = {
            "train/step": float(global_step),
            "train/episode_fr_decrease": float(np.mean(recent)) if recent else float("nan"),
            "train/episode_length": float(np.mean(episode_lengths[-20:])) if episode_lengths else float("nan"),
            "train/elapsed_s": time.perf_counter() - started,
            "train/sps": batch / update_s,
            "train/rollout_sps": batch / rollout_s,
            "train/explained_variance": explained_variance(flat_val.cpu().numpy(), flat_ret.cpu().numpy()),
            **{f"train/{k}": v for k, v in stats.items()},
        }
        last = update == n_updates - 1 or (time_limit_s is not None and record["train/elapsed_s"] > time_limit_s)
        if evaluate is not None and ((update + 1) % eval_every == 0 or last):
            agent.eval()
            score = float(evaluate(agent))
            agent.train()
            record["eval/fragment_rate"] = score
            if score < best_score:
                best_score = score
                if ckpt_dir is not None:
                    best = {"agent": agent.state_dict(), "score": score, "global_step": global_step}
                    _atomic_save(best, ckpt_dir / "best.pt")
        history.append(record)
        if ckpt_dir is not None:
            _atomic_save(
                {
                    "agent": agent.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "update": update + 1,
                    "global_step": global_step,
                    "history": history,
                    "best_score": best_score,
                    "torch_rng": torch.get_rng_state(),
                },
                ckpt_dir / "last.pt",
            )
        if logger is not None:
            logger.log_metrics({k: v for k, v in record.items() if np.isfinite(v)}, step=global_step)
        if bar is not None:
            bar.update(batch)
            bar.set_postfix(fr_dec=f"{record['train/episode_fr_decrease']:.3f}", sps=f"{record['train/sps']:.0f}")
        log.info(
            "update %d/%d step %d: episode FR decrease %.4f, eval FR %s, kl %.4f, ev %.2f, %.1f sps, %.0fs",
            update + 1,
            n_updates,
            global_step,
            record["train/episode_fr_decrease"],
            f"{record['eval/fragment_rate']:.4f}" if "eval/fragment_rate" in record else "-",
            stats.get("approx_kl", float("nan")),
            record["train/explained_variance"],
            record["train/sps"],
            record["train/elapsed_s"],
        )
        if last:
            if time_limit_s is not None and record["train/elapsed_s"] > time_limit_s:
                log.info("time limit of %.0f s reached after %d steps", time_limit_s, global_step)
            break
    if bar is not None:
        bar.close()
    envs.close()
    if evaluate is not None and ckpt_dir is not None and (ckpt_dir / "best.pt").is_file():
        agent.load_state_dict(torch.load(ckpt_dir / "best.pt", map_location=device, weights_only=False)["agent"])
    return history


def _atomic_save(obj: object, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)
