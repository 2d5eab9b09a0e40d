"""VM2RL's declaration in the component registry."""

from __future__ import annotations

from infragym.components import Component

COMPONENT = Component(
    name="vm2rl",
    summary="which VMs to migrate where within a migration budget: two-stage attention PPO (EuroSys'25)",
    task="infragym.models.vm2rl.task.VM2RLTask",
    experiments=("vm2rl", "vm2rl_full", "vm2rl_real"),
    loader="infragym.models.vm2rl.export:VM2RLPredictor.from_export",
    envs=("infragym/VMReschedule-v0",),
    serving="infragym.models.vm2rl.serving:operations",
)
