"""`detector video` frames/s against Ultralytics' `YOLO(w).predict(source, stream=True)`, same weights and imgsz.

    python benchmarks/bench_video.py [--weights W] [--imgsz 640] [--videos a.mp4 b.mp4]

Each measurement runs in its own process (OpenVINO and ONNX Runtime threads keep spinning after a call
and would slow the next one). Ours includes drawing, encoding the annotated MP4 and writing JSON lines;
Ultralytics' stream predict only detects. The bare row is the backend's forward alone in a loop.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED_VIDEOS = REPO.parent / "shared" / "data" / "videos"


def measure_ours(weights: str, video: str, imgsz: int) -> dict:
    from detector import Detector
    from detector.video import run_video

    detector = Detector(weights, imgsz=imgsz)
    with tempfile.TemporaryDirectory() as tmp:
        summary = run_video(detector, video, Path(tmp) / "out.mp4", Path(tmp) / "out.jsonl", progress=False)
    return {"frames": summary.frames, "seconds": summary.seconds}


def measure_ultralytics(weights: str, video: str, imgsz: int) -> dict:
    from ultralytics import YOLO

    from detector import environment  # noqa: F401  (same quiet, offline Ultralytics)

    model = YOLO(weights, task="detect")
    start, frames = time.perf_counter(), 0
    for _ in model.predict(video, stream=True, imgsz=imgsz, verbose=False):
        frames += 1
    return {"frames": frames, "seconds": time.perf_counter() - start}


def measure_bare(weights: str, video: str, imgsz: int, frames: int = 100) -> dict:
    import cv2

    from detector import Detector

    detector = Detector(weights, imgsz=imgsz)
    cap = cv2.VideoCapture(video)
    ok, frame = cap.read()
    x = detector.preprocess([frame])
    detector.backend(x)  # warm-up
    start = time.perf_counter()
    for _ in range(frames):
        detector.backend(x)
    return {"frames": frames, "seconds": time.perf_counter() - start}


def run_in_process(kind: str, weights: str, video: str, imgsz: int) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--measure", kind, "--weights", weights, "--imgsz", str(imgsz), "--videos", video],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "YOLO_OFFLINE": "1"},
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    from detector.pipeline import DEFAULT_WEIGHTS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default=str(DEFAULT_WEIGHTS))
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--videos", nargs="+", default=[str(p) for p in sorted(SHARED_VIDEOS.glob("*.mp4"))])
    parser.add_argument("--measure", choices=["ours", "ultralytics", "bare"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        fn = {"ours": measure_ours, "ultralytics": measure_ultralytics, "bare": measure_bare}[args.measure]
        print(json.dumps(fn(args.weights, args.videos[0], args.imgsz)))
        return
    print(
        f"# detector video vs YOLO.predict(stream=True); {platform.machine()}, {os.cpu_count()} CPUs; "
        f"weights {Path(args.weights).name}; imgsz {args.imgsz}"
    )
    print("| video | frames | bare forward fps | ultralytics fps | ours fps | ours / ultralytics | ours / bare |")
    print("|---|---|---|---|---|---|---|")
    for video in args.videos:
        r = {k: run_in_process(k, args.weights, video, args.imgsz) for k in ("bare", "ultralytics", "ours")}
        fps = {k: v["frames"] / v["seconds"] for k, v in r.items()}
        print(
            f"| {Path(video).name} | {r['ours']['frames']} | {fps['bare']:.1f} | {fps['ultralytics']:.1f} | "
            f"{fps['ours']:.1f} | {fps['ours'] / fps['ultralytics']:.2f}x | {fps['ours'] / fps['bare']:.2f}x |"
        )


if __name__ == "__main__":
    main()
