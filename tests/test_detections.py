from __future__ import annotations

import json

import torch

from detector import Detections

NAMES = {0: "person", 1: "car", 2: "dog"}


def sample() -> Detections:
    rows = torch.tensor([[0, 0, 10, 10, 0.9, 0], [5, 5, 20, 30, 0.4, 1], [1, 2, 3, 4, 0.7, 2]])
    return Detections.from_rows(rows, NAMES)


def test_boolean_mask_filters_every_field():
    dets = sample()
    sure = dets[dets.confidence > 0.5]
    assert len(sure) == 2
    assert sure.class_id.tolist() == [0, 2]
    assert sure.class_name == ["person", "dog"]
    assert sure.xyxy.shape == (2, 4) and sure.names is NAMES


def test_int_and_slice_index():
    dets = sample()
    assert dets[1].class_name == ["car"]
    assert dets[-1].class_name == ["dog"]
    assert len(dets[:2]) == 2


def test_types_and_to_dict_is_json():
    dets = sample()
    assert dets.xyxy.dtype == torch.float32 and dets.confidence.dtype == torch.float32
    assert dets.class_id.dtype == torch.int64
    record = json.loads(json.dumps(dets.to_dict()))
    first = record["detections"][0]
    assert first == {"xyxy": [0.0, 0.0, 10.0, 10.0], "confidence": 0.9, "class_id": 0, "class_name": "person"}


def test_empty():
    dets = Detections.empty(NAMES)
    assert len(dets) == 0 and dets.to_dict() == {"detections": []}
    assert len(dets[dets.confidence > 0.5]) == 0
