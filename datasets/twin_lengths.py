"""Token-length models of the workload twins: BurstGPT's truncated Zipf, the empirical quantile
function, and the response length given the request length.

BurstGPT (KDD'25; PAPERS.md) models request and response lengths as Zipf (a = 1.1, resampled
below a cap). ``fit_lengths`` fits that family by maximum likelihood to a trace and keeps it
unless the empirical quantile function is clearly closer (KS distance); ``fit_response`` fits
response lengths per request-length quantile bin, which keeps the response-vs-request relation
without assuming its form.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import optimize, stats

# Quantile levels at which fitted models report medians and tails.
QUANTILE_LEVELS = np.linspace(0.0, 1.0, 513)
# The empirical quantile functions keep at most this many order statistics (all of them, plus
# every one of the 32 largest and smallest: the tails are where serving latency is decided; a
# coarse top knot interpolated up to the maximum would invent a tail of huge prompts).
QUANTILE_KNOTS = 4096
TAIL_KNOTS = 32
# A Zipf table up to this many values is sampled exactly; beyond, the continuous power law.
ZIPF_TABLE_MAX = 1 << 21
# "auto" keeps the paper's Zipf family unless the empirical fit is this much closer (KS): on data
# that is Zipf both fits are within sampling noise of it, and the parametric one then extrapolates.
ZIPF_KS_MARGIN = 0.01


class TwinError(ValueError):
    """Bad input to fitting or generating a workload twin."""


def quantile_knots(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(levels, values) of an empirical quantile function: order statistics at their plotting
    positions (i + 0.5) / n, thinned to ``QUANTILE_KNOTS`` in the body."""
    values = np.sort(np.asarray(x, dtype=np.float64))
    n = values.size
    idx = np.round(np.linspace(0, n - 1, min(n, QUANTILE_KNOTS))).astype(np.int64)
    tails = np.concatenate([np.arange(min(n, TAIL_KNOTS)), np.arange(max(n - TAIL_KNOTS, 0), n)])
    idx = np.unique(np.concatenate([idx, tails]))
    return (idx + 0.5) / n, values[idx]


def interp_log(u: np.ndarray, levels: np.ndarray, values: np.ndarray, floor: float) -> np.ndarray:
    """The quantile function at ``u``, interpolated in log space (heavy-tailed quantities)."""
    return np.exp(np.interp(u, levels, np.log(np.maximum(values, floor))))


def _zipf_log_norm(a: float, xmin: int, cap: int) -> float:
    if cap - xmin < ZIPF_TABLE_MAX:
        k = np.arange(xmin, cap + 1, dtype=np.float64)
        return float(np.log(np.sum(k**-a)))
    # Euler-Maclaurin on the continuous power law (the table would be too large).
    if abs(a - 1.0) < 1e-9:
        return float(np.log(np.log((cap + 0.5) / (xmin - 0.5))))
    return float(np.log(((cap + 0.5) ** (1 - a) - (xmin - 0.5) ** (1 - a)) / (1 - a)))


def _zipf_cdf(values: np.ndarray, a: float, xmin: int, cap: int) -> np.ndarray:
    """P(X <= v) of the Zipf distribution truncated to [xmin, cap]."""
    v = np.clip(np.floor(values), xmin - 1, cap)
    if cap - xmin < ZIPF_TABLE_MAX:
        k = np.arange(xmin, cap + 1, dtype=np.float64)
        cum = np.concatenate([[0.0], np.cumsum(k**-a)])
        return cum[(v - xmin + 1).astype(np.int64)] / cum[-1]
    lo, hi = xmin - 0.5, cap + 0.5
    if abs(a - 1.0) < 1e-9:
        return np.log((v + 0.5) / lo) / np.log(hi / lo)
    return ((v + 0.5) ** (1 - a) - lo ** (1 - a)) / (hi ** (1 - a) - lo ** (1 - a))


@dataclass(frozen=True)
class LengthModel:
    """A token-length distribution: truncated Zipf (BurstGPT's family) or empirical quantiles.

    ``ks_zipf`` and ``ks_empirical`` are the KS distances of both fits to the data fitted."""

    family: str  # "zipf" or "empirical"
    zipf_a: float
    xmin: int
    cap: int
    levels: np.ndarray  # the empirical quantile function: levels in (0, 1) ...
    quantiles: np.ndarray  # ... and the lengths there
    ks_zipf: float
    ks_empirical: float

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        u = rng.random(size)
        if self.family == "empirical":
            values = interp_log(u, self.levels, self.quantiles, 0.5)
            return np.clip(np.round(values), self.xmin, self.cap).astype(np.int64)
        if self.cap - self.xmin < ZIPF_TABLE_MAX:
            k = np.arange(self.xmin, self.cap + 1, dtype=np.float64)
            cum = np.cumsum(k**-self.zipf_a)
            return (self.xmin + np.searchsorted(cum, u * cum[-1], side="left")).astype(np.int64)
        lo, hi, e = self.xmin - 0.5, self.cap + 0.5, 1 - self.zipf_a
        if abs(e) < 1e-9:
            x = lo * (hi / lo) ** u
        else:
            x = (lo**e + u * (hi**e - lo**e)) ** (1 / e)
        return np.clip(np.round(x), self.xmin, self.cap).astype(np.int64)

    def summary(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "zipf_a": self.zipf_a,
            "min": self.xmin,
            "cap": self.cap,
            "median": float(np.interp(0.5, self.levels, self.quantiles)),
            "ks_zipf": self.ks_zipf,
            "ks_empirical": self.ks_empirical,
        }


