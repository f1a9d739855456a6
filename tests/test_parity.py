"""End-to-end parity: our Detector against Ultralytics' YOLO(...).predict(...) on real images and video frames.

Same weights, same settings: the same number of boxes, the same classes, boxes within 0.5 px, scores
within 1e-4. Random-init models are first woken up (class biases shifted) so that they give dozens of
boxes: a comparison over zero boxes proves nothing.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import VIDEOS, needs_shared, random_video_frames, wake_random_model
from ultralytics import YOLO

from detector import Detector
from detector.pipeline import DEFAULT_WEIGHTS


def assert_same(ours, theirs, what: str, min_boxes: int = 1) -> None:
    boxes = theirs.boxes
    assert len(ours) == len(boxes), f"{what}: {len(ours)} boxes vs Ultralytics' {len(boxes)}"
    assert len(boxes) >= min_boxes, f"{what}: only {len(boxes)} boxes, too few to compare"
    if len(boxes) == 0:
        return
    assert torch.equal(ours.class_id, boxes.cls.long().cpu()), f"{what}: classes differ"
    assert (ours.xyxy - boxes.xyxy.cpu()).abs().max() <= 0.5, f"{what}: boxes differ by more than 0.5 px"
    assert (ours.confidence - boxes.conf.cpu()).abs().max() <= 1e-4, f"{what}: scores differ by more than 1e-4"


def compare(model_or_weights, yolo: YOLO, images: list[np.ndarray], min_boxes: int, **settings) -> None:
    end2end = settings.pop("end2end", None)
    ours = Detector(model_or_weights, end2end=end2end, **settings)
    predict = dict(settings, verbose=False)
    if end2end:
        predict["nms"] = False  # Ultralytics' switch for the NMS-free head
    for i, image in enumerate(images):
        theirs = yolo.predict(image, **{**same_input(ours, image), **predict})[0]  # an imgsz asked for wins
        assert_same(ours([image])[0], theirs, f"image {i}", min_boxes)


def same_input(ours: Detector, image: np.ndarray) -> dict:
    """Dynamic models run at each image's rect shape: name it, so that Ultralytics letterboxes to it whatever
    its backend decides (on Intel AMX CPUs it runs dynamic INT8 IRs as fixed-shape models, openvino#37577)."""
    return {} if ours.backend.fixed_imgsz else {"imgsz": list(ours.preprocess([image]).shape[1:3])}


@pytest.fixture(scope="module")
def real_images(bus, zidane):
    frames = random_video_frames(1, np.random.default_rng()) if VIDEOS else []
    return [bus, zidane, *frames]


def test_bundled_openvino_model(real_images):
    yolo = YOLO(str(DEFAULT_WEIGHTS), task="detect")
    compare(str(DEFAULT_WEIGHTS), yolo, real_images[:2], min_boxes=3)  # bus: 5 boxes, zidane: 3
    compare(str(DEFAULT_WEIGHTS), yolo, real_images[2:], min_boxes=0)  # whatever the frames hold


def test_bundled_openvino_model_filters(bus):
    yolo = YOLO(str(DEFAULT_WEIGHTS), task="detect")
    compare(str(DEFAULT_WEIGHTS), yolo, [bus], min_boxes=4, conf=0.1, iou=0.5, classes=[0], max_det=4)


@needs_shared
def test_bundled_openvino_model_on_video_frames():
    """The shared videos are 16:9: the default model runs them at 384x640, Ultralytics too."""
    yolo = YOLO(str(DEFAULT_WEIGHTS), task="detect")
    frames = random_video_frames(4, np.random.default_rng())
    ours = Detector(str(DEFAULT_WEIGHTS), conf=0.05)
    assert ours.preprocess(frames[:1]).shape[1:3] == (384, 640)
    total = 0
    for i, frame in enumerate(frames):
        theirs = yolo.predict(frame, conf=0.05, verbose=False, **same_input(ours, frame))[0]
        assert_same(ours([frame])[0], theirs, f"video frame {i}", min_boxes=0)
        total += len(theirs.boxes)
    assert total >= 4, "the video frames gave almost no boxes: nothing was compared"


@pytest.mark.parametrize(
    "cfg,end2end",
    [("yolo11n.yaml", None), ("yolov8n.yaml", None), ("yolo26n.yaml", True), ("yolo26n.yaml", None)],
    ids=["yolo11n", "yolov8n", "yolo26n-end2end", "yolo26n-nms"],
)
def test_random_init_models(cfg, end2end, real_images):
    yolo = YOLO(cfg)
    wake_random_model(yolo.model, real_images[0], conf=0.25, candidates=60)
    compare(yolo.model, yolo, real_images, min_boxes=10, end2end=end2end)


@pytest.mark.parametrize(
    "cfg,end2end", [("yolo11n.yaml", False), ("yolo26n.yaml", True)], ids=["yolo11n", "yolo26n-e2e"]
)
def test_onnx_export(cfg, end2end, real_images, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    yolo = YOLO(cfg)
    wake_random_model(yolo.model, real_images[0], conf=0.25, candidates=60)
    onnx = yolo.export(format="onnx", imgsz=640, simplify=False, nms=False if end2end else None)
    compare(onnx, YOLO(onnx, task="detect"), real_images[:2], min_boxes=10)


@pytest.mark.parametrize("conf", [0.25, 0.001])
def test_postprocess_on_real_raw_output(conf, real_images):
    """The bundled model's raw output on real frames, dense and sparse: rows identical to Ultralytics' NMS."""
    from ultralytics.utils.nms import non_max_suppression

    from detector.postprocess import nms_head

    detector = Detector(str(DEFAULT_WEIGHTS))
    compared = 0
    for i, image in enumerate(real_images):
        raw = detector.backend(detector.preprocess([image]))
        ours = nms_head(raw, conf, 0.7)[0]
        theirs = non_max_suppression(raw.clone(), conf, 0.7, max_det=300, max_time_img=1e9)[0]  # no wall-clock cut-off
        assert torch.equal(ours, theirs), f"image {i}"
        compared += len(theirs)
    assert compared >= 5
