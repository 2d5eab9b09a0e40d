"""The gymnasium environments of this domain, registered by ``infragym.envs`` (entry points
are strings: registering imports nothing heavy)."""

# id -> (entry point, max_episode_steps)
ENVS = {
    "infragym/TrainingReliability-v0": (
        "infragym.envs.training.env:TrainingReliabilityEnv",
        # the env terminates itself at its horizon (7 days: ~200 failures + ticks); a guard only
        1_000_000,
    ),
}
