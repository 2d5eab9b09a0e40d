"""Wall-clock of ``python train.py experiment=vm2rl`` (train a small-scale agent, evaluate it
against random, greedy and CP-SAT on the held-out medium snapshots, export), as a user runs it.

    python bench/vm2rl/train_wallclock.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

# Run as a script, this file's folder is on sys.path, not the checkout: put the checkout there
# so that the suite's shared helpers import as ``bench._common``.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench._common import Benchmark, Check, finish, timed_train, write_result

BENCHMARKS = (Benchmark("vm2rl_train_wallclock", minutes=8),)

RESULT = "vm2rl_train_wallclock"
GOAL_WALL_S = 600  # issue 4: the default experiment=vm2rl trains and evaluates in <= 10 minutes on 2 CPU cores


def check(result: dict) -> list[Check]:
    wall = result["wall_s"]
    return [Check("python train.py experiment=vm2rl", f"{wall:.0f} s", f"<= {GOAL_WALL_S} s", wall <= GOAL_WALL_S)]


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        seconds, metrics = timed_train(["experiment=vm2rl"], Path(tmp))
    print(f"python train.py experiment=vm2rl: {seconds:.1f} s")
    result = {
        "command": "python train.py experiment=vm2rl",
        "wall_s": seconds,
        "goal_s": GOAL_WALL_S,
        "metrics": {k: v for k, v in metrics.items() if k.count("/") == 2 or k.startswith("time/")},
        "note": "timed on a machine shared with other jobs unless stated otherwise",
    }
    write_result(RESULT, result)
    return finish(RESULT, check(result))


if __name__ == "__main__":
    sys.exit(main())
