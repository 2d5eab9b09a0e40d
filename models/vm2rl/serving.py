"""VM2RL over HTTP: ``act`` answers either form a cluster manager has at hand.

- ``observation`` + ``mask``: the env's observation arrays and the (V, 3P) feasibility mask;
  returns the next migration ``[vm, destination]`` (destination = pm * 3 + placement).
- ``snapshot`` + ``max_migrations``: a cluster snapshot in the VMR2L JSON format and a migration
  budget; returns the migration plan (VM, source and destination PM by id, NUMA placement) and the
  fragment rate before and after, from the best of ``samples`` trajectories (VM2RL Sec. 5).

A snapshot request in the format's usual form is read straight from its bytes into the cluster's
arrays (``decode``, with ``envs.cluster.vmr2l_typed``): the medium snapshot is 587 KB, and as
Python dicts, validated by pydantic and walked record by record, it cost more CPU than the
policy. Any other body takes the request model's path, which names what is wrong.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import msgspec
import numpy as np
from pydantic import Field, model_validator

from infragym.envs.cluster.snapshot import N_PLACEMENTS, ClusterSnapshot, SnapshotError, parse_vmr2l_snapshot
from infragym.envs.cluster.state import PM_FEATURES, VM_FEATURES
from infragym.envs.cluster.vmr2l_typed import Snapshot, snapshot_from_struct
from infragym.serve.operations import FiniteFloat, Operation, StrictModel

PLACEMENT_NAMES = ("numa0", "numa1", "both")


class Observation(StrictModel):
    """One observation of VMReschedule-v0 (V VMs, P PMs)."""

    vm: list[list[FiniteFloat]] = Field(min_length=1, description=f"(V, {VM_FEATURES}) VM features")
    pm: list[list[FiniteFloat]] = Field(min_length=1, description=f"(P, {PM_FEATURES}) PM features")
    vm_host: list[int] = Field(description="(V,) host index of each VM")
    budget: list[FiniteFloat] = Field(min_length=2, max_length=2, description="budget share left, fragment rate")


class ActRequest(StrictModel):
    observation: Observation | None = None
    mask: list[list[bool]] | None = Field(None, description="(V, 3P): migration of VM v to destination d allowed")
    snapshot: dict[str, Any] | None = Field(None, description="a cluster snapshot in the VMR2L JSON format")
    max_migrations: int = Field(1, ge=1, le=1000, description="migration budget of the plan (snapshot form)")
    samples: int = Field(1, ge=1, le=32, description="trajectories; the best final fragment rate is kept")
    seed: int = Field(0, ge=0, description="seed of the sampled trajectories")

    @model_validator(mode="after")
    def one_form(self) -> ActRequest:
        if (self.observation is None) == (self.snapshot is None):
            raise ValueError("give either observation and mask, or snapshot (and max_migrations)")
        if self.observation is not None:
            obs = self.observation
            v, p = len(obs.vm), len(obs.pm)
            if self.mask is None:
                raise ValueError("observation needs its mask")
            for name, rows, width in (("observation.vm", obs.vm, VM_FEATURES), ("observation.pm", obs.pm, PM_FEATURES)):
                bad = next((i for i, row in enumerate(rows) if len(row) != width), None)
                if bad is not None:
                    raise ValueError(f"{name}[{bad}] has {len(rows[bad])} features, expected {width}")
            if len(obs.vm_host) != v or any(not 0 <= h < p for h in obs.vm_host):
                raise ValueError(f"observation.vm_host needs {v} host indices in [0, {p})")
            if len(self.mask) != v or any(len(row) != N_PLACEMENTS * p for row in self.mask):
                raise ValueError(f"mask must be ({v}, {N_PLACEMENTS * p}) booleans")
        return self


class TypedSnapshotRequest(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """The snapshot form of :class:`ActRequest` with its snapshot in the usual form; the same
    fields, defaults and bounds (unknown fields, the observation form included, go to
    ``ActRequest``)."""

    snapshot: Snapshot
    max_migrations: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 1
    samples: Annotated[int, msgspec.Meta(ge=1, le=32)] = 1
    seed: Annotated[int, msgspec.Meta(ge=0)] = 0


@dataclass(frozen=True)
class SnapshotRequest:
    """A snapshot request read by :func:`decode_snapshot_request`: the cluster already parsed."""

    snapshot: ClusterSnapshot
    max_migrations: int
    samples: int
    seed: int


_REQUEST_DECODER = msgspec.json.Decoder(TypedSnapshotRequest)


def decode_snapshot_request(raw: bytes) -> SnapshotRequest | None:
    """A snapshot request in the usual form, read from its bytes; None for any other body."""
    try:
        body = _REQUEST_DECODER.decode(raw)
        snapshot = snapshot_from_struct(body.snapshot, source="request snapshot")
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError, SnapshotError):
        return None
    if snapshot is None:
        return None
    return SnapshotRequest(snapshot, body.max_migrations, body.samples, body.seed)


class Migration(StrictModel):
    vm: str
    source_pm: str
    destination_pm: str
    placement: str


class ActResponse(StrictModel):
    action: list[int] | None = Field(None, description="[vm, destination] (observation form)")
    migrations: list[Migration] | None = Field(None, description="the plan, in order (snapshot form)")
    fragment_rate_before: float | None = None
    fragment_rate_after: float | None = None


def operations(predictor: Any, manifest: dict[str, Any]) -> list[Operation]:
    def act(body: ActRequest | SnapshotRequest) -> ActResponse:
        if isinstance(body, ActRequest) and body.observation is not None:
            obs = body.observation
            arrays = {
                "vm": np.asarray(obs.vm, dtype=np.float32),
                "pm": np.asarray(obs.pm, dtype=np.float32),
                "vm_host": np.asarray(obs.vm_host, dtype=np.int64),
                "budget": np.asarray(obs.budget, dtype=np.float32),
            }
            mask = np.asarray(body.mask, dtype=bool)
            if not mask.any():
                raise ValueError("mask allows no migration")
            action = predictor.act(arrays, mask)
            return ActResponse(action=[int(a) for a in action])
        if isinstance(body, SnapshotRequest):
            snapshot = body.snapshot
        else:
            snapshot = parse_vmr2l_snapshot(body.snapshot, source="request snapshot")
        result = predictor.plan(snapshot, body.max_migrations, k=body.samples, seed=body.seed)
        host = snapshot.vm_pm.copy()
        migrations = []
        for vm, destination in result.moves:
            pm, placement = divmod(int(destination), N_PLACEMENTS)
            migrations.append(
                Migration(
                    vm=str(snapshot.vm_ids[vm]),
                    source_pm=str(snapshot.pm_ids[host[vm]]),
                    destination_pm=str(snapshot.pm_ids[pm]),
                    placement=PLACEMENT_NAMES[placement],
                )
            )
            host[vm] = pm
        return ActResponse(
            migrations=migrations, fragment_rate_before=float(result.curve[0]), fragment_rate_after=result.fragment_rate
        )

    def example() -> dict[str, Any]:
        host = {"node_id": "pm0", "status": "ACTIVE", "rack_id": "r0", "numa": []}
        numa = [
            {
                "node": n,
                "total_cpu": 44,
                "free_cpu": 44 - 8 * (n == 0),
                "memory_huge_total_mb": 184388,
                "memory_huge_free_mb": 184388 - 16384 * (n == 0),
            }
            for n in (0, 1)
        ]
        empty = [{**numa[n], "free_cpu": 44, "memory_huge_free_mb": 184388} for n in (0, 1)]
        vm = {
            "instance_id": "vm0",
            "host_id": "pm0",
            "allow_migration": True,
            "numa": [{"node": 0, "cpu": 8, "mem_mb": 16384}],
        }
        return {
            "snapshot": {
                "cluster_list": [
                    {
                        "host_info": [{**host, "numa": numa}, {**host, "node_id": "pm1", "numa": empty}],
                        "vm_instance": [vm],
                    }
                ]
            },
            "max_migrations": 1,
        }

    return [
        Operation(
            "act",
            "the next migration, or a migration plan for a snapshot",
            ActRequest,
            ActResponse,
            act,
            example,
            decode=decode_snapshot_request,
        )
    ]
