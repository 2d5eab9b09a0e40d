"""PPO for the two-stage agent, CleanRL style: one readable loop (``train_ppo``) built from
importable, tested pieces (``make_vector_env``, ``compute_gae``, ``act``, ``evaluate_actions``,
``ppo_loss``).

The joint action is (VM, destination): log pi(a) = log pi(vm) + log pi(dest | vm), the entropy
the sum of both stages' entropies. Hyper-parameters default to VM2RL's (Sec. 6: lr 2.5e-4
annealed, gamma 0.99, GAE 0.95, clip 0.1, entropy 0.005, target KL 0.15), at a smaller scale.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

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


def make_vector_env(env_fns: Sequence[Callable[[], gym.Env]]) -> gym.vector.SyncVectorEnv:
    """Synchronous vector env that resets a finished env within the same step (so a rollout
    never holds a transition from a finished episode into the next)."""
    return gym.vector.SyncVectorEnv(list(env_fns), autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)


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
) -> list[dict[str, float]]:
    """Train ``agent`` in place; returns one stats record per update."""
    envs = make_vector_env(env_fns)
    device = torch.device(args.device)
    agent.to(device)
    n_envs, T = envs.num_envs, args.n_steps
    optimizer = torch.optim.Adam(agent.parameters(), lr=args.learning_rate, eps=1e-5)
    n_updates = max(1, args.total_steps // (n_envs * T))
    obs, info = envs.reset(seed=args.seed)
    history: list[dict[str, float]] = []
    started = time.perf_counter()
    episode_returns: list[float] = []
    running = np.zeros(n_envs)
    global_step = 0

    def placement_masks(vms: np.ndarray) -> np.ndarray:
        return np.stack([e.unwrapped.placement_mask(int(v)) for e, v in zip(envs.envs, vms, strict=True)])

    for update in range(n_updates):
        if args.anneal_lr:
            optimizer.param_groups[0]["lr"] = args.learning_rate * (1.0 - update / n_updates)
        buf: dict[str, list[Tensor]] = {
            k: [] for k in (*OBS_KEYS, "vm_mask", "dest_mask", "action_vm", "action_dest", "logp")
        }
        rewards, dones, values = [], [], []
        for _ in range(T):
            obs_t = obs_to_tensors(obs, device)
            vm_mask = torch.as_tensor(np.asarray(info["action_mask"], dtype=bool), device=device)
            with torch.no_grad():
                vm, dest, dest_mask, logp, value = act(agent, obs_t, vm_mask, placement_masks)
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
            obs, reward, terminated, truncated, info = envs.step(np.stack([vm.cpu().numpy(), dest.cpu().numpy()], 1))
            done = np.logical_or(terminated, truncated)
            running += reward
            for i in np.flatnonzero(done):
                episode_returns.append(float(running[i]))
                running[i] = 0.0
            rewards.append(torch.as_tensor(reward * args.reward_scale, dtype=torch.float32, device=device))
            dones.append(torch.as_tensor(terminated, dtype=torch.float32, device=device))
            global_step += n_envs
        with torch.no_grad():
            obs_t = obs_to_tensors(obs, device)
            last_value = agent.encode(obs_t["vm"], obs_t["pm"], obs_t["vm_host"], obs_t["budget"])[3]
        advantages, returns = compute_gae(
            torch.stack(rewards), torch.stack(values), torch.stack(dones), last_value, args.gamma, args.gae_lambda
        )
        flat = {k: torch.stack(v).flatten(0, 1) for k, v in buf.items()}
        flat_adv, flat_ret = advantages.flatten(), returns.flatten()
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
        recent = episode_returns[-20:]
        record = {
            "train/step": float(global_step),
            "train/episode_fr_decrease": float(np.mean(recent)) if recent else float("nan"),
            "train/elapsed_s": time.perf_counter() - started,
            **{f"train/{k}": v for k, v in stats.items()},
        }
        history.append(record)
        if logger is not None:
            logger.log_metrics({k: v for k, v in record.items() if np.isfinite(v)}, step=global_step)
        log.info(
            "update %d/%d step %d: episode FR decrease %.4f, kl %.4f, %.0fs",
            update + 1,
            n_updates,
            global_step,
            record["train/episode_fr_decrease"],
            stats.get("approx_kl", float("nan")),
            record["train/elapsed_s"],
        )
        if time_limit_s is not None and record["train/elapsed_s"] > time_limit_s:
            log.info("time limit of %.0f s reached after %d steps", time_limit_s, global_step)
            break
    envs.close()
    return history
