"""Training-cluster reliability results page: ETTR and lost time per strategy at Llama 3's
rates, Young/Daly against the simulated optimum, each paper's mechanism, CheckFree's time to
target, the learned policy against Young/Daly, and the simulator's speed."""

from __future__ import annotations

from bench._common import load_result

TITLE = "Training-cluster reliability results"
LOSS_COLUMNS = ("checkpoint_stall", "detection", "diagnosis", "restart", "rollback", "straggler", "convergence")


def _ettr(v: dict) -> str:
    return f"{v['mean']:.4f} [{v['ci_low']:.4f}, {v['ci_high']:.4f}]"


def _quality(result: dict) -> list[str]:
    job = result["job"]
    out = [
        "`python bench/training_reliability/quality.py`: "
        f"{job['gpus']:,} GPUs, {job['step_s']:.2f} s per iteration, job MTBI {job['mtbi_h']:.2f} h, 54 days, "
        f"{len(result['seeds'])} held-out failure seeds; ETTR as mean [95% bootstrap CI], hours lost as means. "
        f"Load average when run: {result['loadavg'][0]:.1f}.",
    ]
    for scenario, policies in result["policies"].items():
        out += [
            "",
            f"## {scenario}",
            "",
            "| strategy | ETTR | failures | " + " | ".join(f"h {c}" for c in LOSS_COLUMNS) + " |",
            "|---" * (3 + len(LOSS_COLUMNS)) + "|",
        ]
        for name, r in policies.items():
            cells = " | ".join(f"{r[f'lost_hours_{c}']:.1f}" for c in LOSS_COLUMNS)
            out.append(f"| {name} | {_ettr(r['ettr'])} | {r['failures']:.0f} | {cells} |")
    out += ["", "## Young/Daly vs the simulated optimum (synchronous tier)", ""]
    out += ["| scenario | Young T* (s) | Daly T (s) | ETTR Young | ETTR Daly | best swept T (s) | best ETTR |"]
    out += ["|---|---|---|---|---|---|---|"]
    for scenario, s in result["young_daly_vs_optimum"].items():
        out.append(
            f"| {scenario} | {s['young_interval_s']:.0f} | {s['daly_interval_s']:.0f} | {s['young_ettr']:.4f} "
            f"| {s['daly_ettr']:.4f} | {s['best_interval_s']:.0f} | {s['best_ettr']:.4f} |"
        )
    curve = result["young_daly_vs_optimum"]["llama3"]["curve"]
    points = sorted(curve.items(), key=lambda kv: float(kv[0]))
    out += ["", "Sweep (llama3), ETTR per fixed interval: " + ", ".join(f"{k} s: {v:.4f}" for k, v in points) + "."]
    m = result["mechanisms"]
    out += [
        "",
        "## Each paper's mechanism",
        "",
        f"- **C4** (collective-timing detection, {m['c4']['detection_s']:.0f} s vs the {m['c4']['watchdog_s']:.0f} s "
        f"watchdog): failure-induced overhead (detection + diagnosis + restart + rollback) "
        f"{m['c4']['overhead_hours_watchdog']:.1f} h -> {m['c4']['overhead_hours_c4']:.1f} h, "
        f"**{100 * m['c4']['overhead_cut']:.0f}% less** (paper ~30%); false alarms cost "
        f"{m['c4']['false_alarm_hours']:.1f} h.",
        f"- **DataStates-LLM** (lazy copy behind forward/backward): stall per checkpoint "
        f"{m['datastates']['stall_sync_s']:.2f} s -> {m['datastates']['stall_lazy_s']:.3f} s, "
        f"**{m['datastates']['stall_speedup']:.0f}x faster** (paper up to 48x); checkpoint + rollback hours "
        f"{m['datastates']['checkpoint_and_rollback_hours_sync']:.1f} -> "
        f"{m['datastates']['checkpoint_and_rollback_hours_lazy']:.1f}; ETTR {m['datastates']['ettr_sync']:.4f} -> "
        f"{m['datastates']['ettr_lazy']:.4f}.",
        f"- **In-memory EC** ({m['inmemory_ec']['ec']}): saving {m['inmemory_ec']['save_remote_s']:.2f} s -> "
        f"{m['inmemory_ec']['save_inmemory_s']:.3f} s, **{m['inmemory_ec']['save_speedup']:.0f}x faster** "
        f"(paper > 14x); restores from peers: {m['inmemory_ec']['peer_restores_m']:.0f} when each failure takes m "
        f"node(s), {m['inmemory_ec']['peer_restores_beyond_m']:.0f} when it takes m + 1 (rollback "
        f"{m['inmemory_ec']['rollback_hours_m']:.1f} h vs {m['inmemory_ec']['rollback_hours_beyond_m']:.1f} h).",
        f"- **MegaScale** (communicator init {m['megascale']['comm_init_slow_s']:.0f} s -> "
        f"{m['megascale']['comm_init_fast_s']:.0f} s at this size): restart hours "
        f"{m['megascale']['restart_hours_slow_init']:.0f} -> {m['megascale']['restart_hours_fast_init']:.1f}; "
        f"performance diagnosis cuts straggler hours {m['megascale']['straggler_hours_sync']:.1f} -> "
        f"{m['megascale']['straggler_hours_megascale']:.1f}.",
    ]
    cf = result["checkfree"]
    out += [
        "",
        "## CheckFree: time to target loss (7 stages, 500 iterations)",
        "",
        "| pipeline failures | checkpointing (every 20) | redundant | CheckFree | CheckFree+ | CheckFree+ gain | "
        "CheckFree gain |",
        "|---|---|---|---|---|---|---|",
    ]
    for rate, r in cf["generated"].items():
        it = r["mean_iterations"]
        g, g2 = r["gain_vs_best_baseline"], r["gain_checkfree_vs_best_baseline"]
        out.append(
            f"| {rate}/h ({r['per_iteration']}/it.) | {it['checkpointing']:.1f} "
            f"| {it['redundant']:.1f} | {it['checkfree']:.1f} | {it['checkfree_plus']:.1f} "
            f"| {100 * g['mean']:.1f}% [{100 * g['ci_low']:.1f}, {100 * g['ci_high']:.1f}] "
            f"| {100 * g2['mean']:.1f}% [{100 * g2['ci_low']:.1f}, {100 * g2['ci_high']:.1f}] |"
        )
    if cf["shipped"]:
        out += [
            "",
            "Shipped schedules (iterations to target): "
            + "; ".join(
                f"{name}: " + ", ".join(f"{k} {v:.0f}" for k, v in r.items()) for name, r in cf["shipped"].items()
            )
            + ".",
        ]
    if "acmetrace" in result:
        out += [
            "",
            "## AcmeTrace cross-check",
            "",
            "| cluster | expected failures, avg job | share of avg jobs hit "
            "| expected failures, largest job | observed fail rate (count) | observed (GPU time) |",
            "|---|---|---|---|---|---|",
        ]
        for name, c in result["acmetrace"].items():
            out.append(
                f"| {name} | {c['expected_failures_avg_job']:.2e} | {c['predicted_share_avg_jobs_hit']:.2e} "
                f"| {c['expected_failures_largest_job']:.1f} | {c['observed_fail_rate_by_count']:.3f} "
                f"| {c['observed_fail_rate_by_gpu_time']:.3f} |"
            )
    return out


