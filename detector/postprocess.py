"""Raw head output -> boxes per image, with ``torch.gather`` and index masks (no loop over boxes).

Two head types:

- ``nms``: YOLOv8/YOLO11-style heads, ``[B, 4 + nc, A]``. Best class per anchor, confidence mask,
  class mask, a candidate cap by top-k, then class-aware NMS and a ``max_det`` cap per image.
- ``end2end``: YOLO26's one-to-one head, ``[B, A, 4 + nc]``: top-k over anchors, top-k over
  (anchor, class) pairs, gather, confidence mask. Exports of it already did the top-k: ``[B, K, 6]``.

Both return one ``[N, 6]`` tensor per image: x1 y1 x2 y2 confidence class, in input pixels, best first.
The results equal Ultralytics' ``non_max_suppression`` and YOLO26's own top-k (tests/test_postprocess.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torchvision

CLASS_OFFSET = 7680  # px between classes in class-aware NMS; the same as Ultralytics so IoUs match bit for bit
PER_CLASS_NMS_ABOVE = 1000  # candidates in one image above which NMS runs class by class (fewer calls cost more)


def _class_mask(class_id: torch.Tensor, classes: Sequence[int] | None) -> torch.Tensor:
    if classes is None:
        return torch.ones_like(class_id, dtype=torch.bool)
    return torch.isin(class_id, torch.as_tensor(list(classes), device=class_id.device))


def _split_rows(rows: torch.Tensor, image: torch.Tensor, batch: int) -> list[torch.Tensor]:
    """Rows ``[M, 6]`` sorted by image -> one tensor per image."""
    if batch == 1:
        return [rows]
    counts = torch.bincount(image, minlength=batch).tolist()
    return list(rows.split(counts))


def xywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    xy, half_wh = boxes[..., :2], boxes[..., 2:] / 2
    return torch.cat((xy - half_wh, xy + half_wh), -1)


def grouped_nms(boxes: torch.Tensor, scores: torch.Tensor, group: torch.Tensor, iou: float) -> torch.Tensor:
    """Greedy NMS inside each group: one ``torchvision.ops.nms`` call per group of two or more boxes.

    Returns a keep mask ``[M]``. Groups never suppress each other, so the result is the same as one call
    over everything when the boxes of different groups cannot overlap.
    """
    keep = torch.zeros_like(scores, dtype=torch.bool)  # [M]
    order = torch.argsort(group, stable=True)  # each group's boxes side by side, in their original order
    counts = torch.unique_consecutive(group[order], return_counts=True)[1]  # [G]
    starts = torch.cumsum(counts, 0) - counts
    keep[order[starts[counts == 1]]] = True  # a lone box always survives
    crowded = (counts > 1).nonzero().flatten()
    for start, count in zip(starts[crowded].tolist(), counts[crowded].tolist()):
        idx = order[start : start + count]  # [m] one group
        keep[idx[torchvision.ops.nms(boxes[idx], scores[idx], iou)]] = True
    return keep


def best_first(image: torch.Tensor, score: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Order rows by image, then by score, best first (ties keep their order); and each sorted row's rank
    within its image (0 = best). One sort: the key ``image + (1 - score)`` is exact in float64."""
    order = torch.argsort(image.double() + (1 - score.double()), stable=True)  # [M]
    sorted_image = image[order]
    rank = torch.arange(len(order), device=image.device) - torch.searchsorted(sorted_image, sorted_image)
    return order, rank


