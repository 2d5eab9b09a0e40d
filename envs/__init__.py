"""Simulators and their gymnasium environments, one sub-package per domain.

Importing ``infragym.envs`` registers every environment with gymnasium.
"""

from gymnasium.envs.registration import register, registry

_ENVS = {
    "infragym/UnhealthyNodeMitigation-v0": (
        "infragym.envs.health.env:UnhealthyNodeMitigationEnv",
        1,  # one event per episode
    ),
}

for _env_id, (_entry_point, _max_steps) in _ENVS.items():
    if _env_id not in registry:
        register(id=_env_id, entry_point=_entry_point, max_episode_steps=_max_steps)
