"""Simulators and their gymnasium environments, one sub-package per domain.

Importing ``infragym.envs`` registers every environment with gymnasium.
"""

from gymnasium.envs.registration import register, registry

_ENVS = {
    "infragym/UnhealthyNodeMitigation-v0": (
        "infragym.envs.health.env:UnhealthyNodeMitigationEnv",
        # One event per episode: the env terminates after one step. A limit of 1 would make
        # TimeLimit flag that step as truncated too; 2 only guards against misuse.
        2,
    ),
    "infragym/LLMServing-v0": (
        "infragym.envs.serving.env:LLMServingEnv",
        # a scheduling decision per step; an episode of 200 requests takes ~400-1000 steps
        20_000,
    ),
    "infragym/KVCacheTTL-v0": (
        "infragym.envs.serving.ttl_env:KVCacheTTLEnv",
        # a TTL decision per tool call: 200 SWE-like programs make ~4,600 steps
        200_000,
    ),
    "infragym/ServerlessKeepAlive-v0": (
        "infragym.envs.serverless.env:ServerlessKeepAliveEnv",
        # a window decision per invocation: 8 functions x 6 h make up to 12,000 steps
        20_000,
    ),
    "infragym/VMReschedule-v0": (
        "infragym.envs.cluster.env:VMRescheduleEnv",
        # the env terminates itself after MNL migrations (default 50); this only guards misuse
        1_000,
    ),
    "infragym/TrainingReliability-v0": (
        "infragym.envs.training.env:TrainingReliabilityEnv",
        # the env terminates itself at its horizon (7 days: ~200 failures + ticks); a guard only
        1_000_000,
    ),
}

for _env_id, (_entry_point, _max_steps) in _ENVS.items():
    if _env_id not in registry:
        register(id=_env_id, entry_point=_entry_point, max_episode_steps=_max_steps)
