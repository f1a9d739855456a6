"""The gathered task-aligned assigner against ultralytics.utils.tal.TaskAlignedAssigner on the same inputs.

Fresh random inputs each run (the seed is printed on failure): batch sizes 1 to 16, 640 and 320 inputs,
empty images, crowded images, tiny boxes (widened to 16 px), garbage in padding rows, and YOLO26's one-to-one
setting (topk 7, topk2 1). Assignments must be identical; soft class scores equal to float rounding.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ultralytics.utils.tal import TaskAlignedAssigner as UltralyticsAssigner

from detector.train.assign import Assignment, TaskAlignedAssigner
from detector.train.boxes import make_anchors

STRIDES = (8, 16, 32)


def pixel_anchors(imgsz: int) -> torch.Tensor:
    """Anchor centres ``[A, 2]`` in input pixels of a three-level head at ``imgsz``."""
    feats = [torch.empty(1, 1, imgsz // s, imgsz // s) for s in STRIDES]
    points, strides = make_anchors(feats, STRIDES)
    return points * strides


def random_assigner_inputs(
    batch: int,
    imgsz: int,
    nc: int,
    max_targets: int,
    rng: np.random.Generator,
    empty: float = 0.2,
    min_targets: int = 0,
) -> tuple[torch.Tensor, ...]:
    """Predictions and padded targets with the statistics of a detector early in fine-tuning.

    Targets: ``min_targets`` to ``max_targets`` per image (a share ``empty`` of images has none, the first
    always some), sides log-uniform from 2 px (below the 16 px widening) to most of the image. Predictions:
    each anchor predicts a box around itself with log-uniform side distances, so that some overlap the
    targets and many do not (CIoU clamped to 0, ties); class probabilities mostly low. Returns
    (scores [B, A, nc], boxes [B, A, 4], anchors [A, 2],
    targets [B, T, 5], valid [B, T]).
    """
    anchors = pixel_anchors(imgsz)  # [A, 2]
    counts = rng.integers(min_targets, max_targets + 1, size=batch)
    counts[rng.random(batch) < empty] = 0
    counts[0] = max(counts[0], min(max_targets, 1))  # one image with a target at least: something to compare
    t = int(counts.max())
    valid = torch.from_numpy(np.arange(t)[None, :] < counts[:, None])  # [B, T]
    centre = rng.uniform(0, imgsz, size=(batch, t, 2))
    size = np.exp(rng.uniform(np.log(2), np.log(0.9 * imgsz), size=(batch, t, 2)))
    xyxy = np.clip(np.concatenate([centre - size / 2, centre + size / 2], -1), 0, imgsz)
    cls = rng.integers(0, nc, size=(batch, t, 1))
    targets = torch.from_numpy(np.concatenate([cls, xyxy], -1)).float()  # [B, T, 5]
    targets[~valid] = 0.0  # padding rows as a collate writes them
    ltrb = np.exp(rng.uniform(np.log(1), np.log(0.4 * imgsz), size=(batch, len(anchors), 4)))
    centres = anchors.numpy()[None]  # [1, A, 2]
    boxes = torch.from_numpy(np.concatenate([centres - ltrb[..., :2], centres + ltrb[..., 2:]], -1)).float()
    scores = torch.from_numpy(rng.normal(-4.0, 2.0, size=(batch, len(anchors), nc))).float().sigmoid()
    return scores, boxes, anchors, targets, valid


def ultralytics_assign(assigner: UltralyticsAssigner, scores, boxes, anchors, targets, valid) -> Assignment:
    labels, out_boxes, out_scores, fg, idx = assigner(
        scores, boxes, anchors, targets[..., :1], targets[..., 1:5], valid[..., None].float()
    )
    return Assignment(labels.long(), out_boxes, out_scores, fg, idx.long())


def assert_same_assignment(ours: Assignment, theirs: Assignment, what: str) -> None:
    assert torch.equal(ours.fg, theirs.fg), f"{what}: foreground differs"
    assert torch.equal(ours.target_idx, theirs.target_idx), f"{what}: target indices differ"
    assert torch.equal(ours.labels, theirs.labels), f"{what}: labels differ"
    assert torch.equal(ours.boxes, theirs.boxes), f"{what}: boxes differ"
    assert ours.scores.dtype == theirs.scores.dtype and ours.scores.shape == theirs.scores.shape
    torch.testing.assert_close(ours.scores, theirs.scores, rtol=1e-6, atol=1e-7, msg=f"{what}: scores differ")


def seeds(n: int) -> list[int]:
    """Fresh seeds each run; the failing one is named in the assertion message."""
    return [int(s) for s in np.random.SeedSequence().generate_state(n)]


def compare(batch, imgsz, nc, max_targets, seed, topk=10, topk2=None, **kw) -> Assignment:
    inputs = random_assigner_inputs(batch, imgsz, nc, max_targets, np.random.default_rng(seed), **kw)
    settings = dict(num_classes=nc, topk=topk, alpha=0.5, beta=6.0, topk2=topk2)
    ours = TaskAlignedAssigner(**settings, min_side=16.0)(*inputs)
    theirs = ultralytics_assign(UltralyticsAssigner(**settings, stride=list(STRIDES)), *inputs)
    what = f"batch {batch} imgsz {imgsz} targets<={max_targets} topk {topk}/{topk2} seed {seed}"
    assert_same_assignment(ours, theirs, what)
    return ours


@pytest.mark.parametrize(
    "batch,imgsz,max_targets",
    [(1, 640, 5), (2, 320, 20), (8, 640, 12), (16, 320, 30), (4, 640, 120)],
    ids=["b1", "b2-320", "b8", "b16-320", "crowded"],
)
def test_parity_with_ultralytics(batch, imgsz, max_targets):
    # a target that no predicted box overlaps gets no anchor (all its metrics tie at 0), as in Ultralytics;
    # one image alone can end with no foreground, three seeds of a few targets practically never do
    fg = sum(int(compare(batch, imgsz, 80, max_targets, s, min_targets=2).fg.sum()) for s in seeds(3))
    assert fg >= 3, f"only {fg} foreground anchors: nothing compared"


def test_parity_yolo26_one_to_one():
    for seed in seeds(3):
        ours = compare(8, 640, 80, 15, seed, topk=7, topk2=1)
        # one anchor per target at most: the setting really ran
        per_image_targets = [len(set(ours.target_idx[i][ours.fg[i]].tolist())) for i in range(8)]
        assert int(ours.fg.sum()) == sum(per_image_targets) > 0


def test_several_targets_claim_one_anchor():
    """The conflict rule runs: a twin box around each image's first target claims the same anchors."""
    (seed,) = seeds(1)
    scores, boxes, anchors, targets, valid = random_assigner_inputs(4, 320, 5, 10, np.random.default_rng(seed), 0, 2)
    targets[:, 0, 1:] = torch.tensor([100.0, 90.0, 180.0, 200.0])  # large enough for many candidates
    targets[:, 1, 1:] = targets[:, 0, 1:] + torch.tensor([-3.0, -3.0, 3.0, 3.0])  # its twin, a little larger
    targets[:, 1, 0] = (targets[:, 0, 0] + 1) % 5  # of another class
    valid[:, :2] = True
    settings = dict(num_classes=5, topk=10, alpha=0.5, beta=6.0)
    ours = TaskAlignedAssigner(**settings)(scores, boxes, anchors, targets, valid)
    theirs = ultralytics_assign(UltralyticsAssigner(**settings), scores, boxes, anchors, targets, valid)
    assert_same_assignment(ours, theirs, f"twin targets, seed {seed}")
    # a target's positives do not depend on the others: assigned alone, the twins share anchors
    alone = []
    for keep in (0, 1):
        only = valid.clone()
        only[:, 1 - keep] = False
        alone.append(TaskAlignedAssigner(**settings)(scores, boxes, anchors, targets, only).fg)
    assert (alone[0] & alone[1]).any(), f"seed {seed}: no anchor claimed twice, the rule was not exercised"


