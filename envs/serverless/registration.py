"""The gymnasium environments of this domain, registered by ``infragym.envs`` (entry points
are strings: registering imports nothing heavy)."""

# id -> (entry point, max_episode_steps)
ENVS = {
    "infragym/ServerlessKeepAlive-v0": (
        "infragym.envs.serverless.env:ServerlessKeepAliveEnv",
        # a window decision per invocation: 8 functions x 6 h make up to 12,000 steps
        20_000,
    ),
}
