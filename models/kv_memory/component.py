"""The KV memory studies' declaration in the component registry (no learned model, no export)."""

from __future__ import annotations

from infragym.components import Component

COMPONENT = Component(
    name="kv_memory",
    summary="LLM-serving KV memory: paged blocks vs vAttention pages; FastSwitch's context switching (VTC fairness)",
    task="infragym.models.kv_memory.task.KVMemoryTask",
    experiments=("kv_memory",),
)
