"""`detector video`: an annotated video and one JSON line per frame, for a video file."""

from __future__ import annotations

import argparse
from pathlib import Path

from detector.commands.options import (
    add_command,
    add_file_run_options,
    add_model_options,
    add_tracking_options,
    make_detector,
    tracking_for,
)
from detector.sources import SAMPLE_VIDEO


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = add_command(
        subparsers,
        "video",
        help="detect objects in a video file; writes an annotated video and JSON lines",
        description="Detect objects in every frame of a video file. The annotated video keeps the input's size "
        "and frame rate; the JSON lines hold one object per frame: frame, time_s and detections (xyxy, "
        "confidence, class_id, class_name). Frames that fail to decode are skipped, counted and reported; "
        "Ctrl-C keeps both files complete up to the last processed frame (exit 130).",
        example=[
            ("annotated video and JSON lines", "detector video clip.mp4 --out clip_boxes.mp4 --jsonl clip.jsonl"),
            (
                "detections only (no drawing, no encoding), of people and cars",
                "detector video clip.mp4 --no-video --classes person car",
            ),
            ("as a camera user would have seen it", "detector video clip.mp4 --realtime"),
            (
                "IDs and MOTChallenge tracks; people through a doorway line, counted",
                "detector video clip.mp4 --track --mot tracks.txt --line 0.45,0.2,0.45,0.9 --classes person",
            ),
        ],
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
    p.add_argument("--no-video", action="store_true", help="write only the JSON lines: no drawing or encoding (faster)")
    add_file_run_options(p)
    add_model_options(p)
    add_tracking_options(p)
    p.set_defaults(run=cmd_video)


def cmd_video(args: argparse.Namespace) -> int:
    from detector.video import run_video

    stem = Path(args.path).stem
    out = Path(args.out) if args.out else Path("runs/video") / f"{stem}.mp4"
    jsonl = Path(args.jsonl) if args.jsonl else out.with_suffix(".jsonl")
    detector = make_detector(args)
    if args.realtime:
        from detector.video import run_video_realtime

        lines = run_video_realtime(detector, args.path, None if args.no_video else out, jsonl, tracking_for(args))
        print(f"video: {out}\n" * (not args.no_video) + f"detections: {jsonl}\n" + "\n".join(lines))
        return 0
    summary = run_video(
        detector, args.path, None if args.no_video else out, jsonl, progress=not args.quiet, tracking=tracking_for(args)
    )
    print(f"video: {out}\n" * (not args.no_video) + f"detections: {jsonl}")
    print("\n".join(summary.lines()))
    return 130 if summary.interrupted else 0
