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
    """The `Detector` that add_model_options' options describe (while tracking, at the tracker's threshold:
    ``--conf`` then decides what is shown and written)."""
    from detector.pipeline import Detector

    conf = args.conf
    if getattr(args, "track", False):
        from detector.track.run import Tracking

        conf = Tracking.detector_conf(args.conf)
    return Detector(
        args.weights,
        imgsz=args.imgsz,
        conf=conf,
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


def add_tracking_options(p: argparse.ArgumentParser) -> None:
    """`--track` and what goes with it: `live`, `demo`, `video`, `eval-video`."""
    g = p.add_argument_group("tracking")
    g.add_argument("--track", action="store_true", help="follow objects across frames: an ID per object (#id)")
    g.add_argument(
        "--tracker",
        default="bytetrack",
        metavar="T",
        help="bytetrack (default), botsort, or a tracker .yaml in Ultralytics' format",
    )
    g.add_argument(
        "--line",
        action="append",
        default=[],
        metavar="X1,Y1,X2,Y2",
        help="count tracks crossing this line, in and out, per class (pixels, or fractions 0-1 of the frame; "
        "repeatable). In is to the line's right, walking from its first point to its second",
    )
    g.add_argument(
        "--zone",
        action="append",
        default=[],
        metavar="X1,Y1,X2,Y2,X3,Y3,...",
        help="a polygon: tracks inside now and entries, per class (pixels or fractions; repeatable)",
    )
    g.add_argument("--trails", type=int, default=0, metavar="N", help="draw each track's last N centres")
    g.add_argument("--mot", metavar="OUT.txt", help="MOTChallenge results: frame,id,x,y,w,h,conf,-1,-1,-1")
    g.add_argument(
        "--track-by-calls",
        action="store_true",
        help="count tracker calls instead of source frames, as Ultralytics does (for comparison)",
    )
    g.add_argument(
        "--no-predict-boxes",
        action="store_true",
        help="live and --realtime: draw tracks where they were found, one inference ago, not where their "
        "motion puts them on the newest frame",
    )


def make_tracking(args: argparse.Namespace, frame_rate: float, frame_wh: tuple[int, int], mot=None):
    """The `Tracking` that add_tracking_options' options describe; None without --track. Lines, zones and
    the other tracking options without --track are a one-line error."""
    from pathlib import Path

    from detector.errors import DetectorError

    if not args.track:
        asked = [name for name in ("line", "zone", "mot") if getattr(args, name)]
        asked += ["trails"] * bool(args.trails) + ["tracker"] * (args.tracker != "bytetrack")
        if asked:
            raise DetectorError(f"--{asked[0]} needs --track: add --track")
        return None
    if args.trails < 0:
        raise DetectorError(f"--trails {args.trails}: give a number of centres, 0 or more")
    from detector.track.run import Tracking, TrackingOptions

    options = TrackingOptions(
        tracker=args.tracker,
        lines=args.line,
        zones=args.zone,
        trails=args.trails,
        mot=Path(mot or args.mot) if (mot or args.mot) else None,
        predict_boxes=not args.no_predict_boxes,
        time_aware=not args.track_by_calls,
    )
    return Tracking(options, frame_rate, frame_wh, args.conf)


def tracking_for(args: argparse.Namespace, mot=None):
    """For file runs: a function making the run's `Tracking` once the source is open (its frame rate and
    size: a `VideoFile` or `LiveSource`), None without --track. ``mot``: where the tracks go (eval-video)."""
    if not args.track:
        make_tracking(args, 30.0, (1, 1))  # tracking options without --track: the one-line error, now
        return None

    def make(source):
        w, h = source.size if hasattr(source, "size") else (source.frame_hw or (0, 0))[::-1]
        return make_tracking(args, source.fps, (w, h), mot)

    return make


def add_serve_options(p: argparse.ArgumentParser) -> None:
    """`live` and `demo`: the browser view (detector/serve/)."""
    g = p.add_argument_group("browser view")
    g.add_argument(
        "--serve",
        metavar="[HOST:]PORT",
        help="watch and steer the run from a browser at http://HOST:PORT/ (HOST default 127.0.0.1: this machine "
        "only; 0.0.0.0 for every address, which needs a token); beside the window or without one",
    )
    g.add_argument(
        "--token",
        metavar="T",
        help="every request must carry T (the page link sets a cookie); made and printed once when --serve "
        "listens beyond this machine without one",
    )
    g.add_argument(
        "--max-viewers", type=int, default=8, metavar="N", help="at most N picture streams at once (default 8)"
    )


def make_serve(args: argparse.Namespace):
    """The `ServeOptions` that add_serve_options' options describe; None without --serve."""
    from detector.errors import DetectorError

    if not args.serve:
        if args.token:
            raise DetectorError("--token needs --serve: add --serve PORT")
        return None
    from detector.serve.server import parse_serve

    return parse_serve(args.serve, args.token, args.max_viewers)
