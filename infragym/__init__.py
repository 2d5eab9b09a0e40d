"""InfraGym: learned decision models for cloud and AI infrastructure.

The core package holds what every component shares: the component registry, config schemas, the
Task protocol and evaluation helpers, export/load, seeding, logging and the ``infragym`` command.
It names no component: components declare themselves (``infragym.components``). Domain code lives
in ``infragym.envs``, ``infragym.models`` and ``infragym.datasets``.
"""

__version__ = "0.2.0.dev0"

from infragym.export import ExportError, load

__all__ = ["ExportError", "__version__", "load"]
