"""How long a scale step takes, and what the deployment serves meanwhile, for each method.

Three methods (ElasticMoE, arXiv 2510.02613, Sec. 1-2):

- ``restart`` (vertical scaling by restart): stop the instance, start one with the new parallel
  layout, load all weights from storage and copy them to the devices. Nothing is served
  meanwhile and the running requests' KV caches are lost (they are recomputed after).
  Latency = engine setup + weights / storage bandwidth + weights per device / PCIe.
- ``replica`` (horizontal scaling): provision a whole new replica of the initial layout (a
  step of ``replica_devices``), which loads its weights from storage as above; the old
  replicas keep serving. Latency = provisioning + engine setup + the weight load.
- ``elastic`` (ElasticMoE): the running instance keeps serving; its weights and KV stay where
  they are (zero-copy remapping in HBM), the new devices receive their share of the experts
  and a copy of the non-expert weights peer-to-peer over the device links, and join the
  communicator. Latency = communicator extension + worker init on the new devices + P2P bytes
  / device bandwidth. Scale-down moves the leaving devices' experts to the others the same way.

Constants (each an assumption unless a source is named):
- ``STORAGE_BANDWIDTH``: 2 GB/s per node for reading a checkpoint into host memory
  (ServerlessLLM, OSDI'24, measures common loaders (PyTorch, Safetensors) at a fraction of an
  NVMe SSD's several GB/s; we take 2 GB/s).
- PCIe host-to-device: the registry's ``GPUSpec.pcie_bandwidth`` (~80% of the link rate).
- Device-to-device: ``moe_cost.D2D_BANDWIDTH`` (NVLink, ~80% of the datasheet rate).
- ``ENGINE_SETUP_S``: 20 s to start an inference engine besides its weight load (process and
  CUDA context, communicator init, KV-cache allocation, CUDA-graph capture; vLLM's startup
  logs report graph capture alone in the 5-30 s range).
- ``REPLICA_PROVISION_S``: 30 s to schedule and start a replica's container (assumption).
- ``COMMUNICATOR_EXTEND_S``: 5 s to extend the collective communicator to new devices
  (MegaScale, NSDI'24: communication init cut to ~5 s on 2,048 GPUs; PAPERS.md).
- ``WORKER_INIT_S``: 3 s to create the runtime context on a new device (assumption).
- ``ELASTIC_SERVING_SHARE``: 0.9 of the old capacity while P2P transfers share HBM (assumption).
"""

from __future__ import annotations

from dataclasses import dataclass

from infragym.envs.elastic.moe_cost import D2D_BANDWIDTH, moe_spec
from infragym.envs.serving.hardware import GPUS

METHODS = ("elastic", "restart", "replica")
STORAGE_BANDWIDTH = 2e9
ENGINE_SETUP_S = 20.0
REPLICA_PROVISION_S = 30.0
COMMUNICATOR_EXTEND_S = 5.0
WORKER_INIT_S = 3.0
ELASTIC_SERVING_SHARE = 0.9


@dataclass(frozen=True)
class ScaleStep:
    """One scale step: its latency, whether it stops serving, the capacity share kept meanwhile."""

    method: str
    from_devices: int
    to_devices: int
    latency_s: float
    downtime: bool
    serving_share: float  # of the old deployment's capacity while the step runs
    bytes_moved: float


def weight_load_s(model: str, gpu: str, devices: int) -> float:
    """Read the checkpoint from storage and copy each device's share over PCIe."""
    spec = moe_spec(model)
    return spec.weight_bytes / STORAGE_BANDWIDTH + spec.weight_bytes / devices / GPUS[gpu].pcie_bandwidth


def scale_step(method: str, model: str, gpu: str, from_devices: int, to_devices: int) -> ScaleStep:
    """The cost of going from ``from_devices`` to ``to_devices`` with ``method``."""
    if method not in METHODS:
        raise ValueError(f"scaling method must be one of {METHODS}, got {method!r}")
    if from_devices < 1 or to_devices < 1 or from_devices == to_devices:
        raise ValueError(f"a scale step needs two different positive device counts, got {from_devices} -> {to_devices}")
    spec = moe_spec(model)
    up = to_devices > from_devices
    if method == "restart":
        return ScaleStep(
            method,
            from_devices,
            to_devices,
            ENGINE_SETUP_S + weight_load_s(model, gpu, to_devices),
            True,
            0.0,
            float(spec.weight_bytes),
        )
    if method == "replica":
        added = abs(to_devices - from_devices)
        latency = REPLICA_PROVISION_S + ENGINE_SETUP_S + weight_load_s(model, gpu, added) if up else 1.0
        return ScaleStep(method, from_devices, to_devices, latency, False, 1.0, float(spec.weight_bytes) if up else 0.0)
    # elastic: experts re-spread over the new device set; non-expert weights copied to new devices
    big, small = max(from_devices, to_devices), min(from_devices, to_devices)
    changed = big - small
    expert_bytes = spec.routed_expert_bytes * changed / big
    other_bytes = (spec.weight_bytes - spec.routed_expert_bytes) * (changed if up else 0)
    # each changed device sends/receives its share in parallel over its own link
    transfer_s = (expert_bytes / changed + (other_bytes / changed if up else 0.0)) / D2D_BANDWIDTH[gpu]
    latency = COMMUNICATOR_EXTEND_S + (WORKER_INIT_S if up else 0.0) + transfer_s
    return ScaleStep(
        method, from_devices, to_devices, latency, False, ELASTIC_SERVING_SHARE, float(expert_bytes + other_bytes)
    )


__all__ = ["METHODS", "ScaleStep", "scale_step", "weight_load_s"]
