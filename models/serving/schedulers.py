"""Replica schedulers of the serving baselines (the kernel's implementations, re-exported).

A scheduler is a ``ReplicaScheduler`` (``infragym.envs.serving.policies``): at each scheduling
point of a replica it admits waiting requests and runs the iteration. FCFS with head-of-line
blocking is vLLM's request-level policy and the baseline of later scheduler work; the registry
``SCHEDULERS`` maps config names to classes (``conf/scheduler/<name>.yaml``).
"""

from __future__ import annotations

from infragym.envs.serving.policies import SCHEDULERS, ReplicaScheduler
from infragym.envs.serving.schedulers import FCFSScheduler, ProgramFCFSScheduler

__all__ = ["SCHEDULERS", "FCFSScheduler", "ProgramFCFSScheduler", "ReplicaScheduler"]
