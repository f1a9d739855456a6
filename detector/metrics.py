"""Box matching and average precision, scored as Ultralytics' validator scores, in vectorised torch.

- ``box_iou``: pairwise IoU with Ultralytics' formula (same eps, same order of operations), so that a
  threshold decides the same pairs.
- ``match_boxes``, ``matched_targets``, ``match_predictions``: greedy by confidence, as Ultralytics'
  ``BaseValidator.match_predictions`` and COCO: each prediction, best first, claims the unclaimed target of
  its class with the highest IoU if that IoU reaches the threshold; each threshold is matched on its own.
- ``ap_per_class``: per class, precision and recall at the confidence of maximum F1, and AP at each IoU
  threshold with COCO's 101-point interpolation, as ``ultralytics.utils.metrics.ap_per_class``.

tests/test_metrics.py holds all of them equal to Ultralytics' on fresh random inputs and real detections.
Used by `detector eval-video` (detector/evaluate/score.py) and fine-tuning validation (detector/train/validate.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def unit_grid(points: int) -> torch.Tensor:
    """``points`` evenly spaced values on [0, 1] in float64, computed as ``np.linspace`` does (``i * step``):
    ``torch.linspace`` rounds some differently (0.6799999999999999 for 0.68), and a recall of exactly
    17/25 must fall on the same side of a grid point as in Ultralytics."""
    grid = torch.arange(points, dtype=torch.float64) * (1 / (points - 1))
    grid[-1] = 1.0
    return grid


IOU_THRESHOLDS = torch.linspace(0.5, 0.95, 10)  # [10] float32, the levels of mAP50-95, as Ultralytics' iouv
CURVE_POINTS = 1000  # confidence samples of the precision, recall and F1 curves, as Ultralytics
AP_RECALLS = unit_grid(101)  # [101] COCO's recall points


def box_iou(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """IoU of every box of ``a`` ``[M, 4]`` with every box of ``b`` ``[N, 4]``, both xyxy -> ``[M, N]``."""
    (a1, a2), (b1, b2) = a.float()[:, None].chunk(2, 2), b.float()[None].chunk(2, 2)  # [M, 1, 2] and [1, N, 2]
    wh, wh_a, wh_b = (torch.min(a2, b2) - torch.max(a1, b1)).clamp(min=0), a2 - a1, b2 - b1  # [M, N, 2] ...
    inter = wh[..., 0] * wh[..., 1]  # [M, N]
    return inter / (wh_a[..., 0] * wh_a[..., 1] + wh_b[..., 0] * wh_b[..., 1] - inter + eps)


def match_boxes(iou: torch.Tensor, allowed: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    """Greedy one-to-one matching of N predictions (columns, best first) to M targets (rows).

    ``iou`` ``[M, N]``; ``allowed`` ``[M, N]`` the pairs that may match (same class, say); ``thresholds``
    ``[T]``. Returns ``[N, T]``: the target each prediction claims at each threshold, or -1. In order,
    a prediction claims the unclaimed allowed target of highest IoU (the first on ties) if that IoU
    reaches the threshold.

    The sequential rule runs in rounds over all predictions at once: a prediction's pick is final as
    soon as no earlier undecided prediction could still claim that target. The earliest undecided
    prediction is always final, so each round settles at least one target per threshold: at most M + 1
    rounds, whatever N is; one to three on TUD-Campus's frames of 150 predictions.
    """
    num_targets, num_preds = iou.shape
    match = torch.full((len(thresholds), num_preds), -1, dtype=torch.long, device=iou.device)  # [T, N]
    if num_targets == 0 or num_preds == 0:
        return match.T
    position = torch.arange(num_preds, device=iou.device)  # [N]
    open_pairs = (iou[None] >= thresholds.to(iou)[:, None, None]) & allowed[None]  # [T, M, N] still possible
    while True:
        best_iou, best = torch.where(open_pairs, iou, -1.0).max(1)  # [T, N] each prediction's best open target
        undecided = best_iou >= 0  # [T, N] predictions that can still claim something
        if not undecided.any():
            return match.T
        first = torch.where(open_pairs, position, num_preds).amin(2)  # [T, M] earliest prediction open to each target
        final = undecided & (first.gather(1, best) == position)  # [T, N]
        match = torch.where(final, best, match)
        claimed = torch.zeros_like(first).scatter_add_(1, best, final.long()) > 0  # [T, M]
        open_pairs &= ~claimed[:, :, None] & ~final[:, None, :]  # a claimed target and its claimer leave the game


def matched_targets(
    pred_boxes: torch.Tensor,
    pred_cls: torch.Tensor,
    gt_boxes: torch.Tensor,
    gt_cls: torch.Tensor,
    iou_thresholds: torch.Tensor = IOU_THRESHOLDS,
) -> torch.Tensor:
    """For predictions ``[N, 4]`` sorted best first: the index of the GT box ``[M, 4]`` of the same class
    that each one matches at each IoU threshold, or -1 -> ``[N, T]``."""
    iou = box_iou(gt_boxes, pred_boxes)  # [M, N]
    return match_boxes(iou, gt_cls[:, None] == pred_cls[None], iou_thresholds)


def match_predictions(
    pred_boxes: torch.Tensor,
    pred_cls: torch.Tensor,
    gt_boxes: torch.Tensor,
    gt_cls: torch.Tensor,
    iou_thresholds: torch.Tensor = IOU_THRESHOLDS,
) -> torch.Tensor:
    """True positives ``[N, T]`` of one image's predictions, sorted best first, at each IoU threshold."""
    return matched_targets(pred_boxes, pred_cls, gt_boxes, gt_cls, iou_thresholds) >= 0


