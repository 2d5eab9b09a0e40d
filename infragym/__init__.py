"""InfraGym: learned decision models for cloud and AI infrastructure.

The core package holds what every component shares: config schemas, the Task protocol,
export/load, seeding, the results table and logging helpers. Domain code lives in
``infragym.envs``, ``infragym.models`` and ``infragym.datasets``.
"""

from infragym.export import ExportError, load

__version__ = "0.1.0"
__all__ = ["ExportError", "__version__", "load"]
