"""Warm start of the learned admission policy: behaviour cloning of a teacher rule before PPO.

The teacher (``batch_composition_rule``) admits the first candidate (candidates come ordered:
preempted, then those that can still meet their SLO by slack) that fits and keeps the next
iteration within the running streams' TBT slack, else runs: JITServe's batch-composition test
over EDF order, expressed on the policy's own observation. Cloning it gives PPO a starting point
that already protects streaming requests; PPO then improves on it against the env's reward
(the periodic evaluation keeps the best policy, the clone included).
"""

from __future__ import annotations

from collections.abc import Callable

import gymnasium as gym
import numpy as np

from infragym.models.serving_schedulers.admission_features import GLOBAL_NAMES, SLOT_NAMES, WINDOW

_SLOT = len(SLOT_NAMES)
_WITHIN = SLOT_NAMES.index("iteration_within_stream_slack")


def batch_composition_rule(obs: np.ndarray, mask: np.ndarray) -> int:
    """The teacher: the first allowed candidate whose prefill keeps the streams on pace, else run."""
    base = len(GLOBAL_NAMES)
    for slot in range(WINDOW):
        if mask[slot] and obs[base + slot * _SLOT + _WITHIN] > 0.5:
            return slot
    return WINDOW


def collect(
    make_env: Callable[[], gym.Env], episodes: int, seed: int, teacher: Callable[[np.ndarray, np.ndarray], int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(observations, masks, teacher actions) over ``episodes`` episodes seeded from ``seed``."""
    observations, masks, actions = [], [], []
    for episode in range(episodes):
        env = make_env()
        obs, info = env.reset(seed=seed + episode)
        done = False
        while not done:
            action = teacher(obs, info["action_mask"])
            observations.append(obs)
            masks.append(info["action_mask"])
            actions.append(action)
            obs, _, terminated, truncated, info = env.step(action)
            done = terminated or truncated
        env.close()
    return np.asarray(observations, np.float32), np.asarray(masks, bool), np.asarray(actions, np.int64)


def clone(policy, observations: np.ndarray, masks: np.ndarray, actions: np.ndarray, *, epochs: int = 10, seed: int = 0):  # type: ignore[no-untyped-def]
    """Fit an SB3 ``MaskableActorCriticPolicy``'s actor to the teacher's actions (masked
    cross-entropy, Adam); returns the final training accuracy."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    x = torch.as_tensor(observations)
    y = torch.as_tensor(actions)
    optimiser = torch.optim.Adam(policy.parameters(), lr=1e-3)
    n = len(y)
    for _ in range(epochs):
        for batch in torch.randperm(n, generator=generator).split(256):
            dist = policy.get_distribution(x[batch], action_masks=masks[batch.numpy()])
            loss = -dist.log_prob(y[batch]).mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    with torch.no_grad():
        dist = policy.get_distribution(x, action_masks=masks)
        predicted = dist.distribution.probs.argmax(dim=1)
    return float((predicted == y).float().mean())
