"""Box geometry shared by target assignment and the loss: anchor grids, CIoU, box <-> distance encoding.

Boxes are x1 y1 x2 y2. The operation order follows Ultralytics' ``bbox_iou`` and ``make_anchors``: the
assigner ranks anchors by these values, and an anchor's rank must not change with float rounding order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch


def make_anchors(feats: Sequence[torch.Tensor], strides: Sequence[float]) -> tuple[torch.Tensor, torch.Tensor]:
    """Anchor centres of the head's feature maps ``[B, C, h, w]``, level by level, row-major.

    Returns the centres in grid units ``[A, 2]`` (x, y) and each anchor's stride ``[A, 1]``; multiply them for
    input pixels. ``A`` is the sum of ``h * w`` over the levels.
    """
    points, stride_per_anchor = [], []
    for feat, stride in zip(feats, strides):
        h, w = feat.shape[2:]
        xs = torch.arange(w, dtype=feat.dtype, device=feat.device) + 0.5  # [w] cell centres
        ys = torch.arange(h, dtype=feat.dtype, device=feat.device) + 0.5  # [h]
        ys, xs = torch.meshgrid(ys, xs, indexing="ij")  # [h, w] each
        points.append(torch.stack((xs, ys), -1).view(-1, 2))  # [h * w, 2]
        stride_per_anchor.append(torch.full((h * w, 1), float(stride), dtype=feat.dtype, device=feat.device))
    return torch.cat(points), torch.cat(stride_per_anchor)


def ciou(box1: torch.Tensor, box2: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Complete IoU of paired boxes ``[..., 4]`` -> ``[...]`` (IoU minus centre-distance and aspect penalties).

    The aspect weight is a constant in the backward pass, as in the CIoU paper. Not symmetric in float
    rounding: callers pass the boxes in Ultralytics' order (ground truth first in assignment, prediction
    first in the loss).
    """
    ax1, ay1, ax2, ay2 = box1.unbind(-1)  # [...] each
    bx1, by1, bx2, by2 = box2.unbind(-1)
    aw, ah = ax2 - ax1, ay2 - ay1 + eps
    bw, bh = bx2 - bx1, by2 - by1 + eps
    inter = (ax2.minimum(bx2) - ax1.maximum(bx1)).clamp(0) * (ay2.minimum(by2) - ay1.maximum(by1)).clamp(0)
    union = aw * ah + bw * bh - inter + eps
    iou = inter / union
    enclose_w = ax2.maximum(bx2) - ax1.minimum(bx1)
    enclose_h = ay2.maximum(by2) - ay1.minimum(by1)
    diagonal2 = enclose_w.pow(2) + enclose_h.pow(2) + eps  # squared diagonal of the enclosing box
    centre2 = ((bx1 + bx2 - ax1 - ax2).pow(2) + (by1 + by2 - ay1 - ay2).pow(2)) / 4  # squared centre distance
    aspect = (4 / math.pi**2) * ((bw / bh).atan() - (aw / ah).atan()).pow(2)
    with torch.no_grad():
        aspect_weight = aspect / (1 - iou + aspect + eps)
    return iou - (centre2 / diagonal2 + aspect * aspect_weight)


def distances_to_boxes(distances: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """Left, top, right, bottom distances ``[..., A, 4]`` from anchors ``[A, 2]`` -> boxes ``[..., A, 4]``."""
    left_top, right_bottom = distances.chunk(2, -1)  # [..., A, 2] each
    return torch.cat((anchors - left_top, anchors + right_bottom), -1)


def boxes_to_distances(boxes: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """Boxes ``[..., A, 4]`` -> left, top, right, bottom distances ``[..., A, 4]`` from anchors ``[A, 2]``."""
    top_left, bottom_right = boxes.chunk(2, -1)  # [..., A, 2] each
    return torch.cat((anchors - top_left, bottom_right - anchors), -1)
