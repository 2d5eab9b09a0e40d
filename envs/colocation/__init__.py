"""Co-location interference: a shared-host simulator producing CloudPerfTrace-shaped telemetry."""

from infragym.envs.colocation.simulator import (
    FAMILIES,
    GROUPS,
    RESOURCES,
    WORKLOADS,
    AppFamily,
    ColocationSimulator,
    MetricCatalogue,
    Traces,
    contention,
    group_sizes,
    make_catalogue,
)

__all__ = [
    "FAMILIES",
    "GROUPS",
    "RESOURCES",
    "WORKLOADS",
    "AppFamily",
    "ColocationSimulator",
    "MetricCatalogue",
    "Traces",
    "contention",
    "group_sizes",
    "make_catalogue",
]
