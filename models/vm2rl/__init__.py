"""VM2RL: two-stage PPO VM rescheduling agent, its baselines, evaluation and export."""
