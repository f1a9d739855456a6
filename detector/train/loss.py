"""Detection loss of Ultralytics YOLOv8 / YOLO11 / YOLO26 heads on padded targets: CIoU box + DFL + BCE class.

``DetectionLoss(model)(preds, targets, valid)`` takes the head's training output (``{"boxes": [B, 4 * R, A],
"scores": [B, nc, A], "feats": [...]}``), targets padded to ``[B, T, 5]`` (class, x1, y1, x2, y2 in input
pixels) with a validity mask ``[B, T]``, and returns ``(total, parts)``: the scalar to backpropagate (the sum of
the three gained parts times the batch size, as Ultralytics' trainer does) and the detached ``[3]`` parts
(box, cls, dfl) for logging. Each anchor's target comes from the gathered task-aligned assigner
(``assign.py``); the three parts are normalised by the sum of the soft class targets, so they do not depend
on how many anchors a target got. Trained by several ranks, that sum and the batch size are the global batch's
(summed over the ranks), so the ranks' losses add up to the loss one process would compute on the whole batch.

- class: binary cross-entropy of every anchor's class logits against the soft targets (0 on background);
- box: ``1 - CIoU`` between each foreground anchor's decoded box and its target, weighted by the anchor's
  soft target score;
- dfl (``R > 1``, v8/YOLO11): distribution focal loss, each side's distance as a distribution over ``R`` bins
  in stride units, cross-entropy against the two bins around the target distance; YOLO26 heads have
  ``R = 1`` (a plain distance per side) and get an L1 loss on distances normalised by the image size instead.

YOLO26 end-to-end heads are covered by ``EndToEndLoss``: the one-to-many head as above (top-10), the
one-to-one head with top-7 then only each target's best anchor (``topk2=1``), weighted 0.8 / 0.2 at the start
and moving to 0.1 / 0.9 over the epochs, as Ultralytics' ``E2ELoss``. ``make_loss(model, epochs)`` picks the
loss for the model's head; both take ``set_epoch(epoch)`` before each epoch.

Equal within 1e-4 (relative) to ``ultralytics.utils.loss.v8DetectionLoss`` / ``E2ELoss`` on the same batch,
gradients included (tests/test_loss.py). Not covered: per-class weights (``model.class_weights``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from detector.train.assign import TaskAlignedAssigner
from detector.train.boxes import boxes_to_distances, ciou, distances_to_boxes, make_anchors
from detector.train.distributed import sum_over_ranks


def distribution_focal_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """DFL of per-side bin logits ``[N, 4, R]`` against distances ``[N, 4]`` in ``[0, R - 1)`` -> ``[N]``.

    The target distance lies between two bins; the loss is their cross-entropy, each weighted by how close
    the target is to it, averaged over the four sides.
    """
    left = target.long()  # [N, 4] bin at or below the target (distances are >= 0)
    right_weight = target - left  # [N, 4] in [0, 1)
    log_p = logits.log_softmax(-1)  # [N, 4, R]
    log_left = log_p.gather(-1, left[..., None]).squeeze(-1)  # [N, 4]
    log_right = log_p.gather(-1, left[..., None] + 1).squeeze(-1)  # [N, 4]
    return -(log_left * (1 - right_weight) + log_right * right_weight).mean(-1)


class DetectionLoss:
    """Box (CIoU) + DFL (or L1) + class (BCE) loss of one Ultralytics ``Detect`` head; see the module doc."""

    def __init__(
        self,
        model: torch.nn.Module,
        box: float = 7.5,
        cls: float = 0.5,
        dfl: float = 1.5,
        topk: int = 10,
        topk2: int | None = None,
    ) -> None:
        head = model.model[-1]
        self.nc, self.reg_max = head.nc, head.reg_max
        self.strides = head.stride.tolist()  # [8, 16, 32]
        self.gains = (box, cls, dfl)
        self.assigner = TaskAlignedAssigner(
            num_classes=self.nc,
            topk=topk,
            topk2=topk2,
            # sides below the middle stride are widened when finding a target's anchors (Ultralytics' stride_val)
            min_side=self.strides[1] if len(self.strides) > 1 else self.strides[0],
        )

    def set_epoch(self, epoch: int) -> None:
        """Nothing moves over the epochs of a single head's loss (the loop calls it for every head type)."""

    def decode(self, pred_dist: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
        """Per-anchor side distances ``[B, A, 4 * R]`` -> boxes ``[B, A, 4]``, in stride units."""
        if self.reg_max > 1:  # expected distance under each side's softmax over the bins 0 .. R - 1
            b, a, _ = pred_dist.shape
            bins = torch.arange(self.reg_max, dtype=pred_dist.dtype, device=pred_dist.device)  # [R]
            pred_dist = pred_dist.view(b, a, 4, self.reg_max).softmax(3).matmul(bins)  # [B, A, 4]
        return distances_to_boxes(pred_dist, anchors)

    def __call__(
        self, preds: dict[str, torch.Tensor], targets: torch.Tensor, valid: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(total, parts)``: the scalar to backpropagate and the detached ``[3]`` box, cls, dfl parts."""
        pred_dist = preds["boxes"].permute(0, 2, 1).contiguous()  # [B, A, 4 * R]
        logits = preds["scores"].permute(0, 2, 1).contiguous()  # [B, A, nc]
        batch = logits.shape[0]
        anchors, stride = make_anchors(preds["feats"], self.strides)  # [A, 2] grid units, [A, 1] pixels per unit
        pred_boxes = self.decode(pred_dist, anchors)  # [B, A, 4] stride units

        assigned = self.assigner(
            logits.detach().sigmoid(),
            (pred_boxes.detach() * stride).to(targets.dtype),  # pixels
            anchors * stride,
            targets,
            valid,
        )
        # normaliser of all three parts, and the batch size: the global batch's, summed over the ranks
        # (distributed.py), so that each rank's loss is its share of the loss of the batch of all ranks
        totals = torch.stack((assigned.scores.sum(), assigned.scores.new_tensor(batch)))  # [2]
        score_sum, batch = sum_over_ranks(totals).unbind()
        score_sum = score_sum.clamp(min=1)

        cls = F.binary_cross_entropy_with_logits(logits, assigned.scores.to(logits.dtype), reduction="sum")
        cls = cls / score_sum

        fg = assigned.fg  # [B, A]
        weight = assigned.scores[fg].sum(-1)  # [N] foreground anchors' soft target scores
        target_boxes = assigned.boxes / stride  # [B, A, 4] stride units
        box = ((1.0 - ciou(pred_boxes[fg], target_boxes[fg])) * weight).sum() / score_sum
        dfl = (self.distance_loss(pred_dist, anchors, stride, target_boxes, fg, preds["feats"]) * weight).sum()
        dfl = dfl / score_sum

        parts = torch.stack((box, cls, dfl)) * box.new_tensor(self.gains)  # [3]
        return parts.sum() * batch, parts.detach()

    def distance_loss(
        self,
        pred_dist: torch.Tensor,
        anchors: torch.Tensor,
        stride: torch.Tensor,
        target_boxes: torch.Tensor,
        fg: torch.Tensor,
        feats: list[torch.Tensor],
    ) -> torch.Tensor:
        """Per foreground anchor ``[N]``: DFL over the bins (``R > 1``), or L1 of image-normalised distances."""
        target_dist = boxes_to_distances(target_boxes, anchors)  # [B, A, 4] stride units
        if self.reg_max > 1:
            target_dist = target_dist[fg].clamp(0, self.reg_max - 1 - 0.01)  # [N, 4]: inside the bins
            return distribution_focal_loss(pred_dist[fg].view(-1, 4, self.reg_max), target_dist)
        h, w = feats[0].shape[2] * self.strides[0], feats[0].shape[3] * self.strides[0]  # input size, pixels
        scale = (stride / stride.new_tensor([w, h, w, h])).expand_as(target_dist)[fg]  # [N, 4]: to image fractions
        return F.l1_loss(pred_dist[fg] * scale, target_dist[fg] * scale, reduction="none").mean(-1)


class EndToEndLoss:
    """YOLO26 end-to-end heads: one-to-many and one-to-one losses, the weight moving to one-to-one over epochs.

    ``set_epoch(epoch)`` (completed epochs) before each epoch. ``parts`` are the one-to-one head's, as Ultralytics
    logs.
    """

    START, END = 0.8, 0.1  # one-to-many weight at the first and the last epoch

    def __init__(self, model: torch.nn.Module, epochs: int, box: float = 7.5, cls: float = 0.5, dfl: float = 1.5):
        self.one_to_many = DetectionLoss(model, box, cls, dfl, topk=10)
        self.one_to_one = DetectionLoss(model, box, cls, dfl, topk=7, topk2=1)
        self.epochs = epochs
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch  # Ultralytics' E2ELoss.update() at each epoch's end: the same weight at each epoch

    @property
    def one_to_many_weight(self) -> float:
        progress = min(self.epoch / max(self.epochs - 1, 1), 1.0)
        return (1 - progress) * (self.START - self.END) + self.END

    def __call__(
        self, preds: dict[str, dict[str, torch.Tensor]], targets: torch.Tensor, valid: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        many, _ = self.one_to_many(preds["one2many"], targets, valid)
        one, parts = self.one_to_one(preds["one2one"], targets, valid)
        w = self.one_to_many_weight
        return many * w + one * (1 - w), parts


def make_loss(model: torch.nn.Module, epochs: int) -> DetectionLoss | EndToEndLoss:
    """The loss of ``model``'s head: ``EndToEndLoss`` for YOLO26's end-to-end heads, else ``DetectionLoss``."""
    if getattr(model.model[-1], "one2one_cv2", None) is not None:
        return EndToEndLoss(model, epochs)
    return DetectionLoss(model)
