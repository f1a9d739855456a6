from __future__ import annotations

import numpy as np
import torch

from detector import Detections
from detector.render import class_color, draw_detections, text_color


def test_box_in_class_colour_where_the_detection_is():
    frame = np.full((480, 640, 3), 40, np.uint8)
    dets = Detections.from_rows(torch.tensor([[100.0, 120.0, 300.0, 400.0, 0.87, 2.0]]), {2: "car"})
    draw_detections(frame, dets)
    color = np.array(class_color(2))
    assert (frame[250, 100] == color).all()  # left edge, mid-height
    assert (frame[400, 200] == color).all()  # bottom edge
    assert (frame[250, 200] == 40).all()  # inside stays untouched
    assert (frame[20, 500] == 40).all()  # far away too
    label = frame[100:118, 102:160]  # just above the box's top-left corner
    assert (label == color).all(-1).mean() > 0.3  # the filled label sits above the box
    assert (label != color).any(-1).any()  # with its text in it


def test_colours_are_stable_and_labels_readable():
    assert class_color(3) == class_color(23)  # palette of 20
    assert class_color(0) != class_color(1)
    assert text_color((255, 255, 255)) == (0, 0, 0) and text_color((0, 0, 0)) == (255, 255, 255)


def test_label_stays_inside_at_the_top_edge():
    frame = np.zeros((200, 200, 3), np.uint8)
    dets = Detections.from_rows(torch.tensor([[10.0, 0.0, 150.0, 100.0, 0.5, 0.0]]), {0: "person"})
    draw_detections(frame, dets)
    assert (frame[5:15, 20:60] == class_color(0)).all(-1).any()
