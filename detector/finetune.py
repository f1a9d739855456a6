"""``python -m detector.finetune ...``: the same as ``detector finetune ...``."""

import sys

from detector.cli import main

raise SystemExit(main(["finetune", *sys.argv[1:]]))
