"""`detector finetune` (also `python -m detector.finetune`): a pretrained detector fine-tuned on a YOLO-format
dataset; the loop is detector/train/finetune.py."""

from __future__ import annotations

import argparse

from detector.commands.options import TRUST_NOTE, add_command
from detector.errors import DetectorError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = add_command(
        subparsers,
        "finetune",
        help="fine-tune a detector on your own YOLO-format dataset (frozen backbone by default)",
        description="Fine-tune a pretrained detector on a YOLO-format dataset (data.yaml). Writes best.pt, last.pt, "
        "results.csv, TensorBoard events and plots into --out; best.pt works with --weights in the other commands.",
        example=[
            (
                "10 epochs on coco128 from weights/yolo11n.pt, backbone frozen",
                "detector finetune --data ../shared/data/coco128/data.yaml --epochs 10 --imgsz 320 --batch 16",
            ),
            (
                "continue runs/finetune/last.pt for 20 epochs in all",
                "detector finetune --data my.yaml --epochs 20 --resume",
            ),
            (
                "2 processes on this machine (torchrun underneath; --batch is the global batch)",
                "detector finetune --data my.yaml --batch 32 --nproc-per-node 2",
            ),
            ("use the result", "detector video clip.mp4 --weights runs/finetune/best.pt"),
        ],
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
    p.add_argument(
        "--batch",
        type=int,
        default=16,
        help="images per batch over all processes (default 16); gradients add up to 64",
    )
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
    p.add_argument(
        "--no-augment",
        dest="augment",
        action="store_false",
        help="train on the letterboxed images as they are: no mosaic, scale, translation, colour or flip",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    ddp = p.add_argument_group(
        "several processes (PyTorch DDP: gloo on CPU, NCCL on CUDA)",
        "Across machines, run `torchrun ... -m detector.finetune` on each (docs/distributed.md).",
    )
    ddp.add_argument(
        "--nproc-per-node",
        type=int,
        default=1,
        metavar="N",
        help="train in N processes on this machine, one per GPU with --device cuda (default 1)",
    )
    ddp.add_argument(
        "--max-restarts",
        type=int,
        default=0,
        metavar="K",
        help="with --nproc-per-node: restart all processes up to K times when one fails; each restart resumes "
        "from last.pt (default 0)",
    )
    ddp.add_argument(
        "--sync-bn",
        action="store_true",
        help="trainable BatchNorms use batch statistics over all processes (implies --bn-train; CUDA only)",
    )
    p.set_defaults(run=cmd_finetune)


def cmd_finetune(args: argparse.Namespace) -> int:
    from detector.train import distributed
    from detector.train.data import load_data_yaml
    from detector.train.finetune import finetune

    if args.nproc_per_node < 1 or args.max_restarts < 0:
        raise DetectorError("--nproc-per-node must be at least 1 and --max-restarts at least 0")
    if args.nproc_per_node > 1 and not distributed.launched():
        if args.batch % args.nproc_per_node:
            raise DetectorError(
                f"--batch {args.batch} is the global batch: it must divide by --nproc-per-node {args.nproc_per_node}"
            )
        # bad input is one line here, not one per process
        distributed.rank_device(args.device, distributed.Ranks(world=args.nproc_per_node), args.sync_bn)
        load_data_yaml(args.data)
        return distributed.launch(args.argv[1:], args.nproc_per_node, args.max_restarts)
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
        augment=args.augment,
        bn_train=args.bn_train,
        sync_bn=args.sync_bn,
        progress=not args.quiet,
    )
    if not rows:  # a rank other than 0: rank 0 reports
        return 0
    best = max(rows, key=lambda r: r["mAP50-95"])
    print(f"best: epoch {best['epoch']:.0f}, mAP50 {best['mAP50']:.4f}, mAP50-95 {best['mAP50-95']:.4f}")
    print(f"outputs: {args.out}/ best.pt last.pt results.csv losses.png map.png pr_curve.png (TensorBoard events)")
    print(f"use: detector video clip.mp4 --weights {args.out}/best.pt; {TRUST_NOTE}")
    return 0
