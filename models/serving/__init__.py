"""Schedulers for the LLM-serving simulator, and the serving-baselines task."""

from infragym.models.serving.schedulers import SCHEDULERS, FCFSScheduler

__all__ = ["SCHEDULERS", "FCFSScheduler"]
