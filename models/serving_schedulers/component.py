"""The serving-schedulers component's declaration in the component registry."""

from __future__ import annotations

from infragym.components import Component

COMPONENT = Component(
    name="serving_schedulers",
    summary="LLM serving admission: Past-Future (LightLLM), JITServe and a learned MaskablePPO scheduler vs "
    "FCFS/conservative/EDF/SJF, goodput vs load",
    task="infragym.models.serving_schedulers.task.ServingSchedulersTask",
    experiments=("serving_schedulers", "serving_schedulers_full"),
    loader="infragym.models.serving_schedulers.export:AdmissionPolicy.from_export",
    envs=("infragym/LLMAdmission-v0",),
)
