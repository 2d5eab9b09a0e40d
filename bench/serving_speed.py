"""Issue 14's name for the serving-kernel speed benchmark: a thin entry point to
``bench/serving/speed.py`` (same arguments, same one-line summary with the wall seconds, same
result file). Not a component folder, so the suite runs the benchmark once, from there.

    python bench/serving_speed.py --router round_robin|least_outstanding [--requests N] [--rate R]
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

if __name__ == "__main__":
    sys.argv[0] = str(Path(__file__).resolve().parent / "serving" / "speed.py")
    runpy.run_path(sys.argv[0], run_name="__main__")
