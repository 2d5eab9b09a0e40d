"""Deoxys: causal-forest recommendations of mitigation actions for unhealthy nodes.

The recommender is imported on first use, so reading the component registry
(``infragym.models.deoxys.component``) does not import econml.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ActionOverride", "Decisions", "Deoxys"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from infragym.models.deoxys import recommender

        return getattr(recommender, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
