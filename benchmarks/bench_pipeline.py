"""Pipeline benchmarks: throughput of `detector video` and `detector live`, and the latency a person sees.

    python benchmarks/bench_pipeline.py throughput [--videos V ...] [--weights W ...] [--imgsz 320 640]
    python benchmarks/bench_pipeline.py latency [--video V] [--seconds 60]

throughput: frames/s of `detector video` (all frames, drawing, encoding, JSON lines), of `detector live
--simulate-live --no-show` (the file replayed 1.25x faster than the bare model goes, so that the model is
the bottleneck; frames it cannot take are dropped, as a camera's), of Ultralytics'
`YOLO(w).predict(video, stream=True)`, and of the bare forward pass in a loop, batch 1: the faster of our
backend on its own input and Ultralytics' AutoBackend on its predictor's tensor (same weights, backend and
imgsz); plus our default (bundled OpenVINO INT8) against Ultralytics' default (`.pt` in PyTorch). A static
export runs at its own size only; for 320 the recovered yolo11n.pt is also exported to OpenVINO (FP32) at 320.
Set-up is not counted on either side: ours times the run once the model is loaded and compiled (as
`detector video` reports it), Ultralytics' from its first result on (its predictor loads and compiles the
model inside predict()).

latency: the clip replayed at its own rate for N seconds: capture -> boxes written (`latency_ms`), from
`--simulate-live` and from the same clip served in real time by ffmpeg as MPEG-TS over TCP, read by us and
by Ultralytics' stream source (LoadStreams; a frame's capture is when its grab() returned). p50 against the
bare inference time, back to back and at the clip's own rate (one forward every frame interval, the CPU
idle in between, as in a live run), and p95 of the last 10 s against the first 10 s (no drift).

Each measurement runs in its own process: OpenVINO and ONNX Runtime threads keep spinning after a call
and would slow the next one down.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import detector  # noqa: F401  (quiet, offline Ultralytics before anything loads it)

REPO = Path(__file__).resolve().parent.parent
SHARED_VIDEOS = REPO.parent / "shared" / "data" / "videos"
BUNDLED = REPO / "weights" / "yolo11n_int8_openvino_model"
RECOVERED = REPO / "weights" / "yolo11n.pt"


# --- measurements, each run in a fresh process ---------------------------------------------------


def bare(weights: str, video: str, imgsz: int, frames: int = 100) -> dict:
    """Our backend's forward alone in a loop, batch 1, on its own input (letterboxed bytes for OpenVINO)."""
    import cv2

    from detector import Detector

    model = Detector(weights, imgsz=imgsz)
    x = model.preprocess([cv2.VideoCapture(video).read()[1]])
    return _loop(lambda: model.backend(x), frames)


def bare_ultralytics(weights: str, video: str, imgsz: int, frames: int = 100) -> dict:
    """Ultralytics' AutoBackend forward alone in a loop, batch 1, on the float tensor its predictor makes
    (its CPU thread setting, its OpenVINO configuration)."""
    import cv2
    from ultralytics import YOLO

    model = YOLO(weights, task="detect")
    model.predict(cv2.VideoCapture(video).read()[1], imgsz=imgsz, verbose=False)  # sets the predictor up
    predictor = model.predictor
    x = predictor.preprocess([cv2.VideoCapture(video).read()[1]])
    return _loop(lambda: predictor.model(x), frames)


def bare_at_rate(weights: str, video: str, imgsz: int, frames: int = 100) -> dict:
    """Our backend's forward alone, once per frame interval of the clip, idle in between (as live)."""
    import cv2

    from detector import Detector

    model = Detector(weights, imgsz=imgsz)
    cap = cv2.VideoCapture(video)
    x, interval = model.preprocess([cap.read()[1]]), 1 / cap.get(cv2.CAP_PROP_FPS)
    model.backend(x)
    times = []
    for _ in range(frames):
        time.sleep(interval)
        start = time.perf_counter()
        model.backend(x)
        times.append(time.perf_counter() - start)
    return {"ms": float(np.median(times)) * 1e3}


def _loop(forward, frames: int) -> dict:
    forward()  # warm-up
    start = time.perf_counter()
    for _ in range(frames):
        forward()
    seconds = time.perf_counter() - start
    return {"frames": frames, "seconds": seconds, "ms": seconds / frames * 1e3}


def ultralytics(weights: str, video: str, imgsz: int) -> dict:
    from ultralytics import YOLO

    model = YOLO(weights, task="detect")
    start, frames = None, 0
    for _ in model.predict(video, stream=True, imgsz=imgsz, verbose=False):
        if start is None:  # from the first result: its set-up (loading, compiling) not counted, as for ours
            start = time.perf_counter()
        else:
            frames += 1
    return {"frames": frames, "seconds": time.perf_counter() - start}


def ours_video(weights: str, video: str, imgsz: int, annotated: bool = True) -> dict:
    from detector import Detector
    from detector.video import run_video

    model = Detector(weights, imgsz=imgsz)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "o.mp4" if annotated else None  # None: JSON lines only (--no-video)
        summary = run_video(model, video, out, Path(tmp) / "o.jsonl", progress=False)
    return {"frames": summary.frames, "seconds": summary.seconds}


