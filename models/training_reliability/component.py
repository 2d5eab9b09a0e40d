"""The training-reliability component's declaration in the component registry."""

from __future__ import annotations

from infragym.components import Component

COMPONENT = Component(
    name="training_reliability",
    summary="checkpoint interval/tier and failure recovery for LLM training at scale: PPO vs Young/Daly, "
    "MegaScale, C4, DataStates, in-memory EC, CheckFree",
    task="infragym.models.training_reliability.task.TrainingReliabilityTask",
    experiments=("training_reliability",),
    loader="infragym.models.training_reliability.export:ReliabilityPolicy.from_export",
    envs=("infragym/TrainingReliability-v0",),
)
