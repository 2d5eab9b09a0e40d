"""Train, evaluate and export one experiment: ``python train.py experiment=deoxys``
(the same as ``infragym train experiment=deoxys``).

Writes metrics.json, results.txt, plots/ and export/ in the Hydra run folder and returns the
``optimized_metric`` to sweepers (``-m``).
"""

import sys

from infragym.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
