"""`detector video`'s pipeline (decode ahead, batches, OpenVINO requests in flight, writer thread) gives
what the Detector gives frame by frame."""

from __future__ import annotations

import json
import os
import threading
import time

import cv2
import pytest
import torch
from conftest import REPO, app_threads
from test_cli import ZIDANE, make_video, read_video

from detector import Detector
from detector.backends import Backend
from detector.pipeline import DEFAULT_WEIGHTS
from detector.sinks import InThread
from detector.sources import LiveSource, VideoFile
from detector.video import run_video


@pytest.fixture(scope="module")
def fp32_openvino_320(tmp_path_factory) -> str:
    """yolo11n.pt exported by Ultralytics to OpenVINO FP32 at 320 x 320: an IR that takes batches of 4."""
    from ultralytics import YOLO

    folder = tmp_path_factory.mktemp("fp32")
    weights = folder / "yolo11n.pt"
    weights.write_bytes((REPO / "weights" / "yolo11n.pt").read_bytes())
    return YOLO(str(weights)).export(format="openvino", imgsz=320)


@pytest.mark.parametrize(
    "weights, imgsz, batch",
    [
        (str(DEFAULT_WEIGHTS), None, 1),  # square 640, two OpenVINO requests in flight
        ("fp32_openvino_320", None, 4),  # OpenVINO requests of 4 frames in flight
        (str(REPO / "weights" / "yolo11n.pt"), 320, 4),  # rectangular 256x320 input, batches of 4
    ],
)
def test_video_equals_the_detector_frame_by_frame(weights, imgsz, batch, tmp_path, request):
    if weights == "fp32_openvino_320":
        weights = request.getfixturevalue(weights)
    clip = make_video(tmp_path / "clip.mp4", frames=4 * 3 + 2, source=ZIDANE)  # a last, shorter batch
    model = Detector(weights, imgsz=imgsz)
    assert model.backend.prepare_stream(model.preprocess([cv2.imread(ZIDANE)[:360, :480]]).shape[1:3]) == batch
    summary = run_video(model, clip, tmp_path / "out.mp4", tmp_path / "d.jsonl", progress=False)
    lines = [json.loads(line) for line in (tmp_path / "d.jsonl").read_text().splitlines()]
    assert summary.frames == len(lines) == 14

    cap = cv2.VideoCapture(str(clip))
    boxes = 0
    for line in lines:
        expected = model([cap.read()[1]])[0]
        got = torch.tensor([d["xyxy"] for d in line["detections"]]).reshape(-1, 4)
        assert len(got) == len(expected), f"frame {line['frame']}"
        assert torch.allclose(got, expected.xyxy, atol=0.01), f"frame {line['frame']}: boxes moved"
        assert [d["class_name"] for d in line["detections"]] == expected.class_name
        boxes += len(got)
    assert boxes >= 14, "too few boxes to compare"


def test_openvino_irs_that_cannot_take_batches_get_one_frame_a_request(fp32_openvino_320, monkeypatch):
    """Some IRs hold constant shapes (the bundled INT8 one cannot even be reshaped): those stay at one."""
    model = Detector(fp32_openvino_320)
    compile_openvino = Backend._compile_openvino

    def only_single_frames(self, imgsz, hint, takes_bytes=True, batch=1):
        if batch != 1:
            raise RuntimeError("Check 'backward_compatible_check' failed: incompatible shape")
        return compile_openvino(self, imgsz, hint, takes_bytes, batch)

    monkeypatch.setattr(Backend, "_compile_openvino", only_single_frames)
    assert model.backend.prepare_stream((320, 320)) == 1
    frames = [cv2.imread(ZIDANE), cv2.imread(ZIDANE)[:, ::-1]]
    got = [raw for raw, _ in model.backend.stream((model.preprocess([f]), None) for f in frames)]
    assert all(torch.allclose(raw, model.backend(model.preprocess([f])), atol=1e-2) for raw, f in zip(got, frames))


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="SCHED_IDLE is Linux's")
def test_helper_threads_run_in_idle_time_and_the_model_thread_does_not(tmp_path):
    """Decoding, letterboxing and writing take only CPU time the model leaves: on 2 cores, each time one of
    them took a core from a multi-threaded model, the model's other thread waited for it at a barrier."""
    clip = make_video(tmp_path / "clip.mp4", frames=30)
    source, live = VideoFile(clip), LiveSource(str(clip)).start()  # a file; a file replayed as a camera
    writer = InThread(lambda item: None, name="write")
    try:
        time.sleep(0.2)
        policies = {t.name: os.sched_getscheduler(t.native_id) for t in threading.enumerate() if t.is_alive()}
        assert policies["decode"] == policies["capture"] == policies["write"] == os.SCHED_IDLE
        assert os.sched_getscheduler(0) == os.SCHED_OTHER  # the caller, who runs the model
    finally:
        writer.close()
        source.close()
        live.stop()


def test_an_interrupted_run_stops_every_thread_and_keeps_its_outputs(tmp_path, monkeypatch):
    """Ctrl-C in the middle: no OpenVINO request in flight, no decoding or letterboxing thread left (one was:
    blocked for ever on a file whose decoder had been stopped), and both outputs complete to the last frame."""
    clip = make_video(tmp_path / "clip.mp4", frames=40)
    model = Detector(str(DEFAULT_WEIGHTS))
    postprocess, calls = model.postprocess, []

    def interrupted_at_the_fourth(*args, **kwargs):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return postprocess(*args, **kwargs)

    monkeypatch.setattr(model, "postprocess", interrupted_at_the_fourth)
    summary = run_video(model, clip, tmp_path / "out.mp4", tmp_path / "d.jsonl", progress=False)
    assert summary.interrupted and summary.frames == 3
    assert not app_threads(), "threads still running after run_video returned"
    assert len((tmp_path / "d.jsonl").read_text().splitlines()) == 3
    assert read_video(tmp_path / "out.mp4")[0] == 3


def test_every_openvino_model_is_loaded_by_the_one_core(fp32_openvino_320, monkeypatch):
    """Ultralytics' backend makes a new ov.Core per model; many Cores in one process is how its own CI died
    (a segmentation fault inside forward() after about 20 loads). Ours all come from one."""
    import openvino as ov

    from detector.backends import openvino_core

    make_core = type(openvino_core())
    monkeypatch.setattr(ov, "Core", make_core)  # as outside the tests (conftest gives them one Core throughout)
    for weights in (str(DEFAULT_WEIGHTS), fp32_openvino_320):
        loaded_by = Detector(weights).backend.model.backend.compile_model.func.__self__  # Ultralytics' Core
        assert loaded_by is openvino_core()
    assert ov.Core is make_core  # only while loading
