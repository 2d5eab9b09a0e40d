"""Simulators and their gymnasium environments, one sub-package per domain.

Importing ``infragym.envs`` registers every environment with gymnasium: each domain declares its
own in ``<domain>/registration.py`` (``ENVS``: id -> (entry point, max_episode_steps)), so a new
domain adds its envs without editing this file. Those files are read on their own, without
importing their domain packages (which load the simulators): registering stays cheap.
"""

import importlib.util
from pathlib import Path

from gymnasium.envs.registration import register, registry

for _declaration in sorted(Path(__file__).parent.glob("*/registration.py")):
    _spec = importlib.util.spec_from_file_location(f"{__name__}.{_declaration.parent.name}.registration", _declaration)
    _module = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_module)
    for _env_id, (_entry_point, _max_steps) in _module.ENVS.items():
        if _env_id not in registry:
            register(id=_env_id, entry_point=_entry_point, max_episode_steps=_max_steps)
