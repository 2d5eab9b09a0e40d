"""VM2RL's results page: env speed, fragment rate against the baselines and the MIP, training
wall-clock, MaskablePPO."""

from __future__ import annotations

from bench._common import load_result

TITLE = "VM2RL results"


def render() -> str:
    rows = []
    env_speed = load_result("vm2rl_env_speed")
    if env_speed:
        for name, r in env_speed["results"].items():
            rows.append(
                f"| env step + masks, {name} ({r['pms']} PMs, {r['vms']} VMs, MNL 50, random feasible policy) | "
                f"{r['env_steps_per_s']:,.0f} steps/s wall, {r.get('env_steps_per_cpu_s', float('nan')):,.0f} per "
                f"CPU-second ({r['with_policy_steps_per_s']:,.0f} with the policy's choice) "
                "| >= 20,000 steps/s |"
            )
    quality = load_result("vm2rl_quality")
    if quality:
        q = quality["summary"]
        fr, lat = q["fragment_rate"], q["latency_s"]
        for method in sorted(fr, key=lambda k: fr[k]):
            latency = f" (decision time {lat[method]:.2f} s)" if method in lat else ""
            rows.append(f"| FR at MNL {q['mnl']}, {method} (mean over test snapshots) | {fr[method]:.3f}{latency} | |")
        if "vm2rl_vs_mip_relative_gap" in q:
            rows.append(
                f"| best-of-{q['k']} VM2RL vs MIP | {100 * q['vm2rl_vs_mip_relative_gap']:+.1f}% FR, "
                f"{lat['vm2rl_best_of_k']:.2f} s per 50-step trajectory | within 5%, <= 3 s |"
            )
    wallclock = load_result("vm2rl_train_wallclock")
    if wallclock:
        rows.append(
            f"| `python train.py experiment=vm2rl` (train {wallclock['metrics']['time/fit_s']:.0f} s, evaluate, "
            f"export) | {wallclock['wall_s']:.0f} s | <= 600 s |"
        )
    maskable = load_result("vm2rl_maskable_ppo")
    if maskable:
        fr = maskable["mean_fragment_rate"]
        rows.append(
            f"| MaskablePPO (flat action, {maskable['steps']:,} steps, {maskable['train_s']:.0f} s) on "
            f"{maskable['n_test']} held-out small snapshots, MNL {maskable['mnl']}: mean FR | "
            + ", ".join(f"{k} {v:.3f}" for k, v in fr.items())
            + " | reported |"
        )
    if not rows:
        return ""
    parts = [
        "`python bench/vm2rl/env_speed.py`, `python bench/vm2rl/quality.py`, `python bench/vm2rl/train_wallclock.py`"
        ", `python bench/vm2rl/maskable_ppo.py`.\n\n| what | measured | goal |\n|---|---|---|\n" + "\n".join(rows)
    ]
    if quality and quality.get("table"):
        parts.append(
            "## Fragment rate per test snapshot and budget\n\n"
            + quality["table"]
            + "".join(f"\n\n{note}" for note in quality.get("notes", []))
        )
    return "\n\n".join(parts)
