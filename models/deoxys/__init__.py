"""Deoxys: causal-forest recommendations of mitigation actions for unhealthy nodes."""

from infragym.models.deoxys.recommender import ActionOverride, Decisions, Deoxys

__all__ = ["ActionOverride", "Decisions", "Deoxys"]
