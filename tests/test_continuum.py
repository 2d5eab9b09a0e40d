"""Continuum: tool-duration predictors, TTL policies, the experiment end to end and its export."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import infragym
from infragym.datasets.agent_programs import AgentPrograms, swe_bench_like
from infragym.envs.serving.programs import Decision
from infragym.export import ExportError
from infragym.models.continuum.predictors import (
    LEVELS,
    PREDICTORS,
    EmpiricalPerTool,
    PredictorError,
    QuantileGBM,
    RunningMean,
    evaluate_predictor,
    predictor_from_state,
    predictor_state,
    quantile_mean,
)
from infragym.models.continuum.ttl import ContinuumRule, FixedTTL, program_eta
from infragym.runner import run_train

from .conftest import compose_config, smoke

SMALL_CONTINUUM = smoke("continuum", "logger=none")  # conf/debug/continuum.yaml


@pytest.fixture(scope="module")
def calls() -> tuple[pd.DataFrame, pd.DataFrame]:
    train = swe_bench_like(600, np.random.default_rng(0)).tool_calls()
    test = swe_bench_like(200, np.random.default_rng(1)).tool_calls()
    return train, test


def test_predictors_rank_and_calibrate_on_held_out_programs(calls) -> None:
    train, test = calls
    scores = {name: evaluate_predictor(cls().fit(train), test) for name, cls in PREDICTORS.items()}
    # Features beyond the tool's name (arguments, the program's history) pay off...
    assert scores["quantile_gbm"]["pinball"] < 0.9 * scores["running_mean"]["pinball"]
    assert scores["empirical"]["pinball"] < scores["global_mean"]["pinball"]
    # ...and the empirical and boosted quantiles cover about what they claim.
    for name in ("empirical", "quantile_gbm"):
        assert scores[name]["calibration_error"] < 0.05, name
        assert abs(scores[name]["coverage_q0.9"] - 0.9) < 0.06, name


def test_empirical_falls_back_to_the_global_distribution_and_the_prior() -> None:
    calls = pd.DataFrame({"tool": ["bash"] * 150, "arguments": ["ls"] * 120 + ["pytest"] * 30})
    calls["duration_s"] = np.r_[np.full(120, 0.01), np.full(30, 5.0)]
    from infragym.models.continuum.predictors import prepare_calls

    calls = prepare_calls(calls)
    fitted = EmpiricalPerTool().fit(calls)
    query = prepare_calls(pd.DataFrame({"tool": ["bash"] * 2, "arguments": ["ls", "pytest"]}))
    q, mean = fitted.predict_distribution(query)
    assert np.all(q[0] == 0.01) and mean[0] == pytest.approx(0.01)  # > 100 samples: its own
    assert mean[1] == pytest.approx(calls["duration_s"].mean())  # 30 samples: the global CDF
    prior = EmpiricalPerTool().fit(calls.head(50))  # < 100 calls in all: Exp(1 s)
    q, mean = prior.predict_distribution(calls.head(1))
    assert mean[0] == 1.0 and q[0, LEVELS.index(0.5)] == pytest.approx(np.log(2.0))


def test_running_mean_is_the_preview_codes_rule() -> None:
    from infragym.models.continuum.predictors import prepare_calls

    calls = prepare_calls(pd.DataFrame({"tool": ["bash"] * 3, "arguments": ["pytest a", "pytest b", "ls"]}))
    calls["duration_s"] = [2.0, 4.0, 0.5]
    rm = RunningMean().fit(calls)
    out = rm.predict([{"tool": "bash", "arguments": "pytest -x c"}, {"tool": "new_api", "arguments": ""}])
    assert out["mean"].tolist() == pytest.approx([3.0, 6.5 / 3])
    assert out["q0.5"].iloc[0] == pytest.approx(3.0 * np.log(2.0))  # Exp(mean)


def test_predictor_state_round_trips(calls) -> None:
    train, test = calls
    for name, cls in PREDICTORS.items():
        fitted = cls().fit(train)
        state, files = predictor_state(fitted)
        state = json.loads(json.dumps(state))
        loaded = predictor_from_state(state, files.__getitem__)
        q1, m1 = fitted.predict_distribution(test)
        q2, m2 = loaded.predict_distribution(test)
        np.testing.assert_allclose(q2, q1, rtol=1e-9, err_msg=name)
        np.testing.assert_allclose(m2, m1, rtol=1e-9, err_msg=name)
    with pytest.raises(PredictorError, match="unknown 'name'"):
        predictor_from_state({"name": "oracle", "levels": [0.5]}, lambda f: b"")


_RECORD_COLUMNS = ["tool", "arguments", "turn", "context_tokens", "prev_duration_s", "prog_mean_duration_s"]


def _odd_records(rng: np.random.Generator, n: int) -> list[dict]:
    """Records a client may send: keys missing or None, NaN numbers, large ints, unknown tools,
    unicode whitespace and NUL in the text (all on the plain-Python path). Negative and infinite
    numbers are refused on both paths (tests/test_bad_input_envs_exports.py)."""
    tools = ["bash", "str_replace_editor", "get_weather", "brand_new_tool", "bash\x00x"]
    texts = ["pytest -x tests/t.py::a", "  view /testbed/a.py", "", "ls\x1c-la\xa0x", "install\u3000y", "cat\x00 z"]
    numbers = [None, 0, 7, 2.5, float("nan"), 12_345_678_901, 1e-9]
    out = []
    for _ in range(n):
        record = {"tool": tools[rng.integers(len(tools))], "arguments": texts[rng.integers(len(texts))]}
        if rng.random() < 0.1:
            record["arguments"] = None
        elif rng.random() < 0.1:
            del record["arguments"]  # other records have it: treated as ""
        for column in ("turn", "context_tokens", "prev_duration_s", "prog_mean_duration_s", "prev_same_tool_s"):
            if rng.random() < 0.6:
                record[column] = numbers[rng.integers(len(numbers))]
        out.append(record)
    out[0].setdefault("arguments", "ls")
    return out


@pytest.mark.parametrize("n", [1, 3, 500])
def test_plain_records_skip_pandas_with_the_same_numbers(calls, n: int) -> None:
    """A few records take a plain-Python path (the serving case); it must give the pandas
    path's quantiles and means bit for bit, for every predictor."""
    from infragym.models.continuum.predictors import _fast_calls, prepare_calls

    train, test = calls
    rng = np.random.default_rng(n)
    real = test[_RECORD_COLUMNS].iloc[:n].to_dict("records")  # the generator's calls, NaN history
    batches = [real, _odd_records(rng, n)]
    for name, cls in PREDICTORS.items():
        fitted = cls().fit(train)
        for records in batches:
            assert _fast_calls(records) is not None
            q, mean, index = fitted.distribution(records)
            q_ref, mean_ref = fitted.predict_distribution(prepare_calls(records))
            assert q.tobytes() == q_ref.tobytes() and mean.tobytes() == mean_ref.tobytes(), name
            assert index.equals(pd.RangeIndex(n))
            frame = fitted.predict(records)
            reference = pd.DataFrame(q_ref, columns=[f"q{lv:g}" for lv in LEVELS])
            reference["mean"] = mean_ref
            pd.testing.assert_frame_equal(frame, reference, check_exact=True)


