"""The deployable Deoxys predictor: ``infragym.load(path).predict(dataframe)``.

Needs numpy, pandas, scikit-learn and econml (the estimator's own library), not Hydra,
Lightning or W&B.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd

from infragym.envs.health.features import encoded_feature_names
from infragym.envs.health.simulator import ACTIONS, CATEGORICAL_FEATURES, NUMERIC_FEATURES
from infragym.export import export_file
from infragym.models.deoxys.recommender import EFFECT_OUTCOMES, ActionOverride, Decisions, Deoxys

MODEL_FILE = "deoxys.joblib"


def input_schema() -> dict[str, Any]:
    return {
        "type": "pandas.DataFrame",
        "columns": {
            **{c: {"dtype": "category", "categories": list(v)} for c, v in CATEGORICAL_FEATURES.items()},
            **{c: {"dtype": "number"} for c in NUMERIC_FEATURES},
        },
        "optional": {"legacy_action": {"dtype": "category", "categories": list(ACTIONS)}},
        "encoded_features": encoded_feature_names(),
    }


def output_schema() -> dict[str, Any]:
    return {
        "type": "pandas.DataFrame",
        "columns": {
            "action": list(ACTIONS),
            "model_action": list(ACTIONS),
            "legacy_action": list(ACTIONS),
            "fallback": "bool: the legacy action was kept because the interval was not clear of zero",
            "overridden": "bool: action overriding changed the action",
            **{f"effect_{k}": "float: predicted change of the final action vs legacy" for k in EFFECT_OUTCOMES},
            "objective_change_lower": "float: interval of the model action's objective change vs legacy",
            "objective_change_upper": "float",
        },
    }


def save_model(model: Deoxys, path: Path) -> None:
    joblib.dump(model, path, compress=3)


class DeoxysPredictor:
    """A loaded Deoxys export."""

    def __init__(self, model: Deoxys, manifest: dict[str, Any]) -> None:
        self.model = model
        self.manifest = manifest

    @classmethod
    def from_export(cls, directory: Path, manifest: dict[str, Any]) -> DeoxysPredictor:
        model = joblib.load(export_file(directory, manifest, MODEL_FILE))  # verified (and trusted) by infragym.load
        if not isinstance(model, Deoxys):
            raise TypeError(f"{directory / MODEL_FILE}: expected a Deoxys model, got {type(model).__name__}")
        return cls(model, manifest)

    def decide(
        self,
        features: pd.DataFrame,
        legacy_actions: np.ndarray | None = None,
        *,
        fallback: bool | None = None,
        override: ActionOverride | None = None,
    ) -> Decisions:
        return self.model.decide(features, legacy_actions, fallback=fallback, override=override)

    def predict(
        self, features: pd.DataFrame, *, fallback: bool | None = None, override: ActionOverride | None = None
    ) -> pd.DataFrame:
        """Actions, predicted effects and whether the fallback fired, one row per event.

        A ``legacy_action`` column, if present, is the action the legacy policy would take;
        otherwise the built-in legacy runbook is applied.
        """
        legacy = features["legacy_action"].to_numpy() if "legacy_action" in features.columns else None
        frame = self.decide(features, legacy, fallback=fallback, override=override).to_frame()
        frame.index = features.index
        return frame
