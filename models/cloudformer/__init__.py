"""CloudFormer: dual-branch Transformer interference predictor and its baselines."""