def nms_head(
    raw: torch.Tensor,
    conf: float = 0.25,
    iou: float = 0.7,
    classes: Sequence[int] | None = None,
    max_det: int = 300,
    agnostic: bool = False,
    max_candidates: int = 30000,
) -> list[torch.Tensor]:
    """``[B, 4 + nc, A]`` -> per image ``[N, 6]`` after confidence filter and class-aware NMS."""
    batch, channels, anchors = raw.shape
    num_classes = channels - 4
    # amax without indices is ~10x faster than max over this strided axis; classes only for candidates
    image, anchor = (raw[:, 4:].amax(1) > conf).nonzero(as_tuple=True)  # [M], [M] by image, then anchor
    cand = raw.transpose(1, 2)[image, anchor]  # [M, 4 + nc] gathered candidate rows
    score, class_id = cand[:, 4:].max(1)  # [M] best class; its score is the amax, so > conf
    if classes is not None:
        keep = _class_mask(class_id, classes)
        image, cand, score, class_id = image[keep], cand[keep], score[keep], class_id[keep]

    if bool((torch.bincount(image, minlength=batch) > max_candidates).any()):  # the best max_candidates per image
        order, rank = best_first(image, score)
        top = order[rank < max_candidates].sort().values  # back to anchor order
        image, cand, score, class_id = image[top], cand[top], score[top], class_id[top]
    xyxy = xywh_to_xyxy(cand[:, :4])  # [M, 4]

    # NMS never crosses images, nor classes unless agnostic. Classes are kept apart as Ultralytics does,
    # by shifting each class's boxes CLASS_OFFSET px. Greedy NMS is quadratic in its input: an image with
    # very many candidates (low conf) gets one NMS call per class instead, which cannot change the result.
    shifted = xyxy + (class_id[:, None] * (0 if agnostic else CLASS_OFFSET)).to(xyxy)
    crowded = torch.bincount(image, minlength=batch) > PER_CLASS_NMS_ABOVE  # [B]
    per_class = crowded[image] & (not agnostic)  # [M]
    if batch == 1 and not bool(per_class.any()):  # the live case: one call, returned best first
        idx = torchvision.ops.nms(shifted, score, iou)[:max_det]
    else:
        group = image * (num_classes + 1) + torch.where(per_class, class_id + 1, 0)  # [M]
        idx = grouped_nms(shifted, score, group, iou).nonzero().flatten()  # [K] survivors
        order, rank = best_first(image[idx], score[idx])
        idx = idx[order[rank < max_det]]  # best first in each image, at most max_det each
    rows = torch.cat((xyxy[idx], score[idx, None], class_id[idx, None].to(xyxy)), 1)  # [K, 6]
    return _split_rows(rows, image[idx], batch)


def end2end_topk(raw: torch.Tensor, max_det: int = 300, agnostic: bool = False, candidates: int = 300) -> torch.Tensor:
    """One-to-one head output ``[B, A, 4 + nc]`` -> the top-k rows ``[B, K, 6]``, best first.

    Like the head itself: the best anchors by their best class, then the best (anchor, class) pairs
    among those, so one anchor may appear with two classes. ``K = min(max(max_det, candidates), A)``:
    class filters act after the top-k, so keep enough candidates for them.
    """
    boxes, scores = raw[..., :4], raw[..., 4:]  # [B, A, 4], [B, A, nc]
    batch, anchors, num_classes = scores.shape
    k = min(max(max_det, candidates), anchors)
    best, best_class = scores.max(-1)  # [B, A]
    if agnostic:
        top_score, anchor = best.topk(k, dim=1)  # [B, K]
        top_class = best_class.gather(1, anchor)
    else:
        anchor_pick = best.topk(k, dim=1).indices  # [B, K] anchors worth a look
        pair_scores = scores.gather(1, anchor_pick[..., None].expand(-1, -1, num_classes))  # [B, K, nc]
        top_score, pair = pair_scores.flatten(1).topk(k, dim=1)  # [B, K] over (anchor, class) pairs
        anchor = anchor_pick.gather(1, pair // num_classes)
        top_class = pair % num_classes
    top_boxes = boxes.gather(1, anchor[..., None].expand(-1, -1, 4))  # [B, K, 4]
    return torch.cat((top_boxes, top_score[..., None], top_class[..., None].to(top_boxes)), -1)


def end2end_head(
    topk_rows: torch.Tensor,
    conf: float = 0.25,
    classes: Sequence[int] | None = None,
    max_det: int = 300,
) -> list[torch.Tensor]:
    """Top-k rows ``[B, K, 6]`` (best first) -> per image ``[N, 6]``: confidence and class masks, max_det."""
    keep = (topk_rows[..., 4] > conf) & _class_mask(topk_rows[..., 5].long(), classes)  # [B, K]
    keep &= keep.cumsum(1) <= max_det  # the first max_det survivors of each image
    image = keep.nonzero(as_tuple=True)[0]
    return _split_rows(topk_rows[keep], image, topk_rows.shape[0])


def postprocess(
    raw: torch.Tensor,
    end2end: bool,
    topk_in_graph: bool = False,
    conf: float = 0.25,
    iou: float = 0.7,
    classes: Sequence[int] | None = None,
    max_det: int = 300,
    agnostic: bool = False,
) -> list[torch.Tensor]:
    """Dispatch on the head type; see the module docstring."""
    if not end2end:
        return nms_head(raw, conf, iou, classes, max_det, agnostic)
    rows = raw if topk_in_graph else end2end_topk(raw, max_det, agnostic)
    return end2end_head(rows, conf, classes, max_det)