def ours_live(weights: str, video: str, imgsz: int, speed: float, seconds: float = 20.0) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        jsonl = Path(tmp) / "o.jsonl"
        cli([video, "--speed", str(speed), "--jsonl", str(jsonl), "--duration", str(seconds)], weights, imgsz)
        lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    span = lines[-1]["t_capture"] - lines[0]["t_capture"]
    return {"frames": len(lines) - 1, "seconds": span}


def cli(live_args: list[str], weights: str, imgsz: int | None, source_flag: str = "--simulate-live") -> None:
    args = [sys.executable, "-m", "detector", "live", source_flag, *live_args, "--no-show", "--weights", weights]
    subprocess.run(args + (["--imgsz", str(imgsz)] if imgsz else []), check=True, capture_output=True)


def ours_latency(weights: str, source: str, seconds: float, simulate: bool) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        jsonl = Path(tmp) / "o.jsonl"
        flag = "--simulate-live" if simulate else "--source"
        cli([source, "--jsonl", str(jsonl), "--duration", str(seconds)], weights, None, flag)
        lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    return {"t": [line["t_capture"] for line in lines], "ms": [line["latency_ms"] for line in lines]}


def ultralytics_latency(weights: str, url: str, seconds: float) -> dict:
    """Ultralytics' stream source (LoadStreams) measured like ours: from the moment a frame's grab()
    returned to the moment its Results come out of predict(stream=True)."""
    import cv2
    from ultralytics import YOLO

    grabbed: dict[int, float] = {}  # id(frame array) -> when its grab() returned

    class StampedCapture:  # a wrapper: OpenCV's classes do not survive Python subclasses here (crash at exit)
        def __init__(self, *args) -> None:
            self.cap = VideoCapture(*args)

        def __getattr__(self, name: str):
            return getattr(self.cap, name)

        def grab(self) -> bool:
            ok = self.cap.grab()
            self.t_grab = time.monotonic()
            return ok

        def retrieve(self, *args):
            ok, image = self.cap.retrieve(*args)
            if ok:
                grabbed[id(image)] = self.t_grab
            return ok, image

        def read(self, *args):
            return self.retrieve(*args) if self.grab() else (False, None)

    VideoCapture = cv2.VideoCapture
    cv2.VideoCapture = StampedCapture  # what LoadStreams opens the stream with
    t, ms = [], []
    start = time.monotonic()
    model = YOLO(weights, task="detect")
    for result in model.predict(url, stream=True, verbose=False):
        now = time.monotonic()
        t_capture = grabbed.pop(id(result.orig_img))  # KeyError: the frame was copied, the stamp lost
        t.append(t_capture)
        ms.append((now - t_capture) * 1e3)
        if now - start >= seconds:
            break
    model.predictor.dataset.close()  # stop its reader thread before the capture is collected
    return {"t": t, "ms": ms}


def in_process(name: str, *args, module: str = "bench_pipeline") -> dict:
    """``module.name(*args)`` run in a fresh process; its JSON result."""
    code = f"import json, sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import {module} as b; "
    code += f"print('RESULT ' + json.dumps(b.{name}(*{list(args)!r})))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "YOLO_OFFLINE": "1"})  # fmt: skip
    return json.loads(next(line for line in out.stdout.splitlines() if line.startswith("RESULT "))[7:])


# --- tables --------------------------------------------------------------------------------------


