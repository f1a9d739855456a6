"""Validation during fine-tuning: the model's detections on the val split scored as Ultralytics' val scores.

With several ranks each validates its own share of the split (no image twice) and the per-detection statistics
are gathered, so every rank scores the whole split.

The val images are letterboxed to the square training size without augmentation, and detections are kept
at Ultralytics' val settings (confidence 0.001, NMS IoU 0.7, at most 300 per image) by the inference path's
own ``postprocess.nms_head``. Detections and labels are compared in letterboxed input pixels: the letterbox
is a uniform scale and shift, so IoUs, and hence the scores, are those in image pixels. Matching and AP are
``detector/metrics.py`` (parity with Ultralytics' metric code: tests/test_metrics.py, tests/test_finetune.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from detector.metrics import ClassAP, ap_per_class, match_predictions
from detector.postprocess import nms_head
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
    tps, confs = [torch.zeros(0, 10, dtype=torch.bool)], [torch.zeros(0)]  # a rank may have no image to score
    pred_classes, target_classes = [torch.zeros(0, dtype=torch.long)], [torch.zeros(0, dtype=torch.long)]
    for images, targets, valid in batches:
        raw = model(images)[0]  # [B, 4 + nc, A]
        for rows, t, v in zip(nms_head(raw.float(), VAL_CONF, VAL_IOU, max_det=VAL_MAX_DET), targets, valid):
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


def _mean(x: torch.Tensor) -> float:
    return float(x.mean()) if len(x) else 0.0  # no class with targets: nothing to score
