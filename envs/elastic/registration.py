"""The gymnasium environments of this domain, registered by ``infragym.envs`` (entry points
are strings: registering imports nothing heavy)."""

# id -> (entry point, max_episode_steps)
ENVS = {
    "infragym/ElasticServing-v0": (
        "infragym.envs.elastic.env:ElasticServingEnv",
        # a scaling decision every 5 s: a 300 s episode is 60 steps
        10_000,
    ),
}
