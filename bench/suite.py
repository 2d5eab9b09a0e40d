"""The benchmark suite: run the benchmarks, judge each result against its goal, print one table.

    python bench/suite.py                       # every benchmark (about 2 hours on 2 cores)
    python bench/suite.py --quick               # only those that take about a minute or less
    python bench/suite.py --only serving_speed vm2rl_env_speed
    python bench/suite.py --check-only          # judge the stored results; run nothing
    python bench/suite.py --list                # every benchmark and the command that runs it

The benchmarks are found, not listed: every script of a component folder (``bench/<component>/
<script>.py``, e.g. ``bench/deoxys/quality.py``, ``bench/serving/speed.py``) declares its entries
in a module-level ``BENCHMARKS`` tuple of ``Benchmark``; folders on ``INFRAGYM_BENCH_PATH`` join
them (see ``bench/__init__.py``). They run by component, then script, in name order.

Each benchmark runs as its own process (``python bench/<component>/<script>.py <args>``), as a
user runs it, so thread settings and memory peaks are its own. The goals live at the top of each
script, in its ``check(result)``; the suite only collects them. Exit status 1 when a goal
regressed or a benchmark failed; a goal that was never met (its issue reports why) is
reported, not a regression.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

# Run as a script, only bench/ is on sys.path: the checkout makes ``bench.*`` importable.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import benchmark_scripts, component_folders
from bench._common import RESULTS, ROOT, Benchmark, Check, load_result

QUICK_MINUTES = 1.0


def benchmarks() -> tuple[Benchmark, ...]:
    """Every benchmark declared by a script of a component folder, by component and script name."""
    found: list[Benchmark] = []
    for component, folder in component_folders().items():
        for script in benchmark_scripts(folder):
            name = f"bench.{component}.{script.stem}"
            declared = getattr(importlib.import_module(name), "BENCHMARKS", None)
            if not declared:
                raise RuntimeError(
                    f"{script} declares no BENCHMARKS; a helper module of a component folder is named _<name>.py"
                )
            found += [dataclasses.replace(b, component=component, module=name, script=script) for b in declared]
    for field in ("name", "result_name"):
        seen: dict[str, Benchmark] = {}
        for b in found:
            other = seen.setdefault(getattr(b, field), b)
            if other is not b:
                raise RuntimeError(f"benchmarks {other.name} ({other.script}) and {b.name} ({b.script}) share {field}")
    return tuple(found)


def command_line(bench: Benchmark) -> str:
    """How a user runs the benchmark from the checkout."""
    script = bench.script.relative_to(ROOT) if bench.script.is_relative_to(ROOT) else bench.script
    return " ".join(["python", str(script), *bench.args])


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
    module = importlib.import_module(bench.module)
    return [Row(bench.name, c, seconds) for c in module.check(result)]


def run(bench: Benchmark) -> list[Row]:
    """Run a benchmark as a user does, then judge what it wrote."""
    path = RESULTS / f"{bench.result_name}.json"
    before = path.stat().st_mtime if path.exists() else None
    command = [sys.executable, str(bench.script), *bench.args]
    print(f"--- {bench.name}: {' '.join(command[1:])}", flush=True)
    # A script in a folder outside the checkout imports the shared helpers from it too.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    started = time.perf_counter()
    code = subprocess.run(command, cwd=ROOT, env=env, check=False).returncode
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
    every = benchmarks()
    known = {b.name: b for b in every}
    unknown = sorted(set(names or ()) - set(known))
    if unknown:
        raise SystemExit(f"unknown benchmark(s) {unknown}; known: {', '.join(known)}")
    chosen = [known[n] for n in names] if names else list(every)
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
            print(f"{b.name:34s} ~{b.minutes:g} min  {command_line(b)}")
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
