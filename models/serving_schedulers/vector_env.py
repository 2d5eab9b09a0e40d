"""A gymnasium vector env (``AsyncVectorEnv``: one process per env) seen as an SB3 ``VecEnv``,
so that sb3-contrib's MaskablePPO collects rollouts through gymnasium's vector API.

Finished envs reset within the same step (``AutoresetMode.SAME_STEP``): the returned
observation starts the next episode and the last one's is in ``terminal_observation``, as SB3
expects; masks come from each env's ``action_masks()`` through ``call``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env.base_vec_env import VecEnv


class GymnasiumVecEnv(VecEnv):
    """SB3 view of ``gym.vector.AsyncVectorEnv`` (or ``SyncVectorEnv`` with asynchronous=False)."""

    def __init__(self, env_fns: Sequence[Callable[[], gym.Env]], *, asynchronous: bool = True) -> None:
        mode = gym.vector.AutoresetMode.SAME_STEP
        if asynchronous:
            self.venv: gym.vector.VectorEnv = gym.vector.AsyncVectorEnv(
                list(env_fns), autoreset_mode=mode, context="spawn"
            )
        else:
            self.venv = gym.vector.SyncVectorEnv(list(env_fns), autoreset_mode=mode)
        super().__init__(len(env_fns), self.venv.single_observation_space, self.venv.single_action_space)
        self._actions: np.ndarray | None = None
        self._returns = np.zeros(self.num_envs)
        self._lengths = np.zeros(self.num_envs, np.int64)
        self._seed: int | None = None

    def seed(self, seed: int | None = None) -> Sequence[int | None]:
        self._seed = seed
        return [None if seed is None else seed + i for i in range(self.num_envs)]

    def reset(self) -> np.ndarray:
        seeds = None if self._seed is None else [self._seed + i for i in range(self.num_envs)]
        obs, _ = self.venv.reset(seed=seeds)
        self._seed = None  # seed only the first reset; later episodes continue each env's stream
        self._returns[:] = 0.0
        self._lengths[:] = 0
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions)

    def step_wait(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict[str, Any]]]:
        obs, rewards, terminated, truncated, infos = self.venv.step(self._actions)
        dones = terminated | truncated
        self._returns += rewards
        self._lengths += 1
        out: list[dict[str, Any]] = []
        for i in range(self.num_envs):
            info: dict[str, Any] = {}
            if dones[i]:
                info["terminal_observation"] = infos["final_obs"][i]
                info["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
                info["episode"] = {"r": float(self._returns[i]), "l": int(self._lengths[i])}
                self._returns[i] = 0.0
                self._lengths[i] = 0
            out.append(info)
        return obs, rewards.astype(np.float32), dones, out

    def close(self) -> None:
        self.venv.close()

    def get_attr(self, attr_name: str, indices: Any = None) -> list[Any]:
        values = list(self.venv.get_attr(attr_name))
        return [values[i] for i in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: Any = None) -> None:
        raise NotImplementedError("GymnasiumVecEnv: set_attr is not supported")

    def env_method(self, method_name: str, *method_args: Any, indices: Any = None, **method_kwargs: Any) -> list[Any]:
        values = list(self.venv.call(method_name, *method_args, **method_kwargs))
        return [values[i] for i in self._get_indices(indices)]

    def env_is_wrapped(self, wrapper_class: type, indices: Any = None) -> list[bool]:
        return [False for _ in self._get_indices(indices)]