def fit_lengths(values: np.ndarray, family: str = "auto") -> LengthModel:
    """Fit a length distribution to positive integer lengths.

    ``family``: "zipf" (BurstGPT's: p(k) ~ k^-a on [min, max], a by maximum likelihood),
    "empirical" (the quantile function), or "auto" (the paper's Zipf unless the empirical fit
    is closer by more than ``ZIPF_KS_MARGIN`` in KS distance)."""
    if family not in ("auto", "zipf", "empirical"):
        raise TwinError(f"length family must be 'auto', 'zipf' or 'empirical', got {family!r}")
    x = np.asarray(values, dtype=np.int64)
    if x.size == 0:
        raise TwinError("cannot fit a length distribution to no values")
    if np.any(x < 1):
        raise TwinError(f"lengths must be >= 1 to fit (found {int(x.min())})")
    xmin, cap = int(x.min()), int(x.max())
    levels, quantiles = quantile_knots(x)
    mean_log = float(np.mean(np.log(x)))
    if cap > xmin:
        fit = optimize.minimize_scalar(
            lambda a: a * mean_log + _zipf_log_norm(a, xmin, cap), bounds=(1e-3, 8.0), method="bounded"
        )
        a = float(fit.x)
    else:
        a = 1.0
    ks_zipf = _ks_to_cdf(x, lambda v: _zipf_cdf(v, a, xmin, cap))
    model = LengthModel("empirical", a, xmin, cap, levels, quantiles, ks_zipf, 0.0)
    # The empirical fit's own KS distance: how far a large sample of it lands from the data (the
    # log interpolation and rounding are its only errors).
    probe = model.sample(np.random.default_rng(0), max(4 * x.size, 20_000))
    ks_emp = float(stats.ks_2samp(x, probe).statistic)
    chosen = family if family != "auto" else ("zipf" if ks_zipf <= ks_emp + ZIPF_KS_MARGIN else "empirical")
    return LengthModel(chosen, a, xmin, cap, levels, quantiles, ks_zipf, ks_emp)


def _ks_to_cdf(x: np.ndarray, cdf: Any) -> float:
    """KS distance between a discrete sample and a discrete CDF (checked at every support point)."""
    values, counts = np.unique(x, return_counts=True)
    emp_hi = np.cumsum(counts) / x.size
    emp_lo = emp_hi - counts / x.size
    model_hi = cdf(values.astype(np.float64))
    model_lo = cdf(values.astype(np.float64) - 1)
    return float(max(np.max(np.abs(emp_hi - model_hi)), np.max(np.abs(emp_lo - model_lo))))


@dataclass(frozen=True)
class ResponseModel:
    """Response length given request length: one length model per request-length quantile bin
    (responses of failed requests excluded). ``spearman`` is the fitted data's rank correlation."""

    edges: np.ndarray  # inner bin edges of request tokens (len = bins - 1)
    bins: tuple[LengthModel, ...]
    spearman: float

    def sample(self, request: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        which = np.searchsorted(self.edges, request, side="right")
        out = np.empty(len(request), dtype=np.int64)
        for b, model in enumerate(self.bins):
            rows = np.flatnonzero(which == b)
            if rows.size:
                out[rows] = model.sample(rng, rows.size)
        return out


def fit_response(request: np.ndarray, response: np.ndarray, *, bins: int, family: str) -> ResponseModel:
    request, response = np.asarray(request), np.asarray(response)
    n_bins = int(max(1, min(bins, request.size // 200)))  # >= 200 responses per bin
    edges = np.unique(np.quantile(request, np.linspace(0, 1, n_bins + 1)[1:-1])) if n_bins > 1 else np.array([])
    which = np.searchsorted(edges, request, side="right")
    models = []
    for b in range(len(edges) + 1):
        chunk = response[which == b]
        models.append(fit_lengths(chunk if chunk.size else response, family))
    rho = float(stats.spearmanr(request, response).statistic) if request.size > 2 else float("nan")
    return ResponseModel(edges.astype(np.float64), tuple(models), rho)


__all__ = [
    "QUANTILE_LEVELS",
    "LengthModel",
    "ResponseModel",
    "TwinError",
    "fit_lengths",
    "fit_response",
    "interp_log",
    "quantile_knots",
]
