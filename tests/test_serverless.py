"""Serverless cold starts: trace loaders, the calibrated generator, the keep-alive simulator
(against a plain reference), the policies, the env, the experiment end to end and its export."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import infragym
from infragym.config import default_data_dir
from infragym.datasets.serverless import (
    InvocationTrace,
    ServerlessTraceError,
    load_azure_functions_2019,
    load_azure_functions_2021,
    load_huawei_cold_starts,
)
from infragym.envs.serverless.generator import (
    COLD_START_MEAN_S,
    COLD_START_SD_S,
    REGIONS,
    cold_start_times,
    generate_region,
)
from infragym.envs.serverless.policies import POLICIES, FixedKeepAlive, HybridHistogram, pod_idle_times, run_policy
from infragym.envs.serverless.simulator import simulate
from infragym.runner import run_train

from .conftest import compose_config, smoke

MINUTES = [str(m) for m in range(1, 1441)]


# ------------------------------------------------------------------ fixtures written from the schemas
def write_azure_2019(folder: Path) -> tuple[Path, Path, Path]:
    """One day (d02) of the Azure Functions 2019 trace: invocations, durations, app memory."""
    rows = {
        ("o1", "a1", "f1", "http"): {5: 3, 6: 1},
        ("o1", "a1", "f2", "timer"): {m: 1 for m in range(1, 1441, 10)},
        ("o2", "a2", "f3", "queue"): {1440: 2},
    }
    inv = folder / "invocations_per_function_md.anon.d02.csv"
    lines = [",".join(["HashOwner", "HashApp", "HashFunction", "Trigger", *MINUTES])]
    for (owner, app, func, trigger), counts in rows.items():
        lines.append(",".join([owner, app, func, trigger, *(str(counts.get(m, 0)) for m in range(1, 1441))]))
    inv.write_text("\n".join(lines) + "\n")
    pct = [f"percentile_Average_{p}" for p in (0, 1, 25, 50, 75, 99, 100)]
    dur = folder / "function_durations_percentiles.anon.d02.csv"
    dur.write_text(
        ",".join(["HashOwner", "HashApp", "HashFunction", "Average", "Count", "Minimum", "Maximum", *pct])
        + "\no1,a1,f1,150,4,100,300,100,100,120,150,180,290,300\n"
        + "o1,a1,f2,2000,144,1000,3000,1000,1000,1500,2000,2500,2900,3000\n"
    )
    mem = folder / "app_memory_percentiles.anon.d02.csv"
    mem.write_text("HashOwner,HashApp,SampleCount,AverageAllocatedMb,AverageAllocatedMb_pct1\no1,a1,10,180,170\n")
    return inv, dur, mem


HUAWEI_HEADER = (
    "day,time,clusterName,funcName,userID,requestID,podID,totalCost_cold_start,podAllocationCost,"
    "deployCodeCost,deployDependencyCost,schedulingCost"
)


def write_huawei(path: Path, extra: str = "") -> Path:
    path.write_text(
        HUAWEI_HEADER
        + "\n0,51937.425,1,10,134,82f1aa19,pool22-300-128-0000618412,2.239314,0.027161815,0.045,0.454,1.713152185"
        + "\n1,100.5,2,10,134,9a0b,pool22-300-128-0000618413,0.5,0.1,0.1,0.1,0.2"
        + "\n1,86500.0,2,296,224,77c1,pool24-600-512-0000577863,4.0,3.0,0.2,0.3,0.5"
        + extra
        + "\n"
    )
    return path


def test_azure_2019_one_entry_per_invocation_within_its_minute(tmp_path: Path) -> None:
    inv, dur, mem = write_azure_2019(tmp_path)
    trace = load_azure_functions_2019(inv, dur, mem, seed=3)
    assert len(trace) == 3 + 1 + 144 + 2 and trace.n_functions == 3
    assert np.all(np.diff(trace.arrival_s) >= 0)
    f1 = trace.functions.index("o1/a1/f1")
    first = trace.arrival_s[trace.function == f1]
    day2 = 86_400.0  # d02: one day after d01
    assert np.sum((first >= day2 + 240) & (first < day2 + 300)) == 3 and np.sum(first >= day2 + 300) == 1
    f3 = trace.functions.index("o2/a2/f3")
    assert np.all(trace.arrival_s[trace.function == f3] >= day2 + 1439 * 60)
    # durations from the percentiles (ms -> s); a function without them gets the median's
    assert np.all((trace.duration_s[trace.function == f1] >= 0.1) & (trace.duration_s[trace.function == f1] <= 0.3))
    assert trace.memory_mb[f1] == 180.0 and trace.memory_mb[f3] == 180.0  # a2 is missing: the file's median
    assert trace.trigger[trace.functions.index("o1/a1/f2")] == "timer"
    again = load_azure_functions_2019(inv, dur, mem, seed=3)
    assert np.array_equal(trace.arrival_s, again.arrival_s)
    assert not np.array_equal(trace.arrival_s, load_azure_functions_2019(inv, seed=4).arrival_s)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda s: s.replace("o1,a1,f1,http,0", "o1,a1,f1,http,-1", 1), "line 2, column '1'"),
        (lambda s: s.replace("o2,a2,f3,queue,0", "o2,a2,f3,queue,x", 1), "line 4, column '1'"),
        (lambda s: s.replace(",1440\n", ",1441\n", 1), "missing column"),
        (lambda s: s.replace("o2,a2,f3", "o2,,f3", 1), "line 4, column 'HashApp'"),
    ],
)
def test_malformed_azure_2019_is_refused_naming_line_and_column(tmp_path: Path, edit, message) -> None:
    inv, _, _ = write_azure_2019(tmp_path)
    inv.write_text(edit(inv.read_text()))
    with pytest.raises(ServerlessTraceError, match=message):
        load_azure_functions_2019(inv)


def test_azure_2021_real_sample() -> None:
    path = Path(default_data_dir()) / "serverless" / "azure_functions_2021_sample.csv"
    if not path.is_file():
        pytest.skip(f"the shared Azure Functions 2021 sample is absent ({path})")
    trace = load_azure_functions_2021(path)
    assert len(trace) == 199 and trace.n_functions == 31  # README: 199 invocations, 31 functions
    assert np.all(np.diff(trace.arrival_s) >= 0)
    first = path.read_text().splitlines()[1].split(",")
    assert np.isclose(trace.arrival_s, float(first[2]) - float(first[3])).any()


def test_azure_2021_refuses_a_bad_duration(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("app,func,end_timestamp,duration\na,f,1.0,0.5\na,f,2.0,-0.1\n")
    with pytest.raises(ServerlessTraceError, match="line 3, column 'duration'"):
        load_azure_functions_2021(path)


def test_huawei_cold_starts_pool_memory_parts_and_days(tmp_path: Path) -> None:
    trace = load_huawei_cold_starts(write_huawei(tmp_path / "R1.csv"))
    assert len(trace) == 3 and trace.n_functions == 2
    small = trace.functions.index("10---134---pool22-300-128")
    big = trace.functions.index("296---224---pool24-600-512")
    assert trace.memory_mb[small] == 128 and trace.memory_mb[big] == 512
    # day 1 at 100.5 s of its day; day 1 at 86,500 s already counts from day 0
    assert trace.arrival_s.tolist() == [51937.425, 86500.0, 86500.5]
    assert trace.cold_start_s[0] == pytest.approx(2.239314)
    assert trace.cold_start_parts_s[0].tolist() == pytest.approx([0.027161815, 0.045, 0.454, 1.713152185])


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("\n2,5.0,1,10,134,ab,pod-without-pool,1,0.2,0.2,0.3,0.3", "line 5, column 'podID'"),
        ("\n2,5.0,1,10,134,ab,pool22-300-128-1,1,0.2,nan,0.3,0.3", "line 5, column 'deployCodeCost'"),
        ("\n2.5,5.0,1,10,134,ab,pool22-300-128-1,1,0.2,0.2,0.3,0.3", "line 5, column 'day'"),
    ],
)
def test_malformed_huawei_rows_are_refused(tmp_path: Path, extra: str, message: str) -> None:
    with pytest.raises(ServerlessTraceError, match=message):
        load_huawei_cold_starts(write_huawei(tmp_path / "R1.csv", extra))


# ------------------------------------------------------------------ generator calibration
@pytest.fixture(scope="module")
def region() -> tuple[InvocationTrace, np.ndarray]:
    trace = generate_region(60, 3, np.random.default_rng(0))
    cold, _ = cold_start_times(trace, np.random.default_rng(1))
    return trace, cold


def test_cold_start_times_match_the_paper_and_region_profiles() -> None:
    trace = InvocationTrace(
        np.zeros(400_000), np.zeros(400_000, np.int64), np.zeros(400_000), ("f",), np.array([128.0]),
        runtime=("python",),
    )  # fmt: skip
    total, parts = cold_start_times(trace, np.random.default_rng(0))
    assert np.allclose(parts.sum(axis=1), total)
    assert total.mean() == pytest.approx(COLD_START_MEAN_S, rel=0.03)  # EuroSys'25: mean 3.24 s
    assert total.std() == pytest.approx(COLD_START_SD_S, rel=0.15)  # sd 7.10 s (heavy tail: loose)
    r1, p1 = cold_start_times(trace, np.random.default_rng(1), "region1")
    r2, p2 = cold_start_times(trace, np.random.default_rng(2), "region2")
    assert np.quantile(r1, 0.9) == pytest.approx(7.0, rel=0.05) and np.quantile(r2, 0.9) == pytest.approx(3.0, rel=0.05)
    share1, share2 = p1.sum(0) / p1.sum(), p2.sum(0) / p2.sum()
    assert share1[2] + share1[3] > 0.75  # Region 1: dependency deployment and scheduling dominate
    assert share2[0] == share2.max() and share2[0] > 0.5  # Region 2: pod allocation dominates
    assert set(REGIONS) >= {"all", "region1", "region2"}


def test_generated_region_popularity_and_timers(region) -> None:
    trace, _ = region
    big = generate_region(2000, 1, np.random.default_rng(5))
    per_day = big.invocations_per_function()
    # ATC'20: 45% of apps at most hourly, 81% at most once a minute (sampling noise: +-4%)
    assert np.mean(per_day <= 24) == pytest.approx(0.45, abs=0.04)
    assert np.mean(per_day <= 1440) == pytest.approx(0.81, abs=0.04)
    top = np.sort(per_day)[::-1]
    # a few hot functions carry most invocations (ATC'20: the top 18.6% carry 99.6%; the scaled-down
    # region's rate cap flattens the head)
    assert top[: len(top) // 10].sum() > 0.6 * top.sum() and np.median(per_day) < 0.01 * top[0]
    timers = [i for i, t in enumerate(trace.trigger) if t == "timer"]
    gaps = np.diff(trace.arrival_s[trace.function == timers[0]])
    assert np.ptp(gaps[gaps > 2.0]) < 2.0  # periodic up to a second of jitter (bursts aside)


# ------------------------------------------------------------------ simulator vs a plain reference
def reference_simulation(trace, cold_start, prewarm, keep, horizon):
    """The keep-alive model written plainly: pods as dicts, one request at a time; an idle
    period's memory is max(0, min(warm until, next use) - warm from)."""
    cold = np.zeros(len(trace), bool)
    waste = 0.0
    for f in range(trace.n_functions):
        pods: list[dict] = []
        mem = trace.memory_mb[f] / 1024.0
        for i in np.flatnonzero(trace.function == f):
            t = trace.arrival_s[i]
            free = [p for p in pods if p["end"] <= t]
            warm = [p for p in free if p["wf"] <= t <= p["wu"]]
            if warm:
                pod = max(warm, key=lambda p: p["end"])
            else:
                expired = [p for p in free if t > p["wu"]]
                pending = [p for p in free if t < p["wf"]]
                pod = (expired or pending or [None])[0]
                if pod is None:
                    pod = {"end": 0.0, "wf": 0.0, "wu": -1.0, "fresh": True}
                    pods.append(pod)
                cold[i] = True
            if not pod.pop("fresh", False):
                waste += max(0.0, min(pod["wu"], t) - pod["wf"]) * mem
            pod["end"] = t + (cold_start[i] if cold[i] else 0.0) + trace.duration_s[i]
            pod["wf"] = pod["end"] + prewarm[i]
            pod["wu"] = pod["wf"] + keep[i]
        for pod in pods:
            if pod["end"] < horizon:
                waste += max(0.0, min(pod["wu"], horizon) - pod["wf"]) * mem
    return cold, waste


