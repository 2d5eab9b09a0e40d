"""One-row LightGBM prediction through LightGBM's "fast" single-row C API.

A decision service predicts one tool call at a time. ``Booster.predict`` then costs ~70 us per
booster, nearly all of it LightGBM's per-call set-up (parsing the parameters, building a
predictor): calling ``LGBM_BoosterPredictForMat`` directly costs the same. The C API's
``LGBM_BoosterPredictForMatSingleRowFastInit`` does that set-up once and
``LGBM_BoosterPredictForMatSingleRowFast`` then scores a row in ~20 us (measured on this machine;
both documented in LightGBM's ``c_api.h``). The results are the booster's own, bit for bit.

A fast configuration holds buffers of its own, so each thread gets its own (the service answers
from a thread pool). Where the library does not offer the C API (another build), the caller
keeps ``Booster.predict``.
"""

from __future__ import annotations

import ctypes
import threading
import weakref
from collections.abc import Sequence

import lightgbm as lgb
import numpy as np

try:  # the shared library lightgbm loaded, and its error check
    from lightgbm.basic import _LIB, _safe_call
except ImportError:  # pragma: no cover - a lightgbm without them
    _LIB = _safe_call = None

# c_api.h constants
_C_API_DTYPE_FLOAT64 = 1
_C_API_PREDICT_NORMAL = 0
_ROW_MAJOR = 1


def available() -> bool:
    """Whether this lightgbm exposes the fast single-row C API."""
    return _LIB is not None and hasattr(_LIB, "LGBM_BoosterPredictForMatSingleRowFast")


class SingleRowPredictor:
    """Raw predictions of one row by each of ``boosters`` (what ``Booster.predict(row)`` gives)."""

    def __init__(self, boosters: Sequence[lgb.Booster]) -> None:
        if not available():
            raise RuntimeError("this lightgbm has no LGBM_BoosterPredictForMatSingleRowFast")
        self.boosters = list(boosters)
        self.n_features = {b.num_feature() for b in self.boosters}
        if len(self.n_features) != 1:
            raise ValueError("the boosters take different numbers of features")
        (self.width,) = self.n_features
        self._local = threading.local()

    def _configs(self) -> list[ctypes.c_void_p]:
        held = getattr(self._local, "held", None)
        if held is None:
            configs = []
            for booster in self.boosters:
                config = ctypes.c_void_p()
                _safe_call(
                    _LIB.LGBM_BoosterPredictForMatSingleRowFastInit(
                        booster._handle,
                        ctypes.c_int(_C_API_PREDICT_NORMAL),
                        ctypes.c_int(0),  # start_iteration
                        ctypes.c_int(-1),  # all iterations
                        ctypes.c_int(_C_API_DTYPE_FLOAT64),
                        ctypes.c_int32(self.width),
                        ctypes.c_char_p(b"num_threads=1"),
                        ctypes.byref(config),
                    )
                )
                configs.append(config)
            held = self._local.held = _ThreadConfigs(configs)
            # freed with this thread's storage (the thread ends or the predictor goes); the
            # boosters are kept alive until then
            weakref.finalize(held, _free, configs, self.boosters)
        return held.configs

    def predict(self, row: np.ndarray) -> np.ndarray:
        """``row`` (n_features,) -> one raw prediction per booster."""
        row = np.ascontiguousarray(row, dtype=np.float64)
        if row.shape != (self.width,):
            raise ValueError(f"expected one row of {self.width} features, got shape {row.shape}")
        out = np.empty(len(self.boosters), dtype=np.float64)
        length = ctypes.c_int64(0)
        data = row.ctypes.data_as(ctypes.c_void_p)
        base = out.ctypes.data
        for k, config in enumerate(self._configs()):
            _safe_call(
                _LIB.LGBM_BoosterPredictForMatSingleRowFast(
                    config,
                    data,
                    ctypes.byref(length),
                    ctypes.cast(base + 8 * k, ctypes.POINTER(ctypes.c_double)),
                )
            )
        return out


class _ThreadConfigs:
    """One thread's fast configurations (an object a finaliser can watch)."""

    __slots__ = ("__weakref__", "configs")

    def __init__(self, configs: list[ctypes.c_void_p]) -> None:
        self.configs = configs


def _free(configs: list[ctypes.c_void_p], boosters: list[lgb.Booster]) -> None:
    for config in configs:
        _LIB.LGBM_FastConfigFree(config)
