"""Letterbox OpenCV frames into a model batch, the way Ultralytics' predictor does.

Each frame is scaled to fit ``imgsz`` keeping its aspect ratio (side lengths rounded), then padded
with grey 114, centred. Dynamic backends (PyTorch, dynamic exports) get the smallest stride-aligned
rectangle instead of the full square when every frame in the batch has the same shape; static exports
always get the fixed size they were exported at.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch

PAD_VALUE = 114


def letterbox_shape(
    frame_hw: tuple[int, int], imgsz: tuple[int, int], stride: int, auto: bool
) -> tuple[tuple[int, int], tuple[int, int, int, int]]:
    """Resized size ``(w, h)`` and padding ``(top, bottom, left, right)`` for one frame."""
    h, w = frame_hw
    r = min(imgsz[0] / h, imgsz[1] / w)
    new_w, new_h = max(round(w * r), 1), max(round(h * r), 1)
    dw, dh = imgsz[1] - new_w, imgsz[0] - new_h
    if auto:  # smallest rectangle the model's stride allows
        dw, dh = dw % stride, dh % stride
    dw, dh = dw / 2, dh / 2
    return (new_w, new_h), (round(dh - 0.1), round(dh + 0.1), round(dw - 0.1), round(dw + 0.1))


def letterbox(frames: Sequence[np.ndarray], imgsz: tuple[int, int], stride: int = 32, auto: bool = False) -> np.ndarray:
    """BGR uint8 frames of any sizes -> one letterboxed BGR uint8 batch ``[B, H, W, 3]``.

    Only resizing and padding: backends that take bytes (OpenVINO, converting inside its graph) get this
    batch as it is, and ``to_tensor`` turns it into the float input PyTorch models take.
    """
    auto = auto and len({f.shape for f in frames}) == 1  # one batch needs one shape
    (w, h), (top, bottom, left, right) = letterbox_shape(frames[0].shape[:2], imgsz, stride, auto)
    batch = np.full((len(frames), h + top + bottom, w + left + right, 3), PAD_VALUE, np.uint8)
    for i, frame in enumerate(frames):
        (w, h), (top, _, left, _) = letterbox_shape(frame.shape[:2], imgsz, stride, auto)
        if frame.shape[:2] != (h, w):
            batch[i, top : top + h, left : left + w] = cv2.resize(frame, (w, h), interpolation=cv2.INTER_LINEAR)
        else:
            batch[i, top : top + h, left : left + w] = frame
    return batch


def to_tensor(batch: np.ndarray) -> torch.Tensor:
    """Letterboxed BGR uint8 ``[B, H, W, 3]`` -> RGB float ``[B, 3, H, W]`` in [0, 1], contiguous."""
    x = torch.empty((batch.shape[0], 3, *batch.shape[1:3]))  # [B, 3, H, W]
    bgr = torch.from_numpy(batch)  # [B, H, W, 3]
    for c in range(3):  # one strided copy per channel: faster than permute + contiguous, and flips BGR to RGB
        x[:, c] = bgr[..., 2 - c]
    return x.div_(255)


def preprocess(
    frames: Sequence[np.ndarray], imgsz: tuple[int, int], stride: int = 32, auto: bool = False
) -> torch.Tensor:
    """BGR uint8 frames of any sizes -> RGB float batch ``[B, 3, H, W]`` in [0, 1], letterboxed."""
    return to_tensor(letterbox(frames, imgsz, stride, auto))


def scale_boxes(boxes: torch.Tensor, input_hw: tuple[int, int], frame_hw: tuple[int, int]) -> torch.Tensor:
    """Boxes ``[N, 4]`` xyxy in letterboxed-input pixels -> frame pixels, clipped to the frame."""
    (new_w, new_h), (top, _, left, _) = letterbox_shape(frame_hw, input_hw, stride=1, auto=False)
    # input_hw is already the padded size, so auto=False reproduces the exact resize and offsets
    gain = boxes.new_tensor([new_w / frame_hw[1], new_h / frame_hw[0]]).repeat(2)  # [4] gx gy gx gy
    pad = boxes.new_tensor([left, top]).repeat(2)  # [4]
    out = (boxes - pad) / gain
    limit = boxes.new_tensor([frame_hw[1], frame_hw[0]]).repeat(2)
    return torch.minimum(out.clamp_(min=0), limit)