def test_records_off_the_plain_path_keep_pandas_semantics(calls) -> None:
    """Text numbers, bools, extra keys and a given tool_key go through pandas as before."""
    from infragym.models.continuum.predictors import _fast_calls

    train, _ = calls
    gbm = QuantileGBM().fit(train)
    plain = [{"tool": "bash", "arguments": "pytest -x", "turn": 3, "prev_duration_s": 1.0}]
    for odd in ({"turn": "3"}, {"turn": np.int64(3)}, {"extra": "ignored"}, {"tool_key": "pytest"}):
        records = [{**plain[0], **odd}]
        assert _fast_calls(records) is None
        np.testing.assert_array_equal(gbm.predict(records).to_numpy(), gbm.predict(plain).to_numpy())
    with pytest.raises(PredictorError, match="'turn', row 0: 'x'"):
        gbm.predict([{**plain[0], "turn": "x"}])
    with pytest.raises(PredictorError, match=r"miss column\(s\) \['arguments'\]"):
        gbm.predict([{"tool": "bash"}])


def test_bad_tool_calls_are_refused() -> None:
    with pytest.raises(PredictorError, match="arguments"):
        RunningMean().predict(pd.DataFrame({"tool": ["bash"]}))
    with pytest.raises(PredictorError, match="'turn', row 1: 'third'"):
        RunningMean().predict([{"tool": "a", "arguments": ""}, {"tool": "b", "arguments": "", "turn": "third"}])
    with pytest.raises(PredictorError, match="duration_s"):
        QuantileGBM().fit(pd.DataFrame({"tool": ["bash"], "arguments": ["ls"], "tool_key": ["ls"]}))
    frame = pd.DataFrame({"tool": ["bash"], "arguments": ["ls"], "tool_key": ["ls"], "duration_s": [-1.0]})
    with pytest.raises(PredictorError, match="duration_s"):
        EmpiricalPerTool().fit(frame)


def test_quantile_mean_of_a_uniform_distribution() -> None:
    levels = np.linspace(0.05, 0.95, 19)
    assert quantile_mean(levels[None, :], levels)[0] == pytest.approx(0.5)


