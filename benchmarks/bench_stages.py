"""Stage costs behind the pipeline's choices, each against what Ultralytics does in its place.

    python benchmarks/bench_stages.py [--repeat 100]

- preprocessing a frame of the shared video to 640x640: Ultralytics' predictor (LetterBox, BGR->RGB,
  float /255) against our letterbox to bytes (what OpenVINO takes) and our float path (PyTorch);
- yolo11n.pt forward at 320 (192x320 input) per frame: Ultralytics' thread setting (cpu_count - 1) one
  frame at a time, against every core and batches of 4 (what `detector video` does);
- OpenVINO FP32 at 320 (yolo11n.pt exported by Ultralytics) per frame: Ultralytics' AutoBackend one frame
  at a time (LATENCY), against our throughput mode with requests of 1 and of 4 frames in flight;
- one full garbage collection with the libraries loaded (what `gc.freeze` keeps out of live runs).
"""

from __future__ import annotations

import argparse
import gc
import os
import tempfile
import time
from pathlib import Path

import cv2
import torch
from bench_pipeline import export_openvino

import detector  # noqa: F401  (quiet, offline Ultralytics before anything loads it)
from detector import Detector
from detector.preprocess import letterbox, preprocess

REPO = Path(__file__).resolve().parent.parent
VIDEO = REPO.parent / "shared" / "data" / "videos" / "car-detection.mp4"


def ms(fn, repeat: int) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=100)
    repeat = parser.parse_args().repeat
    from ultralytics.data.augment import LetterBox

    frame = cv2.VideoCapture(str(VIDEO)).read()[1]
    size = f"{frame.shape[1]}x{frame.shape[0]}"
    print(f"# stage costs, ms; {os.cpu_count()} CPUs, torch {torch.__version__}, frame {size}")
    print("| stage | ultralytics ms | ours ms | ours / ultralytics |")
    print("|---|---|---|---|")

    def theirs_pre():
        x = torch.from_numpy(LetterBox((640, 640), auto=False)(image=frame)[None]).permute(0, 3, 1, 2).flip(1)
        return x.contiguous().float() / 255

    base = ms(theirs_pre, repeat)
    for name, fn in (
        ("letterbox to bytes, 640 (OpenVINO converts in its graph)", lambda: letterbox([frame], (640, 640))),
        ("letterbox to floats, 640 (PyTorch)", lambda: preprocess([frame], (640, 640))),
    ):
        t = ms(fn, repeat)
        print(f"| {name} | {base:.2f} | {t:.2f} | {t / base:.2f}x |")

    model = Detector(REPO / "weights" / "yolo11n.pt", imgsz=320)
    x1 = preprocess([frame], (320, 320), auto=True)  # [1, 3, 192, 320]
    torch.set_num_threads(max(1, os.cpu_count() - 1))  # what Ultralytics' select_device sets
    base = ms(lambda: model.backend(x1), repeat // 2)
    torch.set_num_threads(os.cpu_count())
    x4 = x1.repeat(4, 1, 1, 1)
    for name, x in (("forward at 320, every core, 1 frame", x1), ("forward at 320, every core, batches of 4", x4)):
        t = ms(lambda x=x: model.backend(x), repeat // 2) / len(x)
        print(f"| {name} (per frame) | {base:.2f} | {t:.2f} | {t / base:.2f}x |")

    with tempfile.TemporaryDirectory() as folder:
        ir = export_openvino(str(REPO / "weights" / "yolo11n.pt"), 320, folder)["path"]
        theirs = Detector(ir).backend
        x = preprocess([frame], (320, 320))  # [1, 3, 320, 320]
        base = ms(lambda: theirs.model(x), repeat)
        for batch in (1, 4):
            ours = Detector(ir)  # throughput mode at batch 1 unless batch_for_files picks more
            assert batch == 1 or ours.backend.batch_for_files((320, 320)) == batch
            x = letterbox([frame] * batch, (320, 320))  # [B, 320, 320, 3]
            items = [(x, None)] * (repeat // batch)
            for _ in ours.backend.stream(items[:4]):  # warm-up
                pass
            start = time.perf_counter()
            for _ in ours.backend.stream(items):
                pass
            t = (time.perf_counter() - start) / (len(items) * batch) * 1e3
            name = f"OpenVINO FP32 forward at 320, throughput mode, {batch} frame(s) a request (per frame)"
            print(f"| {name} | {base:.2f} | {t:.2f} | {t / base:.2f}x |")

    start = time.perf_counter()
    gc.collect()
    full = (time.perf_counter() - start) * 1e3
    gc.freeze()
    start = time.perf_counter()
    gc.collect()
    frozen = (time.perf_counter() - start) * 1e3
    print(f"| one full garbage collection; ours: after gc.freeze ({gc.get_freeze_count()} objects) | {full:.1f} | "
          f"{frozen:.1f} | {frozen / full:.2f}x |")  # fmt: skip


if __name__ == "__main__":
    main()
