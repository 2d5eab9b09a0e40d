"""How close a workload twin is to a trace: ``twin_report`` (issue 15 section 3).

Inter-arrival CV per window, KS distances of gaps and lengths, the response-vs-request relation,
failures, the model mix, conversation statistics, and the serving simulator's latency
percentiles on trace and twin.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import stats

from infragym.datasets.twin_lengths import TwinError
from infragym.datasets.workload_twin import default_window_s, fit_conversations

if TYPE_CHECKING:
    from infragym.datasets.llm_traces import RequestTrace


def _window_cvs(t: np.ndarray, window_s: float, n_windows: int) -> np.ndarray:
    """Inter-arrival CV in each window (from the trace's start); NaN with fewer than 3 gaps."""
    rel = t - t[0]
    gaps = np.diff(rel)
    index = (rel[1:] // window_s).astype(np.int64)
    keep = index < n_windows
    index, gaps = index[keep], gaps[keep]
    count = np.bincount(index, minlength=n_windows).astype(np.float64)
    s1 = np.bincount(index, weights=gaps, minlength=n_windows)
    s2 = np.bincount(index, weights=gaps**2, minlength=n_windows)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = s1 / count
        cv = np.sqrt(np.maximum(s2 / count - mean**2, 0.0)) / mean
    return np.where(count >= 3, cv, np.nan)


def _window_ks(trace: RequestTrace, twin: RequestTrace, window_s: float, n_windows: int) -> list[float | None]:
    """KS distance of request lengths in each window (None with fewer than 50 requests in either)."""
    out: list[float | None] = []
    wa = ((trace.arrival_s - trace.arrival_s[0]) // window_s).astype(np.int64)
    wb = ((twin.arrival_s - twin.arrival_s[0]) // window_s).astype(np.int64)
    for w in range(n_windows):
        a, b = trace.prompt_tokens[wa == w], twin.prompt_tokens[wb == w]
        out.append(float(stats.ks_2samp(a, b).statistic) if a.size >= 50 and b.size >= 50 else None)
    return out


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    return float(stats.spearmanr(x, y).statistic) if x.size > 2 else float("nan")


def _cv(x: np.ndarray) -> float:
    return float(x.std() / x.mean()) if x.size > 1 and x.mean() > 0 else float("nan")


def _conversation_stats(t: np.ndarray, conversation: np.ndarray) -> dict[str, float]:
    model = fit_conversations(t, conversation)
    if model is None:
        return {}
    stats_ = model.summary()
    stats_["requests_in_conversations"] = float(np.mean(np.asarray(conversation) >= 0))
    return stats_


def twin_report(
    trace: RequestTrace,
    twin: RequestTrace,
    *,
    conversation: np.ndarray | None = None,
    twin_conversation: np.ndarray | None = None,
    window_s: float | None = None,
    cluster: Any = None,
) -> dict[str, Any]:
    """How close ``twin`` is to ``trace``: a dict of named statistics.

    Arrivals: rate, inter-arrival CV overall and per window (lists under ``iat_cv_by_window``,
    their mean absolute difference), KS distance of the inter-arrival times. Lengths: KS
    distances of request and response tokens (responses of successful requests; request
    lengths also per window, ``prompt_ks_by_window`` and its mean), the
    response-vs-request rank correlations, failure shares, the model mix's total variation.
    Conversations (when both id arrays are given): turns, intervals, KS of intervals. Serving:
    p50/p99 TTFT, TBT and end-to-end latency of the serving simulator (``cluster``: a
    ``ServingCluster``; default ``default_cluster()``; False skips it) on both."""
    if len(trace) < 3 or len(twin) < 3:
        raise TwinError("twin_report needs at least 3 requests in both traces")
    window_s = default_window_s(trace.duration_s, len(trace)) if window_s is None else float(window_s)
    n_windows = max(1, int(np.ceil(min(trace.duration_s, twin.duration_s) / window_s)))
    gaps_a, gaps_b = np.diff(trace.arrival_s), np.diff(twin.arrival_s)
    cv_a, cv_b = _window_cvs(trace.arrival_s, window_s, n_windows), _window_cvs(twin.arrival_s, window_s, n_windows)
    both = np.isfinite(cv_a) & np.isfinite(cv_b)
    ks_by_window = _window_ks(trace, twin, window_s, n_windows)
    ks_found = [k for k in ks_by_window if k is not None]
    ok_a = ~trace.failed & (trace.output_tokens > 0)
    ok_b = ~twin.failed & (twin.output_tokens > 0)
    report: dict[str, Any] = {
        "requests/trace": float(len(trace)),
        "requests/twin": float(len(twin)),
        "rate/trace": trace.rate,
        "rate/twin": twin.rate,
        "iat_cv/trace": _cv(gaps_a),
        "iat_cv/twin": _cv(gaps_b),
        "iat_ks": float(stats.ks_2samp(gaps_a, gaps_b).statistic),
        "window_s": window_s,
        "iat_cv_by_window": {"trace": cv_a.tolist(), "twin": cv_b.tolist()},
        "iat_cv_window_mae": float(np.mean(np.abs(cv_a[both] - cv_b[both]))) if both.any() else float("nan"),
        "prompt_ks": float(stats.ks_2samp(trace.prompt_tokens, twin.prompt_tokens).statistic),
        "prompt_ks_by_window": ks_by_window,
        "prompt_ks_window_mean": float(np.mean(ks_found)) if ks_found else float("nan"),
        "output_ks": float(stats.ks_2samp(trace.output_tokens[ok_a], twin.output_tokens[ok_b]).statistic)
        if ok_a.any() and ok_b.any()
        else float("nan"),
        "prompt_mean/trace": float(trace.prompt_tokens.mean()),
        "prompt_mean/twin": float(twin.prompt_tokens.mean()),
        "output_mean/trace": float(trace.output_tokens[ok_a].mean()) if ok_a.any() else float("nan"),
        "output_mean/twin": float(twin.output_tokens[ok_b].mean()) if ok_b.any() else float("nan"),
        "response_spearman/trace": _spearman(trace.prompt_tokens[ok_a], trace.output_tokens[ok_a]),
        "response_spearman/twin": _spearman(twin.prompt_tokens[ok_b], twin.output_tokens[ok_b]),
        "failed/trace": float(trace.failed.mean()),
        "failed/twin": float(twin.failed.mean()),
    }
    if trace.models == twin.models:
        mix_a = np.bincount(trace.model, minlength=len(trace.models)) / len(trace)
        mix_b = np.bincount(twin.model, minlength=len(twin.models)) / len(twin)
        report["model_mix_tv"] = float(0.5 * np.abs(mix_a - mix_b).sum())
    if conversation is not None and twin_conversation is not None:
        pairs = (("trace", trace.arrival_s, conversation), ("twin", twin.arrival_s, twin_conversation))
        for name, arrival, ids in pairs:
            for key, value in _conversation_stats(arrival, ids).items():
                report[f"conversation/{key}/{name}"] = value
        ia, ib = _turn_intervals(trace.arrival_s, conversation), _turn_intervals(twin.arrival_s, twin_conversation)
        if ia.size and ib.size:
            report["conversation/interval_ks"] = float(stats.ks_2samp(ia, ib).statistic)
    if cluster is not False:
        report.update(serving_latency(trace, twin, cluster))
    return report


def _turn_intervals(arrival: np.ndarray, conversation: np.ndarray) -> np.ndarray:
    conv = np.asarray(conversation, dtype=np.int64)
    rows = np.flatnonzero(conv >= 0)
    order = rows[np.lexsort((arrival[rows], conv[rows]))]
    same = conv[order][1:] == conv[order][:-1]
    return np.diff(arrival[order])[same]


def default_cluster() -> Any:
    """One H100 replica of Llama-3.1-8B with vLLM's defaults and chunked prefill (vLLM V1's
    default): without it a prompt beyond the 8,192-token step budget is refused and holds up
    the queue behind it, and a twin's sampled tail is bound to draw such prompts."""
    from infragym.envs.serving.simulator import ReplicaConfig, ServingCluster

    return ServingCluster(replica=ReplicaConfig(chunked_prefill=True))


LATENCY_KEYS = ("ttft_s_p50", "ttft_s_p99", "tbt_s_p50", "tbt_s_p99", "e2e_s_p50", "e2e_s_p99")


def serving_latency(trace: RequestTrace, twin: RequestTrace, cluster: Any = None) -> dict[str, float]:
    """The serving simulator's latency percentiles on trace and twin, and the twin's relative
    error (``latency/<metric>/trace``, ``.../twin``, ``.../rel_err``)."""
    cluster = cluster if cluster is not None else default_cluster()
    out: dict[str, float] = {}
    metrics = {name: cluster.run(t).metrics for name, t in (("trace", trace), ("twin", twin))}
    for key in LATENCY_KEYS:
        a, b = metrics["trace"].get(key, float("nan")), metrics["twin"].get(key, float("nan"))
        out[f"latency/{key}/trace"] = a
        out[f"latency/{key}/twin"] = b
        out[f"latency/{key}/rel_err"] = abs(b - a) / a if a > 0 else float("nan")
    return out


__all__ = ["LATENCY_KEYS", "default_cluster", "serving_latency", "twin_report"]
