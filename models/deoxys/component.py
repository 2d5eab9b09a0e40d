"""Deoxys' declaration in the component registry."""

from __future__ import annotations

from dataclasses import dataclass

from infragym.components import Component


@dataclass
class DeoxysEvaluation:
    """``infragym evaluate checkpoint=... evaluation.<key>=...`` for a Deoxys export."""

    # Fresh test events (null: as many as the training run used).
    n_test_events: int | None = None
    # Refit the baselines that need training (S/T-learner, DR policy forest) on the training run's
    # log, regenerated from its seed, so the export is compared with them on the same events.
    refit_baselines: bool = True


COMPONENT = Component(
    name="deoxys",
    summary="mitigation action for an unhealthy node: DML + causal forest (econml) with fallback (SoCC'24)",
    task="infragym.models.deoxys.task.DeoxysTask",
    experiments=("deoxys", "deoxys_100k"),
    loader="infragym.models.deoxys.export:DeoxysPredictor.from_export",
    # the causal forest is persisted with joblib (pickle): loading runs code
    code_bearing=True,
    evaluation=DeoxysEvaluation,
    envs=("infragym/UnhealthyNodeMitigation-v0",),
    serving="infragym.models.deoxys.serving:operations",
)