@dataclass(frozen=True)
class ClassAP:
    """Scores of the classes that have targets. Precision, recall and F1 are taken at ``conf``, the
    confidence where the smoothed F1 averaged over classes peaks (what Ultralytics' val prints as P, R)."""

    classes: torch.Tensor  # [C] class ids with at least one target, ascending
    targets: torch.Tensor  # [C] targets per class
    precision: torch.Tensor  # [C] float64
    recall: torch.Tensor  # [C] float64
    f1: torch.Tensor  # [C] float64
    ap: torch.Tensor  # [C, T] float64, AP at each IoU threshold
    conf: float

    @property
    def ap50(self) -> torch.Tensor:
        """``[C]`` AP at IoU 0.5 (the first of ``IOU_THRESHOLDS``)."""
        return self.ap[:, 0]

    @property
    def ap50_95(self) -> torch.Tensor:
        """``[C]`` AP averaged over IoU 0.5:0.95."""
        return self.ap.mean(1)


def interp(x: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor, left: float | None = None) -> torch.Tensor:
    """``np.interp`` along the last dim of batched curves: ``xp``, ``fp`` ``[..., L]`` with ``xp``
    non-decreasing, ``x`` ``[K]`` or ``[..., K]``. As in numpy, an ``x`` on a repeated ``xp`` takes the
    last point of the run, and right of the curve the last value holds."""
    x = x.expand(*xp.shape[:-1], x.shape[-1]).contiguous()
    j = torch.searchsorted(xp.contiguous(), x, right=True) - 1  # [..., K] the last point with xp <= x
    lo, hi = j.clamp(min=0), (j + 1).clamp(max=xp.shape[-1] - 1)
    x0, x1, y0, y1 = xp.gather(-1, lo), xp.gather(-1, hi), fp.gather(-1, lo), fp.gather(-1, hi)
    between = (x0 < x) & (x < x1)  # strictly inside a segment: on its line; otherwise on a point
    y = torch.where(between, (y1 - y0) / (x1 - x0) * (x - x0) + y0, y0)  # numpy's order of operations
    return torch.where(j < 0, fp[..., :1] if left is None else torch.tensor(left, dtype=fp.dtype), y)


