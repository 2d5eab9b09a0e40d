"""The gymnasium environments of this domain, registered by ``infragym.envs`` (entry points
are strings: registering imports nothing heavy)."""

# id -> (entry point, max_episode_steps)
ENVS = {
    "infragym/VMReschedule-v0": (
        "infragym.envs.cluster.env:VMRescheduleEnv",
        # the env terminates itself after MNL migrations (default 50); this only guards misuse
        1_000,
    ),
}
