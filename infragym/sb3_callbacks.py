"""Stable-Baselines3 callbacks the components' PPO trainers share."""

from __future__ import annotations

from collections.abc import Callable, MutableSequence
from typing import Any


def episode_logger(
    history: MutableSequence[tuple[int, float]],
    logger: Any,
    *,
    metric: str = "train/episode_return",
    value: Callable[[dict[str, Any]], float] = lambda info: float(info["episode"]["r"]),
) -> Any:
    """An SB3 callback that, for every episode that ends (SB3's ``Monitor`` puts ``episode`` in
    its info), appends ``(timestep, value(info))`` to ``history`` and logs it as ``metric`` with
    ``logger.log_metrics`` (the run's logger). ``value`` defaults to the episode's return."""
    from stable_baselines3.common.callbacks import BaseCallback

    class EpisodeLogger(BaseCallback):
        def _on_step(self) -> bool:
            for info in self.locals.get("infos", []):
                if "episode" in info:
                    measured = value(info)
                    history.append((self.num_timesteps, measured))
                    logger.log_metrics({metric: measured}, step=self.num_timesteps)
            return True

    return EpisodeLogger()


__all__ = ["episode_logger"]
