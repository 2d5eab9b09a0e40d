"""The serverless keep-alive component's declaration in the component registry."""

from __future__ import annotations

from infragym.components import Component

COMPONENT = Component(
    name="serverless",
    summary="how long to keep idle serverless pods warm and when to pre-warm them (EuroSys'25, ATC'20)",
    task="infragym.models.serverless.task.ServerlessTask",
    experiments=("serverless",),
    loader="infragym.models.serverless.export:KeepAlivePredictor.from_export",
    envs=("infragym/ServerlessKeepAlive-v0",),
    serving="infragym.models.serverless.serving:operations",
)
