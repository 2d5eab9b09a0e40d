"""The gymnasium environments of this domain, registered by ``infragym.envs`` (entry points
are strings: registering imports nothing heavy)."""

# id -> (entry point, max_episode_steps)
ENVS = {
    "infragym/LLMAdmission-v0": (
        "infragym.envs.serving_schedulers.env:LLMAdmissionEnv",
        # an admission or run decision per step: 150 requests take ~500-3,000 steps
        50_000,
    ),
}
