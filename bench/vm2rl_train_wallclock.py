"""Wall-clock of ``python train.py experiment=vm2rl`` (train a small-scale agent, evaluate it
against random, greedy and CP-SAT on the held-out medium snapshots, export), as a user runs it.
Goal (issue 4): <= 10 minutes on 2 CPU cores.

    python bench/vm2rl_train_wallclock.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, write_result


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "WANDB_MODE": "offline", "INFRAGYM_HOME": tmp}
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "train.py", "experiment=vm2rl", f"hydra.run.dir={tmp}/run"],
            cwd=ROOT,
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        seconds = time.perf_counter() - started
        metrics = json.loads((Path(tmp) / "run" / "metrics.json").read_text())
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
