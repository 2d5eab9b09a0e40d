"""The benchmark suite: run the benchmarks, judge each result against its goal, print one table.

    python bench/suite.py                       # every benchmark (about 2 hours on 2 cores)
    python bench/suite.py --quick               # only those that take about a minute or less
    python bench/suite.py --only serving_speed vm2rl_env_speed
    python bench/suite.py --check-only          # judge the stored results; run nothing
    python bench/suite.py --list

Each benchmark runs as its own process (``python bench/<script>.py <args>``), as a user runs it,
so thread settings and memory peaks are its own. The goals live at the top of each script, in its
``check(result)``; the suite only collects them. Exit status 1 when a goal regressed or a
benchmark failed; a goal of an issue that is still open and was never met is reported, not a
regression.
"""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS, ROOT, Check, load_result


@dataclass(frozen=True)
class Benchmark:
    name: str
    script: str  # module in bench/, also what `check` is imported from
    args: tuple[str, ...] = ()
    result: str = ""  # result file under bench/results/ (without .json); default: the name
    minutes: float = 1.0  # rough duration on 2 cores, for --quick and --list

    @property
    def result_name(self) -> str:
        return self.result or self.name


BENCHMARKS = (
    Benchmark("train_wallclock", "train_wallclock", minutes=1),
    Benchmark("deoxys_quality", "deoxys_quality", minutes=6),
    Benchmark("deoxys_fit_time", "deoxys_fit_time", result="deoxys_fit_time_deoxys_100k", minutes=5),
    Benchmark("serving_fidelity", "serving_fidelity", minutes=0.2),
    Benchmark("serving_speed", "serving_speed", result="serving_speed_round_robin", minutes=0.7),
    Benchmark(
        "serving_speed_least_outstanding",
        "serving_speed",
        ("--router", "least_outstanding"),
        result="serving_speed_least_outstanding",
        minutes=0.8,
    ),
    Benchmark("serving_speed_rate600", "serving_speed", ("--rate", "600"), result="serving_speed_round_robin_rate600"),
    Benchmark("continuum", "continuum", minutes=4),
    Benchmark("vm2rl_env_speed", "vm2rl_env_speed", minutes=0.5),
    Benchmark("vm2rl_quality", "vm2rl_quality", minutes=11),
    Benchmark("vm2rl_train_wallclock", "vm2rl_train_wallclock", minutes=8),
    Benchmark("vm2rl_maskable_ppo", "vm2rl_maskable_ppo", minutes=20),
    Benchmark("cloudformer_quality", "cloudformer_quality", minutes=8),
    Benchmark(
        "cloudformer_quality_cv",
        "cloudformer_quality",
        ("--cv", "--jobs", "2", "logger=none"),
        result="cloudformer_quality_cv",
        minutes=50,
    ),
    Benchmark("cloudformer_throughput", "cloudformer_throughput", minutes=2),
    Benchmark(
        "cloudformer_throughput_1thread",
        "cloudformer_throughput",
        ("--threads", "1"),
        result="cloudformer_throughput_1thread",
        minutes=2,
    ),
)
QUICK_MINUTES = 1.0


@dataclass(frozen=True)
class Row:
    benchmark: str
    check: Check
    seconds: float | None  # None: judged on the stored result, nothing run
    crashed: bool = False  # the benchmark wrote no result

    @property
    def status(self) -> str:
        return "FAILED" if self.crashed else self.check.status

    @property
    def failed(self) -> bool:
        return self.crashed or self.check.regressed


def judge(bench: Benchmark, seconds: float | None = None) -> list[Row]:
    """The goal checks of a benchmark's stored result."""
    result = load_result(bench.result_name)
    if result is None:
        missing = Check("result", f"no bench/results/{bench.result_name}.json", "-", False)
        return [Row(bench.name, missing, seconds)]
    module = importlib.import_module(bench.script)
    return [Row(bench.name, c, seconds) for c in module.check(result)]


def run(bench: Benchmark) -> list[Row]:
    """Run a benchmark as a user does, then judge what it wrote."""
    path = RESULTS / f"{bench.result_name}.json"
    before = path.stat().st_mtime if path.exists() else None
    command = [sys.executable, str(ROOT / "bench" / f"{bench.script}.py"), *bench.args]
    print(f"--- {bench.name}: {' '.join(command[1:])}", flush=True)
    started = time.perf_counter()
    code = subprocess.run(command, cwd=ROOT, check=False).returncode
    seconds = time.perf_counter() - started
    if not path.exists() or path.stat().st_mtime == before:
        # It wrote nothing: a crash, not a missed goal.
        failed = Check("run", f"exit status {code}, no new result", "-", False)
        return [Row(bench.name, failed, seconds, crashed=True)]
    return judge(bench, seconds)


def check_stored(names: list[str] | None = None) -> list[Row]:
    """Judge every selected benchmark's stored result; nothing runs."""
    return [row for bench in select(names) for row in judge(bench)]


def select(names: list[str] | None = None, quick: bool = False) -> list[Benchmark]:
    known = {b.name: b for b in BENCHMARKS}
    unknown = sorted(set(names or ()) - set(known))
    if unknown:
        raise SystemExit(f"unknown benchmark(s) {unknown}; known: {', '.join(known)}")
    chosen = [known[n] for n in names] if names else list(BENCHMARKS)
    return [b for b in chosen if b.minutes <= QUICK_MINUTES] if quick else chosen


def _cell(text: str, markdown: bool) -> str:
    return text.replace("|", "\\|") if markdown else text


def format_rows(rows: list[Row], markdown: bool = False) -> str:
    """One table: benchmark, what, measured, goal, status, seconds."""
    header = ["benchmark", "what", "measured", "goal", "status", "seconds"]
    body = [
        [
            r.benchmark,
            r.check.what,
            r.check.measured,
            r.check.goal,
            r.status,
            "-" if r.seconds is None else f"{r.seconds:.0f}",
        ]
        for r in rows
    ]
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(_cell(c, True) for c in row) + " |" for row in body]
        return "\n".join(lines)
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
    widths[1] = min(widths[1], 60)
    widths[2] = min(widths[2], 50)
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join(fmt.format(*row) for row in [header, *body])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these benchmarks")
    parser.add_argument("--quick", action="store_true", help=f"only benchmarks of <= {QUICK_MINUTES:g} minute")
    parser.add_argument("--check-only", action="store_true", help="judge the stored results, run nothing")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    args = parser.parse_args(argv)
    chosen = select(args.only, args.quick)
    if args.list:
        for b in chosen:
            print(f"{b.name:34s} ~{b.minutes:g} min  python bench/{b.script}.py {' '.join(b.args)}".rstrip())
        return 0
    rows = []
    for bench in chosen:
        rows += judge(bench) if args.check_only else run(bench)
    print()
    print(format_rows(rows))
    failed = sorted({r.benchmark for r in rows if r.failed})
    if failed:
        print(f"\nregressed or failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
