"""The elastic-MoE autoscaling component's declaration in the component registry."""

from __future__ import annotations

from infragym.components import Component

COMPONENT = Component(
    name="elastic_moe",
    summary="autoscaling an MoE deployment on bursty traffic with ElasticMoE's in-place scale steps vs "
    "restart and whole-replica scaling: PPO vs static, reactive, predictive (arXiv 2510.02613)",
    task="infragym.models.elastic_moe.task.ElasticMoETask",
    experiments=("elastic_moe",),
    loader="infragym.models.power_capping.export:DiscretePolicy.from_export",
    envs=("infragym/ElasticServing-v0",),
)
