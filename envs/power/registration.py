"""The gymnasium environments of this domain, registered by ``infragym.envs`` (entry points
are strings: registering imports nothing heavy)."""

# id -> (entry point, max_episode_steps)
ENVS = {
    "infragym/PowerCapping-v0": (
        "infragym.envs.power.env:PowerCappingEnv",
        # a cap decision every 2 s: a 600 s episode is 300 steps
        10_000,
    ),
}
