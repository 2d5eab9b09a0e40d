"""The serverless keep-alive export: the idle-time predictor (LightGBM text models) and the
window rule, loadable without the training stack (numpy and LightGBM; no pickle).

    policy = infragym.load("outputs/.../export")
    policy.windows([{"idle_times_s": [30, 45, 600], "invocations_so_far": 40, "trigger": "http",
                     "memory_mb": 256, "duration_s": 0.4, "end_time_s": 3600}])
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np

from infragym.envs.serverless.policies import N_LAGS, feature_matrix, trigger_codes
from infragym.export import ExportError, export_file
from infragym.models.serverless.learned import CostRule, IdleTimePredictor, WindowRule, rule_from_dict


def input_schema() -> dict[str, Any]:
    return {
        "type": "idle_events",
        "columns": {
            "idle_times_s": f"the function's recent idle times, most recent first (s; up to {N_LAGS} used)",
            "invocations_so_far": "invocations of the function before this one (int)",
            "trigger": "trigger type (http, timer, queue, event, orchestration, storage, other)",
            "memory_mb": "the pod's memory (MB)",
            "duration_s": "the execution time of the invocation that just ended (s)",
            "end_time_s": "when it ended (s; its time of day is a feature)",
        },
    }


def output_schema(levels: Sequence[float]) -> dict[str, Any]:
    return {
        "type": "windows",
        "columns": ["prewarm_s", "keep_alive_s", *[f"idle_q{lv:g}_s" for lv in levels]],
        "unit": "seconds",
    }


def event_features(events: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """The predictor's features from served idle events (the same builder as for traces)."""
    n = len(events)
    lags = np.full((n, N_LAGS), np.nan)
    for row, event in enumerate(events):
        history = [float(x) for x in event.get("idle_times_s", [])][:N_LAGS]
        if any(not np.isfinite(x) or x < 0 for x in history):
            raise ValueError(f"event {row}: idle_times_s must be finite and >= 0")
        lags[row, : len(history)] = history
    column = lambda key, default: np.array([float(e.get(key, default)) for e in events])  # noqa: E731
    triggers = trigger_codes(tuple(str(e.get("trigger", "unknown")) for e in events))
    return feature_matrix(
        lags,
        column("invocations_so_far", 0),
        column("end_time_s", 0.0),
        triggers,
        column("memory_mb", 128.0),
        column("duration_s", 0.0),
    )


def _memory_gb(events: Sequence[Mapping[str, Any]]) -> np.ndarray:
    return np.array([float(e.get("memory_mb", 128.0)) for e in events]) / 1024.0


class KeepAlivePredictor:
    """A loaded export: ``quantiles`` of the idle time after an invocation and the ``windows``
    (pre-warm, keep-alive) the learned rule gives it."""

    def __init__(
        self, predictor: IdleTimePredictor, rule: WindowRule | CostRule, manifest: dict[str, Any] | None = None
    ) -> None:
        self.predictor = predictor
        self.rule = rule
        self.manifest = manifest or {}

    @classmethod
    def from_export(cls, directory: Path, manifest: dict[str, Any]) -> KeepAlivePredictor:
        try:
            spec = json.loads(export_file(directory, manifest, "policy.json").read_text())
            predictor = IdleTimePredictor.from_state(
                spec["predictor"], lambda name: export_file(directory, manifest, name).read_bytes()
            )
            rule = rule_from_dict(spec["rule"], predictor.levels)
            return cls(predictor, rule, manifest)
        except ExportError:
            raise
        except (KeyError, TypeError, OSError, ValueError, lgb.basic.LightGBMError) as exc:
            raise ExportError(f"{directory}: policy.json is not a valid serverless export ({exc})") from exc

    def quantiles(self, events: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """(n, levels) idle-time quantiles (s)."""
        return self.predictor.quantiles(event_features(events))

    def windows(self, events: Sequence[Mapping[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
        """Pre-warm and keep-alive windows (s) for each idle event."""
        return self.rule.windows(self.quantiles(events), self.predictor.levels, _memory_gb(events))

    def predict(self, events: Sequence[Mapping[str, Any]]) -> list[dict[str, float]]:
        """Windows and quantiles per event, as rows."""
        q = self.quantiles(events)
        prewarm, keep = self.rule.windows(q, self.predictor.levels, _memory_gb(events))
        return [
            {
                "prewarm_s": float(p),
                "keep_alive_s": float(k),
                **{f"idle_q{lv:g}_s": float(v) for lv, v in zip(self.predictor.levels, row, strict=True)},
            }
            for p, k, row in zip(prewarm, keep, q, strict=True)
        ]


__all__ = ["KeepAlivePredictor", "event_features", "input_schema", "output_schema"]
