"""Continuum's declaration in the component registry."""

from __future__ import annotations

from infragym.components import Component

COMPONENT = Component(
    name="continuum",
    summary="how long to keep an agent's KV cache across a tool call; program-level FCFS (arXiv 2511.02230)",
    task="infragym.models.continuum.task.ContinuumTask",
    experiments=("continuum",),
    loader="infragym.models.continuum.export:ContinuumPredictor.from_export",
    envs=("infragym/KVCacheTTL-v0",),
    serving="infragym.models.continuum.serving:operations",
)
