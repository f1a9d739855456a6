"""Our gather/mask postprocess against Ultralytics' own, on fresh random raw head outputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ultralytics.nn.modules.head import Detect
from ultralytics.utils.nms import non_max_suppression

from detector.postprocess import end2end_head, end2end_topk, nms_head


def random_raw(batch: int, num_classes: int = 80, anchors: int = 8400, seed: int = 0) -> torch.Tensor:
    """A plausible NMS-head output ``[B, 4 + nc, A]``: boxes on a 640 image, sigmoid class scores."""
    g = torch.Generator().manual_seed(seed)
    centre = torch.rand(batch, 2, anchors, generator=g) * 640
    size = 10 + torch.rand(batch, 2, anchors, generator=g) * 240
    logits = -8 + 2 * torch.randn(batch, num_classes, anchors, generator=g)
    return torch.cat((centre, size, logits.sigmoid()), 1)


# Ultralytics' NMS stops after a wall-clock limit (2 s + 0.05 s an image) and returns the images it did not reach
# empty: on a loaded machine the reference itself changes. No limit for the reference here.
NO_TIME_LIMIT = {"max_time_img": 1e9}


def fresh_seed() -> int:
    return int(np.random.SeedSequence().entropy % 2**31)


CASES = [
    # conf, batch, classes, agnostic
    (0.25, 1, None, False),
    (0.25, 8, None, False),
    (0.001, 1, None, False),
    (0.001, 8, None, False),
    (0.25, 8, [0, 2, 5, 79], False),
    (0.001, 8, [1, 3, 7], False),
    (0.25, 8, None, True),
    (0.001, 1, None, True),
]


@pytest.mark.parametrize("conf,batch,classes,agnostic", CASES)
def test_nms_head_equals_ultralytics(conf, batch, classes, agnostic):
    seed = fresh_seed()
    raw = random_raw(batch, seed=seed)
    theirs = non_max_suppression(raw.clone(), conf, 0.7, classes, agnostic, max_det=300, **NO_TIME_LIMIT)
    ours = nms_head(raw, conf, 0.7, classes, max_det=300, agnostic=agnostic)
    assert len(ours) == batch
    assert sum(len(t) for t in theirs) >= batch, f"seed {seed}: no boxes, the comparison would prove nothing"
    for i, (a, b) in enumerate(zip(ours, theirs)):
        assert a.shape == b.shape, f"seed {seed} image {i}: {a.shape} vs {b.shape}"
        assert torch.equal(a, b), f"seed {seed} image {i}: rows differ"
    if classes is not None:
        assert set(torch.cat(ours)[:, 5].long().tolist()) <= set(classes)


def test_nms_head_caps_max_det_and_candidates():
    seed = fresh_seed()
    raw = random_raw(2, seed=seed)
    theirs = non_max_suppression(raw.clone(), 0.001, 0.5, max_det=7, max_nms=500, **NO_TIME_LIMIT)
    ours = nms_head(raw, 0.001, 0.5, max_det=7, max_candidates=500)
    for a, b in zip(ours, theirs):
        assert len(a) == 7
        assert torch.equal(a, b), f"seed {seed}"


def test_nms_head_no_candidates():
    raw = random_raw(3, seed=1)
    raw[:, 4:] = 0.01
    ours = nms_head(raw, 0.25)
    assert [r.shape for r in ours] == [(0, 6)] * 3


def random_one2one(batch: int, anchors: int = 8400, num_classes: int = 80, seed: int = 0) -> torch.Tensor:
    """A one-to-one head output ``[B, A, 4 + nc]``: xyxy boxes and sigmoid scores."""
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(batch, anchors, 2, generator=g) * 600
    wh = 5 + torch.rand(batch, anchors, 2, generator=g) * 200
    scores = (-7 + 2 * torch.randn(batch, anchors, num_classes, generator=g)).sigmoid()
    return torch.cat((xy, xy + wh, scores), -1)


@pytest.mark.parametrize("agnostic", [False, True])
@pytest.mark.parametrize("max_det", [300, 50])
def test_end2end_topk_equals_ultralytics_head(agnostic, max_det):
    seed = fresh_seed()
    raw = random_one2one(4, seed=seed)
    head = Detect(nc=80, ch=(16,))
    head.agnostic_nms, head.max_det = agnostic, max(max_det, 300)  # as Ultralytics' predictor sets it
    theirs = head.postprocess(raw.clone())  # [B, K, 6]
    ours = end2end_topk(raw, max_det=max_det, agnostic=agnostic)
    assert torch.equal(ours, theirs), f"seed {seed}"


@pytest.mark.parametrize("conf,classes,max_det", [(0.25, None, 300), (0.001, None, 20), (0.05, [0, 1, 2, 3], 300)])
def test_end2end_head_equals_ultralytics(conf, classes, max_det):
    seed = fresh_seed()
    rows = end2end_topk(random_one2one(8, seed=seed, num_classes=6))  # few classes: the filter bites
    theirs = non_max_suppression(rows.clone(), conf, 0.7, classes, max_det=max_det, end2end=True, **NO_TIME_LIMIT)
    ours = end2end_head(rows, conf, classes, max_det)
    assert sum(len(t) for t in theirs) > 0, f"seed {seed}: nothing to compare"
    for a, b in zip(ours, theirs):
        assert torch.equal(a, b), f"seed {seed}"