def _decision(rid: int, reload_s: float, queue_s: float) -> Decision:
    return Decision(rid, 0, 1, 0, 0.0, 1000, 63, reload_s, queue_s, 0, 1, 0.5, 0.0)


def test_continuum_rule_trades_reload_against_pinning_time() -> None:
    class Fixed:
        levels = (0.5, 0.9)

        def predict_distribution(self, calls):
            return np.tile([1.0, 10.0], (len(calls), 1)), np.full(len(calls), 3.0)

    progs = swe_bench_like(3, np.random.default_rng(0))
    rule = ContinuumRule(Fixed(), eta=0.5).prepare(progs)  # type: ignore[arg-type]
    # benefit B = eta * T_queue + reload; values: 0.5 B - 1 and 0.9 B - 10
    assert rule(_decision(0, reload_s=1.0, queue_s=0.0), None) == 0.0  # 0.5 - 1 < 0
    assert rule(_decision(0, reload_s=4.0, queue_s=0.0), None) == 1.0  # 1 > -6.4
    assert rule(_decision(0, reload_s=10.0, queue_s=40.0), None) == 10.0  # 26 > 14
    fixed = FixedTTL(Fixed(), ttl_s=2.0).prepare(progs)  # type: ignore[arg-type]
    assert fixed(_decision(0, 1.0, 0.0), None) == 0.0  # mean 3 s >= 2 s: do not pin
    assert FixedTTL(None, ttl_s=2.0)(_decision(0, 1.0, 0.0), None) == 2.0


def test_eta_is_one_when_every_program_has_the_same_length() -> None:
    progs = swe_bench_like(30, np.random.default_rng(0))
    same = AgentPrograms(
        arrival_s=np.zeros(3),
        offsets=np.array([0, 4, 8, 12]),
        new_tokens=np.ones(12, dtype=np.int64),
        output_tokens=np.ones(12, dtype=np.int64),
        tool=np.array(["t", "t", "t", ""] * 3, dtype=object),
        tool_args=np.array([""] * 12, dtype=object),
        tool_duration_s=np.array([1.0, 1.0, 1.0, 0.0] * 3),
    )
    assert program_eta(same) == pytest.approx(1.0)
    assert 0.0 < program_eta(progs) < 1.0


@pytest.fixture(scope="module")
def continuum_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("continuum")
    cfg = compose_config("train", SMALL_CONTINUUM, out)
    run_train(cfg)
    return out


def test_experiment_reports_every_policy_and_predictor(continuum_run: Path) -> None:
    metrics = json.loads((continuum_run / "metrics.json").read_text())
    for policy in (
        "vllm",
        "ttl_only",
        "program_fcfs_only",
        "fixed_2s",
        "predicted_mean",
        "continuum",
        "learned",
        "oracle_duration",
    ):
        assert metrics[f"test/{policy}/mean_jct_s"] > 0
        assert metrics[f"test/{policy}/p95_jct_s"] >= metrics[f"test/{policy}/mean_jct_s"] * 0.5
    for name in PREDICTORS:
        for metric in ("mae_s", "pinball", "calibration_error", "coverage_q0.9", "pinball_q0.99"):
            assert np.isfinite(metrics[f"test/{name}/{metric}"])
    # At this load SWE-like programs thrash the KV cache under vLLM; keeping caches helps.
    assert metrics["test/continuum/mean_jct_s"] < metrics["test/vllm/mean_jct_s"]
    assert metrics["test/swe_like@0.3/continuum/context_reuse"] > metrics["test/swe_like@0.3/vllm/context_reuse"]
    assert (continuum_run / "plots" / "jct_vs_load.png").is_file()


def test_export_loads_without_the_training_stack(continuum_run: Path, tmp_path: Path) -> None:
    export = continuum_run / "export"
    predictor = infragym.load(export)
    calls = [
        {"tool": "bash", "arguments": "pytest -x /testbed/tests/test_api.py", "turn": 5, "prev_duration_s": 3.0},
        {"tool": "str_replace_editor", "arguments": "view /testbed/a.py"},
    ]
    out = predictor.predict(calls)
    assert list(out.columns) == [f"q{lv:g}" for lv in LEVELS] + ["mean"]
    assert np.all(np.diff(out.filter(like="q").to_numpy(), axis=1) >= 0)  # no crossing
    assert out["q0.5"].iloc[0] > 10 * out["q0.5"].iloc[1]  # a test run outlasts a file view
    for name in PREDICTORS:
        assert len(predictor.predict(calls, predictor=name)) == 2
    ttl = predictor.ttl(calls, reload_s=[5.0, 5.0], queue_delay_s=[0.0, 0.0])
    q = predictor.predict(calls).filter(like="q").to_numpy()
    assert ttl.shape == (2,) and all(t == 0 or t in row for t, row in zip(ttl, q, strict=True))  # a quantile or evict
    # nothing to gain -> evict; a huge reload cost -> pin for the highest quantile
    np.testing.assert_array_equal(predictor.ttl(calls, reload_s=[0.0, 0.0], queue_delay_s=[0.0, 0.0]), 0.0)
    np.testing.assert_allclose(predictor.ttl(calls, reload_s=[1e9, 1e9], queue_delay_s=[0.0, 0.0]), q[:, -1])
    # A tampered model file is refused.
    copy = tmp_path / "export"
    import shutil

    shutil.copytree(export, copy)
    gbm = next(copy.glob("quantile_gbm__*.txt"))
    gbm.write_text(gbm.read_text().replace("tree", "tree", 1) + "\n")
    with pytest.raises(ExportError):
        infragym.load(copy)


