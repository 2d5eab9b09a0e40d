"""The shared evaluation helper: metric keys, method comparisons, tables, best method, margins,
averages over seeds with bootstrap intervals, curves."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest

from infragym.evaluation import (
    add_method_rows,
    average_over_seeds,
    best_method,
    bootstrap_ci,
    compare_methods,
    improvement,
    margin_vs_best,
    method_metrics,
    metric_key,
    plot_curves,
    relative_change,
    results_table,
    summarize_over_seeds,
)
from infragym.results import ResultsTable

# Three methods on two splits: the model, a baseline and an oracle (lower MAE is better).
METRICS = {
    "val/model/mae": 2.0,
    "val/baseline/mae": 3.0,
    "val/oracle/mae": 1.0,
    "test/model/mae": 4.0,
    "test/model/p95": 9.0,
    "test/baseline/mae": 5.0,
    "test/baseline/p95": 8.0,
    "test/oracle/mae": 1.5,
}


def test_metric_key_joins_split_method_condition_and_name() -> None:
    assert metric_key("test", "greedy", "fragment_rate") == "test/greedy/fragment_rate"
    assert metric_key("test", "fcfs", "ttft_s", condition="azure@2x") == "test/fcfs/azure@2x/ttft_s"
    # a split scoped to a workload and load
    assert metric_key("test/swe_like@0.3", "vllm", "mean_jct_s") == "test/swe_like@0.3/vllm/mean_jct_s"
    with pytest.raises(ValueError, match="non-empty"):
        metric_key("test", "", "mae")


def test_method_metrics_and_compare_methods_keep_order_and_values() -> None:
    assert method_metrics("val", "ridge", {"mae": np.float32(1.5), "p95": 3}) == {
        "val/ridge/mae": 1.5,
        "val/ridge/p95": 3.0,
    }
    calls: list[str] = []

    def evaluate(name: str, value: float) -> dict[str, float]:
        calls.append(name)
        return {"mae": value}

    metrics = compare_methods("test", {"model": lambda: evaluate("model", 1.0), "mean": lambda: evaluate("mean", 2.0)})
    assert calls == ["model", "mean"]  # each method runs once, in the given order
    assert list(metrics) == ["test/model/mae", "test/mean/mae"]
    assert metrics["test/mean/mae"] == 2.0


def test_results_table_reads_rows_from_flat_metrics() -> None:
    table = results_table("MAE", METRICS, ["model", "baseline", "oracle"], ["mae", "p95"], split="test")
    assert table.columns == ["mae", "p95"]
    assert table.rows == {
        "model": {"mae": 4.0, "p95": 9.0},
        "baseline": {"mae": 5.0, "p95": 8.0},
        "oracle": {"mae": 1.5},  # no p95: left empty, shown as "-"
    }
    text = table.to_text()
    assert text.splitlines()[0] == "MAE"
    assert "oracle    1.500  -" in text


def test_results_table_across_splits_and_row_labels() -> None:
    columns = {"val_mae": ("val", "mae"), "test_mae": ("test", "mae")}
    table = results_table("MAE by split", METRICS, ["model", "baseline"], columns, label=lambda m: f"{m} (run 0)")
    assert table.rows == {
        "model (run 0)": {"val_mae": 2.0, "test_mae": 4.0},
        "baseline (run 0)": {"val_mae": 3.0, "test_mae": 5.0},
    }
    # more rows into the same table from another split
    add_method_rows(table, METRICS, ["oracle"], columns={"test_mae": ("test", "mae")})
    assert table.rows["oracle"] == {"test_mae": 1.5}
    with pytest.raises(ValueError, match="split"):
        add_method_rows(ResultsTable("t", ["mae"]), METRICS, ["model"])


def test_best_method_lower_or_higher_is_better_and_ties_go_first() -> None:
    assert best_method(METRICS, "test", "mae", among=["model", "baseline", "oracle"]) == "oracle"
    assert best_method(METRICS, "test", "mae", among=["model", "baseline"], lower_is_better=False) == "baseline"
    tied = {"val/a/loss": 1.0, "val/b/loss": 1.0, "val/c/loss": 2.0}
    assert best_method(tied, "val", "loss", among=["b", "a", "c"]) == "b"
    assert best_method(tied, "val", "loss", among=["a", "b", "c"]) == "a"
    # NaN is never the best, wherever it stands
    with_nan = {"val/a/loss": float("nan"), "val/b/loss": 3.0, "val/c/loss": 2.0}
    assert best_method(with_nan, "val", "loss", among=["a", "b", "c"]) == "c"


def test_best_method_refuses_bad_input_by_name() -> None:
    with pytest.raises(KeyError, match="val/missing/mae"):
        best_method(METRICS, "val", "mae", among=["model", "missing"])
    with pytest.raises(ValueError, match="no methods"):
        best_method(METRICS, "val", "mae", among=[])
    with pytest.raises(ValueError, match="NaN"):
        best_method({"val/a/mae": float("nan")}, "val", "mae", among=["a"])


def test_margins_and_relative_change() -> None:
    assert relative_change(47.0, 100.0) == pytest.approx(-0.53)
    assert improvement(7.8, 10.0) == pytest.approx(0.22)  # 22 % lower error
    assert improvement(12.0, 10.0, lower_is_better=False) == pytest.approx(0.2)  # 20 % more throughput
    # identical to the formulas the tasks used before sharing them
    assert improvement(4.0, 5.0) == 1.0 - 4.0 / 5.0
    best, margin = margin_vs_best(METRICS, "test", "model", ["baseline"], "mae")
    assert best == "baseline" and margin == pytest.approx(0.2)
    best, margin = margin_vs_best(METRICS, "test", "model", ["baseline", "oracle"], "mae")
    assert best == "oracle" and margin == pytest.approx(1.0 - 4.0 / 1.5)  # negative: the model is worse


def test_average_over_seeds_reports_mean_and_an_interval_around_it() -> None:
    runs = [{"jct": 10.0, "reuse": 0.5}, {"jct": 12.0, "reuse": 0.7}, {"jct": 14.0, "reuse": 0.6}]
    out = average_over_seeds(runs)
    assert list(out)[::3] == ["jct", "reuse"]  # each mean followed by its interval, first run's order
    assert out["jct"] == 12.0 and out["reuse"] == pytest.approx(0.6)
    for name in ("jct", "reuse"):
        assert out[f"{name}/ci_low"] <= out[name] <= out[f"{name}/ci_high"]
        assert out[f"{name}/ci_low"] < out[f"{name}/ci_high"]
    # the mean is exactly numpy's, as the tasks computed it before
    assert out["reuse"] == float(np.mean([0.5, 0.7, 0.6]))
    # intervals only where asked, and none from a single run
    assert set(average_over_seeds(runs, ci_for=["jct"])) == {"jct", "jct/ci_low", "jct/ci_high", "reuse"}
    assert average_over_seeds(runs[:1]) == {"jct": 10.0, "reuse": 0.5}
    # a non-finite value keeps its mean but gets no interval
    assert set(average_over_seeds([{"x": 1.0}, {"x": float("inf")}])) == {"x"}


def test_interval_shrinks_with_more_seeds() -> None:
    rng = np.random.default_rng(0)
    values = rng.normal(10.0, 2.0, size=200)
    few = average_over_seeds([{"m": v} for v in values[:5]])
    many = average_over_seeds([{"m": v} for v in values])
    assert many["m/ci_high"] - many["m/ci_low"] < 0.5 * (few["m/ci_high"] - few["m/ci_low"])
    assert many["m/ci_low"] < 10.0 < many["m/ci_high"]


def test_average_over_seeds_refuses_bad_input_by_name() -> None:
    with pytest.raises(ValueError, match="no runs"):
        average_over_seeds([])
    with pytest.raises(ValueError, match=r"run 1 .*\['p95'\]"):
        average_over_seeds([{"mae": 1.0, "p95": 2.0}, {"mae": 1.5}])


def test_bootstrap_ci_and_summaries() -> None:
    summary = bootstrap_ci([1.0, 2.0, 3.0, 4.0])
    assert summary.mean == 2.5 and summary.n == 4 and summary.low <= 2.5 <= summary.high
    assert bootstrap_ci([3.0]).as_dict() == {"mean": 3.0, "ci_low": 3.0, "ci_high": 3.0, "n": 1.0}
    assert bootstrap_ci([1.0, 2.0, 3.0]) == bootstrap_ci([1.0, 2.0, 3.0])  # seeded: reproducible
    with pytest.raises(ValueError, match="finite"):
        bootstrap_ci([1.0, float("nan")])
    with pytest.raises(ValueError, match="non-empty"):
        bootstrap_ci([])
    per_seed = {0: {"mae": 1.0, "only_0": 5.0}, 1: {"mae": 3.0}}
    summaries = summarize_over_seeds(per_seed)
    assert list(summaries) == ["mae"] and summaries["mae"].mean == 2.0


def test_plot_curves_draws_one_panel_per_condition_and_one_line_per_method() -> None:
    curves = {
        "swe_like": {"vllm": [(0.1, 5.0), (0.2, 9.0)], "continuum": [(0.1, 4.0), (0.2, 6.0)]},
        "bfcl_like": {"vllm": [(8.0, 1.0), (16.0, 2.0)]},
    }
    fig = plot_curves(curves, xlabel="rate", ylabel="JCT (s)", styles={"vllm": "o--"}, yscale="log")
    try:
        axes = fig.axes
        assert [ax.get_title() for ax in axes] == ["swe_like", "bfcl_like"]
        lines = axes[0].get_lines()
        assert [line.get_label() for line in lines] == ["vllm", "continuum"]
        assert list(lines[0].get_ydata()) == [5.0, 9.0] and lines[0].get_linestyle() == "--"
        assert lines[1].get_linestyle() == "-"
        assert axes[0].get_yscale() == "log" and axes[0].get_xlabel() == "rate"
    finally:
        plt.close(fig)
    empty = plot_curves({}, xlabel="x", ylabel="y")
    assert len(empty.axes) == 1
    plt.close(empty)
