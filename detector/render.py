"""Draw detections on a frame: a box and a ``name score`` label per detection, one colour per class (per
object, with ``#id``, while tracking)."""

from __future__ import annotations

import cv2
import numpy as np

from detector.detections import Detections

# 20 well-separated colours (BGR); class k always gets PALETTE[k % 20]
PALETTE = np.array(
    [
        (56, 56, 255),
        (151, 157, 255),
        (31, 112, 255),
        (29, 178, 255),
        (49, 210, 207),
        (10, 249, 72),
        (23, 204, 146),
        (134, 219, 61),
        (52, 147, 26),
        (187, 212, 0),
        (168, 153, 44),
        (255, 194, 0),
        (147, 69, 52),
        (255, 115, 100),
        (236, 24, 0),
        (255, 56, 132),
        (133, 0, 82),
        (255, 56, 203),
        (200, 149, 255),
        (199, 55, 255),
    ],
    dtype=np.uint8,
)
FONT = cv2.FONT_HERSHEY_SIMPLEX  # built into OpenCV: nothing to download


def class_color(class_id: int) -> tuple[int, int, int]:
    return tuple(int(c) for c in PALETTE[class_id % len(PALETTE)])


def text_color(bgr: tuple[int, int, int]) -> tuple[int, int, int]:
    """Black on light label backgrounds, white on dark ones."""
    luma = 0.114 * bgr[0] + 0.587 * bgr[1] + 0.299 * bgr[2]
    return (0, 0, 0) if luma > 140 else (255, 255, 255)


def draw_detections(frame: np.ndarray, dets: Detections, labels: bool = True) -> np.ndarray:
    """Draws on ``frame`` in place and returns it. Tracked boxes get their track's colour and ``#id``."""
    h, w = frame.shape[:2]
    thickness = max(2, round((h + w) / 600))
    scale = max(0.4, thickness / 4)
    boxes = dets.xyxy.round().int().tolist()
    scores, class_ids = dets.confidence.tolist(), dets.class_id.tolist()
    tracks = dets.track_id.tolist() if dets.track_id is not None else [-1] * len(dets)
    for (x1, y1, x2, y2), score, k, name, track in zip(boxes, scores, class_ids, dets.class_name, tracks):
        color = class_color(track if track >= 0 else k)  # one colour per object while tracking
        # a thin dark rim keeps the box visible on light and dark backgrounds alike
        cv2.rectangle(frame, (x1, y1), (x2, y2), (0, 0, 0), thickness + 2, cv2.LINE_AA)
        cv2.rectangle(frame, (x1, y1), (x2, y2), color, thickness, cv2.LINE_AA)
        if labels:
            text = f"#{track} {name} {score:.2f}" if track >= 0 else f"{name} {score:.2f}"
            (tw, th), base = cv2.getTextSize(text, FONT, scale, max(1, thickness // 2))
            ty = y1 - th - base - 2 if y1 - th - base - 2 >= 0 else y1  # above the box, or inside at the top
            cv2.rectangle(frame, (x1, ty), (x1 + tw + 4, ty + th + base + 2), color, -1)
            ink = text_color(color)
            cv2.putText(frame, text, (x1 + 2, ty + th + 1), FONT, scale, ink, max(1, thickness // 2), cv2.LINE_AA)
    return frame


def draw_hud(frame: np.ndarray, lines: list[str]) -> np.ndarray:
    """Status lines top-left on a dark translucent panel; drawn in place."""
    scale, thickness, pad = 0.5, 1, 6
    sizes = [cv2.getTextSize(line, FONT, scale, thickness)[0] for line in lines]
    line_h = max(h for _, h in sizes) + pad
    w = min(max(w for w, _ in sizes) + 2 * pad, frame.shape[1])
    h = min(line_h * len(lines) + pad, frame.shape[0])
    panel = frame[:h, :w]
    panel[:] = (panel * 0.35).astype(np.uint8)  # darken: readable on any picture
    for i, line in enumerate(lines):
        color = (80, 80, 255) if line.isupper() or "RECONNECTING" in line else (255, 255, 255)
        cv2.putText(frame, line, (pad, (i + 1) * line_h), FONT, scale, color, thickness, cv2.LINE_AA)
    return frame
