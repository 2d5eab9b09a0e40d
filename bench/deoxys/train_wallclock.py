"""Wall-clock of the README's main job, ``python train.py`` (default experiment, offline W&B,
export included), as a user runs it.

    python bench/deoxys/train_wallclock.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

# Run as a script, this file's folder is on sys.path, not the checkout: put the checkout there
# so that the suite's shared helpers import as ``bench._common``.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench._common import Benchmark, Check, finish, timed_train, write_result

BENCHMARKS = (Benchmark("train_wallclock", minutes=1),)

RESULT = "train_wallclock"
GOAL_WALL_S = 180  # issue 2: `python train.py` (20k logged events) in <= 3 minutes on 2 cores


def check(result: dict) -> list[Check]:
    wall = result["wall_s"]
    return [Check("python train.py wall-clock", f"{wall:.0f} s", f"<= {GOAL_WALL_S} s", wall <= GOAL_WALL_S)]


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        seconds, _ = timed_train([], Path(tmp))
    print(f"python train.py: {seconds:.1f} s")
    result = {"command": "python train.py", "wall_s": seconds, "goal_s": GOAL_WALL_S}
    write_result(RESULT, result)
    return finish(RESULT, check(result))


if __name__ == "__main__":
    sys.exit(main())