def smooth(y: torch.Tensor, fraction: float = 0.05) -> torch.Tensor:
    """Box filter ``fraction`` of the length wide on each side, the ends padded with the end values."""
    width = round(len(y) * fraction * 2) // 2 + 1  # odd
    padded = torch.cat((y[:1].expand(width // 2), y, y[-1:].expand(width // 2)))
    return padded.unfold(0, width, 1).mean(1)


def ap_per_class(
    tp: torch.Tensor, conf: torch.Tensor, pred_cls: torch.Tensor, target_cls: torch.Tensor, eps: float = 1e-16
) -> ClassAP:
    """Precision, recall, F1 and AP per class from the predictions of a whole dataset.

    ``tp`` ``[N, T]`` bool (``match_predictions`` of every image, concatenated), ``conf`` ``[N]``,
    ``pred_cls`` ``[N]``, ``target_cls`` ``[M]``. Only classes with targets are scored; predictions of
    other classes are ignored. Equal scores keep their input order (Ultralytics' sort leaves it open), as
    COCO's evaluation does. Runs on the CPU: once per evaluation, on a few thousand rows.
    """
    tp, conf, pred_cls, target_cls = (t.cpu() for t in (tp, conf, pred_cls, target_cls))
    classes, targets = torch.unique(target_cls, return_counts=True)  # [C], [C]
    num_classes, num_thresholds = len(classes), tp.shape[1]
    x = unit_grid(CURVE_POINTS)  # [X] confidence samples
    scored = torch.isin(pred_cls, classes)
    tp, conf, slot = tp[scored].double(), conf[scored].double(), torch.searchsorted(classes, pred_cls[scored])
    if len(conf) == 0:
        zeros = torch.zeros(num_classes, dtype=torch.float64)
        return ClassAP(classes, targets, zeros, zeros, zeros, zeros[:, None].repeat(1, num_thresholds), 0.0)

    # each class's predictions side by side, best first
    order = torch.sort(conf, descending=True, stable=True).indices
    order = order[torch.sort(slot[order], stable=True).indices]
    tp, conf, slot = tp[order], conf[order], slot[order]
    counts = torch.bincount(slot, minlength=num_classes)  # [C] predictions per class
    start = counts.cumsum(0) - counts  # [C]

    # per-class curves side by side [C, L], each padded by repeating its last point, which changes neither
    # an interpolated value nor the AP
    rank = torch.minimum(torch.arange(int(counts.max()))[None], (counts - 1).clamp(min=0)[:, None])  # [C, L]
    row = (start[:, None] + rank).clamp(max=len(conf) - 1)  # [C, L] into the sorted predictions
    cum_tp = tp.cumsum(0)  # [n, T]
    before = torch.where((start > 0)[:, None], cum_tp[(start - 1).clamp(min=0)], 0.0)  # [C, T] earlier classes' TPs
    tpc = (cum_tp[row] - before[:, None]).permute(0, 2, 1)  # [C, T, L] TPs among the class's best rank + 1
    recall = tpc / (targets[:, None, None] + eps)  # [C, T, L]
    precision = tpc / (rank + 1)[:, None]  # [C, T, L]  TP / (TP + FP)

    has_preds = (counts > 0)[:, None]  # [C, 1]
    neg_conf = -conf[row]  # [C, L] increasing
    r_curve = torch.where(has_preds, interp(-x, neg_conf, recall[:, 0], left=0.0), 0.0)  # [C, X]
    p_curve = torch.where(has_preds, interp(-x, neg_conf, precision[:, 0], left=1.0), 0.0)  # [C, X]
    f1_curve = 2 * p_curve * r_curve / (p_curve + r_curve + eps)  # [C, X]

    # AP: precision envelope over recall with sentinels, sampled at 101 recalls, trapezoid rule
    zero, one = torch.zeros(num_classes, num_thresholds, 1, dtype=torch.float64), torch.ones(1, dtype=torch.float64)
    mrec = torch.cat((zero, recall, recall[..., -1:], one.expand_as(zero)), -1)  # [C, T, L + 3]
    mpre = torch.cat((one.expand_as(zero), precision, zero, zero), -1)
    envelope = mpre.flip(-1).cummax(-1).values.flip(-1)  # [C, T, L + 3]
    ap = torch.trapezoid(interp(AP_RECALLS, mrec, envelope), AP_RECALLS)  # [C, T]
    ap = torch.where(has_preds, ap, 0.0)

    best = int(smooth(f1_curve.mean(0), 0.1).argmax())
    return ClassAP(classes, targets, p_curve[:, best], r_curve[:, best], f1_curve[:, best], ap, float(x[best]))
