"""Tracking benchmarks: what --track costs, against Ultralytics' model.track, and what time-awareness and
predicted boxes gain.

    python benchmarks/bench_tracking.py [--seconds 20] [--only speed|realtime]

- cost: `Tracking.update` (ByteTrack + our bookkeeping) per frame, ms, on the shared videos' detections and
  on a crowded frame (200 boxes), median;
- `detector video --track --no-video` frames/s against `YOLO(w).track(video, stream=True)` with the same
  weights (the bundled default, OpenVINO) and input shape, the best of 2 runs each;
- `detector live --simulate-live --no-show` with and without --track, taking turns 3 times, medians:
  frames/s (the file replayed faster than the model goes) and capture -> shown latency p50 (at its own rate);
- on TUD-Campus with `eval-video --realtime --track` (what a camera user sees, frames dropped): IDF1 and ID
  switches with time-aware tracking against the same tracker counting calls (`--track-by-calls`), and
  recall and the mean IoU of the matched boxes on screen with predicted boxes against `--no-predict-boxes`.
Each measurement in its own process.
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

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from bench_pipeline import SHARED_VIDEOS, clip_fps, in_process  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "data"
DEFAULT = REPO / "weights" / "yolo11n_int8_openvino_model"
TUD = SHARED / "tracking" / "TUD-Campus"
HERE = "bench_tracking"


def tracking_cost(video: str, frames: int = 150) -> dict:
    """Median ms of Tracking.update on the detections of a video's first frames, and on a crowded frame."""
    import cv2
    import torch

    from detector import Detector
    from detector.detections import Detections
    from detector.track.run import Tracking, TrackingOptions

    model = Detector(conf=Tracking.detector_conf(0.25))
    cap = cv2.VideoCapture(video)
    fps, wh = cap.get(cv2.CAP_PROP_FPS), (int(cap.get(3)), int(cap.get(4)))
    dets = []
    for _ in range(frames):
        ok, image = cap.read()
        if not ok:
            break
        dets.append(model([image])[0])
    tracking = Tracking(TrackingOptions(), fps, wh, 0.25)
    times = []
    for i, d in enumerate(dets):
        start = time.perf_counter()
        tracking.update(d, i)
        times.append(time.perf_counter() - start)
    # a crowded frame: 200 people on a grid, moving 2 px a frame
    grid = torch.stack(torch.meshgrid(torch.arange(20), torch.arange(10), indexing="ij"), -1).reshape(-1, 2)
    base = torch.cat([grid * torch.tensor([60, 60]), grid * torch.tensor([60, 60]) + 40], 1).float()  # [200, 4]
    crowd = Tracking(TrackingOptions(), 30.0, (1280, 720), 0.25)
    crowd_times = []
    for i in range(60):
        d = Detections(base + 2 * i, torch.full((200,), 0.8), torch.zeros(200, dtype=torch.int64), model.names)
        start = time.perf_counter()
        crowd.update(d, i)
        crowd_times.append(time.perf_counter() - start)
    return {"ms": float(np.median(times)) * 1e3, "crowd_ms": float(np.median(crowd_times[10:])) * 1e3}


