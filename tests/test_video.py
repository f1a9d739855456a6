"""`detector video`'s pipeline (decode ahead, batches, OpenVINO requests in flight, writer thread) gives
what the Detector gives frame by frame."""

from __future__ import annotations

import json

import cv2
import pytest
import torch
from conftest import REPO
from test_cli import ZIDANE, make_video

from detector import Detector
from detector.pipeline import DEFAULT_WEIGHTS
from detector.video import run_video


@pytest.mark.parametrize(
    "weights, imgsz, batch",
    [
        (str(DEFAULT_WEIGHTS), None, 1),  # square 640, two OpenVINO requests in flight
        (str(REPO / "weights" / "yolo11n.pt"), 320, 4),  # rectangular 256x320 input, batches of 4
    ],
)
def test_video_equals_the_detector_frame_by_frame(weights, imgsz, batch, tmp_path):
    clip = make_video(tmp_path / "clip.mp4", frames=4 * 3 + 2, source=ZIDANE)  # a last, shorter batch
    model = Detector(weights, imgsz=imgsz)
    assert model.backend.batch_for_files(model.preprocess([cv2.imread(ZIDANE)[:360, :480]]).shape[1:3]) == batch
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
