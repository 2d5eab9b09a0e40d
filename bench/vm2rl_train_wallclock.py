"""Wall-clock of ``python train.py experiment=vm2rl`` (train a small-scale agent, evaluate it
against random, greedy and CP-SAT on the held-out medium snapshots, export), as a user runs it.
Goal (issue 4): <= 10 minutes on 2 CPU cores.

    python bench/vm2rl_train_wallclock.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from _common import timed_train, write_result


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        seconds, metrics = timed_train(["experiment=vm2rl"], Path(tmp))
    print(f"python train.py experiment=vm2rl: {seconds:.1f} s")
    write_result(
        "vm2rl_train_wallclock",
        {
            "command": "python train.py experiment=vm2rl",
            "wall_s": seconds,
            "goal_s": 600,
            "metrics": {k: v for k, v in metrics.items() if k.count("/") == 2 or k.startswith("time/")},
            "note": "timed on a machine shared with other jobs unless stated otherwise",
        },
    )


if __name__ == "__main__":
    main()
