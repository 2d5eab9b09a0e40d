"""experiment=serving_baselines end to end at a small scale."""

from __future__ import annotations

import json
from pathlib import Path

from infragym.runner import run_train

from .conftest import SHARED_DATA, compose_config, smoke


def test_serving_baselines_experiment(tmp_path: Path) -> None:
    cfg = compose_config("train", smoke("serving_baselines", "logger=none"), tmp_path)
    run_train(cfg)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    workloads = ["burstgpt_like"] + (["azure_conv"] if (SHARED_DATA / "llm_traces").is_dir() else [])
    for router in ("round_robin", "least_outstanding"):
        for workload in workloads:
            low = metrics[f"test/fcfs_{router}/{workload}@1x/ttft_s_p99"]
            high = metrics[f"test/fcfs_{router}/{workload}@16x/ttft_s_p99"]
            assert high > low
            assert metrics[f"test/fcfs_{router}/{workload}@1x/goodput_rps"] > 0
    for plot in ("latency_vs_load", "kv_utilisation"):
        assert (tmp_path / "plots" / f"{plot}.png").stat().st_size > 1000
    assert not (tmp_path / "export").exists()
