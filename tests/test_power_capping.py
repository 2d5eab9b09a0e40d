"""POLCA: the splitwise table reader, the calibrated GPU power model, the fluid servers against
the request-level simulator, the row env and its invariants, the POLCA rule, and the
experiment end to end with its export."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from infragym.config import default_data_dir
from infragym.datasets.llm_traces import RequestTrace, poisson_trace
from infragym.envs.power.fluid import FluidServers, ServerTiming
from infragym.envs.power.perf_data import PerfDataError, read_perf_csv
from infragym.envs.serving.cost_model import CostModel
from infragym.envs.serving.hardware import MODELS, MoEModelSpec

from .conftest import compose_config, smoke

SHARED_DATA = Path(default_data_dir())
POWER_DATA = SHARED_DATA / "gpu_power"
HEADER = (
    "model,hardware,prompt_size,batch_size,token_size,peak_power,average_power,prompt_time,token_time,e2e_time,"
    "tensor_parallel"
)
GOOD_ROWS = [
    "llama2-70b,a100-80gb,512,1,128,1.0000125,0.73599375,196.25,54.88,7168.98,2",
    "llama2-70b,h100-80gb,512,1,128,0.0,0.0,83.86,37.0,4800.0,2",
]


def need_power_data() -> list[Path]:
    paths = sorted(POWER_DATA.glob("*.csv"))
    if not paths:
        pytest.skip(f"the shared splitwise tables are absent ({POWER_DATA})")
    return paths


@pytest.fixture(scope="module")
def power_model():
    from infragym.envs.power import calibrate

    return calibrate(need_power_data())


# ---------------------------------------------------------------- registry
def test_registry_gains_the_published_architectures() -> None:
    assert MODELS["llama2-70b"].params == pytest.approx(69.0e9, rel=0.01)  # 70B (Meta model card)
    assert MODELS["bloom-176b"].params == pytest.approx(176e9, rel=0.03)  # tied embeddings counted twice
    mixtral, deepseek = MODELS["mixtral-8x7b"], MODELS["deepseek-moe-16b"]
    assert isinstance(mixtral, MoEModelSpec) and isinstance(deepseek, MoEModelSpec)
    assert mixtral.params == pytest.approx(46.7e9, rel=0.01)  # Mistral's 46.7B total
    assert mixtral.linear_flops_per_token() / 2 == pytest.approx(12.9e9, rel=0.03)  # 12.9B active
    assert deepseek.params == pytest.approx(16.4e9, rel=0.02)
    assert mixtral.routed_expert_bytes < mixtral.weight_bytes


# ---------------------------------------------------------------- reader
def test_reader_accepts_the_format_and_reads_zero_power_as_missing(tmp_path: Path) -> None:
    path = tmp_path / "perf.csv"
    path.write_text("\n".join([HEADER, *GOOD_ROWS]) + "\n")
    frame = read_perf_csv(path)
    assert len(frame) == 2 and frame["batch_size"].dtype == np.int64
    assert frame["average_power"].iloc[0] == pytest.approx(0.73599375)
    assert np.isnan(frame["average_power"].iloc[1])  # H100 rows record no power
    # power columns are optional
    path.write_text(
        "model,hardware,prompt_size,batch_size,token_size,prompt_time,token_time,tensor_parallel\n"
        "llama2-70b,h100-80gb,512,1,128,83.8,37.0,8\n"
    )
    assert np.isnan(read_perf_csv(path)["peak_power"].iloc[0])


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda r: r.replace("196.25", "-3"), r"line 2, column 'prompt_time'"),
        (lambda r: r.replace("llama2-70b,a100", "llama9,a100"), r"line 2, column 'model'.*not known"),
        (lambda r: r.replace(",1,128,1.0000125", ",1.5,128,1.0000125"), r"line 2, column 'batch_size'"),
        (lambda r: r.replace("a100-80gb", "tpu"), r"line 2, column 'hardware'"),
        (lambda r: r.replace("0.73599375", "7.3"), r"line 2, column 'average_power'"),
        (lambda r: r.replace(",2", ",x"), r"line 2, column 'tensor_parallel'"),
    ],
)
def test_reader_refuses_bad_rows_naming_file_line_and_column(tmp_path: Path, edit, match: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("\n".join([HEADER, edit(GOOD_ROWS[0]), GOOD_ROWS[1]]) + "\n")
    with pytest.raises(PerfDataError, match=match) as err:
        read_perf_csv(path)
    assert str(path) in str(err.value) and isinstance(err.value, ValueError)


def test_reader_refuses_missing_columns_and_empty_files(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("model,hardware\nllama2-70b,a100-80gb\n")
    with pytest.raises(PerfDataError, match="missing column"):
        read_perf_csv(path)
    path.write_text("")
    with pytest.raises(PerfDataError, match="empty"):
        read_perf_csv(path)


# ---------------------------------------------------------------- the calibrated model
def test_cap_slows_prefill_about_30_percent_and_leaves_decode(power_model) -> None:
    from infragym.envs.power.model import cap_effect

    for tp in (2, 4, 8):
        effect = cap_effect(power_model, (512, 2048, 8192), tp=tp)
        assert 1.2 <= effect["prefill_slowdown"] <= 1.4, effect  # the data: ~1.30
        assert effect["decode_slowdown"] <= 1.02, effect  # the data: unchanged
    rows = pd.DataFrame(
        [
            {
                "model": "llama2-70b",
                "hardware": "h100-80gb-pcap",
                "prompt_size": 2048,
                "batch_size": 1,
                "token_size": 128,
                "tensor_parallel": 8,
            }
        ]
    )
    pred = power_model.predict(rows)
    assert pred["prompt_time"].iloc[0] == pytest.approx(177.5, rel=0.2)  # measured 137 -> 178 ms
    assert pred["token_time"].iloc[0] == pytest.approx(31.2, rel=0.15)  # ~29.7-31 ms per token


def test_fit_error_per_hardware_and_power_parameters(power_model) -> None:
    m = power_model.metrics
    for hw in ("a100-80gb", "h100-80gb", "h100-80gb-pcap"):
        assert m[f"{hw}/token_time_mape"] < 0.10
        assert m[f"{hw}/prompt_time_median_ape"] < 0.12
    assert m["a100-80gb/average_power_median_ape"] < 0.10
    assert 0.5 < power_model.alpha < 4 and power_model.prefill_scale > 0.5
    # power never negative and never above the phase's ceiling, at any clock and utilisation
    u = np.linspace(0, 1, 11)
    for clock in (0.25, 0.5, 1.0):
        for phase in ("prefill", "decode"):
            watts = power_model.phase_power_w("h100-80gb", phase, u, clock)
            assert np.all(watts >= 75.0) and np.all(np.diff(watts) >= 0)


def test_held_out_tensor_parallel_degree_generalises() -> None:
    from infragym.envs.power.model import holdout_errors
    from infragym.envs.power.perf_data import read_perf_tables

    frame = read_perf_tables(need_power_data())
    errors = holdout_errors(frame, frame["tensor_parallel"] == 4)
    assert errors["h100-80gb/token_time_median_ape"] < 0.15
    assert errors["a100-80gb/prompt_time_median_ape"] < 0.2


def test_predict_refuses_unknown_hardware(power_model) -> None:
    rows = pd.DataFrame(
        [
            {
                "model": "llama2-70b",
                "hardware": "tpu",
                "prompt_size": 1,
                "batch_size": 1,
                "token_size": 1,
                "tensor_parallel": 8,
            }
        ]
    )
    with pytest.raises(PerfDataError, match="unknown hardware"):
        power_model.predict(rows)


# ---------------------------------------------------------------- fluid servers
def _timing() -> ServerTiming:
    return ServerTiming.from_cost_model(CostModel("h100", "llama2-70b", 8), max_running=128)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fluid_servers_conserve_requests_and_keep_time_order(seed: int) -> None:
    rng = np.random.default_rng(seed)
    trace = poisson_trace(600, rng, rate=12.0)
    server = rng.integers(0, 3, len(trace))
    fluid = FluidServers(trace, server, 3, _timing())
    clocks = rng.choice([0.5, 0.8, 1.0], size=3)
    while fluid.now < trace.arrival_s[-1] + 120:
        fluid.tick(0.25, clocks, available=rng.random() > 0.05)
        assert fluid.conserved()
    done = np.isfinite(fluid.completion)
    assert done.all()  # drained: nothing lost
    assert np.all(fluid.first_token[done] >= fluid.arrival[done] - 1e-9)
    assert np.all(fluid.completion[done] >= fluid.first_token[done] - 1e-9)


def test_fluid_servers_track_the_request_level_simulator() -> None:
    from infragym.envs.serving.simulator import SLO, ReplicaConfig, ServingCluster

    trace = poisson_trace(500, np.random.default_rng(3), rate=6.0)
    fluid = FluidServers(trace, np.zeros(len(trace), dtype=np.int64), 1, _timing())
    while fluid.now < trace.arrival_s[-1] + 300:
        fluid.tick(0.25)
    lat = fluid.latencies()
    sim = (
        ServingCluster(
            replica=ReplicaConfig(gpu="h100", model="llama2-70b", tp=8, max_running=128), slo=SLO(2.0, 0.1, 1e9)
        )
        .run(trace)
        .metrics
    )
    assert np.mean(lat["e2e_s"]) == pytest.approx(sim["e2e_s_mean"], rel=0.2)
    assert np.mean(lat["tpot_s"]) == pytest.approx(sim["tbt_s_mean"], rel=0.2)


def test_fluid_slower_clock_slows_service() -> None:
    trace = poisson_trace(300, np.random.default_rng(4), rate=8.0)
    e2e = []
    for clock in (1.0, 0.5):
        fluid = FluidServers(trace, np.zeros(len(trace), dtype=np.int64), 1, _timing())
        while fluid.now < trace.arrival_s[-1] + 300:
            fluid.tick(0.25, clock)
        e2e.append(np.mean(fluid.latencies()["e2e_s"]))
    assert e2e[1] > e2e[0] * 1.05


def test_fluid_refuses_bad_server_indices() -> None:
    trace = RequestTrace(
        np.array([0.0, 1.0]), np.array([5, 5]), np.array([2, 2]), np.zeros(2, np.int64), np.zeros(2, bool)
    )
    with pytest.raises(ValueError, match="server indices"):
        FluidServers(trace, np.array([0, 3]), 2, _timing())


# ---------------------------------------------------------------- the env
@pytest.fixture(scope="module")
def small_env():
    need_power_data()
    from infragym.envs.power.env import PowerCappingEnv

    return PowerCappingEnv(n_base=6, horizon_s=60.0, data_dir=str(SHARED_DATA))


def test_env_passes_checkers(small_env) -> None:
    from gymnasium.utils.env_checker import check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    from infragym.envs.power.env import PowerCappingEnv

    check_env(small_env, skip_render_check=True)
    sb3_check_env(PowerCappingEnv(n_base=4, horizon_s=30.0, data_dir=str(SHARED_DATA)), warn=False)


def test_row_power_positive_brakes_only_above_budget_and_caps_lower_power(small_env) -> None:
    from infragym.envs.power.policies import Uncapped
    from infragym.models.power_capping.task import env_like, run_episode

    env = small_env
    at_zero = run_episode(env, Uncapped(), 7, 0.0)
    assert at_zero["brake_events"] == 0 and at_zero["row_power_max_frac"] < 1.0
    env.reset(seed=7, options={"oversubscription": 0.5})
    for _ in range(10):  # uncapped, oversubscribed 50%: the brake engages
        _, _, _, _, info = env.step(np.array([0, 0]))
        assert info["row_power_w"] > 0 and np.all(info["server_power_w"] >= env.row.acc.platform_w)
    assert env.row.state.brake_events > 0
    free = env_like(env, unlimited_power=True)  # no budget: no brake; lower clocks draw less power
    powers = []
    for clock in (0, 2, 5):
        free.reset(seed=7, options={"oversubscription": 0.5})
        for _ in range(10):
            free.step(np.array([clock, clock]))
        assert free.row.state.brake_events == 0
        powers.append(np.mean(free.row.state.power_w))
    assert powers[0] > powers[1] > powers[2]
    with pytest.raises(ValueError):
        env.step(np.array([0, 9]))


def test_polca_rule_escalates_and_uncaps_with_hysteresis() -> None:
    from infragym.envs.power.policies import POWER, PolcaRule, clock_index

    rule = PolcaRule(t1=0.8, t2=0.9, margin=0.05, low_clock=0.6, all_clock=0.8)
    obs = np.zeros(12, dtype=np.float32)

    def at(power: float) -> list[int]:
        obs[POWER] = power
        return rule.act(obs).tolist()

    low, high = clock_index(0.6), clock_index(0.8)
    assert at(0.7) == [0, 0]
    assert at(0.82) == [low, 0]
    assert at(0.78) == [low, 0]  # inside the margin: stays capped
    assert at(0.92) == [low, high]
    assert at(0.87) == [low, high]  # 0.87 > 0.9 - 0.05
    assert at(0.84) == [low, 0]
    assert at(0.74) == [0, 0]
    with pytest.raises(ValueError):
        PolcaRule(t1=0.9, t2=0.8)


# ---------------------------------------------------------------- end to end
def test_experiment_end_to_end_and_export(tmp_path: Path) -> None:
    need_power_data()
    from infragym import load
    from infragym.runner import run_train

    run_train(compose_config("train", smoke("power_capping", "logger=none"), tmp_path / "run"))
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    for policy in ("no_oversubscription", "uncapped", "static", "polca", "learned"):
        assert 0.0 <= metrics[f"test/{policy}/extra_servers_frac"] <= 0.4
        assert metrics[f"test/{policy}/brake_events"] >= 0
    assert metrics["test/no_oversubscription/extra_servers_frac"] == 0.0
    policy = load(tmp_path / "run" / "export")
    obs = np.zeros(12, dtype=np.float32)
    action = policy.act(obs)
    assert action.shape == (2,) and np.all((action >= 0) & (action < 6))
    assert policy.act(np.zeros((3, 12), dtype=np.float32)).shape == (3, 2)
    with pytest.raises(ValueError):
        policy.act(np.zeros(5))
