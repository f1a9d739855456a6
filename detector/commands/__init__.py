"""One module per command, each with ``add_parser(subparsers)``: its sub-command(s), options, examples and
``set_defaults(run=...)``. Options that several commands share are in options.py."""

from detector.commands import evaluate, export, finetune, image, live, recover, video

COMMANDS = (image, video, live, recover, evaluate, finetune, export)  # the order of `detector --help`

__all__ = ["COMMANDS"]
