"""Fine-tuning in several processes: 2 processes x 1 thread against 1 process x 2 threads, and the all-reduce.

    python benchmarks/bench_distributed.py [--rounds 2] [--epochs 2]

CPU, gloo, coco128, the recovered weights/yolo11n.pt, imgsz 320, global batch 16, backbone frozen, no loader
workers (each process decodes its own share), no augmentation changes between rows. Rows:

- 1 process x 2 threads (the reference): ``detector finetune`` with ``OMP_NUM_THREADS=2``;
- 2 processes x 1 thread: ``detector finetune --nproc-per-node 2`` (torchrun; 8 images per rank per batch).

Each row's figure is the training images per second of the last epoch (validation not counted), from
results.csv; rows alternate over ``--rounds`` and the best of each is kept (other jobs may share the machine).
Then the time of one all-reduce of the trainable gradients (one flat tensor of their size, and DDP's own
buckets: a backward with and without ``no_sync``), both over gloo between 2 local processes.

Ultralytics has no row: its trainer runs DDP on CUDA devices only (``device=cpu`` trains in one process).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402

import detector  # noqa: E402, F401  (quiet, offline Ultralytics before it loads)

REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data" / "coco128" / "data.yaml"
WEIGHTS = REPO / "weights" / "yolo11n.pt"
IMGSZ, BATCH = 320, 16


def train_img_s(out: Path, epochs: int, processes: int) -> float:
    threads = 2 // processes
    command = [sys.executable, "-m", "detector", "finetune", "--data", str(DATA), "--out", str(out), "--quiet"]
    command += ["--epochs", str(epochs), "--imgsz", str(IMGSZ), "--batch", str(BATCH), "--workers", "0"]
    if processes > 1:
        command += ["--nproc-per-node", str(processes)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with (out / "results.csv").open() as f:
        return float(list(csv.DictReader(f))[-1]["img_per_s"])


def _all_reduce_worker(rank: int, port: int, repeat: int, results: dict) -> None:
    from ultralytics.nn.tasks import load_checkpoint

    from detector.train.data import YoloDataset, collate, load_data_yaml, load_dataset
    from detector.train.freeze import apply_freeze, frozen_indices, set_train_mode
    from detector.train.loss import DetectionLoss

    torch.set_num_threads(1)
    store = dist.TCPStore("127.0.0.1", port, 2, is_master=rank == 0)
    dist.init_process_group("gloo", store=store, rank=rank, world_size=2)
    model = load_checkpoint(str(WEIGHTS))[0].float()
    frozen = frozen_indices(model, "backbone")
    apply_freeze(model, frozen)
    set_train_mode(model, frozen, bn_train=False)
    trainable = [p for p in model.parameters() if p.requires_grad]
    flat = torch.randn(sum(p.numel() for p in trainable))  # [P] the trainable gradients, one tensor

    def timed(fn) -> float:
        times = []
        for _ in range(repeat):
            dist.barrier()
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return sorted(times)[len(times) // 2] * 1000

    flat_ms = timed(lambda: dist.all_reduce(flat))

    items, _ = load_dataset(load_data_yaml(DATA), "train")
    dataset = YoloDataset(items[rank * 8 : rank * 8 + 8], IMGSZ, augment=False)
    images, targets, valid = collate([dataset[i] for i in range(8)])
    images = images.float() / 255
    net = torch.nn.parallel.DistributedDataParallel(model)
    loss_fn = DetectionLoss(model)

    def step(sync: bool) -> None:
        with contextlib.nullcontext() if sync else net.no_sync():
            loss, _ = loss_fn(net(images), targets, valid)
            loss.backward()
        model.zero_grad(set_to_none=True)

    step(True)  # DDP builds its buckets on the first step
    synced_ms, local_ms = timed(lambda: step(True)), timed(lambda: step(False))
    if rank == 0:
        results.update(params=len(flat), flat_ms=flat_ms, synced_ms=synced_ms, local_ms=local_ms)
    dist.destroy_process_group()


def all_reduce_figures(repeat: int) -> dict:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    results = mp.Manager().dict()
    mp.spawn(_all_reduce_worker, args=(port, repeat, results), nprocs=2)
    return dict(results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=20, help="all-reduce timings per figure (median)")
    args = parser.parse_args()

    rows = {1: [], 2: []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for processes in (1, 2):
                rows[processes].append(train_img_s(Path(tmp) / f"{processes}-{r}", args.epochs, processes))
                print(f"round {r + 1}: {processes} process(es): {rows[processes][-1]:.1f} img/s", flush=True)
    reduce = all_reduce_figures(args.repeat)

    print(f"\n{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, gloo")
    print(f"coco128, imgsz {IMGSZ}, global batch {BATCH}, backbone frozen, {args.epochs} epochs, no loader workers\n")
    ref = max(rows[1])
    print("| run | training img/s (best of rounds) | ratio |\n|---|---|---|")
    print(f"| 1 process x 2 threads (reference) | {ref:.1f} | 1.00x |")
    print(f"| 2 processes x 1 thread (DDP, gloo) | {max(rows[2]):.1f} | {max(rows[2]) / ref:.2f}x |")
    print(f"\nall rounds: 1x2 {[round(x, 1) for x in rows[1]]}, 2x1 {[round(x, 1) for x in rows[2]]}\n")
    print("| all-reduce over gloo, 2 local processes | median ms |\n|---|---|")
    print(f"| one flat tensor of the {reduce['params']:,} trainable gradients | {reduce['flat_ms']:.2f} |")
    print(f"| forward + backward, 8 images a rank, DDP all-reduce on (its buckets) | {reduce['synced_ms']:.1f} |")
    print(f"| the same under no_sync (accumulation batches) | {reduce['local_ms']:.1f} |")
    print(f"| all-reduce cost inside a step (difference) | {reduce['synced_ms'] - reduce['local_ms']:.1f} |")


if __name__ == "__main__":
    main()
