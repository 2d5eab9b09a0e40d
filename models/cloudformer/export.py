"""CloudFormer's deployable export: normalisation + network as one ONNX graph over executions.

``infragym.load(path).predict(execution)`` takes raw metrics as collected (before any
normalisation), in the metric order of the manifest's input schema: one execution ``(T, n_metrics)``,
a batch of equal-length ones ``(batch, T, n_metrics)``, or a list of executions of different
lengths; it returns P per execution. The graph's inputs are ``execution (batch, T, n_metrics)``
and ``lengths (batch,)`` with dynamic batch and time axes. It needs numpy and onnxruntime only.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from infragym.export import ExportError, export_file, write_export

MODEL_FILE = "cloudformer.onnx"
INPUT_NAME = "execution"
LENGTHS_NAME = "lengths"
OUTPUT_NAME = "perf"
MAX_SECONDS = 1 << 16  # the export's time axis bound


def export_cloudformer(
    directory: str | os.PathLike[str],
    *,
    net: Any,
    splits: Any,
    window: int,
    max_seconds: int | None,
    metrics: Mapping[str, float],
    config: Mapping[str, Any],
) -> Path:
    """Write ``directory`` with ``cloudformer.onnx`` (dynamic batch and time axes) and the manifest."""
    import torch

    from infragym.datasets.cloudperf import CLIP

    class Deployable(torch.nn.Module):
        """Raw metrics -> signed log -> z-score (training split's) -> clip -> network."""

        def __init__(self) -> None:
            super().__init__()
            self.net = net
            self.register_buffer("mean", torch.from_numpy(splits.normaliser.mean))
            self.register_buffer("std", torch.from_numpy(splits.normaliser.std))

        def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
            z = torch.sign(x) * torch.log1p(torch.abs(x))
            return self.net(torch.clamp((z - self.mean) / self.std, -CLIP, CLIP), lengths)

    model = Deployable().eval()
    n_metrics = splits.train.n_metrics
    example = (torch.zeros(2, 7, n_metrics), torch.tensor([7, 5], dtype=torch.int64))

    def write_onnx(path: Path) -> None:
        # The TorchScript exporter: it keeps the batch and time axes dynamic through the padding
        # mask, and takes seconds where the dynamo exporter's symbolic tracing takes minutes.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer notes on shapes read as Python ints
            torch.onnx.export(
                model,
                example,
                str(path),
                dynamo=False,
                input_names=[INPUT_NAME, LENGTHS_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes={
                    INPUT_NAME: {0: "batch", 1: "seconds"},
                    LENGTHS_NAME: {0: "batch"},
                    OUTPUT_NAME: {0: "batch"},
                },
                opset_version=17,
            )

    return write_export(
        directory,
        component="cloudformer",
        files={MODEL_FILE: write_onnx},
        input_schema={
            "name": INPUT_NAME,
            "type": "raw metrics of one execution (T, n_metrics), a batch (batch, T, n_metrics), or a list of "
            "executions of different T; float32, one row per second",
            "window": window,
            "n_metrics": n_metrics,
            "max_seconds": max_seconds,
            "group_sizes": dict(splits.train.group_sizes),
            "metric_names": list(splits.train.metric_names),
            "training_applications": list(splits.seen),
            "unseen_applications": list(splits.unseen),
        },
        output_schema={"name": OUTPUT_NAME, "type": "float32 (batch,)", "meaning": "P = PM_ideal / PM_actual, (0, 1)"},
        metrics=metrics,
        config=config,
        libraries=("torch", "onnx", "onnxruntime"),
    )


class CloudFormerPredictor:
    """A loaded CloudFormer export (onnxruntime; no torch, Lightning or Hydra needed)."""

    def __init__(self, session: Any, manifest: dict[str, Any]) -> None:
        self.session = session
        self.manifest = manifest
        schema = manifest["input_schema"]
        self.window = int(schema["window"])
        self.n_metrics = int(schema["n_metrics"])
        self.max_seconds = schema.get("max_seconds")
        self.metric_names: list[str] = list(schema["metric_names"])

    @classmethod
    def from_export(cls, directory: Path, manifest: dict[str, Any]) -> CloudFormerPredictor:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = int(os.environ.get("INFRAGYM_ORT_THREADS", "1"))
        session = ort.InferenceSession(
            str(export_file(directory, manifest, MODEL_FILE)), options, providers=["CPUExecutionProvider"]
        )
        return cls(session, manifest)

    def _executions(self, execution: np.ndarray | Sequence[Any]) -> list[np.ndarray]:
        if isinstance(execution, np.ndarray) and execution.ndim == 3:
            items = list(execution)
        elif isinstance(execution, np.ndarray) and execution.ndim == 2:
            items = [execution]
        elif isinstance(execution, Sequence) and not isinstance(execution, str | bytes) and len(execution):
            first = np.asarray(execution[0])
            items = [np.asarray(e) for e in execution] if first.ndim == 2 else [np.asarray(execution)]
        else:
            raise ExportError(
                f"predict: expected an execution (T, {self.n_metrics}), a batch (batch, T, {self.n_metrics}) or a "
                f"list of executions, got {type(execution).__name__} of shape {np.shape(execution)}"
            )
        out = []
        for b, item in enumerate(items):
            x = np.asarray(item, dtype=np.float32)
            if x.ndim != 2 or x.shape[1] != self.n_metrics or len(x) < 1:
                raise ExportError(
                    f"predict: execution {b} has shape {np.shape(item)}, expected (T, {self.n_metrics}) "
                    "(seconds x metrics, T >= 1)"
                )
            if len(x) > MAX_SECONDS:
                raise ExportError(
                    f"predict: execution {b} has {len(x)} seconds, the export takes at most {MAX_SECONDS}"
                )
            bad = ~np.isfinite(x)
            if bad.any():
                t, m = (int(i[0]) for i in np.nonzero(bad))
                raise ExportError(f"predict: metric {self.metric_names[m]!r} is {x[t, m]} in execution {b}, second {t}")
            out.append(x)
        return out

    def predict(self, execution: np.ndarray | Sequence[Any]) -> np.ndarray:
        """P per execution of raw metrics; one execution ``(T, n_metrics)`` gives shape ``(1,)``."""
        items = self._executions(execution)
        lengths = np.array([len(x) for x in items], dtype=np.int64)
        batch = np.zeros((len(items), max(2, int(lengths.max())), self.n_metrics), dtype=np.float32)
        for i, x in enumerate(items):
            batch[i, : len(x)] = x
        return self.session.run([OUTPUT_NAME], {INPUT_NAME: batch, LENGTHS_NAME: lengths})[0]
