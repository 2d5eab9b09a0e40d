"""Evaluate an export against the baselines: ``python evaluate.py checkpoint=outputs/<run>/export``
(the same as ``infragym evaluate checkpoint=...``).

With the default ``seed=null`` the training run's seed is reused, which reproduces the numbers
that run reported for the exported model.
"""

import sys

from infragym.cli import main

if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]]))
