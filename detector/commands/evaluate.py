"""`detector eval-video` and `detector diff`: testing on recorded video (the work is in detector/evaluate/)."""

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
from detector.errors import DetectorError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = add_command(
        subparsers,
        "eval-video",
        help="score detections on a video against ground truth (MOT gt.txt or YOLO labels)",
        description="Run the detector over a video and score what it finds against ground truth, like "
        "Ultralytics' val (--conf 0.001, --iou 0.7, --max-det 300, greedy matching by confidence): mAP50 and "
        "mAP50-95 per class, and precision, recall and TP/FP/FN per frame at an operating point. Writes "
        "report.json, detections.jsonl, per_frame.png and, with --video, an annotated video into --out.",
        example=[
            ("MOT ground truth (gt.txt), and an annotated video", "detector eval-video clip.mp4 --gt gt.txt --video"),
            (
                "YOLO labels (a file per frame), as a camera user would have seen them",
                "detector eval-video clip.mp4 --gt labels/ --class-map 0=person --realtime",
            ),
            (
                "tracks scored too (MOTA, IDF1, HOTA; tracks.txt in --out)",
                "detector eval-video clip.mp4 --gt gt.txt --track",
            ),
        ],
    )
    p.add_argument("path", metavar="VIDEO", help="video file")
    p.add_argument(
        "--gt",
        required=True,
        metavar="GT",
        help="MOT gt.txt (frame,id,x,y,w,h,...: pixels, 1-based frames) or a folder with one YOLO label file "
        "per frame (class cx cy w h, normalised), in frame order by name",
    )
    p.add_argument("--gt-format", choices=["mot", "yolo"], help="default: yolo for a folder, mot for a file")
    p.add_argument(
        "--class-map",
        nargs="+",
        metavar="GT=MODEL",
        help="ground-truth class -> model class, by name or id (default: pedestrian=person for MOT, "
        "YOLO label ids as the model's ids)",
    )
    p.add_argument("--out", metavar="DIR", help="output folder (default runs/eval/<video name>)")
    p.add_argument(
        "--op-conf",
        type=float,
        default=0.25,
        metavar="CONF",
        help="operating point of precision, recall and TP/FP/FN: detections with confidence above this "
        "(default 0.25, what `detector video` shows)",
    )
    p.add_argument(
        "--op-iou",
        type=float,
        default=0.5,
        metavar="IOU",
        help="operating point: a detection is a TP at IoU >= this (default 0.5)",
    )
    p.add_argument(
        "--video",
        action="store_true",
        help="also write an annotated video: detections at the operating point, ground truth outlined "
        "(white found, magenta missed)",
    )
    add_file_run_options(p)
    add_model_options(p, conf=0.001, conf_note=", as Ultralytics' val: every detection is scored")
    add_tracking_options(p)
    p.set_defaults(run=cmd_eval_video)

    p = add_command(
        subparsers,
        "diff",
        help="compare two `detector video` runs: boxes added, removed, moved, reclassified",
        description="Compare two JSONL runs of `detector video` on the same video, frame by frame: boxes "
        "paired at --iou with the same class are the same; paired with another class, reclassified; "
        "overlapping less (IoU >= 0.1), moved; the rest removed (only in A) or added (only in B). Exit 1 "
        "when the changed share of boxes exceeds --max-changed, else 0: a guard for model updates in CI.",
        example=[
            (
                "what --conf 0.5 removes; exit 1 when more than 5% of the boxes change",
                "detector video clip.mp4 --no-video --jsonl a.jsonl\n"
                "detector video clip.mp4 --no-video --jsonl b.jsonl --conf 0.5\n"
                "detector diff a.jsonl b.jsonl --max-changed 0.05 --json diff.json",
            ),
        ],
    )
    p.add_argument("a", metavar="A.jsonl", help="the reference run")
    p.add_argument("b", metavar="B.jsonl", help="the run to compare with it")
    p.add_argument("--iou", type=float, default=0.5, help="IoU at which two boxes are the same (default 0.5)")
    p.add_argument(
        "--max-changed",
        type=float,
        default=0.0,
        metavar="F",
        help="tolerated share of changed boxes, 0..1 (default 0: any change exits 1)",
    )
    p.add_argument("--json", metavar="OUT.json", help="also write every frame's counts as JSON")
    p.set_defaults(run=cmd_diff)


def cmd_eval_video(args: argparse.Namespace) -> int:
    from detector.evaluate import evaluate_video, load_ground_truth

    gt = load_ground_truth(args.gt, args.path, args.gt_format)  # bad ground truth fails before the model loads
    out = Path(args.out) if args.out else Path("runs/eval") / Path(args.path).stem
    tracking = tracking_for(args, mot=out / "tracks.txt")
    gt_txt = Path(args.gt) if Path(args.gt).is_file() else None  # MOT ground truth: IDs to score tracks by
    detector = make_detector(args)
    _, lines = evaluate_video(
        detector,
        args.path,
        gt,
        args.class_map,
        out,
        args.op_conf,
        args.op_iou,
        args.video,
        not args.quiet,
        realtime=args.realtime,
        tracking=tracking,
        gt_txt=gt_txt,
    )
    print("\n".join(lines))
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    from detector.evaluate import diff_runs
    from detector.sinks import write_json_atomic

    if not 0 <= args.max_changed <= 1:
        raise DetectorError(f"--max-changed {args.max_changed}: give a share between 0 and 1")
    diff = diff_runs(args.a, args.b, args.iou)
    if args.json:
        write_json_atomic(args.json, diff.report())
    exceeded = diff.changed_share > args.max_changed
    print("\n".join(diff.lines()))
    print(f"changed share {'above' if exceeded else 'within'} --max-changed {args.max_changed:g}: exit {int(exceeded)}")
    return int(exceeded)
