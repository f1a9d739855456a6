"""Validation during fine-tuning: the model's detections on the val split scored as Ultralytics' val scores.

With several ranks each validates its own share of the split (no image twice) and the per-detection statistics
are gathered, so every rank scores the whole split.

The val images are letterboxed to the square training size without augmentation, and detections are kept
at Ultralytics' val settings (confidence 0.001, NMS IoU 0.7, at most 300 per image) by the inference path's
own ``postprocess.postprocess``. End-to-end (YOLO26) heads are scored through their NMS-free one-to-one
branch, the one their training moves to (its top-k, confidence 0.001, at most 300 per image), whatever the
head's saved inference mode. Detections and labels are compared in letterboxed input pixels: the letterbox
is a uniform scale and shift, so IoUs, and hence the scores, are those in image pixels. Matching and AP are
``detector/metrics.py`` (parity with Ultralytics' metric code: tests/test_metrics.py, tests/test_finetune.py).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from detector.metrics import ClassAP, ap_per_class, match_predictions
from detector.postprocess import postprocess
from detector.train.distributed import gather
from detector.train.prefetch import DevicePrefetcher

VAL_CONF, VAL_IOU, VAL_MAX_DET = 0.001, 0.7, 300


@dataclass(frozen=True)
class Validation:
    precision: float  # mean over classes with targets, at the max-F1 confidence
    recall: float
    map50: float
    map50_95: float
    scores: ClassAP
    tp: torch.Tensor  # [N, 10] every detection's hits at IoU 0.50:0.95, for the PR curve
    conf: torch.Tensor  # [N]
    pred_cls: torch.Tensor  # [N]
    target_cls: torch.Tensor  # [M]


@torch.no_grad()
def validate(model: torch.nn.Module, batches: DevicePrefetcher) -> Validation:
    """Run ``model`` (switched to eval mode) over the val batches and score its detections."""
    model.eval()
    head = model.model[-1]
    end2end = getattr(head, "one2one_cv2", None) is not None
    tps, confs = [torch.zeros(0, 10, dtype=torch.bool)], [torch.zeros(0)]  # a rank may have no image to score
    pred_classes, target_classes = [torch.zeros(0, dtype=torch.long)], [torch.zeros(0, dtype=torch.long)]
    with one_to_one_output(head) if end2end else contextlib.nullcontext():
        for images, targets, valid in batches:
            raw = model(images)[0].float()  # [B, 4 + nc, A]; end-to-end: [B, A, 4 + nc]
            detections = postprocess(raw, end2end, conf=VAL_CONF, iou=VAL_IOU, max_det=VAL_MAX_DET)
            for rows, t, v in zip(detections, targets, valid):  # [N, 6] per image
                gt = t[v]  # [M, 5] this image's targets
                tps.append(match_predictions(rows[:, :4], rows[:, 5].long(), gt[:, 1:], gt[:, 0].long()).cpu())
                confs.append(rows[:, 4].cpu())
                pred_classes.append(rows[:, 5].long().cpu())
                target_classes.append(gt[:, 0].long().cpu())
    tp, conf, pred_cls, target_cls = (gather(torch.cat(x)) for x in (tps, confs, pred_classes, target_classes))
    scores = ap_per_class(tp, conf, pred_cls, target_cls)
    return Validation(
        _mean(scores.precision),
        _mean(scores.recall),
        _mean(scores.ap50),
        _mean(scores.ap50_95),
        scores,
        tp,
        conf,
        pred_cls,
        target_cls,
    )


@contextlib.contextmanager
def one_to_one_output(head: torch.nn.Module) -> Iterator[None]:
    """An end-to-end head's eval output becomes its one-to-one branch's raw ``[B, A, 4 + nc]`` (x1 y1 x2 y2,
    scores), its own top-k off so that ``postprocess`` picks it (as ``Backend`` runs it). Restored on the way
    out: the head's mode is saved in checkpoints, and a lambda cannot be pickled."""
    mode = head.end2end
    head.end2end, head.postprocess = True, lambda preds: preds
    try:
        yield
    finally:
        head.end2end = mode
        del head.postprocess  # the class's top-k again


def _mean(x: torch.Tensor) -> float:
    return float(x.mean()) if len(x) else 0.0  # no class with targets: nothing to score
