"""The default model against the one it replaced: speed on the 16:9 shared videos, accuracy on coco128 and
TUD-Campus, and against Ultralytics' default.

    python benchmarks/bench_default_model.py [--seconds 20] [--only speed|accuracy]

new: weights/yolo11n_int8_openvino_model (dynamic INT8 IR, compiled at each source's rect shape: 384x640 for
the 768x432 videos); old: the static 640x640 INT8 IR it replaced (../shared/data/weights). Per video:
- `detector video` frames/s (every frame drawn, encoded and written as JSON lines), the best of 2 runs;
- `detector live --simulate-live --no-show` frames/s with the file replayed 1.25x faster than the new model
  goes bare, for both models (the model is the bottleneck), and its capture -> shown latency p50 with the
  file at its own rate;
- Ultralytics' default: `YOLO("yolo11n.pt").predict(video, stream=True)` in PyTorch at 640 (the recovered
  checkpoint, timed from its first result, the best of 2 runs) against `detector video` with the new default,
  and against `detector video --no-video` (JSON lines only: the same work as Ultralytics' stream predict).
Accuracy: coco128 mAP50 / mAP50-95 by Ultralytics' val (batch 1, imgsz 640) and by ours
(detector/evaluate/dataset.py), TUD-Campus mAP50 by `eval-video`. Each speed measurement in its own process.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from bench_pipeline import RECOVERED, SHARED_VIDEOS, clip_fps, in_process  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "data"
NEW = REPO / "weights" / "yolo11n_int8_openvino_model"
OLD = SHARED / "weights" / "yolo11n_int8_openvino_model"


def best_fps(runs: int, name: str, *args) -> float:
    """Frames/s of the best of a few runs: another job on the machine can only slow one down."""
    return max(r["frames"] / r["seconds"] for r in (in_process(name, *args) for _ in range(runs)))


def rect_shape(video: str) -> str:
    """The input the new default runs ``video`` at: its frame letterboxed to the smallest stride-32 rectangle."""
    import cv2

    from detector.preprocess import letterbox_shape

    cap = cv2.VideoCapture(video)
    frame_hw = (int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)), int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)))
    (w, h), (top, bottom, left, right) = letterbox_shape(frame_hw, (640, 640), 32, auto=True)
    return f"{h + top + bottom}x{w + left + right}"


def speed(videos: list[str], seconds: float) -> None:
    print(f"# default model speed; {platform.machine()}, {os.cpu_count()} CPUs; new: dynamic INT8 at the rect shape, "
          "old: static INT8 640x640")  # fmt: skip
    print(
        "| video | input new / old | detector video fps new / old | ratio | detector live fps new / old | ratio "
        "| live latency p50 ms new / old | ratio | Ultralytics default (yolo11n.pt, PyTorch) fps | new / it "
        "| new --no-video / it |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for video in videos:
        # replayed 1.25x faster than the new model goes bare, for both: the model is the bottleneck, and both
        # pay the same for decoding
        replay = max(1.0, round(1.25 * 1e3 / in_process("bare", str(NEW), video, 640)["ms"] / clip_fps(video), 1))
        fps, live, p50 = {}, {}, {}
        for name, weights in (("new", NEW), ("old", OLD)):
            fps[name] = best_fps(2, "ours_video", str(weights), video, 640)
            r = in_process("ours_live", str(weights), video, None, replay, seconds)
            live[name] = r["frames"] / r["seconds"]
            p50[name] = float(np.median(in_process("ours_latency", str(weights), video, seconds, True)["ms"]))
        theirs = best_fps(2, "ultralytics", str(RECOVERED), video, 640)
        jsonl_only = best_fps(2, "ours_video", str(NEW), video, 640, False)  # the work Ultralytics' predict does
        cells = [f"{d['new']:.1f} / {d['old']:.1f} | {d['new'] / d['old']:.2f}x" for d in (fps, live, p50)]
        cells.append(f"{theirs:.1f} | {fps['new'] / theirs:.2f}x | {jsonl_only / theirs:.2f}x")
        print(f"| {Path(video).name} | {rect_shape(video)} / 640x640 | {' | '.join(cells)} |")


def accuracy_of(weights: Path, tmp: Path) -> dict[str, float]:
    """coco128 mAP50 / mAP50-95 by Ultralytics' val at 640x640 for both models (the weights alone: same input)
    and as it runs each by default (rect batches padded by half a stride for dynamic models, on CPUs other
    than Intel AMX ones), by ours (the app's path: each image at its own letterboxed shape), and TUD-Campus
    mAP50 by eval-video. tests/test_default_model.py holds the new default to the old one with this."""
    from ultralytics import YOLO

    from detector import Detector
    from detector.evaluate.dataset import score_dataset, writable_view
    from detector.evaluate.ground_truth import load_ground_truth
    from detector.evaluate.run import evaluate_video

    data = writable_view(SHARED / "coco128" / "data.yaml", tmp / "coco128")
    scores = {}
    for name, rect in (("square", False), ("default", None)):
        settings = {"rect": rect} if rect is not None else {}
        val = YOLO(str(weights), task="detect").val(
            data=str(data), imgsz=640, batch=1, plots=False, verbose=False, project=str(tmp), **settings
        )
        scores[f"ultralytics_{name}"] = (float(val.box.map50), float(val.box.map))
    ours = score_dataset(Detector(weights, conf=0.001, iou=0.7), data)
    scores["ours"] = (ours.map50, ours.map50_95)
    tud = SHARED / "tracking" / "TUD-Campus"
    gt = load_ground_truth(tud / "gt" / "gt.txt", tud / "TUD-Campus.mp4")
    scored = Detector(weights, conf=0.001, iou=0.7)  # eval-video's settings, as Ultralytics' val
    tud_eval, _ = evaluate_video(scored, tud / "TUD-Campus.mp4", gt, None, tmp / "tud", progress=False)
    scores["tud_map50"] = tud_eval.report()["mAP50"]
    return scores


def accuracy() -> None:
    print("\n# default model accuracy: mAP50 / mAP50-95 on coco128, mAP50 on TUD-Campus")
    print(
        "| model | Ultralytics' val at 640x640 | Ultralytics' val as it runs the model by default | ours (the app's "
        "path) | TUD-Campus (eval-video) |"
    )
    print("|---|---|---|---|---|")
    for name, weights in (("new (dynamic INT8, rect)", NEW), ("old (static INT8, 640x640)", OLD)):
        with tempfile.TemporaryDirectory() as tmp:
            a = accuracy_of(weights, Path(tmp))
        cells = [f"{a[k][0]:.4f} / {a[k][1]:.4f}" for k in ("ultralytics_square", "ultralytics_default", "ours")]
        print(f"| {name} | {' | '.join(cells)} | {a['tud_map50']:.4f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", nargs="+", default=[str(v) for v in sorted(SHARED_VIDEOS.glob("*.mp4"))])
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each live run")
    parser.add_argument("--only", choices=["speed", "accuracy"], help="one of the two tables")
    args = parser.parse_args()
    if not OLD.exists():
        sys.exit(f"error: the old IR is not at {OLD}: this benchmark needs ../shared/data")
    if args.only in (None, "speed"):
        speed(args.videos, args.seconds)
    if args.only in (None, "accuracy"):
        accuracy()


if __name__ == "__main__":
    main()