def test_padding_rows_are_ignored():
    (seed,) = seeds(1)
    scores, boxes, anchors, targets, valid = random_assigner_inputs(6, 320, 80, 10, np.random.default_rng(seed))
    assigner = TaskAlignedAssigner(num_classes=80)
    clean = assigner(scores, boxes, anchors, targets, valid)
    garbage = targets.clone()
    garbage[~valid] = torch.tensor([-1.0, 10.0, 10.0, 300.0, 300.0])  # a real-looking box, class -1
    dirty = assigner(scores, boxes, anchors, garbage, valid)
    assert torch.equal(clean.fg, dirty.fg) and torch.equal(clean.scores, dirty.scores)
    assert torch.equal(clean.target_idx, dirty.target_idx)
    assert bool(clean.fg.any()) and bool((~valid).any()), f"seed {seed}: nothing to compare"


def test_empty_batch():
    scores, boxes, anchors, targets, valid = random_assigner_inputs(3, 320, 80, 0, np.random.default_rng(0))
    assert targets.shape == (3, 0, 5)
    ours = TaskAlignedAssigner(num_classes=80)(scores, boxes, anchors, targets, valid)
    theirs = ultralytics_assign(
        UltralyticsAssigner(num_classes=80, topk=10, alpha=0.5), *(scores, boxes, anchors, targets, valid)
    )
    assert_same_assignment(ours, theirs, "no targets")
    assert not ours.fg.any() and (ours.labels == 80).all()


def test_ultralytics_loss_settings_are_the_defaults():
    """Our defaults are what the installed v8DetectionLoss gives its assigner (topk 10, alpha 0.5, beta 6)."""
    from ultralytics.nn.tasks import DetectionModel
    from ultralytics.utils.loss import v8DetectionLoss

    model = DetectionModel("yolo11n.yaml", verbose=False)
    model.args = {}
    theirs = v8DetectionLoss(model).assigner
    ours = TaskAlignedAssigner(num_classes=80)
    assert (ours.topk, ours.alpha, ours.beta, ours.min_side) == (
        theirs.topk,
        theirs.alpha,
        theirs.beta,
        theirs.stride_val,
    )
    assert ours.topk2 is None and theirs.topk2 == theirs.topk
