"""The Continuum export: tool-duration predictors and TTL parameters, loadable without the
training stack (numpy, pandas and LightGBM only; no pickle, so no signature is needed).

    predictor = infragym.load("outputs/.../export")
    predictor.predict([{"tool": "bash", "arguments": "pytest -x tests/test_api.py"}])
    predictor.ttl(calls, reload_s=[3.0], queue_delay_s=[10.0])
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from infragym.export import ExportError, export_file
from infragym.models.continuum.predictors import (
    DurationPredictor,
    PredictorError,
    continuum_ttl,
    predictor_from_state,
)


def input_schema() -> dict[str, Any]:
    return {
        "type": "tool_calls",
        "columns": {
            "tool": "tool name (str; e.g. bash, str_replace_editor, get_weather)",
            "arguments": "argument text (str; a shell command for bash)",
            "turn": "optional: index of the LLM call in its program (int)",
            "context_tokens": "optional: tokens in the program's context (int)",
            "prev_duration_s": "optional: the program's previous tool duration (s)",
            "prog_mean_duration_s": "optional: mean of the program's earlier tool durations (s)",
            "prev_same_tool_s": "optional: the program's previous duration of the same tool (s)",
        },
    }


def output_schema(levels: Sequence[float]) -> dict[str, Any]:
    return {
        "type": "quantiles",
        "columns": [f"q{lv:g}" for lv in levels] + ["mean"],
        "unit": "seconds",
    }


class ContinuumPredictor:
    """A loaded Continuum export: ``predict`` (the selected predictor, or any by name) and
    ``ttl`` (the paper's rule with the exported eta)."""

    def __init__(
        self,
        predictors: Mapping[str, DurationPredictor],
        best: str,
        ttl: Mapping[str, Any],
        manifest: dict[str, Any] | None = None,
        learned_model: Any = None,
    ) -> None:
        if best not in predictors:
            raise ExportError(f"the selected predictor {best!r} is not among the exported ones")
        self.predictors = dict(predictors)
        self.best = best
        self.eta = float(ttl["eta"])
        self.pin_cost = float(ttl["pin_cost"])
        self.manifest = manifest or {}
        self.learned_model = learned_model  # the learned TTL policy's reward model (LightGBM)

    @classmethod
    def from_export(cls, directory: Path, manifest: dict[str, Any]) -> ContinuumPredictor:
        try:
            spec = json.loads(export_file(directory, manifest, "predictors.json").read_text())
            predictors = {
                name: predictor_from_state(state, lambda f: export_file(directory, manifest, f).read_bytes())
                for name, state in spec["predictors"].items()
            }
            learned = None
            if spec["ttl"].get("learned_model_file"):
                learned = lgb.Booster(
                    model_str=export_file(directory, manifest, spec["ttl"]["learned_model_file"]).read_text()
                )
            return cls(predictors, spec["best"], spec["ttl"], manifest, learned)
        except ExportError:
            raise
        except (KeyError, TypeError, OSError, ValueError, PredictorError, lgb.basic.LightGBMError) as exc:
            raise ExportError(f"{directory}: predictors.json is not a valid Continuum export ({exc})") from exc

    def predict(
        self, tool_calls: pd.DataFrame | Sequence[Mapping[str, Any]], *, predictor: str | None = None
    ) -> pd.DataFrame:
        """Predicted duration quantiles (s) and mean for each tool call."""
        name = predictor or self.best
        if name not in self.predictors:
            raise KeyError(f"predictor {name!r} is not in this export (has {sorted(self.predictors)})")
        return self.predictors[name].predict(tool_calls)

    def ttl(
        self,
        tool_calls: pd.DataFrame | Sequence[Mapping[str, Any]],
        *,
        reload_s: Sequence[float] | np.ndarray,
        queue_delay_s: Sequence[float] | np.ndarray,
    ) -> np.ndarray:
        """tau* = argmax over the predicted quantiles of level * (eta * T_queue + Reload) -
        pin_cost * tau, or 0 when no candidate gains."""
        predictor = self.predictors[self.best]
        q, _, index = predictor.distribution(tool_calls)
        benefit = self.eta * np.asarray(queue_delay_s, dtype=np.float64) + np.asarray(reload_s, dtype=np.float64)
        if benefit.shape != (len(index),):
            raise ValueError(f"reload_s and queue_delay_s need one value per tool call ({len(index)})")
        return continuum_ttl(q, predictor.levels, benefit, self.pin_cost)


__all__ = ["ContinuumPredictor", "input_schema", "output_schema"]
