"""InfraGym: learned decision models for cloud and AI infrastructure.

The core package holds what every component shares: the component registry, config schemas, the
Task protocol and evaluation helpers, export/load, seeding, logging and the ``infragym`` command.
It names no component: components declare themselves (``infragym.components``). Domain code lives
in ``infragym.envs``, ``infragym.models`` and ``infragym.datasets``.
"""

from pathlib import Path as _Path

__version__ = "0.2.0.dev0"

# In a source checkout the domain folders (envs/, models/, datasets/, conf/) sit beside this
# package and install as its sub-packages (setup.py). Adding the checkout to the package's path
# maps infragym.<folder> to them, so `python train.py` in a checkout works without an editable
# install too (e.g. next to an installed wheel, whose copy the checkout's folder shadows).
_checkout = _Path(__file__).resolve().parent.parent
if (_checkout / "pyproject.toml").is_file() and (_checkout / "models").is_dir() and str(_checkout) not in __path__:
    __path__.append(str(_checkout))

from infragym.export import ExportError, load  # noqa: E402  (after the path set-up above)

__all__ = ["ExportError", "__version__", "load"]
