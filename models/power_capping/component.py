"""The power-capping (POLCA) component's declaration in the component registry."""

from __future__ import annotations

from infragym.components import Component

COMPONENT = Component(
    name="power_capping",
    summary="frequency caps for a power-oversubscribed row of LLM inference servers: PPO vs POLCA's "
    "two-threshold rule (arXiv 2308.12908)",
    task="infragym.models.power_capping.task.PowerCappingTask",
    experiments=("power_capping",),
    loader="infragym.models.power_capping.export:DiscretePolicy.from_export",
    envs=("infragym/PowerCapping-v0",),
)
