"""Stage costs behind the pipeline's choices, each against what Ultralytics does in its place.

    python benchmarks/bench_stages.py [--repeat 100]

- preprocessing a frame of the shared video to 640x640: Ultralytics' predictor (LetterBox, BGR->RGB,
  float /255) against our letterbox to bytes (what OpenVINO takes) and our float path (PyTorch);
- yolo11n.pt forward at 320 (192x320 input) per frame: Ultralytics' thread setting (cpu_count - 1) one
  frame at a time, against every core and batches of 4 (what `detector video` does);
- OpenVINO FP32 at 320 (yolo11n.pt exported by Ultralytics) per frame: Ultralytics' AutoBackend one frame
  at a time (LATENCY), against our throughput mode with requests of 1 and of 4 frames in flight;
- one full garbage collection with the libraries loaded (what `gc.freeze` keeps out of live runs);
- `detector video` with the bundled INT8 model at 640, per frame: the forward (bare, one at a time; and in
  throughput mode) and the work besides it (decode, letterbox, postprocess, draw, encode, JSON), with the
  frame rate those costs allow on these cores against the bare forward's.
"""

from __future__ import annotations

import argparse
import gc
import json
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
from detector.render import draw_detections
from detector.sinks import VideoSink

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
            ours = Detector(ir).backend
            if batch == 1:  # what prepare_stream picked before batches: one frame a request
                ours._throughput = {(320, 320): ours._compile_openvino((320, 320), "THROUGHPUT")}
            assert ours.prepare_stream((320, 320)) == batch
            t = throughput_ms(ours, letterbox([frame] * batch, (320, 320)), repeat // batch)
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

    print()
    outside_the_model(repeat)


def throughput_ms(backend, x, items: int) -> float:
    """Per frame, ``x`` streamed through the backend's throughput mode (as `detector video` does)."""
    items = [(x, None)] * items
    for _ in backend.stream(items[:4]):  # warm-up
        pass
    start = time.perf_counter()
    for _ in backend.stream(items):
        pass
    return (time.perf_counter() - start) / (len(items) * len(x)) * 1e3


def outside_the_model(repeat: int) -> None:
    """What `detector video` does per frame besides the model, on the cores the model also needs."""
    cores = len(os.sched_getaffinity(0))
    model = Detector()  # the bundled INT8 IR, 640x640
    cap = cv2.VideoCapture(str(VIDEO))
    cap.set(cv2.CAP_PROP_POS_FRAMES, 100)  # cars in view
    frame = cap.read()[1]
    x = model.preprocess([frame])  # [1, 640, 640, 3]
    raw = model.backend(x)
    dets = model.postprocess(raw, x.shape[1:3], [frame])[0]
    bare = ms(lambda: model.backend(x), repeat)
    model.backend.prepare_stream(x.shape[1:3])
    streamed = throughput_ms(model.backend, x, repeat)
    with tempfile.TemporaryDirectory() as folder:
        sink = VideoSink(Path(folder) / "o.mp4", 25, (frame.shape[1], frame.shape[0]))
        work = {
            "decode (cv2.VideoCapture.read)": ms(lambda: cap.read(), repeat),
            "letterbox to bytes": ms(lambda: model.preprocess([frame]), repeat),
            "postprocess": ms(lambda: model.postprocess(raw, x.shape[1:3], [frame]), repeat),
            "JSON line": ms(lambda: json.dumps(dets.to_dict()), repeat),
            "draw": ms(lambda: draw_detections(frame.copy(), dets), repeat),
            f"encode ({sink.codec})": ms(lambda: sink.write(frame), repeat),
        }
        sink.close()
    print(f"# detector video, bundled INT8 at 640, per frame; {cores} cores, a frame with {len(dets)} box(es)")
    print("| per frame | ms |")
    print("|---|---|")
    print(f"| forward, bare: one at a time on every core | {bare:.2f} |")
    print(f"| forward, throughput mode: {cores} streams (wall time per frame) | {streamed:.2f} |")
    for name, t in work.items():
        print(f"| {name}, one core | {t:.2f} |")
    with_video = sum(work.values())
    no_video = with_video - work["draw"] - work[f"encode ({sink.codec})"]
    for name, besides in (("detector video", with_video), ("detector video --no-video", no_video)):
        # the model keeps every core busy: the other work's CPU time adds to the wall time, shared by the cores
        best = streamed + besides / cores
        print(f"| {name}: at best {streamed:.2f} + {besides:.2f} / {cores} = {best:.2f} ms, "
              f"{bare / best:.2f}x the bare forward's rate |")  # fmt: skip


if __name__ == "__main__":
    main()
