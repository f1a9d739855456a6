"""The `detector` command line: one entry point, one sub-command per job."""

from __future__ import annotations

import argparse
import signal
import sys
from collections import Counter
from pathlib import Path

from detector.errors import DetectorError
from detector.sources import SAMPLE_VIDEO

TRUST_NOTE = ".pt files are Python pickles: loading one runs code from it; use weights you trust."


def add_model_options(p: argparse.ArgumentParser) -> None:
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
        default=[640],
        metavar="N",
        help="inference size, one value or H W; rounded up to the model stride (default 640; "
        "static exports use the size they were exported at)",
    )
    g.add_argument("--conf", type=float, default=0.25, help="confidence threshold (default 0.25)")
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


def cmd_image(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from detector.render import draw_detections
    from detector.sinks import write_image, write_json_atomic
    from detector.sources import find_images, read_image

    paths = find_images(args.paths)
    detector = make_detector(args)
    out = Path(args.out)
    totals: Counter = Counter()
    for path in tqdm(paths, unit="image", disable=len(paths) < 2 or None):
        frame = read_image(path)
        dets = detector([frame])[0]
        totals.update(dets.class_name)
        write_image(out / f"{path.stem}.jpg", draw_detections(frame, dets))
        write_json_atomic(out / f"{path.stem}.json", {"image": str(path), **dets.to_dict()})
    print(f"images: {len(paths)} -> {out}/")
    print("detections: " + (", ".join(f"{k} {n}" for k, n in totals.most_common()) or "none"))
    return 0


def cmd_video(args: argparse.Namespace) -> int:
    from detector.video import run_video

    stem = Path(args.path).stem
    out = Path(args.out) if args.out else Path("runs/video") / f"{stem}.mp4"
    jsonl = Path(args.jsonl) if args.jsonl else out.with_suffix(".jsonl")
    detector = make_detector(args)
    summary = run_video(detector, args.path, out, jsonl, progress=not args.quiet)
    print(f"video: {out}\ndetections: {jsonl}")
    print("\n".join(summary.lines()))
    return 130 if summary.interrupted else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="detector",
        description="Real-time object detection on images, video files and cameras with YOLO models.",
        epilog="Bad input ends with a one-line message and exit code 2. " + TRUST_NOTE,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")

    p = sub.add_parser(
        "image",
        help="detect objects in images; writes annotated images and one JSON each",
        description="Detect objects in images: files, folders and globs.",
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files, folders or globs ('photos/*.jpg')")
    p.add_argument("--out", default="runs/image", metavar="DIR", help="output folder (default runs/image)")
    add_model_options(p)
    p.set_defaults(run=cmd_image)

    p = sub.add_parser(
        "video",
        help="detect objects in a video file; writes an annotated video and JSON lines",
        description="Detect objects in every frame of a video file.",
    )
    p.add_argument(
        "path",
        metavar="FILE",
        nargs="?",
        default=str(SAMPLE_VIDEO),
        help="video file (mp4, avi, mkv, ...); default: the bundled 12 s sample clip",
    )
    p.add_argument("--out", metavar="OUT.mp4", help="annotated video (default runs/video/<name>.mp4)")
    p.add_argument(
        "--jsonl",
        metavar="OUT.jsonl",
        help="one JSON line per frame: frame, time_s, detections (default: beside --out)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_model_options(p)
    p.set_defaults(run=cmd_video)
    return parser


def _terminate_as_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt  # SIGTERM stops as cleanly as Ctrl-C


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate_as_interrupt)
    try:
        return args.run(args)
    except DetectorError as e:
        print(f"detector: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("detector: interrupted", file=sys.stderr)
        return 130
