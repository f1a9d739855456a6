"""What several commands share: the help layout, the model options, the file-run options, the live outputs,
and the detector that the model options describe."""

from __future__ import annotations

import argparse
import textwrap
from collections.abc import Sequence

KEYS_HELP = "q/Esc quit, space pause, s snapshot, r record on/off, +/- confidence, h status overlay"

TRUST_NOTE = ".pt files are Python pickles: loading one runs code from it; use weights you trust."


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Each line of a description or epilog is a paragraph, wrapped to the terminal as usual; indented lines
    (the examples) are printed as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return "\n".join(
            indent + line
            if line.startswith(" ") or not line.strip()
            else textwrap.fill(" ".join(line.split()), width, initial_indent=indent, subsequent_indent=indent)
            for line in text.splitlines()
        )


def examples(pairs: Sequence[tuple[str, str]]) -> str:
    """The examples part of a help text: (what it does, command lines) pairs."""
    return "examples:\n" + "\n".join(f"  # {what}\n" + textwrap.indent(lines, "  ") for what, lines in pairs)


def add_command(
    subparsers: argparse._SubParsersAction,
    name: str,
    *,
    help: str,
    description: str,
    example: Sequence[tuple[str, str]],
    note: str | None = None,
) -> argparse.ArgumentParser:
    """A sub-command: its line in `detector --help`, then for its own --help a description, the options,
    examples and an optional closing note."""
    return subparsers.add_parser(
        name,
        help=help,
        description=description,
        epilog=examples(example) + (f"\n\n{note}" if note else ""),
        formatter_class=HelpFormatter,
    )


def add_model_options(p: argparse.ArgumentParser, conf: float = 0.25, conf_note: str = "") -> None:
    from detector.pipeline import DEFAULT_WEIGHTS

    g = p.add_argument_group("model")
    g.add_argument(
        "--weights",
        default=str(DEFAULT_WEIGHTS),
        metavar="W",
        help=".pt, .onnx, model .yaml, *_openvino_model folder, or an official name such as "
        "yolo11n.pt (downloaded unless YOLO_OFFLINE=1). Default: the bundled YOLO11n INT8 "
        f"OpenVINO model. {TRUST_NOTE}",
    )
    g.add_argument(
        "--imgsz",
        type=int,
        nargs="+",
        metavar="N",
        help="inference size, one value or H W, rounded up to the model stride (default 640, or the size a "
        "static export was made at; OpenVINO models are reshaped to --imgsz)",
    )
    g.add_argument("--conf", type=float, default=conf, help=f"confidence threshold (default {conf}{conf_note})")
    g.add_argument("--iou", type=float, default=0.7, help="NMS IoU threshold (default 0.7)")
    g.add_argument("--classes", nargs="+", metavar="C", help="keep only these classes, by name or id")
    g.add_argument("--max-det", type=int, default=300, help="at most this many boxes per frame (default 300)")
    g.add_argument("--agnostic", action="store_true", help="class-agnostic NMS")
    g.add_argument(
        "--end2end", action="store_true", help="use the NMS-free one-to-one head of end-to-end models (YOLO26)"
    )
    g.add_argument("--device", default="cpu", help="cpu, cuda, cuda:0, ... (default cpu)")
    g.add_argument("--half", action="store_true", help="half precision (CUDA only)")


def make_detector(args: argparse.Namespace):
    """The `Detector` that add_model_options' options describe."""
    from detector.pipeline import Detector

    return Detector(
        args.weights,
        imgsz=args.imgsz,
        conf=args.conf,
        iou=args.iou,
        classes=args.classes,
        max_det=args.max_det,
        agnostic=args.agnostic,
        device=args.device,
        end2end=True if args.end2end else None,
        half=args.half,
    )


def add_file_run_options(p: argparse.ArgumentParser) -> None:
    """`detector video` and `detector eval-video`: a run over a file."""
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--realtime",
        action="store_true",
        help="replay at the file's frame rate with the live drop policy: what a camera user would have seen",
    )


def add_live_options(p: argparse.ArgumentParser) -> None:
    """`detector live` and `detector demo`: the window and what the run writes."""
    g = p.add_argument_group("window and outputs")
    g.add_argument("--no-show", action="store_true", help="no window: only write the outputs")
    g.add_argument("--no-hud", action="store_true", help="start with the status overlay hidden (h toggles it)")
    g.add_argument("--record", metavar="OUT.mp4", help="record the annotated picture, at the measured frame rate")
    g.add_argument("--record-raw", metavar="RAW.mp4", help="record the camera frames as captured (for later tests)")
    g.add_argument(
        "--jsonl", metavar="OUT.jsonl", help="one JSON line per detected frame, with t_capture and latency_ms"
    )
    g.add_argument("--snapshots", default="runs/live", metavar="DIR", help="where s and r write (default runs/live)")
    g.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")
