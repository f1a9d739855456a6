"""The `detector` command line: one entry point, one sub-command per job."""

from __future__ import annotations

import argparse
import signal
import sys
from collections import Counter
from pathlib import Path

from detector.errors import DetectorError
from detector.sources import CAPTURE_BACKENDS, SAMPLE_VIDEO

KEYS_HELP = "q/Esc quit, space pause, s snapshot, r record on/off, +/- confidence, h status overlay"

TRUST_NOTE = ".pt files are Python pickles: loading one runs code from it; use weights you trust."


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


def add_file_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--realtime",
        action="store_true",
        help="replay at the file's frame rate with the live drop policy: what a camera user would have seen",
    )


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
    if args.realtime:
        from detector.video import run_video_realtime

        lines = run_video_realtime(detector, args.path, None if args.no_video else out, jsonl)
        print(f"video: {out}\n" * (not args.no_video) + f"detections: {jsonl}\n" + "\n".join(lines))
        return 0
    summary = run_video(detector, args.path, None if args.no_video else out, jsonl, progress=not args.quiet)
    print(f"video: {out}\n" * (not args.no_video) + f"detections: {jsonl}")
    print("\n".join(summary.lines()))
    return 130 if summary.interrupted else 0


def add_live_options(p: argparse.ArgumentParser) -> None:
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


def run_live(args: argparse.Namespace, spec: str, loop: bool, fallback=None) -> int:
    from detector.live import LiveOutputs, LiveRun, check_can_show
    from detector.sources import CameraSettings, LiveSource

    outputs = LiveOutputs(
        jsonl=Path(args.jsonl) if args.jsonl else None,
        record=Path(args.record) if args.record else None,
        record_raw=Path(args.record_raw) if args.record_raw else None,
        snapshots=Path(args.snapshots),
    )
    show, outputs = check_can_show(not args.no_show, outputs, fallback)
    settings = CameraSettings(
        getattr(args, "width", None),
        getattr(args, "height", None),
        getattr(args, "fps", None),
        getattr(args, "fourcc", None),
        getattr(args, "backend", "any"),
    )
    detector = make_detector(args)
    source = LiveSource(
        spec, settings, timeout_s=getattr(args, "timeout", 5.0), loop=loop, speed=getattr(args, "speed", 1.0)
    )
    _report_granted(source, settings)
    duration = args.duration
    if duration is None and not show and fallback is not None and outputs is fallback:
        # `detector demo` on a machine without a display, nothing asked for: one pass of the clip, so that
        # the README's first command ends by itself (--duration runs it longer)
        duration = source.frames / source.fps if source.frames else None
    return LiveRun(detector, source, outputs, show=show, hud=not args.no_hud, duration_s=duration).run()


def _report_granted(source, settings) -> None:
    if source.kind != "camera":
        return
    print(f"camera {source.spec}: {source.stats.granted}")
    w, h = (int(v) for v in source.stats.granted.split(" ")[0].split("x"))
    if (settings.width and settings.width != w) or (settings.height and settings.height != h):
        print(f"note: asked for {settings.width or w}x{settings.height or h}; the camera gave {w}x{h}", file=sys.stderr)


def cmd_live(args: argparse.Namespace) -> int:
    return run_live(args, args.simulate_live or args.source, loop=args.loop)


def cmd_demo(args: argparse.Namespace) -> int:
    from detector.live import LiveOutputs

    headless = LiveOutputs(record=Path("runs/demo/demo.mp4"), jsonl=Path("runs/demo/demo.jsonl"))
    return run_live(args, str(SAMPLE_VIDEO), loop=True, fallback=headless)


def cmd_cameras(args: argparse.Namespace) -> int:
    from detector.sources import list_cameras

    found = list_cameras()
    for index, description in found:
        print(f"{index}: {description}")
    if not found:
        print("no camera opens here (none connected, or no permission: on Linux, join the 'video' group)")
    return 0


def cmd_recover_weights(args: argparse.Namespace) -> int:
    from detector.train.recover import recover_weights

    out = recover_weights(args.ir, args.out, cfg=args.cfg)
    print(f"weights: {out} ({out.stat().st_size / 2**20:.1f} MiB, {args.cfg} from {args.ir}); {TRUST_NOTE}")
    return 0


def cmd_eval_video(args: argparse.Namespace) -> int:
    from detector.evaluate import evaluate_video, load_ground_truth

    gt = load_ground_truth(args.gt, args.path, args.gt_format)  # bad ground truth fails before the model loads
    out = Path(args.out) if args.out else Path("runs/eval") / Path(args.path).stem
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


