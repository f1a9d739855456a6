"""The `detector` command line: collects the commands of detector/commands/ and runs the one asked for."""

from __future__ import annotations

import argparse
import signal
import sys

from detector.commands import COMMANDS
from detector.commands.options import TRUST_NOTE, HelpFormatter, examples
from detector.errors import DetectorError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="detector",
        description="Real-time object detection on images, video files and cameras with YOLO models.",
        epilog=examples(
            [
                ("no camera needed: the bundled clip as a live camera, in a window", "detector demo"),
                ("camera 0, live", "detector live"),
                ("a video file: annotated video and JSON lines", "detector video clip.mp4"),
                ("scored against ground truth", "detector eval-video clip.mp4 --gt gt.txt"),
            ]
        )
        + "\n\n`detector COMMAND --help` gives a command's options and examples.\n"
        "Bad input ends with a one-line message and exit code 2. " + TRUST_NOTE,
        formatter_class=HelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def _terminate_as_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt  # SIGTERM stops as cleanly as Ctrl-C


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # as given: `finetune` runs it again in each rank
    signal.signal(signal.SIGTERM, _terminate_as_interrupt)
    try:
        return args.run(args)
    except DetectorError as e:
        print(f"detector: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("detector: interrupted", file=sys.stderr)
        return 130
