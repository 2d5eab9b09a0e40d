"""Wall-clock of the README's main job, ``python train.py`` (default experiment, offline W&B,
export included), as a user runs it. Goal (issue): <= 3 minutes on 2 cores.

    python bench/train_wallclock.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from _common import timed_train, write_result


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        seconds, _ = timed_train([], Path(tmp))
    print(f"python train.py: {seconds:.1f} s")
    write_result("train_wallclock", {"command": "python train.py", "wall_s": seconds, "goal_s": 180})


if __name__ == "__main__":
    main()