def ours_track_video(video: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        jsonl = Path(tmp) / "o.jsonl"
        args = [sys.executable, "-m", "detector", "video", video, "--track", "--no-video", "--jsonl", str(jsonl)]
        out = subprocess.run([*args, "--quiet"], capture_output=True, text=True, check=True)
    line = next(x for x in out.stdout.splitlines() if x.startswith("frames:"))
    frames, seconds = line.split()[1], line.split()[3]  # "frames: N in S s (F frames/s)": as the command times it
    return {"frames": int(frames), "seconds": float(seconds)}


def ultralytics_track(video: str) -> dict:
    import cv2
    from ultralytics import YOLO

    from detector import Detector

    cap = cv2.VideoCapture(video)
    imgsz = list(Detector().preprocess([cap.read()[1]]).shape[1:3])  # the rect shape ours runs at
    model = YOLO(str(DEFAULT), task="detect")
    start, frames = None, 0
    for _ in model.track(video, stream=True, tracker="bytetrack.yaml", imgsz=imgsz, verbose=False):
        if start is None:  # from the first result, as for ours: set-up not counted
            start = time.perf_counter()
        else:
            frames += 1
    return {"frames": frames, "seconds": time.perf_counter() - start}


def live(video: str, seconds: float, speed: float, track: bool) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        jsonl = Path(tmp) / "o.jsonl"
        args = [sys.executable, "-m", "detector", "live", "--simulate-live", video, "--no-show", "--speed", str(speed)]
        args += ["--jsonl", str(jsonl), "--duration", str(seconds)] + ["--track"] * track
        subprocess.run(args, check=True, capture_output=True)
        lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    span = lines[-1]["t_capture"] - lines[0]["t_capture"]
    return {"fps": (len(lines) - 1) / span, "p50": float(np.median([x["latency_ms"] for x in lines]))}


def realtime_eval(*flags: str) -> dict:
    """eval-video --realtime --track on TUD-Campus: its tracking scores, recall at the operating point, and the
    mean IoU of the boxes on screen matched to ground truth."""
    from detector.evaluate import load_ground_truth
    from detector.evaluate.runs import read_jsonl
    from detector.metrics import box_iou

    with tempfile.TemporaryDirectory() as tmp:
        args = [sys.executable, "-m", "detector", "eval-video", str(TUD / "TUD-Campus.mp4"), "--gt"]
        args += [str(TUD / "gt" / "gt.txt"), "--out", tmp, "--realtime", "--track", "--quiet", *flags]
        subprocess.run(args, check=True, capture_output=True)
        report = json.loads((Path(tmp) / "report.json").read_text())
        gt = load_ground_truth(TUD / "gt" / "gt.txt", TUD / "TUD-Campus.mp4")
        ious = []
        for run in read_jsonl(Path(tmp) / "detections.jsonl"):
            shown = run.detections[(run.detections.confidence > 0.25) & (run.detections.class_id == 0)]
            truth = gt.xyxy[gt.frame == run.frame]
            if len(shown) and len(truth):
                best = box_iou(truth, shown.xyxy).amax(1)  # [M]: each person's best box on screen
                ious += best[best >= 0.5].tolist()
    return {**report["tracking"], "recall": report["recall"], "iou": float(np.mean(ious))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", nargs="+", default=[str(v) for v in sorted(SHARED_VIDEOS.glob("*.mp4"))])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--only", choices=["speed", "realtime"], help="one of the two tables")
    args = parser.parse_args()
    if args.only != "realtime":
        speed(args)
    if args.only != "speed":
        realtime()


def speed(args: argparse.Namespace) -> None:
    print(f"# tracking; {platform.machine()}, {os.cpu_count()} CPUs; bundled default model; ByteTrack")
    print(
        "| video | update ms / frame | crowded (200 boxes) ms | detector video --track fps | YOLO.track fps | ratio "
        "| live fps without / with --track | ratio | latency p50 ms without / with | difference |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for video in args.videos:
        cost = in_process("tracking_cost", video, module=HERE)
        ours = max(
            r["frames"] / r["seconds"] for r in (in_process("ours_track_video", video, module=HERE) for _ in range(2))
        )
        theirs = max(
            r["frames"] / r["seconds"] for r in (in_process("ultralytics_track", video, module=HERE) for _ in range(2))
        )
        bare = 1e3 / in_process("bare", str(DEFAULT), video, 640)["ms"]
        speed = max(1.0, round(1.25 * bare / clip_fps(video), 1))
        # without and with --track taking turns, 3 times: this machine's speed drifts by 10% between runs
        fast, paced = {False: [], True: []}, {False: [], True: []}
        for _ in range(3):
            for t in (False, True):
                fast[t].append(in_process("live", video, args.seconds, speed, t, module=HERE)["fps"])
                paced[t].append(in_process("live", video, args.seconds, 1.0, t, module=HERE)["p50"])
        fast = {t: float(np.median(v)) for t, v in fast.items()}
        paced = {t: float(np.median(v)) for t, v in paced.items()}
        print(
            f"| {Path(video).name} | {cost['ms']:.2f} | {cost['crowd_ms']:.2f} | {ours:.1f} | {theirs:.1f} | "
            f"{ours / theirs:.2f}x | {fast[False]:.1f} / {fast[True]:.1f} | {fast[True] / fast[False]:.2f}x | "
            f"{paced[False]:.1f} / {paced[True]:.1f} | {paced[True] - paced[False]:+.1f} ms |"
        )


def realtime() -> None:
    print("\n# TUD-Campus, eval-video --realtime --track (frames dropped as a camera's)")
    print("| run (mean of 3) | IDF1 | ID switches | MOTA | HOTA | recall on screen | mean IoU on screen |")
    print("|---|---|---|---|---|---|---|")
    runs = {
        "time-aware, predicted boxes (default)": (),
        "counting calls (--track-by-calls)": ("--track-by-calls",),
        "boxes where found (--no-predict-boxes)": ("--no-predict-boxes",),
    }
    results = {name: [] for name in runs}
    for _ in range(3):  # which frames the model sees differs from run to run: the three take turns, 3 times
        for name, flags in runs.items():
            results[name].append(in_process("realtime_eval", *flags, module=HERE))
    for name, rs in results.items():
        mean = {k: float(np.mean([r[k] for r in rs])) for k in ("IDF1", "ID_switches", "MOTA", "HOTA", "recall", "iou")}
        print(f"| {name} | {mean['IDF1']:.3f} | {mean['ID_switches']:.1f} | {mean['MOTA']:.3f} | {mean['HOTA']:.3f} | "
              f"{mean['recall']:.3f} | {mean['iou']:.3f} |")  # fmt: skip


if __name__ == "__main__":
    main()