def cmd_finetune(args: argparse.Namespace) -> int:
    from detector.train.finetune import finetune

    rows = finetune(
        args.data,
        args.weights,
        args.out,
        epochs=args.epochs,
        imgsz=args.imgsz,
        batch=args.batch,
        freeze=args.freeze,
        backbone_grad_scale=args.backbone_grad_scale,
        clip_norm=args.clip_norm,
        workers=args.workers,
        device=args.device,
        resume=args.resume,
        lr0=args.lr0,
        cos_lr=args.cos_lr,
        warmup_epochs=args.warmup_epochs,
        close_mosaic=args.close_mosaic,
        bn_train=args.bn_train,
        progress=not args.quiet,
    )
    best = max(rows, key=lambda r: r["mAP50-95"])
    print(f"best: epoch {best['epoch']:.0f}, mAP50 {best['mAP50']:.4f}, mAP50-95 {best['mAP50-95']:.4f}")
    print(f"outputs: {args.out}/ best.pt last.pt results.csv losses.png map.png pr_curve.png (TensorBoard events)")
    print(f"use: detector video clip.mp4 --weights {args.out}/best.pt; {TRUST_NOTE}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from detector.export import export_model

    out = export_model(args.weights, args.format, args.imgsz, half=args.half, int8=args.int8, data=args.data)
    print(f"exported: {out}; use: detector video clip.mp4 --weights {out}")
    return 0


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
    p.add_argument("--no-video", action="store_true", help="write only the JSON lines: no drawing or encoding (faster)")
    add_file_run_options(p)
    add_model_options(p)
    p.set_defaults(run=cmd_video)

    p = sub.add_parser(
        "live",
        help="the live window: a camera, stream or file in, boxes and latency on screen",
        description="Live detection in a window. Keys: " + KEYS_HELP + ".",
    )
    p.add_argument(
        "--source",
        default="0",
        metavar="SRC",
        help="camera index (0), device path (/dev/video0), stream URL (rtsp://, http://, rtmp://), video "
        "file (replayed at its own frame rate) or image folder (a slideshow at --fps, default 1); default 0",
    )
    p.add_argument(
        "--simulate-live",
        metavar="FILE",
        help="replay FILE on the wall clock at its frame rate, dropping frames like a camera",
    )
    p.add_argument(
        "--speed", type=float, default=1.0, metavar="F", help="replay a file F times faster than real time (stress)"
    )
    p.add_argument(
        "--loop",
        action="store_true",
        help="replay a file or image folder from the start when it ends, until --duration or q "
        "(frame numbers keep counting)",
    )
    g = p.add_argument_group("camera")
    g.add_argument("--width", type=int, help="ask the camera for this width")
    g.add_argument("--height", type=int, help="ask the camera for this height")
    g.add_argument("--fps", type=float, help="ask the camera for this frame rate")
    g.add_argument("--fourcc", help="ask the camera for this pixel format, e.g. MJPG")
    g.add_argument("--backend", default="any", choices=sorted(CAPTURE_BACKENDS), help="capture API (default any)")
    g.add_argument("--timeout", type=float, default=5.0, metavar="S", help="stream open/read time-out (default 5)")
    add_live_options(p)
    add_model_options(p)
    p.set_defaults(run=cmd_live)

    p = sub.add_parser(
        "demo",
        help="no camera needed: the bundled clip replayed as a live camera in the window",
        description="The bundled 12 s clip replayed as a live camera, looping until --duration, q or Ctrl-C, "
        "with or without a window (--no-show). Without a display it writes runs/demo/demo.mp4 and demo.jsonl "
        "instead, for one pass of the clip unless --duration says longer. "
        "Keys: " + KEYS_HELP + ".",
    )
    add_live_options(p)
    add_model_options(p)
    p.set_defaults(run=cmd_demo)

    p = sub.add_parser("cameras", help="list the cameras that open", description="List the cameras that open.")
    p.set_defaults(run=cmd_cameras)

    p = sub.add_parser(
        "recover-weights",
        help="rebuild a trainable .pt from an OpenVINO IR export (offline pretrained start)",
        description="Rebuild the model from an Ultralytics OpenVINO IR export (INT8 weights are dequantised, "
        "folded BatchNorms restored as identity + bias) and save it as an Ultralytics .pt checkpoint.",
    )
    p.add_argument("ir", metavar="IR", help="*_openvino_model folder or its .xml (weights/yolo11n_int8_openvino_model)")
    p.add_argument("--out", default="weights/yolo11n.pt", metavar="OUT.pt", help="default weights/yolo11n.pt")
    p.add_argument("--cfg", default="yolo11n.yaml", help="the architecture of the IR (default yolo11n.yaml)")
    p.set_defaults(run=cmd_recover_weights)

    p = sub.add_parser(
        "eval-video",
        help="score detections on a video against ground truth (MOT gt.txt or YOLO labels)",
        description="Run the detector over a video and score what it finds against ground truth, like "
        "Ultralytics' val (--conf 0.001, --iou 0.7, --max-det 300, greedy matching by confidence): mAP50 and "
        "mAP50-95 per class, and precision, recall and TP/FP/FN per frame at an operating point. Writes "
        "report.json, detections.jsonl, per_frame.png and, with --video, an annotated video into --out.",
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
    p.set_defaults(run=cmd_eval_video)

    p = sub.add_parser(
        "diff",
        help="compare two `detector video` runs: boxes added, removed, moved, reclassified",
        description="Compare two JSONL runs of `detector video` on the same video, frame by frame: boxes "
        "paired at --iou with the same class are the same; paired with another class, reclassified; "
        "overlapping less (IoU >= 0.1), moved; the rest removed (only in A) or added (only in B). Exit 1 "
        "when the changed share of boxes exceeds --max-changed, else 0: a guard for model updates in CI.",
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

    p = sub.add_parser(
        "finetune",
        help="fine-tune a detector on your own YOLO-format dataset (frozen backbone by default)",
        description="Fine-tune a pretrained detector on a YOLO-format dataset (data.yaml). Writes best.pt, last.pt, "
        "results.csv, TensorBoard events and plots into --out; best.pt works with --weights in the other commands.",
    )
    p.add_argument("--data", required=True, metavar="YAML", help="data.yaml: train, val, names (Ultralytics format)")
    p.add_argument(
        "--weights",
        default="weights/yolo11n.pt",
        metavar="W",
        help=f"pretrained .pt (default weights/yolo11n.pt). {TRUST_NOTE}",
    )
    p.add_argument("--epochs", type=int, default=10, help="default 10")
    p.add_argument("--imgsz", type=int, default=640, help="square training size, a multiple of 32 (default 640)")
    p.add_argument("--batch", type=int, default=16, help="images per batch (default 16); gradients add up to 64")
    p.add_argument(
        "--freeze",
        default="backbone",
        metavar="backbone|N|none",
        help="freeze the backbone (default), the first N modules, or nothing",
    )
    p.add_argument(
        "--backbone-grad-scale",
        type=float,
        default=1.0,
        metavar="F",
        help="multiply the backbone's gradients by F before each step (soft freezing; default 1)",
    )
    p.add_argument("--clip-norm", type=float, default=10.0, metavar="F", help="gradient norm clip (default 10)")
    p.add_argument("--workers", type=int, default=2, metavar="K", help="data loader processes (default 2)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:0, ... (default cpu); AMP on CUDA")
    p.add_argument("--out", default="runs/finetune", metavar="DIR", help="output folder (default runs/finetune)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last.pt")
    p.add_argument("--lr0", type=float, help="peak learning rate (default 0.01 / (4 + classes), as Ultralytics)")
    p.add_argument("--cos-lr", action="store_true", help="cosine learning-rate decay (default linear)")
    p.add_argument("--warmup-epochs", type=float, default=3.0, help="linear warm-up epochs (default 3)")
    p.add_argument(
        "--close-mosaic", type=int, default=10, metavar="N", help="no mosaic in the last N epochs (default 10)"
    )
    p.add_argument(
        "--bn-train",
        action="store_true",
        help="trainable layers' BatchNorms use batch statistics (default: running statistics everywhere)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=cmd_finetune)

    p = sub.add_parser(
        "export",
        help="export a .pt detector to ONNX or OpenVINO (Ultralytics' exporter)",
        description="Export a .pt detector to ONNX or OpenVINO, beside the weights, for `--weights` in the other "
        "commands. " + TRUST_NOTE,
    )
    p.add_argument("weights", metavar="W", help=".pt checkpoint, e.g. runs/finetune/best.pt")
    p.add_argument("--format", required=True, choices=["onnx", "openvino"], help="export format")
    p.add_argument("--imgsz", type=int, default=640, help="input size of the exported model (default 640)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--half", action="store_true", help="float16 weights")
    g.add_argument("--int8", action="store_true", help="INT8 (OpenVINO, needs nncf and --data for calibration)")
    p.add_argument("--data", metavar="YAML", help="data.yaml whose val images calibrate --int8")
    p.set_defaults(run=cmd_export)
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
