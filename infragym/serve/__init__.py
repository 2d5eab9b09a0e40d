"""The decision service: ``infragym serve EXPORT [EXPORT ...]`` serves exports over HTTP.

Imports no training stack: a service of ONNX and JSON exports needs numpy, onnxruntime and the
web framework (``pip install infragym[serve]``), not torch, Lightning, Hydra or W&B.
"""

from infragym.serve.app import ServedModel, ServeError, create_app, load_models
from infragym.serve.client import Client, ServiceError
from infragym.serve.operations import FiniteFloat, Operation, RequestError, StrictModel

__all__ = [
    "Client",
    "FiniteFloat",
    "Operation",
    "RequestError",
    "ServeError",
    "ServedModel",
    "ServiceError",
    "StrictModel",
    "create_app",
    "load_models",
]
