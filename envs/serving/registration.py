"""The gymnasium environments of this domain, registered by ``infragym.envs`` (entry points
are strings: registering imports nothing heavy)."""

# id -> (entry point, max_episode_steps)
ENVS = {
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
}
