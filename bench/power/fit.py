"""GPU power/latency model fit on splitwise-sim's measured Llama-2-70B tables (issue 16).

1. Fit error per hardware (A100, H100, 70%-capped H100): MAPE and median APE of prompt time,
   token time and (A100 only: the only rows with power) average power.
2. Held out: (a) tensor-parallel degree 4, fitted on TP 2 and 8; (b) the H100, predicted with
   the A100's fitted latency parameters (the roofline carries the H100's datasheet numbers).
   The tables hold one model, so no model can be held out: we hold out a configuration axis
   and a hardware instead.
3. The cap: prefill and decode slowdown at 70% of TDP (the data: ~1.30x and ~1.0x).

    python bench/power/fit.py
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench._common import Benchmark, Check, data_dir, finish, write_result

BENCHMARKS = (Benchmark("power_fit", minutes=0.2),)
RESULT = "power_fit"
# Issue 16 goals: "under the cap, decode time per token barely changes while prefill slows
# about 30%"; we read "barely" as <= 3% and "about 30%" as 20-40%.
GOAL_PREFILL = (1.2, 1.4)
GOAL_DECODE = 1.03
GOAL_TOKEN_MAPE = 0.10  # our own bar for the decode fit per hardware


def check(result: dict) -> list[Check]:
    cap = result["cap_effect"]
    checks = [
        Check(
            "prefill slowdown under the 70% cap (TP8, 2,048 tokens)",
            f"{cap['prefill_slowdown']:.2f}x",
            f"{GOAL_PREFILL[0]}-{GOAL_PREFILL[1]}x",
            GOAL_PREFILL[0] <= cap["prefill_slowdown"] <= GOAL_PREFILL[1],
        ),
        Check(
            "decode slowdown under the 70% cap",
            f"{cap['decode_slowdown']:.3f}x",
            f"<= {GOAL_DECODE}x",
            cap["decode_slowdown"] <= GOAL_DECODE,
        ),
    ]
    for hw, errors in result["fit"].items():
        checks.append(
            Check(
                f"{hw} token-time MAPE",
                f"{errors['token_time_mape']:.3f}",
                f"<= {GOAL_TOKEN_MAPE}",
                errors["token_time_mape"] <= GOAL_TOKEN_MAPE,
            )
        )
        measured = f"{errors['prompt_time_mape']:.3f} / {errors['prompt_time_median_ape']:.3f}"
        checks.append(Check(f"{hw} prompt-time MAPE / median APE", measured, "", None))
    return checks


def _by_hardware(errors: dict[str, float]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for key, value in errors.items():
        hw, name = key.split("/", 1)
        out.setdefault(hw, {})[name] = value
    return out


def main() -> int:

    from infragym.envs.power.model import cap_effect, fit, holdout_errors
    from infragym.envs.power.perf_data import read_perf_tables

    paths = sorted((data_dir() / "gpu_power").glob("*.csv"))
    if not paths:
        print(f"no splitwise tables under {data_dir() / 'gpu_power'}", file=sys.stderr)
        return 1
    frame = read_perf_tables(paths)
    model = fit(frame)
    held_tp = holdout_errors(frame, frame["tensor_parallel"] == 4)
    a100 = fit(frame[frame["hardware"] == "a100-80gb"])
    a100.hardware["h100-80gb"] = a100.hardware["a100-80gb"]  # the A100's fit, the H100's roofline
    held_hw = a100.errors(frame[frame["hardware"] == "h100-80gb"].reset_index(drop=True))
    result = {
        "rows": {hw: int((frame["hardware"] == hw).sum()) for hw in frame["hardware"].unique()},
        "fit": _by_hardware(model.metrics),
        "held_out_tp4": _by_hardware(held_tp),
        "held_out_h100_from_a100": _by_hardware(held_hw),
        "cap_effect": cap_effect(model, (2048,), tp=8),
        "cap_effect_by_tp": {tp: cap_effect(model, (512, 2048, 8192), tp=tp) for tp in (2, 4, 8)},
        "parameters": {
            "latency": {
                hw: {"prefill": f.prefill.tolist(), "decode": f.decode.tolist()} for hw, f in model.hardware.items()
            },
            "prefill_scale": model.prefill_scale,
            "decode_scale": model.decode_scale,
            "alpha": model.alpha,
        },
        "latency_parameter_names": ["roofline_scale", "fixed_ms", "allreduce_ms", "ms_per_gb", "extra_attention_scale"],
        "loadavg": os.getloadavg(),
    }
    print(result["fit"], result["cap_effect"])
    write_result(RESULT, result)
    return finish(RESULT, check(result))


if __name__ == "__main__":
    sys.exit(main())
