"""The LLM-serving baselines' declaration in the component registry (no learned model, no export)."""

from __future__ import annotations

from infragym.components import Component

COMPONENT = Component(
    name="llm_serving",
    summary="LLM serving on a GPU cluster: calibrated discrete-event simulator, FCFS behind two routers",
    task="infragym.models.serving.task.ServingBaselinesTask",
    experiments=("serving_baselines",),
    envs=("infragym/LLMServing-v0",),
)