@st.composite
def small_traces(draw):
    n = draw(st.integers(1, 30))
    k = draw(st.integers(1, 3))
    arrival = np.sort(np.array(draw(st.lists(st.integers(0, 400), min_size=n, max_size=n)), dtype=float))
    function = np.array(draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n)), dtype=np.int64)
    duration = np.array(draw(st.lists(st.sampled_from([0.0, 0.5, 3.0, 20.0]), min_size=n, max_size=n)))
    cold = np.array(draw(st.lists(st.sampled_from([0.0, 1.0, 4.0]), min_size=n, max_size=n)))
    prewarm = np.array(draw(st.lists(st.sampled_from([0.0, 5.0, 30.0]), min_size=n, max_size=n)))
    keep = np.array(draw(st.lists(st.sampled_from([0.0, 10.0, 60.0, 200.0]), min_size=n, max_size=n)))
    memory = np.array(draw(st.lists(st.sampled_from([128.0, 512.0]), min_size=k, max_size=k)))
    trace = InvocationTrace(arrival, function, duration, tuple(f"f{i}" for i in range(k)), memory)
    return trace, cold, prewarm, keep


@settings(max_examples=150, deadline=None)
@given(small_traces())
def test_simulator_matches_the_reference_and_keeps_its_invariants(case) -> None:
    trace, cold_start, prewarm, keep = case
    result = simulate(trace, cold_start, prewarm_s=prewarm, keep_alive_s=keep, record=True)
    cold, waste = reference_simulation(trace, cold_start, prewarm, keep, trace.horizon_s)
    assert np.array_equal(result.cold, cold)
    assert result.wasted_gb_s == pytest.approx(waste, abs=1e-9)
    # no request lost: each served once, by a pod of its function, never before it arrives
    assert np.all(result.start_s >= trace.arrival_s)
    assert np.all(result.start_s == trace.arrival_s + np.where(result.cold, cold_start, 0.0))
    assert result.pods_per_function.sum() == len(np.unique(result.pod)) >= (len(trace) > 0)
    busy: dict[int, list[tuple[float, float]]] = {}
    for i in range(len(trace)):
        busy.setdefault(int(result.pod[i]), []).append((trace.arrival_s[i], result.start_s[i] + trace.duration_s[i]))
    for spans in busy.values():  # concurrency 1: a pod's requests never overlap
        spans.sort()
        assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans))
    # idle memory accounted exactly: the recorded idle intervals, never while the pod is busy
    idle = result.idle_intervals
    memory_gb = trace.memory_mb[trace.function[[np.flatnonzero(result.pod == p)[0] for p in idle[:, 0].astype(int)]]]
    assert np.sum((idle[:, 2] - idle[:, 1]) * memory_gb / 1024.0) == pytest.approx(result.wasted_gb_s, abs=1e-9)
    for pod, lo, hi in idle:
        assert hi > lo and all(hi <= a or lo >= b for a, b in busy[int(pod)])
    # live pods never negative: at every arrival, busy pods <= pods created
    for t in trace.arrival_s:
        assert 0 <= sum(a <= t < b for spans in busy.values() for a, b in spans) <= result.pods_per_function.sum()


