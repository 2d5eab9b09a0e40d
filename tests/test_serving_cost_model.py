"""Hardware specs, the roofline cost model and its calibration on the shared GPU profiles."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from infragym.envs.serving.cost_model import CALIBRATED, CostModel, ProfileError, calibrate, read_profile
from infragym.envs.serving.hardware import MODELS

from .conftest import SHARED_DATA

PROFILES = SHARED_DATA / "gpu_profiles"
needs_profiles = pytest.mark.skipif(not PROFILES.is_dir(), reason="../shared/data/gpu_profiles is absent")


def test_architectures_give_the_published_sizes() -> None:
    small, large = MODELS["llama3.1_8b"], MODELS["llama3.1_70b"]
    assert small.params == pytest.approx(8.03e9, rel=0.01)
    assert large.params == pytest.approx(70.6e9, rel=0.01)
    assert small.kv_bytes_per_token == 128 * 1024  # PAPERS.md: 128 KiB/token in bf16
    assert large.kv_bytes_per_token == 320 * 1024
    assert small.linear_flops_per_token() == pytest.approx(2 * (small.params - small.vocab * small.hidden), rel=0.01)


def test_decode_is_memory_bound_and_prefill_compute_bound() -> None:
    model = CostModel("h100", "llama3.1_8b")
    one = model.iteration_time(0, 0, 1, 1000)
    # A single decode step reads all 16 GB of weights: ~5-7 ms on an H100 (3.35 TB/s).
    assert 4e-3 < float(one) < 9e-3
    # Decode batching is nearly free while memory-bound (PAPERS.md: up to batch ~300 on H100).
    assert float(model.iteration_time(0, 0, 64, 64_000)) < 2.0 * float(one)
    # A long prefill is compute-bound: time grows ~linearly with tokens.
    t4k, t8k = model.iteration_time(np.array([4096.0, 8192.0]), 0, 0, 0)
    assert 1.8 < t8k / t4k < 2.2
    # Faster GPUs are faster; TP halves the per-GPU work.
    assert float(CostModel("a100_80gb", "llama3.1_8b").iteration_time(0, 0, 1, 0)) > float(one)
    assert float(CostModel("h100", "llama3.1_70b", tp=4).iteration_time(0, 0, 1, 0)) < float(
        CostModel("h100", "llama3.1_70b", tp=2).iteration_time(0, 0, 1, 0)
    )
    with pytest.raises(ValueError, match="tensor-parallel"):
        CostModel("h100", "llama3.1_8b", tp=3)


@needs_profiles
@pytest.mark.parametrize(("profile", "gpu"), [("a100_llama3_8b_mlp", "a100_80gb"), ("h100_llama2_7b_mlp", "h100")])
def test_calibration_fits_each_profile_within_15_percent(profile: str, gpu: str) -> None:
    result = calibrate(PROFILES / f"{profile}.csv", gpu)
    assert result.mape < 0.15
    assert result.mape <= result.mape_uncalibrated
    assert all(err < 0.15 for err in result.per_tp_mape.values())
    # The shipped constants are the fitted ones.
    assert result.efficiency.flop_eff == pytest.approx(CALIBRATED[gpu].flop_eff, abs=0.01)
    assert result.efficiency.mem_eff == pytest.approx(CALIBRATED[gpu].mem_eff, abs=0.01)


@needs_profiles
def test_bad_profile_is_refused(tmp_path: Path) -> None:
    frame = read_profile(PROFILES / "a100_llama3_8b_mlp.csv").head(5)
    frame.drop(columns=["time_stats.mlp_act.mean"]).to_csv(tmp_path / "missing.csv", index=False)
    with pytest.raises(ProfileError, match=r"missing\.csv.*mlp_act"):
        read_profile(tmp_path / "missing.csv")
    frame.loc[3, "num_tokens"] = -1
    frame.to_csv(tmp_path / "negative.csv", index=False)
    with pytest.raises(ProfileError, match=r"negative\.csv: line 5, column 'num_tokens'"):
        read_profile(tmp_path / "negative.csv")
