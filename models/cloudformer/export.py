"""CloudFormer's deployable export: normalisation + network as one ONNX graph.

``infragym.load(path).predict(window)`` takes raw telemetry (as collected, before any
normalisation), ``(window, n_metrics)`` or ``(batch, window, n_metrics)``, in the metric order
of the manifest's input schema, and returns P per window. It needs numpy and onnxruntime only.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from infragym.export import ExportError, export_file, write_export

MODEL_FILE = "cloudformer.onnx"
INPUT_NAME = "window"
OUTPUT_NAME = "perf"


def export_cloudformer(
    directory: str | os.PathLike[str],
    *,
    net: Any,
    splits: Any,
    metrics: Mapping[str, float],
    config: Mapping[str, Any],
) -> Path:
    """Write ``directory`` with ``cloudformer.onnx`` (dynamic batch axis) and the manifest."""
    import torch

    from infragym.datasets.cloudperf import CLIP

    class Deployable(torch.nn.Module):
        """Raw telemetry -> signed log -> z-score (training split's) -> clip -> network."""

        def __init__(self) -> None:
            super().__init__()
            self.net = net
            self.register_buffer("mean", torch.from_numpy(splits.normaliser.mean))
            self.register_buffer("std", torch.from_numpy(splits.normaliser.std))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            z = torch.sign(x) * torch.log1p(torch.abs(x))
            return self.net(torch.clamp((z - self.mean) / self.std, -CLIP, CLIP))

    model = Deployable().eval()
    window = splits.train.window
    example = torch.zeros(2, window, splits.n_metrics)

    def write_onnx(path: Path) -> None:
        for name in ("onnx_ir", "onnxscript"):  # one INFO line per folded initializer otherwise
            logging.getLogger(name).setLevel(logging.WARNING)
        batch = torch.export.Dim("batch", min=1, max=1 << 20)
        torch.onnx.export(
            model,
            (example,),
            str(path),
            dynamo=True,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes={"x": {0: batch}},
            external_data=False,
            verbose=False,
        )

    return write_export(
        directory,
        component="cloudformer",
        files={MODEL_FILE: write_onnx},
        input_schema={
            "name": INPUT_NAME,
            "type": "float32 array (batch, window, n_metrics) or (window, n_metrics), raw telemetry",
            "window": window,
            "n_metrics": splits.n_metrics,
            "group_sizes": dict(splits.group_sizes),
            "metric_names": list(splits.metric_names),
        },
        output_schema={"name": OUTPUT_NAME, "type": "float32 (batch,)", "meaning": "P = perf / isolated perf, (0, 1)"},
        metrics=metrics,
        config=config,
        libraries=("torch", "onnx", "onnxruntime"),
    )


class CloudFormerPredictor:
    """A loaded CloudFormer export (onnxruntime; no torch, Lightning or Hydra needed)."""

    def __init__(self, session: Any, manifest: dict[str, Any]) -> None:
        self.session = session
        self.manifest = manifest
        self.window = int(manifest["input_schema"]["window"])
        self.n_metrics = int(manifest["input_schema"]["n_metrics"])
        self.metric_names: list[str] = list(manifest["input_schema"]["metric_names"])

    @classmethod
    def from_export(cls, directory: Path, manifest: dict[str, Any]) -> CloudFormerPredictor:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = int(os.environ.get("INFRAGYM_ORT_THREADS", "1"))
        session = ort.InferenceSession(
            str(export_file(directory, manifest, MODEL_FILE)), options, providers=["CPUExecutionProvider"]
        )
        return cls(session, manifest)

    def predict(self, window: np.ndarray) -> np.ndarray:
        """P for each window of raw telemetry; one window ``(window, n_metrics)`` gives shape ``(1,)``."""
        x = np.asarray(window, dtype=np.float32)
        if x.ndim == 2:
            x = x[None]
        if x.ndim != 3 or x.shape[1:] != (self.window, self.n_metrics):
            raise ExportError(
                f"predict: expected telemetry of shape (batch, {self.window}, {self.n_metrics}) or "
                f"({self.window}, {self.n_metrics}) (window seconds x metrics), got {np.shape(window)}"
            )
        bad = ~np.isfinite(x)
        if bad.any():
            b, t, m = (int(i[0]) for i in np.nonzero(bad))
            raise ExportError(f"predict: metric {self.metric_names[m]!r} is {x[b, t, m]} in window {b}, second {t}")
        return self.session.run([OUTPUT_NAME], {INPUT_NAME: x})[0]
