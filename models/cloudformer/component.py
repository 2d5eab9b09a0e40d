"""CloudFormer's declaration in the component registry."""

from __future__ import annotations

from dataclasses import dataclass

from infragym.components import Component


@dataclass
class CloudFormerEvaluation:
    """``infragym evaluate checkpoint=... evaluation.<key>=...`` for a CloudFormer export."""

    # Refit the tabular baselines on the run's training split (regenerated from its seed) to
    # compare the export with them on the same test executions.
    refit_baselines: bool = True


COMPONENT = Component(
    name="cloudformer",
    summary="a VM's performance degradation from co-location, from black-box telemetry (arXiv 2509.03394)",
    task="infragym.models.cloudformer.task.CloudFormerTask",
    experiments=("cloudformer", "cloudformer_full"),
    loader="infragym.models.cloudformer.export:CloudFormerPredictor.from_export",
    evaluation=CloudFormerEvaluation,
    uses_trainer=True,
    serving="infragym.models.cloudformer.serving:operations",
)
