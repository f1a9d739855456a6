"""`detector recover-weights`: a trainable .pt rebuilt from an OpenVINO IR export (detector/train/recover.py)."""

from __future__ import annotations

import argparse

from detector.commands.options import TRUST_NOTE, add_command


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = add_command(
        subparsers,
        "recover-weights",
        help="rebuild a trainable .pt from an OpenVINO IR export (offline pretrained start)",
        description="Rebuild the model from an Ultralytics OpenVINO IR export (INT8 weights are dequantised, "
        "folded BatchNorms restored as identity + bias) and save it as an Ultralytics .pt checkpoint.",
        example=[
            (
                "how weights/yolo11n.pt was made, from the original static INT8 export (weights/README.md)",
                "detector recover-weights ../shared/data/weights/yolo11n_int8_openvino_model --out weights/yolo11n.pt",
            ),
            (
                "the bundled default model, trainable",
                "detector recover-weights weights/yolo11n_int8_openvino_model --out yolo11n_default.pt",
            ),
        ],
    )
    p.add_argument("ir", metavar="IR", help="*_openvino_model folder or its .xml (weights/yolo11n_int8_openvino_model)")
    p.add_argument("--out", default="weights/yolo11n.pt", metavar="OUT.pt", help="default weights/yolo11n.pt")
    p.add_argument("--cfg", default="yolo11n.yaml", help="the architecture of the IR (default yolo11n.yaml)")
    p.set_defaults(run=cmd_recover_weights)


def cmd_recover_weights(args: argparse.Namespace) -> int:
    from detector.train.recover import recover_weights

    out = recover_weights(args.ir, args.out, cfg=args.cfg)
    print(f"weights: {out} ({out.stat().st_size / 2**20:.1f} MiB, {args.cfg} from {args.ir}); {TRUST_NOTE}")
    return 0
