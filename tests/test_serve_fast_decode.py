"""The operations' fast body readers accept only what their request models accept, with the same
meaning; everything else is left to the request model (None)."""

from __future__ import annotations

import json

import numpy as np

from infragym.models.cloudformer.serving import WindowsArray, operations


def test_cloudformer_windows_decode_equals_the_request_model() -> None:
    (op,) = operations(predictor=None, manifest={"input_schema": {"window": 3, "n_metrics": 2}})
    rng = np.random.default_rng(0)
    windows = rng.gamma(2.0, 5.0, size=(4, 3, 2)).tolist()
    windows[0][0][0] = 7  # JSON integers are numbers too
    raw = json.dumps({"windows": windows}).encode()
    fast = op.decode(raw)
    assert isinstance(fast, WindowsArray)
    slow = op.request.model_validate_json(raw)
    np.testing.assert_array_equal(fast.windows, np.asarray(slow.windows, dtype=np.float32))
    for other in (
        {"windows": [*windows[:1], windows[1][:2]]},  # ragged
        {"windows": [[[1.0, 2.0]] * 4]},  # 4 seconds, the model takes 3
        {"windows": [[[1.0, 2.0, 3.0]] * 3]},  # 3 metrics
        {"windows": []},
        {"windows": windows, "extra": 1},
        {"executions": windows},
        {"windows": [[[True, 1.0]] * 3]},
    ):
        assert op.decode(json.dumps(other).encode()) is None, other
    assert op.decode(b'{"windows": [[[NaN, 1.0], [1.0, 1.0], [1.0, 1.0]]]}') is None
    assert op.decode(b'{"windows": [[[1e400, 1.0], [1.0, 1.0], [1.0, 1.0]]]}') is None
