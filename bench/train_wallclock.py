"""Wall-clock of the README's main job, ``python train.py`` (default experiment, offline W&B,
export included), as a user runs it. Goal (issue): <= 3 minutes on 2 cores.

    python bench/train_wallclock.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

from _common import ROOT, write_result


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "WANDB_MODE": "offline", "INFRAGYM_HOME": tmp}
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "train.py", f"paths.log_dir={tmp}/outputs"],
            cwd=ROOT,
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        seconds = time.perf_counter() - started
    print(f"python train.py: {seconds:.1f} s")
    write_result("train_wallclock", {"command": "python train.py", "wall_s": seconds, "goal_s": 180})


if __name__ == "__main__":
    main()