def render() -> str:
    out: list[str] = []
    quality = load_result("training_reliability_quality")
    if quality:
        out += _quality(quality)
    experiment = load_result("training_reliability_experiment")
    if experiment:
        out += [
            "",
            "## The experiment: learned policy vs Young/Daly (held-out seeds)",
            "",
            f"`python train.py experiment=training_reliability`: {experiment['wall_s']:.0f} s end to end "
            f"(goal <= 600 s; load {experiment['loadavg'][0]:.1f}). ETTR on three held-out 54-day failure "
            "histories per scenario, mean [95% bootstrap CI].",
            "",
            "| policy | " + " | ".join(experiment["scenarios"]) + " |",
            "|---" * (1 + len(experiment["scenarios"])) + "|",
        ]
        policies = next(iter(experiment["scenarios"].values()))
        for policy in policies:
            cells = []
            for r in experiment["scenarios"].values():
                v = r[policy]
                cells.append(
                    f"{v['ettr']:.4f} [{v.get('ettr/ci_low', v['ettr']):.4f}, {v.get('ettr/ci_high', v['ettr']):.4f}]"
                )
            out.append(f"| {policy} | " + " | ".join(cells) + " |")
    speed = load_result("training_reliability_speed")
    if speed:
        worst = max(speed["seconds"], key=speed["seconds"].__getitem__)
        out += [
            "",
            f"Speed: 54 days of a 16,384-GPU job, slowest strategy `{worst}`: {speed['seconds'][worst]:.2f} s on one "
            f"core (goal <= 10 s; load {speed['loadavg'][0]:.1f}); median over strategies "
            f"{sorted(speed['seconds'].values())[len(speed['seconds']) // 2]:.2f} s.",
        ]
    return "\n".join(out)
