"""Warm start: the torch agent of a VM2RL ONNX export, to continue training from it.

An export holds the two ONNX graphs only. Their initializers are the agent's parameters: biases
and layer norms under their own names (``agent.<name>``), and every linear weight as a
transposed constant feeding a MatMul whose output is added to that layer's bias, which names it.
The recovered agent is checked against the graphs on a generated snapshot before it is returned.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import torch

from infragym.envs.cluster.generator import generate_snapshot
from infragym.envs.cluster.state import ClusterState
from infragym.models.vm2rl.agent import VM2RLAgent

PREFIX = "agent."


def _parameters(graph_bytes: bytes) -> dict[str, np.ndarray]:
    import onnx
    from onnx import numpy_helper

    model = onnx.load(io.BytesIO(graph_bytes))
    init = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    consumers: dict[str, list[Any]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    out = {k[len(PREFIX) :]: v for k, v in init.items() if k.startswith(PREFIX)}
    for node in model.graph.node:
        if node.op_type != "MatMul" or node.input[1] not in init or node.input[1].startswith(PREFIX):
            continue
        for add in consumers.get(node.output[0], []):
            bias = [i for i in add.input if i.startswith(PREFIX) and i.endswith("bias")] if add.op_type == "Add" else []
            if bias:
                out[bias[0][len(PREFIX) :].replace("bias", "weight")] = init[node.input[1]].T
    return out


def agent_from_onnx(encoder: bytes, destination: bytes, **config: Any) -> VM2RLAgent:
    """The ``VM2RLAgent(**config)`` whose graphs are ``encoder`` and ``destination``.

    Raises:
        ValueError: a parameter is missing or has another shape, or the recovered agent's
            outputs differ from the graphs' (another architecture or config).
    """
    from infragym.models.vm2rl.policy import OnnxPolicyNet, observe
    from infragym.models.vm2rl.task import TorchPolicyNet

    agent = VM2RLAgent(**config)
    wanted = agent.state_dict()
    found = {**_parameters(encoder), **_parameters(destination)}
    bad = [k for k in wanted if k not in found or tuple(found[k].shape) != tuple(wanted[k].shape)]
    if bad:
        raise ValueError(f"the ONNX graphs do not hold a VM2RLAgent({config}): missing or mis-shaped {bad[:5]}")
    agent.load_state_dict({k: torch.tensor(np.array(found[k])) for k in wanted})
    agent.eval()
    snap = generate_snapshot("tiny", np.random.default_rng(0))
    obs = {k: v[None] for k, v in observe(ClusterState(snap), 10).items()}
    ref, got = OnnxPolicyNet(encoder, destination).encode(obs), TorchPolicyNet(agent).encode(obs)
    err = max(float(np.abs(ref[k] - got[k]).max()) for k in ref)
    if not err < 1e-4:
        raise ValueError(f"the recovered agent differs from the ONNX graphs (max abs difference {err:.3g})")
    return agent
