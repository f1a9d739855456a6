"""Scoring a run against ground truth, like Ultralytics' val: every frame's detections matched greedily by
confidence to the ground-truth boxes of their class (detector/metrics.py), AP over IoU 0.50:0.95 with COCO's
101-point interpolation, and TP/FP/FN at one operating point. Only classes that have ground truth are scored."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from detector.detections import Detections
from detector.errors import DetectorError
from detector.evaluate import report as reporting
from detector.evaluate.ground_truth import GroundTruth
from detector.evaluate.runs import FrameDetections, by_confidence
from detector.metrics import IOU_THRESHOLDS, ClassAP, ap_per_class, matched_targets


@dataclass(frozen=True)
class FrameMatch:
    """One frame at the operating point: the detections a user sees, and which GT boxes they found."""

    frame: int
    time_s: float
    shown: Detections  # scored classes, confidence above the operating point
    hit: torch.Tensor  # [n] bool, shown box matched a GT box
    gt_xyxy: torch.Tensor  # [M, 4]
    found: torch.Tensor  # [M] bool

    def counts(self) -> dict[str, Any]:
        tp = int(self.hit.sum())
        return {
            "frame": self.frame,
            "time_s": self.time_s,
            "gt": len(self.found),
            "tp": tp,
            "fp": len(self.hit) - tp,
            "fn": len(self.found) - tp,
        }


@dataclass(frozen=True)
class Evaluation:
    """The scores of a video; report.py reads them out."""

    ap: ClassAP
    frames: list[FrameMatch]
    names: Mapping[int, str]  # the model's classes
    scored: int  # detections scored for AP
    op_conf: float
    op_iou: float

    def per_class(self) -> dict[str, dict[str, float]]:
        return reporting.per_class(self)

    def report(self) -> dict[str, Any]:
        return reporting.summary(self)

    def lines(self) -> list[str]:
        return reporting.table(self)


def score(
    runs: Sequence[FrameDetections],
    gt: GroundTruth,
    class_map: Mapping[int, int],
    names: Mapping[int, str],
    op_conf: float = 0.25,
    op_iou: float = 0.5,
) -> Evaluation:
    """Score the detections of every frame (``runs``: one per frame, in order) against the ground truth.

    ``class_map``: GT class id -> model class id; GT boxes of other classes are left out. ``names``: the
    model's classes."""
    keys, order = torch.tensor(list(class_map), dtype=torch.long).sort()
    values = torch.tensor(list(class_map.values()), dtype=torch.long)[order]
    mapped = torch.isin(gt.class_id, keys)  # [M]
    gt_frame, gt_xyxy = gt.frame[mapped], gt.xyxy[mapped]
    gt_class = values[torch.searchsorted(keys, gt.class_id[mapped])]  # [M'] model class ids
    if not len(gt_class):
        raise DetectorError(f"ground truth {gt.source} has no boxes of the mapped classes: nothing to score")
    classes = torch.unique(gt_class)  # only classes with ground truth are scored, as in Ultralytics' val
    thresholds = torch.cat((IOU_THRESHOLDS, torch.tensor([op_iou])))  # [11] the AP levels, then the operating point
    by_frame = torch.argsort(gt_frame, stable=True)
    boxes_per_frame = torch.bincount(gt_frame, minlength=gt.frames).tolist()
    gt_xyxy, gt_class = gt_xyxy[by_frame].split(boxes_per_frame), gt_class[by_frame].split(boxes_per_frame)

    tp, conf, pred_cls, frames = [], [], [], []
    for run, boxes, cls in zip(runs, gt_xyxy, gt_class):  # one iteration per frame, not per box
        dets = by_confidence(run.detections[torch.isin(run.detections.class_id, classes)])
        matched = matched_targets(dets.xyxy, dets.class_id, boxes, cls, thresholds)  # [n, 11]
        shown = dets.confidence > op_conf  # [n] what `detector video --conf op_conf` shows
        hit = shown & (matched[:, -1] >= 0)
        found = torch.zeros(len(boxes), dtype=torch.bool)
        found[matched[hit, -1]] = True  # [M]
        tp.append(matched[:, :-1] >= 0)
        conf.append(dets.confidence)
        pred_cls.append(dets.class_id)
        frames.append(FrameMatch(run.frame, run.time_s, dets[shown], hit[shown], boxes, found))
    ap = ap_per_class(torch.cat(tp), torch.cat(conf), torch.cat(pred_cls), torch.cat(gt_class))
    return Evaluation(ap, frames, names, sum(len(c) for c in conf), op_conf, op_iou)