def test_concurrency_lets_a_pod_take_overlapping_requests() -> None:
    trace = InvocationTrace(
        np.array([0.0, 1.0]), np.zeros(2, np.int64), np.array([5.0, 5.0]), ("f",), np.array([1024.0])
    )
    one = simulate(trace, np.ones(2), keep_alive_s=60.0, concurrency=1)
    two = simulate(trace, np.ones(2), keep_alive_s=60.0, concurrency=2)
    assert one.cold.tolist() == [True, True] and two.cold.tolist() == [True, False]
    assert two.pod.tolist() == [0, 0]


def test_baselines_order_and_the_oracle_bound(region) -> None:
    trace, cold = region
    results = {name: run_policy(p, trace, cold, measure_from_s=86_400.0) for name, p in POLICIES.items()}
    rates = {k: r.cold_start_rate for k, r in results.items()}
    waste = {k: r.wasted_gb_s for k, r in results.items()}
    assert rates["fixed_1min"] > rates["fixed_10min"] > rates["fixed_20min"]
    assert waste["fixed_1min"] < waste["fixed_10min"] < waste["fixed_20min"]
    assert waste["oracle"] == 0.0 and all(rates["oracle"] <= r for r in rates.values())
    assert 0.0 < rates["oracle"] < 0.01  # only concurrency growth and first invocations
    # keeping each pod exactly as long as it then idles (the learned policy's target) matches the oracle
    exact = pod_idle_times(trace, cold)
    kept = simulate(trace, cold, keep_alive_s=np.nan_to_num(exact, nan=0.0) + 1e-6, measure_from_s=86_400.0)
    assert kept.cold.sum() == results["oracle"].cold.sum()


