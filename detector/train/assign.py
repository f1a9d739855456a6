"""Task-aligned assignment with gathered target indexing: the whole batch at once, no loop over images or boxes.

Targets arrive padded to one shape, ``[B, T, 5]`` (class, x1, y1, x2, y2 in input pixels) with a validity mask
``[B, T]``, so every image's targets sit in one tensor. The assigner scores every (image, target, anchor)
triple with the task-aligned metric ``score^alpha * CIoU^beta``, keeps each target's ``topk`` anchors whose
centres lie inside it, and resolves an anchor claimed by several targets in favour of the best-overlapping
one. The result is one index per anchor, ``target_idx [B, A]``, into that image's targets: boxes, labels and
scores are then gathered with ``torch.gather`` along the target axis, and every later step (normalising the
soft class scores by each target's best metric) works on ``[B, A]`` tensors instead of ``[B, T, A]`` ones.

Equal to ``ultralytics.utils.tal.TaskAlignedAssigner`` on the same inputs (tests/test_assign.py), including
its conventions: a target's sides shorter than ``min_side`` are widened about its centre when finding the
anchors inside it; an anchor claimed by several targets goes to the one with the highest CIoU among all the
targets whose boxes contain it, even one that did not rank it in its top-k; background anchors point at
target 0 of their image (their label and box are then meaningless: use ``fg``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from detector.train.boxes import ciou


@dataclass(frozen=True)
class Assignment:
    """Per-anchor training targets of a batch; ``A`` anchors, ``nc`` classes."""

    labels: torch.Tensor  # [B, A] int64 class of the assigned target
    boxes: torch.Tensor  # [B, A, 4] its box, x1 y1 x2 y2 in input pixels
    scores: torch.Tensor  # [B, A, nc] soft class targets: the normalised alignment at the label, 0 elsewhere
    fg: torch.Tensor  # [B, A] bool, anchors assigned to a target
    target_idx: torch.Tensor  # [B, A] int64 index of the assigned target along the T axis


@dataclass(frozen=True)
class TaskAlignedAssigner:
    """Assigns targets to anchors (TOOD's task alignment), as Ultralytics' v8/YOLO11/YOLO26 losses configure it.

    ``topk=10, alpha=0.5, beta=6.0`` and ``min_side`` = the middle stride (16) are ``v8DetectionLoss``'s
    settings; YOLO26's one-to-one head uses ``topk=7, topk2=1`` (then only each target's best anchor stays).
    """

    num_classes: int
    topk: int = 10
    alpha: float = 0.5
    beta: float = 6.0
    min_side: float = 16.0
    topk2: int | None = None
    eps: float = 1e-9

    @torch.no_grad()
    def __call__(
        self,
        pred_scores: torch.Tensor,
        pred_boxes: torch.Tensor,
        anchors: torch.Tensor,
        targets: torch.Tensor,
        valid: torch.Tensor,
    ) -> Assignment:
        """Assign ``targets [B, T, 5]`` (``valid [B, T]``) to anchors ``[A, 2]`` in input pixels.

        ``pred_scores [B, A, nc]``: class probabilities (after the sigmoid); ``pred_boxes [B, A, 4]``: the
        predicted boxes in input pixels. Both only rank anchors; no gradient flows through assignment.
        """
        batch, num_anchors, _ = pred_scores.shape
        if targets.shape[1] == 0:  # no image of the batch has a target
            return Assignment(
                labels=pred_scores.new_full((batch, num_anchors), self.num_classes, dtype=torch.long),
                boxes=torch.zeros_like(pred_boxes),
                scores=torch.zeros_like(pred_scores),
                fg=pred_scores.new_zeros((batch, num_anchors), dtype=torch.bool),
                target_idx=pred_scores.new_zeros((batch, num_anchors), dtype=torch.long),
            )
        labels = targets[..., 0].long()  # [B, T]
        gt_boxes = targets[..., 1:5]  # [B, T, 4]

        # 1. Candidates: valid (target, anchor) pairs whose anchor centre lies inside the (widened) target box
        inside = self.anchors_inside(anchors, gt_boxes, valid) & valid[..., None]  # [B, T, A]

        # 2. Alignment metric and CIoU, computed on candidate pairs only and scattered into dense [B, T, A]
        b, t, a = inside.nonzero(as_tuple=True)  # [P] each: image, target, anchor of every candidate pair
        pair_iou = ciou(gt_boxes[b, t], pred_boxes[b, a]).clamp_(0)  # [P]
        pair_metric = pred_scores[b, a, labels[b, t]].pow(self.alpha) * pair_iou.pow(self.beta)  # [P]
        overlaps = pred_boxes.new_zeros(inside.shape)  # [B, T, A]
        overlaps[b, t, a] = pair_iou
        metric = pred_scores.new_zeros(inside.shape)  # [B, T, A]
        metric[b, t, a] = pair_metric

        # 3. Each valid target's top-k anchors by metric, kept where they are candidates
        top = metric.topk(self.topk, dim=-1).indices  # [B, T, k]
        positive = torch.zeros_like(inside).scatter_(-1, top, True) & inside  # [B, T, A]

        # 4. One target per anchor: the only one that picked it, or the best overlap where several did
        # (max over dim 1 returns the first maximal index, like argmax, and is several times faster on CPU)
        claims = positive.sum(1)  # [B, A] how many targets picked each anchor
        only = positive.max(1).indices  # [B, A] first target that picked it (0 if none)
        target_idx = torch.where(claims > 1, overlaps.max(1).indices, only)  # [B, A]
        fg = claims > 0  # [B, A]
        # per-anchor metric and CIoU at its target: gathered along T, [B, 1, A] -> [B, A]
        anchor_metric = metric.gather(1, target_idx[:, None]).squeeze(1) * fg
        anchor_iou = overlaps.gather(1, target_idx[:, None]).squeeze(1) * fg
        if self.topk2 is not None and self.topk2 != self.topk:
            fg = fg & self.best_of_each_target(anchor_metric, target_idx, labels.shape[1])
            anchor_metric, anchor_iou = anchor_metric * fg, anchor_iou * fg
        target_idx = target_idx * fg  # background anchors point at target 0

        # 5. Gather each anchor's target: label and box, along the T axis
        anchor_labels = labels.gather(1, target_idx).clamp_(0)  # [B, A]; clamp: padding rows may hold -1
        anchor_boxes = gt_boxes.gather(1, target_idx[..., None].expand(-1, -1, 4))  # [B, A, 4]

        # 6. Soft class targets: metric / (target's best metric) * (target's best CIoU), per target over its anchors
        best_metric = self.per_target_max(anchor_metric, target_idx, labels.shape[1])  # [B, T]
        best_iou = self.per_target_max(anchor_iou, target_idx, labels.shape[1])  # [B, T]
        norm = anchor_metric * best_iou.gather(1, target_idx) / (best_metric.gather(1, target_idx) + self.eps)  # [B, A]
        scores = torch.zeros_like(pred_scores).scatter_(2, anchor_labels[..., None], norm[..., None])  # [B, A, nc]
        return Assignment(anchor_labels, anchor_boxes, scores, fg, target_idx)

    def anchors_inside(self, anchors: torch.Tensor, gt_boxes: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """``[B, T, A]``: anchor centre strictly inside the target box, sides widened to ``min_side`` at least.

        Widening gives small targets enough candidate anchors on the coarser levels. The box is rebuilt from
        centre and size even where it is not widened, as Ultralytics does, so the comparisons round alike.
        """
        centre = (gt_boxes[..., :2] + gt_boxes[..., 2:]) / 2  # [B, T, 2]
        size = gt_boxes[..., 2:] - gt_boxes[..., :2]  # [B, T, 2]
        size = torch.where((size < self.min_side) & valid[..., None], self.min_side, size)
        half = size / 2
        top_left, bottom_right = (centre - half)[:, :, None], (centre + half)[:, :, None]  # [B, T, 1, 2] each
        x, y = anchors[:, 0], anchors[:, 1]  # [A] each
        inside = x - top_left[..., 0] > self.eps  # [B, T, A]
        inside &= y - top_left[..., 1] > self.eps
        inside &= bottom_right[..., 0] - x > self.eps
        inside &= bottom_right[..., 1] - y > self.eps
        return inside

    def best_of_each_target(
        self, anchor_metric: torch.Tensor, target_idx: torch.Tensor, num_targets: int
    ) -> torch.Tensor:
        """``[B, A]`` bool: the anchor is among the ``topk2`` best-aligned anchors of its own target.

        Ranked on the dense ``[B, T, A]`` metric (zero off each target's own anchors), as Ultralytics ranks it,
        so that ties among zeros fall the same way.
        """
        dense = anchor_metric.new_zeros(anchor_metric.shape[0], num_targets, anchor_metric.shape[1])  # [B, T, A]
        dense.scatter_(1, target_idx[:, None], anchor_metric[:, None])
        top = dense.topk(self.topk2, dim=-1).indices  # [B, T, topk2]
        kept = torch.zeros_like(dense, dtype=torch.bool).scatter_(-1, top, True)  # [B, T, A]
        return kept.gather(1, target_idx[:, None]).squeeze(1)  # [B, A]

    @staticmethod
    def per_target_max(values: torch.Tensor, target_idx: torch.Tensor, num_targets: int) -> torch.Tensor:
        """Max over each target's anchors of per-anchor ``values [B, A]`` (>= 0, 0 on background) -> ``[B, T]``."""
        out = values.new_zeros(values.shape[0], num_targets)  # [B, T]
        return out.scatter_reduce_(1, target_idx, values, reduce="amax")
