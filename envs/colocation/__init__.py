"""Co-location interference: executions of co-located VMs in the CloudPerfTrace layout."""

from infragym.envs.colocation.applications import APPLICATION_NAMES, APPLICATIONS, STATIC_APPLICATIONS, Application
from infragym.envs.colocation.simulator import (
    GROUPS,
    PAPER_GROUP_SIZES,
    SCENARIOS,
    ColocationSimulator,
    SimulatedExecutions,
    group_sizes,
)

__all__ = [
    "APPLICATIONS",
    "APPLICATION_NAMES",
    "GROUPS",
    "PAPER_GROUP_SIZES",
    "SCENARIOS",
    "STATIC_APPLICATIONS",
    "Application",
    "ColocationSimulator",
    "SimulatedExecutions",
    "group_sizes",
]