def test_hybrid_histogram_learns_a_timer_and_prewarms() -> None:
    period = 600.0  # every 10 minutes for a day
    arrival = np.arange(0, 86_400.0, period)
    trace = InvocationTrace(arrival, np.zeros(arrival.size, np.int64), np.full(arrival.size, 1.0), ("t",),
                            np.array([256.0]), trigger=("timer",))  # fmt: skip
    prewarm, keep = HybridHistogram().windows(trace)
    assert keep[0] == 4 * 3600.0 and prewarm[0] == 0.0  # no history: the fixed 4-hour fallback
    assert prewarm[-1] == pytest.approx(9 * 60 * 0.9) and prewarm[-1] + keep[-1] == pytest.approx(10 * 60 * 1.1)
    cold = np.full(arrival.size, 1.0)
    hybrid = run_policy(HybridHistogram(), trace, cold, measure_from_s=3600.0)
    fixed = run_policy(FixedKeepAlive(1200.0), trace, cold, measure_from_s=3600.0)
    assert hybrid.cold_start_rate == fixed.cold_start_rate == 0.0
    assert hybrid.wasted_gb_s < 0.3 * fixed.wasted_gb_s  # pre-warming saves most idle memory


# ------------------------------------------------------------------ env
def test_env_passes_both_checkers_and_its_return_is_the_simulated_cost() -> None:
    from gymnasium.utils.env_checker import check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    env = gym.make("infragym/ServerlessKeepAlive-v0", n_functions=12, functions_per_episode=4, hours=2.0)
    check_env(env.unwrapped, skip_render_check=True)
    sb3_check_env(env.unwrapped, warn=False)
    obs, info = env.reset(seed=3)
    assert env.observation_space.contains(obs) and info["action_mask"].all()
    total, done = 0.0, False
    while not done:
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        total += reward
        done = terminated or truncated
    u = env.unwrapped
    batch = simulate(u.trace, u.cold_start, prewarm_s=u.prewarm, keep_alive_s=u.keep, horizon_s=u.episode_end)
    assert -total == pytest.approx(batch.cold_start_seconds + u.idle_weight * batch.wasted_gb_s, rel=1e-9)
    assert info["cold_start_seconds"] == pytest.approx(batch.cold_start_seconds)


