"""Fine-tuning throughput: `detector finetune` against Ultralytics' `model.train(...)`, same model and data.

    python benchmarks/bench_finetune.py [--epochs 2] [--data ../shared/data/coco128/data.yaml]
    python benchmarks/bench_finetune.py --compare-map 10     # mAP after 10 epochs, ours against Ultralytics'

CPU, the recovered weights/yolo11n.pt, imgsz 320, batch 16, backbone frozen (Ultralytics: ``freeze=11``), two
loader workers, no mosaic (runs shorter than ``close_mosaic`` epochs switch it off in both). Rows:

- bare step: forward + loss + backward + optimizer step on one fixed batch already in memory, no data at all:
  the ceiling for both trainers; measured before and after the runs, the faster taken (other jobs may share
  the machine).
- ours, ``--workers 2`` (prefetching loader) and ``--workers 0`` (no prefetching: the loop decodes and augments
  each batch itself): training images per second of the last epoch (validation not counted) and the share of
  step time spent waiting for data, from results.csv.
- Ultralytics: images per second of the last epoch's training pass, timed by its own epoch start / end
  callbacks (validation not counted).
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")

import torch  # noqa: E402

import detector  # noqa: E402, F401  (quiet, offline Ultralytics before it loads)
from detector.train.data import YoloDataset, collate, load_data_yaml, load_dataset  # noqa: E402
from detector.train.finetune import finetune, param_groups  # noqa: E402
from detector.train.freeze import apply_freeze, frozen_indices, set_train_mode  # noqa: E402
from detector.train.loss import DetectionLoss  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
WEIGHTS = REPO / "weights" / "yolo11n.pt"
IMGSZ, BATCH = 320, 16


def bare_step_img_s(data: str, repeat: int = 8) -> float:
    """Images per second of forward + loss + backward + step on one fixed batch (no data loading)."""
    from ultralytics.nn.tasks import load_checkpoint

    model = load_checkpoint(str(WEIGHTS))[0]
    frozen = frozen_indices(model, "backbone")
    apply_freeze(model, frozen)
    set_train_mode(model, frozen, bn_train=False)
    items, _ = load_dataset(load_data_yaml(data), "train")
    dataset = YoloDataset(items[:BATCH], IMGSZ, augment=False)
    images, targets, valid = collate([dataset[i] for i in range(BATCH)])
    images = images.float() / 255
    optimizer = torch.optim.AdamW(param_groups(model, 5e-4), lr=1e-4)
    loss_fn = DetectionLoss(model)
    times = []
    for _ in range(repeat + 2):
        start = time.perf_counter()
        loss, _ = loss_fn(model(images), targets, valid)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
    return BATCH / (sum(times[2:]) / repeat)  # the first two warm up


def ours(data: str, epochs: int, workers: int, out: Path) -> dict[str, float]:
    finetune(data, str(WEIGHTS), out, epochs=epochs, imgsz=IMGSZ, batch=BATCH, workers=workers, progress=False)
    with (out / "results.csv").open() as f:
        return {k: float(v) for k, v in list(csv.DictReader(f))[-1].items()}


def ultralytics(data: str, epochs: int, workers: int, out: Path) -> float:
    from ultralytics import YOLO

    model = YOLO(str(WEIGHTS))
    spans: list[list[float]] = []
    model.add_callback("on_train_epoch_start", lambda trainer: spans.append([time.perf_counter()]))
    model.add_callback("on_train_epoch_end", lambda trainer: spans[-1].append(time.perf_counter()))
    model.train(
        data=data,
        epochs=epochs,
        imgsz=IMGSZ,
        batch=BATCH,
        freeze=11,
        workers=workers,
        device="cpu",
        amp=False,
        plots=False,
        project=str(out),
        name="ultralytics",
        exist_ok=True,
        verbose=False,
    )
    images = len(load_dataset(load_data_yaml(data), "train")[0])
    start, end = spans[-1]
    return images / (end - start)


def val_map(weights: Path, data: str) -> tuple[float, float]:
    """mAP50 and mAP50-95 of a checkpoint on ``data``'s val split, scored by our validation (the same for both)."""
    from ultralytics.nn.tasks import load_checkpoint

    from detector.train.prefetch import DevicePrefetcher, make_loader
    from detector.train.validate import validate

    items, _ = load_dataset(load_data_yaml(data), "val")
    cpu = torch.device("cpu")
    result = validate(
        load_checkpoint(str(weights))[0],
        DevicePrefetcher(make_loader(YoloDataset(items, IMGSZ, False), BATCH, 2, cpu), cpu),
    )
    return result.map50, result.map50_95


def compare_map(data: str, epochs: int, out: Path) -> None:
    """Both trainers for ``epochs`` with the same settings; both final models scored by the same code."""
    ours(data, epochs, 2, out / "ours")
    ultralytics(data, epochs, 2, out)
    print(f"\n| after {epochs} epochs, scored by detector/train/validate.py | mAP50 | mAP50-95 |\n|---|---|---|")
    print("| pretrained (recovered yolo11n.pt), no training | {:.3f} | {:.3f} |".format(*val_map(WEIGHTS, data)))
    print("| ours, last.pt | {:.3f} | {:.3f} |".format(*val_map(out / "ours" / "last.pt", data)))
    print(
        "| Ultralytics, last.pt | {:.3f} | {:.3f} |".format(*val_map(out / "ultralytics" / "weights" / "last.pt", data))
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "coco128" / "data.yaml"))
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--skip-ultralytics", action="store_true")
    parser.add_argument("--compare-map", type=int, metavar="E", help="instead: mAP of both trainers after E epochs")
    args = parser.parse_args()
    if args.compare_map:
        with tempfile.TemporaryDirectory() as tmp:
            compare_map(args.data, args.compare_map, Path(tmp))
        return
    threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        bare_before = bare_step_img_s(args.data)
        ours_2 = ours(args.data, args.epochs, 2, tmp / "w2")
        ours_0 = ours(args.data, args.epochs, 0, tmp / "w0")
        theirs = None if args.skip_ultralytics else ultralytics(args.data, args.epochs, 2, tmp)
        bare = max(bare_before, bare_step_img_s(args.data))  # before and after: the machine may be shared
    print(
        f"# fine-tuning throughput; {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"{threads} threads; {WEIGHTS.name}, {Path(args.data).parent.name}, imgsz {IMGSZ}, batch {BATCH}, "
        f"backbone frozen, last of {args.epochs} epochs"
    )
    print("| run | img/s | data wait | / Ultralytics | / bare step |\n|---|---|---|---|---|")

    def ratio(value: float) -> str:
        return f"{value / theirs:.2f}x" if theirs else "-"

    print(f"| bare step (no data) | {bare:.1f} | - | {ratio(bare)} | 1.00x |")
    for name, row in (("ours, 2 workers + prefetcher", ours_2), ("ours, no prefetching (0 workers)", ours_0)):
        img_s = row["img_per_s"]
        print(f"| {name} | {img_s:.1f} | {row['data_wait']:.1%} | {ratio(img_s)} | {img_s / bare:.2f}x |")
    if theirs:
        print(f"| Ultralytics model.train, 2 workers | {theirs:.1f} | - | 1.00x | {theirs / bare:.2f}x |")
    print(f"\nmAP50 after {args.epochs} epochs, ours (2 workers): {ours_2['mAP50']:.3f}", file=sys.stderr)


if __name__ == "__main__":
    main()
