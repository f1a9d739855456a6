"""`detector export`: a .pt detector to ONNX or OpenVINO, through Ultralytics' exporter (detector/export.py)."""

from __future__ import annotations

import argparse

from detector.commands.options import TRUST_NOTE, add_command


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = add_command(
        subparsers,
        "export",
        help="export a .pt detector to ONNX or OpenVINO (Ultralytics' exporter)",
        description="Export a .pt detector to ONNX or OpenVINO, beside the weights, for `--weights` in the other "
        "commands. " + TRUST_NOTE,
        example=[
            (
                "ONNX, written beside the weights as runs/finetune/best.onnx",
                "detector export runs/finetune/best.pt --format onnx",
            ),
            (
                "OpenVINO INT8, calibrated on the val images, any input shape (as the bundled default)",
                "detector export runs/finetune/best.pt --format openvino --int8 --dynamic --data my.yaml",
            ),
        ],
    )
    p.add_argument("weights", metavar="W", help=".pt checkpoint, e.g. runs/finetune/best.pt")
    p.add_argument("--format", required=True, choices=["onnx", "openvino"], help="export format")
    p.add_argument("--imgsz", type=int, default=640, help="input size of the exported model (default 640)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--half", action="store_true", help="float16 weights")
    g.add_argument("--int8", action="store_true", help="INT8 (OpenVINO, needs nncf and --data for calibration)")
    p.add_argument("--data", metavar="YAML", help="data.yaml whose val images calibrate --int8")
    p.add_argument(
        "--dynamic",
        action="store_true",
        help="input height and width left open: each source then runs at its own letterboxed shape "
        "(384x640 for 16:9 video at --imgsz 640) instead of a padded square",
    )
    p.set_defaults(run=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    from detector.export import export_model

    out = export_model(
        args.weights, args.format, args.imgsz, half=args.half, int8=args.int8, data=args.data, dynamic=args.dynamic
    )
    print(f"exported: {out}; use: detector video clip.mp4 --weights {out}")
    return 0
