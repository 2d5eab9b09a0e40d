"""The gymnasium environments of this domain, registered by ``infragym.envs`` (entry points
are strings: registering imports nothing heavy)."""

# id -> (entry point, max_episode_steps)
ENVS = {
    "infragym/UnhealthyNodeMitigation-v0": (
        "infragym.envs.health.env:UnhealthyNodeMitigationEnv",
        # One event per episode: the env terminates after one step. A limit of 1 would make
        # TimeLimit flag that step as truncated too; 2 only guards against misuse.
        2,
    ),
}