def throughput(args: argparse.Namespace) -> None:
    print(f"# throughput, frames/s; {platform.machine()}, {os.cpu_count()} CPUs")
    print(
        "| video | weights | imgsz | bare | ultralytics | detector video | detector video --no-video "
        "| detector live | video / bare, / ultralytics | --no-video / bare, / ultralytics "
        "| live / bare, / ultralytics | live replay speed |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        runs = [(w, s) for w in args.weights for s in args.imgsz if not static_size(w) or static_size(w) == s]
        if RECOVERED.exists() and 320 in args.imgsz:
            runs.append((in_process("export_openvino", str(RECOVERED), 320, tmp)["path"], 320))
        for video in args.videos:
            for weights, imgsz in runs:
                fps = {}
                for name in ("bare", "bare_ultralytics", "ultralytics", "ours_video"):
                    r = in_process(name, weights, video, imgsz)
                    fps[name] = r["frames"] / r["seconds"]
                r = in_process("ours_video", weights, video, imgsz, False)
                fps["ours_jsonl"] = r["frames"] / r["seconds"]
                fps["bare"] = max(fps["bare"], fps.pop("bare_ultralytics"))
                # replayed faster than the model goes, so that the model is the bottleneck
                speed = max(1.0, round(1.25 * fps["bare"] / clip_fps(video), 1))
                r = in_process("ours_live", weights, video, imgsz, speed)
                fps["ours_live"] = r["frames"] / r["seconds"]
                ratios = " | ".join(
                    f"{fps[k] / fps['bare']:.2f}x, {fps[k] / fps['ultralytics']:.2f}x"
                    for k in ("ours_video", "ours_jsonl", "ours_live")
                )
                print(f"| {Path(video).name} | {Path(weights).name} | {imgsz} | {fps['bare']:.1f} | "
                      f"{fps['ultralytics']:.1f} | {fps['ours_video']:.1f} | {fps['ours_jsonl']:.1f} | "
                      f"{fps['ours_live']:.1f} | {ratios} | {speed:g}x |")  # fmt: skip
    if args.default_vs_default and RECOVERED.exists():
        video = args.videos[0]
        ours = in_process("ours_video", str(BUNDLED), video, 640)
        theirs = in_process("ultralytics", str(RECOVERED), video, 640)
        a, b = ours["frames"] / ours["seconds"], theirs["frames"] / theirs["seconds"]
        print(
            f"\ndefault vs default on {Path(video).name}, 640: detector video with the bundled OpenVINO INT8 "
            f"{a:.1f} frames/s; Ultralytics with yolo11n.pt in PyTorch {b:.1f} frames/s: {a / b:.2f}x"
        )


def clip_fps(video: str) -> float:
    import cv2

    return cv2.VideoCapture(video).get(cv2.CAP_PROP_FPS)


def static_size(weights: str) -> int | None:
    """The input size of a static OpenVINO export, from its metadata; None for dynamic models."""
    meta = Path(weights) / "metadata.yaml"
    if not meta.exists():
        return None
    import yaml

    data = yaml.safe_load(meta.read_text())
    return None if data.get("dynamic") else int(data["imgsz"][0])


def export_openvino(weights: str, imgsz: int, folder: str) -> dict:
    from ultralytics import YOLO

    copy = Path(folder) / Path(weights).name  # Ultralytics writes the export beside the weights
    shutil.copy(weights, copy)
    return {"path": str(Path(YOLO(str(copy)).export(format="openvino", imgsz=imgsz)).resolve())}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(video: str) -> tuple[subprocess.Popen, str]:
    """The clip served by ffmpeg in real time as MPEG-TS over TCP on 127.0.0.1 (one client)."""
    url = f"tcp://127.0.0.1:{free_port()}"
    server = subprocess.Popen(
        ["ffmpeg", "-v", "error", "-re", "-stream_loop", "-1", "-i", video, "-c", "copy", "-f", "mpegts",
         f"{url}?listen=1"], stdin=subprocess.DEVNULL,
    )  # fmt: skip
    time.sleep(1)
    return server, url


def latency(args: argparse.Namespace) -> None:
    weights = str(BUNDLED)
    bare_ms = min(in_process(f, weights, args.video, 640)["ms"] for f in ("bare", "bare_ultralytics"))
    paced_ms = in_process("bare_at_rate", weights, args.video, 640)["ms"]
    runs = {"ours, --simulate-live": in_process("ours_latency", weights, args.video, args.seconds, True)}
    if shutil.which("ffmpeg"):
        for name, measure, extra in (
            ("ours, TCP stream", "ours_latency", (False,)),
            ("Ultralytics, TCP stream", "ultralytics_latency", ()),
        ):
            server, url = serve(args.video)
            try:
                runs[name] = in_process(measure, weights, url, args.seconds, *extra)
            finally:
                server.kill()
    print(
        f"# capture -> boxes latency, {args.seconds:.0f} s of {Path(args.video).name} at its own rate; bundled "
        f"OpenVINO INT8 at 640; bare inference {bare_ms:.1f} ms back to back, {paced_ms:.1f} ms at the clip's rate"
    )
    print(
        "| run | results | p50 ms | p50 / bare back to back | p50 / bare at the clip's rate | p95 first 10 s "
        "| p95 last 10 s | last / first |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, r in runs.items():
        t, ms = np.array(r["t"]), np.array(r["ms"])
        first, last = ms[t <= t[0] + 10], ms[t >= t[-1] - 10]
        p50, p95a, p95b = np.percentile(ms, 50), np.percentile(first, 95), np.percentile(last, 95)
        print(f"| {name} | {len(ms)} | {p50:.1f} | {p50 / bare_ms:.2f}x | {p50 / paced_ms:.2f}x | {p95a:.1f} | "
              f"{p95b:.1f} | {p95b / p95a:.2f}x |")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("throughput")
    p.add_argument("--videos", nargs="+", default=[str(v) for v in sorted(SHARED_VIDEOS.glob("*.mp4"))])
    p.add_argument("--weights", nargs="+", default=[str(BUNDLED), str(RECOVERED)])
    p.add_argument("--imgsz", type=int, nargs="+", default=[320, 640])
    p.add_argument("--no-default-vs-default", dest="default_vs_default", action="store_false")
    p.set_defaults(run=throughput)
    p = sub.add_parser("latency")
    p.add_argument("--video", default=str(SHARED_VIDEOS / "one-by-one-person-detection.mp4"))
    p.add_argument("--seconds", type=float, default=60)
    p.set_defaults(run=latency)
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