# ------------------------------------------------------------------ the experiment end to end
POLICY_NAMES = ("fixed_1min", "fixed_10min", "fixed_20min", "hybrid_histogram", "oracle", "learned")


def test_experiment_end_to_end_and_its_export(tmp_path: Path) -> None:
    run_train(compose_config("train", smoke("serverless", "logger=none"), tmp_path))
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    for policy in POLICY_NAMES:
        for key in ("cold_start_rate", "wasted_gb_s"):
            assert np.isfinite(metrics[f"test/{policy}/{key}"]), (policy, key)
    assert metrics["test/oracle/wasted_gb_s"] == 0.0
    assert metrics["test/oracle/cold_start_rate"] <= min(metrics[f"test/{p}/cold_start_rate"] for p in POLICY_NAMES)
    assert metrics["test/fixed_1min/cold_start_rate"] > metrics["test/fixed_20min/cold_start_rate"]
    assert "test/ppo/cold_start_rate" in metrics and "test/analysis/pod_utility_median" in metrics
    policy = infragym.load(tmp_path / "export")
    events = [
        {"idle_times_s": [600.0] * 8, "invocations_so_far": 200, "trigger": "timer", "memory_mb": 256},
        {"idle_times_s": [], "invocations_so_far": 0, "trigger": "http"},
        {"idle_times_s": [5.0] * 8, "invocations_so_far": 200, "trigger": "http", "memory_mb": 256},
    ]
    prewarm, keep = policy.windows(events)
    assert np.all(prewarm >= 0) and np.all(keep >= 0) and np.all(prewarm + keep <= 4 * 3600 * 2)
    rows = policy.predict(events)
    assert [r["prewarm_s"] for r in rows] == pytest.approx(prewarm.tolist())
    quantiles = policy.quantiles(events)
    assert np.all(np.diff(quantiles, axis=1) >= 0)
    median = policy.predictor.levels.index(0.5)
    assert quantiles[0, median] > 2 * quantiles[2, median]  # 10-minute idle history vs 5-second one
    # the served operation gives the same windows
    from infragym.models.serverless.serving import operations

    (op,) = operations(policy, {})
    answer = op.handle(op.request(events=events))
    assert [w.prewarm_s for w in answer.windows] == pytest.approx(prewarm.tolist())
    # infragym evaluate rebuilds the experiment from the export and reproduces the learned numbers
    from infragym.runner import run_evaluate

    evaluated = tmp_path / "evaluate"
    reproduced = run_evaluate(
        compose_config("evaluate", [f"checkpoint={tmp_path / 'export'}", "logger=none"], evaluated)
    )
    for key in ("test/learned/cold_start_rate", "test/learned/wasted_gb_s", "test/hybrid_histogram/wasted_gb_s"):
        assert reproduced[key] == pytest.approx(metrics[key], rel=1e-9), key
    assert "test/ppo/cold_start_rate" not in reproduced  # PPO is not exported
