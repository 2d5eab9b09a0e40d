"""Unhealthy-node mitigation: simulator, features, objective and the contextual-bandit env."""

from infragym.envs.health.env import UnhealthyNodeMitigationEnv
from infragym.envs.health.features import (
    FeatureError,
    encode_features,
    encoded_feature_names,
    validate_features,
)
from infragym.envs.health.objective import MitigationObjective
from infragym.envs.health.simulator import (
    ACTIONS,
    CATEGORICAL_FEATURES,
    FEATURES,
    NUMERIC_FEATURES,
    OUTCOMES,
    ROOT_CAUSES,
    EventBatch,
    UnhealthyNodeSimulator,
)

__all__ = [
    "ACTIONS",
    "CATEGORICAL_FEATURES",
    "FEATURES",
    "NUMERIC_FEATURES",
    "OUTCOMES",
    "ROOT_CAUSES",
    "EventBatch",
    "FeatureError",
    "MitigationObjective",
    "UnhealthyNodeMitigationEnv",
    "UnhealthyNodeSimulator",
    "encode_features",
    "encoded_feature_names",
    "validate_features",
]