@pytest.mark.parametrize("escape", ["../outside.txt", "/ABS/outside.txt"])
def test_predictors_json_cannot_name_files_outside_the_export(continuum_run: Path, tmp_path: Path, escape: str) -> None:
    """The attack: predictors.json (re-hashed in the unsigned manifest) names a model file by an
    absolute or ../ path; the loader must refuse instead of reading outside the export."""
    import hashlib
    import shutil

    copy = tmp_path / "export"
    shutil.copytree(continuum_run / "export", copy)
    outside = tmp_path / "outside.txt"
    outside.write_text("not part of the export")
    target = escape.replace("/ABS", str(tmp_path))
    spec_path = copy / "predictors.json"
    spec = spec_path.read_text()
    listed = sorted(p.name for p in copy.glob("quantile_gbm__*.txt"))
    assert listed and f'"{listed[0]}"' in spec, "predictors.json names its model files"
    spec_path.write_text(spec.replace(f'"{listed[0]}"', json.dumps(target)))
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["files"]["predictors.json"] = {
        "sha256": hashlib.sha256(spec_path.read_bytes()).hexdigest(),
        "bytes": spec_path.stat().st_size,
    }
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ExportError, match="not a plain file name"):
        infragym.load(copy)


def test_loading_the_export_imports_no_training_stack(continuum_run: Path) -> None:
    import subprocess
    import sys

    code = (
        "import sys, infragym\n"
        f"p = infragym.load({str(continuum_run / 'export')!r})\n"
        "out = p.predict([{'tool': 'bash', 'arguments': 'ls'}])\n"
        "assert out.shape == (1, 9), out.shape\n"
        # (LightGBM itself imports scikit-learn when it is installed.)
        "heavy = [m for m in ('torch', 'pytorch_lightning', 'econml', 'hydra', 'wandb') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def test_evaluate_py_reproduces_the_run_from_its_export(continuum_run: Path, tmp_path: Path) -> None:
    from infragym.runner import run_evaluate

    cfg = compose_config("evaluate", [f"checkpoint={continuum_run / 'export'}", "logger=none"], tmp_path)
    reproduced = run_evaluate(cfg)
    trained = json.loads((continuum_run / "metrics.json").read_text())
    for key in ("test/continuum/mean_jct_s", "test/learned/mean_jct_s", "test/quantile_gbm/pinball"):
        assert reproduced[key] == pytest.approx(trained[key], rel=1e-9), key


def test_single_row_predictions_are_the_boosters_own_bit_for_bit_in_every_thread() -> None:
    import threading

    import lightgbm as lgb

    from infragym.models.continuum import single_row

    if not single_row.available():
        pytest.skip("this lightgbm has no fast single-row C API")
    rng = np.random.default_rng(3)
    x = rng.normal(size=(400, 6))
    x[rng.random(x.shape) < 0.1] = np.nan  # the missing-value branches too
    boosters = [
        lgb.train(
            {"objective": "quantile", "alpha": a, "num_leaves": 7, "verbose": -1, "num_threads": 1},
            lgb.Dataset(x, x[:, 0] * 2 + rng.normal(size=400)),
            num_boost_round=15,
        )
        for a in (0.1, 0.5, 0.9)
    ]
    expected = np.column_stack([b.predict(x, num_threads=1) for b in boosters])
    fast = single_row.SingleRowPredictor(boosters)
    results: list[bool] = []

    def check() -> None:
        results.append(np.array_equal(np.array([fast.predict(row) for row in x]), expected))

    threads = [threading.Thread(target=check) for _ in range(3)]
    for thread in threads:
        thread.start()
    check()
    for thread in threads:
        thread.join()
    assert results == [True] * 4
    with pytest.raises(ValueError, match="one row of 6 features"):
        fast.predict(x[:2])
